// TorchScript models: fixtures made by Debian's python3-torch at test time (tests/reference/
// make_torchscript_fixtures.py), loaded here and compared with Python's outputs and forward-hook values.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <sstream>

#include "test_support.h"
#include "traindx/core/error.h"
#include "traindx/model/model.h"

using traindx::load_torchscript_model;
using traindx::ModelError;

namespace {

std::map<std::string, torch::Tensor> load_expected(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::map<std::string, torch::Tensor> out;
  for (const auto& item : torch::pickle_load(bytes).toGenericDict()) {
    out[item.key().toStringRef()] = item.value().toTensor();
  }
  return out;
}

std::vector<std::string> lines_of(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

class ModelTorchScriptTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (std::system("/usr/bin/python3 -c 'import torch' > /dev/null 2>&1") != 0) return;
    dir_ = std::make_unique<traindx::testing::TempDir>();
    const std::string cmd = "/usr/bin/python3 " + traindx::testing::source_dir() +
                            "/tests/reference/make_torchscript_fixtures.py " + dir_->path() + " > " +
                            dir_->file("python.log") + " 2>&1";
    generated_ = std::system(cmd.c_str()) == 0;
  }
  static void TearDownTestSuite() { dir_.reset(); }

  void SetUp() override {
    if (!dir_) GTEST_SKIP() << "/usr/bin/python3 has no torch (Debian's python3-torch)";
    ASSERT_TRUE(generated_) << "make_torchscript_fixtures.py failed; see " << dir_->file("python.log");
  }

  static std::string file(const std::string& name) { return dir_->file(name); }

  static std::unique_ptr<traindx::testing::TempDir> dir_;
  static bool generated_;
};

std::unique_ptr<traindx::testing::TempDir> ModelTorchScriptTest::dir_;
bool ModelTorchScriptTest::generated_ = false;

constexpr double kTol = 1e-5;

}  // namespace

TEST_F(ModelTorchScriptTest, ScriptedForwardMatchesPython) {
  auto model = load_torchscript_model(file("scripted.pt"));
  auto expected = load_expected(file("scripted_expected.pt"));
  model->train(false);
  EXPECT_FALSE(model->is_training());
  EXPECT_TRUE(torch::allclose(model->forward(expected.at("input")), expected.at("output"), kTol, kTol));
  EXPECT_EQ(model->module(), nullptr);
}

TEST_F(ModelTorchScriptTest, ScriptedTapsReportTopLevelChildrenInCallOrder) {
  auto model = load_torchscript_model(file("scripted.pt"));
  auto expected = load_expected(file("scripted_expected.pt"));
  model->train(false);
  std::vector<std::string> names;
  std::map<std::string, torch::Tensor> taps;
  const auto out = model->forward_with_taps(expected.at("input"), [&](const std::string& n, const torch::Tensor& t) {
    names.push_back(n);
    taps[n] = t;
  });
  EXPECT_EQ(names, (std::vector<std::string>{"features", "pool", "drop", "fc"}));
  for (const auto& n : names) {
    EXPECT_TRUE(torch::allclose(taps.at(n), expected.at("tap." + n), kTol, kTol)) << n;
  }
  EXPECT_TRUE(torch::allclose(out, expected.at("output"), kTol, kTol));
  EXPECT_TRUE(torch::equal(out, taps.at("fc")));
}

TEST_F(ModelTorchScriptTest, ParameterAndBufferNamesMatchPython) {
  auto model = load_torchscript_model(file("scripted.pt"));
  std::vector<std::string> names;
  for (const auto& [n, t] : model->named_parameters()) names.push_back("param " + n);
  for (const auto& [n, t] : model->named_buffers()) names.push_back("buffer " + n);
  EXPECT_EQ(names, lines_of(file("scripted_names.txt")));
  EXPECT_EQ(model->parameter_count(), (4 * 9 + 4) + (4 + 4) + (64 * 3 + 3));
  EXPECT_EQ(model->parameters().size(), 6u);
}

TEST_F(ModelTorchScriptTest, TrainAndEvalSwitchDropoutAlsoInTappedForward) {
  auto model = load_torchscript_model(file("scripted.pt"));
  auto expected = load_expected(file("scripted_expected.pt"));
  const auto x = expected.at("input");
  model->train(true);
  EXPECT_TRUE(model->is_training());
  torch::Tensor dropped;
  model->forward_with_taps(x, [&](const std::string& n, const torch::Tensor& t) {
    if (n == "drop") dropped = t;
  });
  ASSERT_TRUE(dropped.defined());
  EXPECT_GT((dropped == 0).sum().item<int64_t>(), dropped.numel() / 4);
  EXPECT_FALSE(torch::allclose(model->forward(x), expected.at("output"), kTol, kTol));

  // Back in eval mode dropout is the identity again in both paths (nothing cached the training flag). Python's
  // eval output no longer applies: the training passes moved batch norm's running statistics.
  model->train(false);
  std::map<std::string, torch::Tensor> taps;
  const auto tapped =
      model->forward_with_taps(x, [&](const std::string& n, const torch::Tensor& t) { taps[n] = t; });
  EXPECT_TRUE(torch::equal(taps.at("drop"), taps.at("pool").flatten(1)));
  EXPECT_TRUE(torch::allclose(model->forward(x), tapped, kTol, kTol));
}

TEST_F(ModelTorchScriptTest, TracedSequentialForwardAndTaps) {
  auto model = load_torchscript_model(file("traced.pt"));
  auto expected = load_expected(file("traced_expected.pt"));
  std::vector<std::string> names;
  const auto out = model->forward_with_taps(expected.at("input"), [&](const std::string& n, const torch::Tensor& t) {
    names.push_back(n);
    EXPECT_TRUE(torch::allclose(t, expected.at("tap." + n), kTol, kTol)) << n;
  });
  EXPECT_EQ(names, (std::vector<std::string>{"0", "1", "2"}));
  EXPECT_TRUE(torch::allclose(out, expected.at("output"), kTol, kTol));
  EXPECT_TRUE(torch::allclose(model->forward(expected.at("input")), expected.at("output"), kTol, kTol));
}

TEST_F(ModelTorchScriptTest, ModuleListItemsAreTappedByPathAndDefaultsAreUsed) {
  auto model = load_torchscript_model(file("listed.pt"));
  auto expected = load_expected(file("listed_expected.pt"));
  std::vector<std::string> names;
  const auto out = model->forward_with_taps(expected.at("input"), [&](const std::string& n, const torch::Tensor& t) {
    names.push_back(n);
    EXPECT_TRUE(torch::allclose(t, expected.at("tap." + n), kTol, kTol)) << n;
  });
  EXPECT_EQ(names, (std::vector<std::string>{"blocks.0", "blocks.1", "head"}));
  // forward(x, scale = 2.0): the default is passed on both paths.
  EXPECT_TRUE(torch::allclose(out, expected.at("output"), kTol, kTol));
  EXPECT_TRUE(torch::allclose(model->forward(expected.at("input")), expected.at("output"), kTol, kTol));

  std::vector<std::string> rows;
  int64_t sum = 0;
  for (const auto& row : model->summary()) {
    rows.push_back(row.name + ":" + row.type);
    sum += row.parameters;
  }
  EXPECT_EQ(rows, (std::vector<std::string>{"blocks.0:Linear", "blocks.1:Linear", "head:Linear"}));
  EXPECT_EQ(sum, model->parameter_count());
}

TEST_F(ModelTorchScriptTest, ForwardMustReturnOneTensor) {
  try {
    load_torchscript_model(file("tuple.pt"));
    FAIL() << "expected ModelError";
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("forward returns (Tensor, Tensor); traindx needs forward(x) to return one "
                                         "tensor"),
              std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("tuple.pt"), std::string::npos) << e.what();
  }
}

TEST_F(ModelTorchScriptTest, TapsCarryGradients) {
  auto model = load_torchscript_model(file("traced.pt"));
  auto expected = load_expected(file("traced_expected.pt"));
  const auto out = model->forward_with_taps(expected.at("input"), [](const std::string&, const torch::Tensor&) {});
  out.sum().backward();
  for (const auto& [n, t] : model->named_parameters()) {
    ASSERT_TRUE(t.grad().defined()) << n;
    EXPECT_GT(t.grad().abs().sum().item<double>(), 0.0) << n;
  }
}

TEST_F(ModelTorchScriptTest, SummaryHasOneRowPerTopLevelChild) {
  auto model = load_torchscript_model(file("scripted.pt"));
  const auto rows = model->summary();
  ASSERT_EQ(rows.size(), 4u);
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"features", "Sequential"}, {"pool", "MaxPool2d"}, {"drop", "Dropout"}, {"fc", "Linear"}};
  int64_t sum = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(rows[i].name, expected[i].first);
    EXPECT_EQ(rows[i].type, expected[i].second);
    EXPECT_TRUE(rows[i].output_shape.empty());
    sum += rows[i].parameters;
  }
  EXPECT_EQ(rows[0].parameters, 4 * 9 + 4 + 4 + 4);
  EXPECT_EQ(sum, model->parameter_count());
  const std::string table = model->summary_table();
  EXPECT_NE(table.find("Sequential"), std::string::npos) << table;
  EXPECT_NE(table.find("total"), std::string::npos) << table;
}

TEST_F(ModelTorchScriptTest, ConvertsToDouble) {
  auto model = load_torchscript_model(file("scripted.pt"));
  auto expected = load_expected(file("scripted_expected.pt"));
  model->train(false);
  model->to(torch::kCPU, torch::kDouble);
  for (const auto& [n, t] : model->named_parameters()) EXPECT_EQ(t.scalar_type(), torch::kDouble) << n;
  for (const auto& [n, t] : model->named_buffers()) {
    EXPECT_EQ(t.scalar_type(), n == "features.1.num_batches_tracked" ? torch::kLong : torch::kDouble) << n;
  }
  const auto x = expected.at("input").to(torch::kDouble);
  const auto y = model->forward(x);
  EXPECT_EQ(y.scalar_type(), torch::kDouble);
  EXPECT_TRUE(torch::allclose(y, expected.at("output").to(torch::kDouble), kTol, kTol));
  // The tapped graph reads the converted attributes too.
  const auto tapped = model->forward_with_taps(x, [](const std::string&, const torch::Tensor& t) {
    EXPECT_EQ(t.scalar_type(), torch::kDouble);
  });
  EXPECT_TRUE(torch::allclose(tapped, y, kTol, kTol));
}

TEST_F(ModelTorchScriptTest, UnreadableFilesAreNamed) {
  const std::string missing = file("nope.pt");
  try {
    load_torchscript_model(missing);
    FAIL() << "expected ModelError";
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot read '" + missing + "'"), std::string::npos) << e.what();
  }
  const std::string garbage = dir_->write("garbage.pt", "this is not a zip archive");
  try {
    load_torchscript_model(garbage);
    FAIL() << "expected ModelError";
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot load '" + garbage + "' as a TorchScript module"), std::string::npos)
        << e.what();
  }
  // A plain tensor file is a zip archive but not a module.
  try {
    load_torchscript_model(file("traced_expected.pt"));
    FAIL() << "expected ModelError";
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("traced_expected.pt"), std::string::npos) << e.what();
  }
}
