// The manifest schema check (parse_checkpoint_manifest): a real manifest passes; a manifest edited with its hash
// recomputed (the hash is no signature) is still rejected with CheckpointError naming the key, where the readers
// would otherwise have failed with a JSON type error (exit 3, "internal error") or worse.
#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "test_support.h"
#include "traindx/checkpoint/checkpoint.h"
#include "traindx/checkpoint/manifest.h"
#include "traindx/core/error.h"
#include "traindx/core/text.h"

namespace traindx {
namespace {

using testing::TempDir;

const char* const kToml = R"(
[run]
seed = 2
[data]
source = "csv"
path = "/usr/lib/python3/dist-packages/sklearn/datasets/data/iris.csv"
header = "sklearn"
[model]
layers = [{ type = "linear", out = 8 }, { type = "relu" }, { type = "linear" }]
[train]
max_steps = 2
[checkpoint]
probe_size = 4
)";

class CheckpointManifestTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    const Config config = Config::from_string(kToml, "manifest-test.toml");
    Trainer trainer(config);
    trainer.fit();
    const std::string saved = save_checkpoint(dir_->file("ckpt"), trainer, config, {}, Json::object(),
                                              CheckpointOptions::from_config(config));
    manifest_ = new Json(Json::parse(read_file(saved + "/manifest.json")));
  }
  static void TearDownTestSuite() {
    delete manifest_;
    delete dir_;
  }
  // The manifest after `edit`, with its hash recomputed.
  static std::string edited(const std::function<void(Json&)>& edit) {
    Json m = *manifest_;
    edit(m);
    m["manifest_hash"] = checkpoint_manifest_hash(m);
    return m.dump(2);
  }
  static void expect_rejected(const std::function<void(Json&)>& edit, const std::string& part) {
    try {
      parse_checkpoint_manifest(edited(edit), "m.json");
      ADD_FAILURE() << "accepted a manifest that should fail with '" << part << "'";
    } catch (const CheckpointError& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("m.json"), std::string::npos) << e.what();
    }
  }
  static TempDir* dir_;
  static Json* manifest_;
};
TempDir* CheckpointManifestTest::dir_ = nullptr;
Json* CheckpointManifestTest::manifest_ = nullptr;

TEST_F(CheckpointManifestTest, ARealManifestPassesAndIsReturnedWhole) {
  EXPECT_EQ(parse_checkpoint_manifest(manifest_->dump(), "m.json"), *manifest_);
  EXPECT_TRUE(manifest_->at("probe").contains("raw_table"));  // tabular data: the raw table is checked too
}

TEST_F(CheckpointManifestTest, EditedFieldsAreNamedEvenWithARecomputedHash) {
  expect_rejected([](Json& m) { m["step"] = "12"; }, "step is string, not an integer");
  expect_rejected([](Json& m) { m.erase("config_toml"); }, "config_toml is missing");
  expect_rejected([](Json& m) { m["trainer"]["schedule"]["total_steps"] = 1.5; }, "trainer.schedule.total_steps");
  expect_rejected([](Json& m) { m["data_info"]["input_shape"] = {4, -1}; }, "data_info.input_shape[1] is -1");
  expect_rejected([](Json& m) { m["data_info"]["class_names"][0] = 7; }, "data_info.class_names[0]");
  expect_rejected([](Json& m) { m["model"]["layers"][0].erase("type"); }, "model.layers[0].type is missing");
  expect_rejected([](Json& m) { m["optimizer"]["scalars"] = {{"fc1.weight", 3}}; }, "optimizer.scalars.fc1.weight");
  expect_rejected([](Json& m) { m["tensors"]["model.safetensors"]["fc1.weight"] = "abc"; },
                  "tensors.model.safetensors.fc1.weight");
  expect_rejected([](Json& m) { m["tensors"].erase("rng.safetensors"); }, "tensors.rng.safetensors is missing");
  expect_rejected([](Json& m) { m["probe"]["raw_table"]["rows"] = 5; }, "holds 4 values for 5 rows");
  expect_rejected([](Json& m) { m["probe"]["raw_table"]["columns"][0]["numbers"][0] = "x"; }, "numbers[0]");
  expect_rejected([](Json& m) { m["version"] = 2; }, "newer than this traindx reads");
  expect_rejected([](Json& m) { m["format"] = "other"; }, "not a traindx checkpoint manifest");
}

TEST_F(CheckpointManifestTest, HashTextAndDepthProblemsAreCheckpointErrors) {
  Json m = *manifest_;
  m["step"] = 99;  // edited without recomputing the hash
  EXPECT_THROW(parse_checkpoint_manifest(m.dump(), "m.json"), CheckpointError);
  EXPECT_THROW(parse_checkpoint_manifest(manifest_->dump().substr(0, 100), "m.json"), CheckpointError);
  EXPECT_THROW(parse_checkpoint_manifest("[1, 2]", "m.json"), CheckpointError);
  EXPECT_THROW(parse_checkpoint_manifest(std::string(100000, '['), "m.json"), CheckpointError);
}

}  // namespace
}  // namespace traindx
