#include <gtest/gtest.h>

#include "traindx/core/config.h"
#include "traindx/core/error.h"
#include "test_support.h"

#include <fstream>
#include <sstream>

using traindx::Config;
using traindx::ConfigError;

TEST(ConfigTest, DefaultsCoverEverySchemaKey) {
  Config c;
  for (const auto& key : traindx::config_schema()) {
    EXPECT_NO_THROW(c.get(key.path)) << key.path;
    EXPECT_FALSE(c.is_set(key.path));
  }
  EXPECT_EQ(c.get_string("train.optimizer"), "sgd");
  EXPECT_EQ(c.get_int("run.threads"), 1);
}

TEST(ConfigTest, ParsesFileValuesAndRecordsOrigin) {
  auto c = Config::from_string("[train]\nlr = 0.5\nbatch_size = 32\n[data]\nnormalize = false\n", "x.toml");
  EXPECT_DOUBLE_EQ(c.get_double("train.lr"), 0.5);
  EXPECT_EQ(c.get_int("train.batch_size"), 32);
  EXPECT_FALSE(c.get_bool("data.normalize"));
  EXPECT_EQ(c.origin("train.lr"), "x.toml:2");
}

TEST(ConfigTest, IntegerAcceptedForFloat) {
  auto c = Config::from_string("[train]\nlr = 1\n");
  EXPECT_DOUBLE_EQ(c.get_double("train.lr"), 1.0);
}

TEST(ConfigTest, UnknownKeyNamesClosest) {
  try {
    Config::from_string("[train]\nlearning_rate = 0.1\n", "bad.toml");
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("bad.toml:2"), std::string::npos) << m;
    EXPECT_NE(m.find("train.learning_rate"), std::string::npos) << m;
    EXPECT_NE(m.find("did you mean"), std::string::npos) << m;
  }
  try {
    Config::from_string("[train]\nbatchsize = 3\n", "bad.toml");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("train.batch_size"), std::string::npos) << e.what();
  }
  try {
    Config::from_string("[train]\nseed = 3\n", "bad.toml");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("run.seed"), std::string::npos) << e.what();
  }
}

TEST(ConfigTest, WrongTypeAndRangeAndChoice) {
  EXPECT_THROW(Config::from_string("[train]\nlr = \"fast\"\n"), ConfigError);
  EXPECT_THROW(Config::from_string("[train]\nbatch_size = 0\n"), ConfigError);
  EXPECT_THROW(Config::from_string("[train]\nbatch_size = 2.5\n"), ConfigError);
  try {
    Config::from_string("[train]\noptimizer = \"adma\"\n");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("closest: \"adam\""), std::string::npos) << e.what();
  }
}

TEST(ConfigTest, SyntaxErrorNamesLine) {
  try {
    Config::from_string("[train]\nlr = = 3\n", "s.toml");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("s.toml:2"), std::string::npos) << e.what();
  }
}

TEST(ConfigTest, SetUsesTomlSyntax) {
  Config c;
  c.set("train.lr=0.25");
  c.set("train.optimizer=\"adam\"");
  c.set("data.source=csv");  // unquoted string accepted
  c.set("data.categorical=[\"a\", \"b\"]");
  EXPECT_DOUBLE_EQ(c.get_double("train.lr"), 0.25);
  EXPECT_EQ(c.get_string("train.optimizer"), "adam");
  EXPECT_EQ(c.get_string("data.source"), "csv");
  EXPECT_EQ(c.get_string_array("data.categorical").size(), 2u);
  EXPECT_EQ(c.origin("train.lr"), "--set");
  EXPECT_THROW(c.set("train.lr"), ConfigError);
  EXPECT_THROW(c.set("train.lr=abc"), ConfigError);
  EXPECT_THROW(c.set("train.lrr=0.1"), ConfigError);
}

TEST(ConfigTest, TomlRoundTripKeepsEveryValue) {
  auto c = Config::from_string(R"(
[model]
layers = [ { type = "linear", out = 10 }, { type = "residual", layers = [ { type = "relu" } ] } ]
[train]
lr = 0.125
)");
  auto again = Config::from_string(c.to_toml(), "roundtrip");
  EXPECT_EQ(again.to_json(), c.to_json()) << c.to_toml();
}

TEST(ConfigTest, ReferenceDocIsCommittedAndCurrent) {
  const std::string path = traindx::testing::source_dir() + "/docs/config.md";
  std::ifstream in(path);
  ASSERT_TRUE(in.good()) << "run `traindx config docs > docs/config.md`";
  std::stringstream buf;
  buf << in.rdbuf();
  EXPECT_EQ(buf.str(), traindx::config_reference_markdown()) << "regenerate with `traindx config docs > docs/config.md`";
}
