// Planted-cause tests of the investigator: each plants one cause of "my reloaded model predicts differently" and
// checks that verify_checkpoint names it.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>

#include "test_support.h"
#include "traindx/checkpoint/investigate.h"
#include "traindx/checkpoint/tensor_convert.h"
#include "traindx/core/error.h"

namespace traindx {
namespace {

class CheckpointVerifyTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    Config config = Config::from_string(R"(
[run]
seed = 3
[data]
source = "fashion-mnist"
max_train = 1200
max_test = 200
[model]
layers = [
  { type = "conv2d", out = 8, kernel = 3, padding = 1 },
  { type = "batchnorm" },
  { type = "relu" },
  { type = "maxpool2d" },
  { type = "flatten" },
  { type = "linear", out = 32 },
  { type = "relu" },
  { type = "dropout", p = 0.3 },
  { type = "linear" },
]
[train]
optimizer = "adam"
lr = 0.003
max_steps = 15
batch_size = 32
[checkpoint]
probe_size = 16
)");
    Trainer trainer(config);
    trainer.fit();
    checkpoint_ = new std::string(save_checkpoint(dir_->file("ckpt"), trainer, config));
  }
  static void TearDownTestSuite() {
    delete checkpoint_;
    delete dir_;
  }

  static const Hypothesis& find(const VerifyReport& r, const std::string& id) {
    auto it = std::find_if(r.hypotheses.begin(), r.hypotheses.end(), [&](const Hypothesis& h) { return h.id == id; });
    EXPECT_NE(it, r.hypotheses.end()) << id;
    return *it;
  }

  // The checkpoint's model tensors, edited, written as a safetensors weights file.
  static std::string weights_file(const std::string& name,
                                  const std::function<bool(std::string&, torch::Tensor&)>& edit) {
    const Checkpoint c = load_checkpoint(*checkpoint_);
    NamedTensors out;
    for (auto [n, t] : c.model)
      if (edit(n, t)) out.emplace_back(n, t);
    const std::string path = dir_->file(name);
    write_safetensors(path, out);
    return path;
  }

  static testing::TempDir* dir_;
  static std::string* checkpoint_;
};

testing::TempDir* CheckpointVerifyTest::dir_ = nullptr;
std::string* CheckpointVerifyTest::checkpoint_ = nullptr;

TEST_F(CheckpointVerifyTest, FreshReplayIsBitwiseIdentical) {
  const VerifyReport r = verify_checkpoint(*checkpoint_);
  EXPECT_EQ(r.verdict, "identical") << r.to_json().dump(2);
  EXPECT_EQ(r.exit_code(), 0);
  EXPECT_TRUE(r.hypotheses.empty());
}

TEST_F(CheckpointVerifyTest, NamesTrainMode) {
  VerifyOptions o;
  o.train_mode = true;
  const VerifyReport r = verify_checkpoint(*checkpoint_, o);
  EXPECT_EQ(r.verdict, "mismatch");
  EXPECT_EQ(r.exit_code(), 1);
  ASSERT_FALSE(r.hypotheses.empty());
  EXPECT_EQ(r.hypotheses.front().id, "train_mode") << r.to_json().dump(2);
  EXPECT_TRUE(r.hypotheses.front().holds);
  EXPECT_FALSE(find(r, "preprocessing").holds);
  EXPECT_FALSE(find(r, "keys").holds);
  // BatchNorm with batch statistics is the first layer to leave tolerance.
  EXPECT_EQ(r.first_divergent_layer, "bn1");
}

TEST_F(CheckpointVerifyTest, NamesChangedNormalisation) {
  VerifyOptions o;
  o.sets = {"data.scaler=minmax"};
  const VerifyReport r = verify_checkpoint(*checkpoint_, o);
  EXPECT_EQ(r.verdict, "mismatch");
  const Hypothesis& h = find(r, "preprocessing");
  EXPECT_TRUE(h.holds) << h.message;
  EXPECT_EQ(r.hypotheses.front().id, "preprocessing");
  EXPECT_EQ(r.first_divergent_layer, "input");
  EXPECT_FALSE(find(r, "train_mode").holds);
}

TEST_F(CheckpointVerifyTest, NamesDroppedBatchNormStatistics) {
  const std::string weights = weights_file("no_bn_stats.safetensors", [](std::string& n, torch::Tensor&) {
    return n.find("running_") == std::string::npos && n.find("num_batches") == std::string::npos;
  });
  VerifyOptions o;
  o.weights = weights;
  const VerifyReport r = verify_checkpoint(*checkpoint_, o);
  EXPECT_EQ(r.verdict, "mismatch");
  EXPECT_TRUE(find(r, "batchnorm_statistics").holds);
  EXPECT_TRUE(find(r, "keys").holds);
  EXPECT_EQ(r.first_divergent_layer, "bn1");
}

TEST_F(CheckpointVerifyTest, NamesRenamedKey) {
  const std::string weights = weights_file("renamed.safetensors", [](std::string& n, torch::Tensor&) {
    if (n == "fc1.weight") n = "dense1.weight";
    return true;
  });
  VerifyOptions o;
  o.weights = weights;
  const VerifyReport r = verify_checkpoint(*checkpoint_, o);
  EXPECT_EQ(r.verdict, "mismatch");
  const Hypothesis& h = find(r, "keys");
  EXPECT_TRUE(h.holds);
  EXPECT_NE(h.message.find("renamed"), std::string::npos) << h.message;
  EXPECT_EQ(r.keys.missing, std::vector<std::string>{"fc1.weight"});
  EXPECT_EQ(r.keys.unexpected, std::vector<std::string>{"dense1.weight"});
  EXPECT_EQ(r.first_divergent_layer, "fc1");
}

TEST_F(CheckpointVerifyTest, NamesThreadCountWhenItMatters) {
  VerifyOptions o;
  o.threads = 2;
  const VerifyReport r = verify_checkpoint(*checkpoint_, o);
  // Another thread count may reorder float sums; it must never push the outputs beyond tolerance.
  EXPECT_NE(r.verdict, "mismatch") << r.to_json().dump(2);
  if (r.verdict != "identical") {
    EXPECT_TRUE(find(r, "thread_count").holds);
    EXPECT_TRUE(find(r, "environment").holds);
  }
  EXPECT_TRUE(r.environment_diff.contains("threads"));
}

TEST_F(CheckpointVerifyTest, NamesDtypeChange) {
  VerifyOptions o;
  o.sets = {"model.dtype=float64"};
  const VerifyReport r = verify_checkpoint(*checkpoint_, o);
  EXPECT_EQ(r.verdict, "within_tolerance") << r.to_json().dump(2);
  EXPECT_TRUE(find(r, "dtype").holds);
  EXPECT_EQ(r.hypotheses.front().id, "dtype");
  EXPECT_GT(r.outputs.max_abs, 0.0);
}

TEST_F(CheckpointVerifyTest, RejectsTamperedTensor) {
  const Checkpoint c = load_checkpoint(*checkpoint_);
  const std::string copy = dir_->file("tampered");
  std::filesystem::copy(c.dir, copy, std::filesystem::copy_options::recursive);
  NamedTensors model = c.model;
  for (auto& [name, t] : model)
    if (name == "fc1.weight") {
      t = t.clone();
      t.view(-1)[0] += 1.0f;
    }
  write_safetensors(copy + "/model.safetensors", model);
  try {
    verify_checkpoint(copy);
    FAIL() << "expected CheckpointError";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("does not match its hash"), std::string::npos) << e.what();
  }
}

TEST(CompareTensorsTest, MeasuresUlpsAndTolerance) {
  auto a = torch::tensor({1.0f, 2.0f, -3.0f});
  auto b = a.clone();
  EXPECT_TRUE(compare_tensors(a, b).bitwise_equal);
  b[1] = std::nextafter(2.0f, 3.0f);
  const auto c = compare_tensors(a, b);
  EXPECT_FALSE(c.bitwise_equal);
  EXPECT_EQ(c.max_ulps, 1);
  EXPECT_EQ(c.differing, 1);
  EXPECT_TRUE(c.within(derive_tolerance(torch::kFloat32, 1)));
  b[2] = -2.0f;
  EXPECT_FALSE(compare_tensors(a, b).within(derive_tolerance(torch::kFloat32, 1)));
  // -0.0 and +0.0 are one ULP step apart in the lexicographic order of bit patterns.
  EXPECT_EQ(compare_tensors(torch::tensor({0.0f}), torch::tensor({-0.0f})).max_ulps, 0);
}

}  // namespace
}  // namespace traindx
