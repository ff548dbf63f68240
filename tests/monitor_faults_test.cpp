// The fault-injection features the fault zoo (bench/faults/) relies on, and the monitor catching those faults
// through the Trainer exactly as `traindx train` wires it: data.shuffle_labels and a layer's `trainable = false`.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <string>
#include <vector>

#include "test_support.h"
#include "traindx/core/config.h"
#include "traindx/core/error.h"
#include "traindx/data/data.h"
#include "traindx/model/model.h"
#include "traindx/monitor/monitor.h"
#include "traindx/train/trainer.h"

using traindx::Json;

namespace {

traindx::DataOptions breast_cancer(bool shuffle_labels) {
  traindx::DataOptions o;
  o.source = "csv";
  o.path = std::string(traindx::testing::kSklearnDataDir) + "/breast_cancer.csv";
  o.header = "sklearn";
  o.seed = 5;
  o.shuffle_labels = shuffle_labels;
  return o;
}

std::vector<int64_t> values(const torch::Tensor& t) {
  const auto c = t.to(torch::kLong).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

TEST(MonitorFaultsTest, ShuffleLabelsPermutesOnlyTheTrainingTargets) {
  const auto plain = traindx::load_raw_splits(breast_cancer(false));
  const auto shuffled = traindx::load_raw_splits(breast_cancer(true));
  auto a = values(plain.train.targets), b = values(shuffled.train.targets);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_NE(a, b) << "the training labels moved";
  size_t same = 0;
  for (size_t i = 0; i < a.size(); ++i) same += a[i] == b[i];
  EXPECT_LT(same, a.size() * 3 / 4) << "a permutation of two classes keeps about half the labels in place";
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  EXPECT_EQ(a, b) << "class frequencies are kept";
  EXPECT_EQ(values(plain.val.targets), values(shuffled.val.targets)) << "validation keeps its true labels";
  EXPECT_EQ(values(plain.test.targets), values(shuffled.test.targets)) << "test keeps its true labels";
  // Seeded: the same seed shuffles the same way.
  EXPECT_EQ(values(traindx::load_raw_splits(breast_cancer(true)).train.targets), values(shuffled.train.targets));
}

TEST(MonitorFaultsTest, ShuffleLabelsIsAConfigKey) {
  const auto config = traindx::Config::from_string("[data]\nshuffle_labels = true\n");
  EXPECT_TRUE(traindx::DataOptions::from_config(config).shuffle_labels);
  EXPECT_FALSE(traindx::DataOptions::from_config(traindx::Config()).shuffle_labels);
}

traindx::ModelOptions layers(const char* json) {
  traindx::ModelOptions o;
  o.layers = Json::parse(json);
  return o;
}

TEST(MonitorFaultsTest, TrainableFalseFreezesTheLayer) {
  torch::manual_seed(0);
  const auto model = traindx::build_model(
      layers(R"([{"type": "linear", "out": 8}, {"type": "relu"},
                 {"type": "linear", "out": 8, "trainable": false}, {"type": "layernorm", "trainable": false},
                 {"type": "relu"}, {"type": "linear"}])"),
      {4}, 3);
  for (const auto& [name, p] : model->named_parameters()) {
    const bool frozen = name.rfind("fc2.", 0) == 0 || name.rfind("ln1.", 0) == 0;
    EXPECT_EQ(p.requires_grad(), !frozen) << name;
  }
  const auto out = model->forward(torch::randn({5, 4}));
  out.sum().backward();
  for (const auto& [name, p] : model->named_parameters())
    EXPECT_EQ(p.grad().defined(), p.requires_grad()) << name;
}

TEST(MonitorFaultsTest, TrainableFreezesAWholeResidualBlock) {
  const auto model = traindx::build_model(
      layers(R"([{"type": "linear", "out": 8},
                 {"type": "residual", "trainable": false, "layers": [{"type": "linear", "out": 6}, {"type": "relu"}]},
                 {"type": "linear"}])"),
      {4}, 2);
  int frozen = 0;
  for (const auto& [name, p] : model->named_parameters()) {
    if (name.rfind("res1.", 0) == 0) {
      EXPECT_FALSE(p.requires_grad()) << name;
      ++frozen;
    } else {
      EXPECT_TRUE(p.requires_grad()) << name;
    }
  }
  EXPECT_EQ(frozen, 3) << "the block's linear weight and bias and its projection";
}

TEST(MonitorFaultsTest, TrainableIsValidated) {
  try {
    traindx::build_model(layers(R"([{"type": "linear", "out": 4, "trainable": "no"}, {"type": "linear"}])"), {4}, 2);
    FAIL() << "expected ModelError";
  } catch (const traindx::ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("'trainable' must be true or false"), std::string::npos) << e.what();
  }
  // Layers without parameters have nothing to freeze.
  EXPECT_THROW(traindx::build_model(layers(R"([{"type": "linear", "out": 4}, {"type": "relu", "trainable": false},
                                               {"type": "linear"}])"),
                                    {4}, 2),
               traindx::ModelError);
}

TEST(MonitorFaultsTest, TrainerWithMonitorReportsTheFrozenLayerAtStepZero) {
  torch::manual_seed(0);
  auto data = traindx::prepare_data(breast_cancer(false));
  auto model = traindx::build_model(
      layers(R"([{"type": "linear", "out": 16}, {"type": "relu"}, {"type": "linear", "out": 16, "trainable": false},
                 {"type": "relu"}, {"type": "linear"}])"),
      data.info.input_shape, data.info.num_classes);
  traindx::TrainOptions options;
  options.optimizer.name = "adam";
  options.optimizer.lr = 1e-3;
  options.batch_size = 32;
  options.max_steps = 30;
  options.epochs = 5;
  traindx::Trainer trainer(options, std::move(data), model);
  auto monitor = traindx::make_monitor(traindx::MonitorOptions(), trainer);
  trainer.add_callback(std::make_shared<traindx::MonitorCallback>(monitor));
  const auto result = trainer.fit();
  EXPECT_EQ(result.status, "completed");
  bool found = false;
  for (const auto& f : monitor->findings().ranked()) {
    if (f.rule != "unchanged_parameter") continue;
    found = true;
    EXPECT_EQ(f.layer, "fc2");
    EXPECT_EQ(f.step, 0);
  }
  EXPECT_TRUE(found);
  EXPECT_FALSE(monitor->findings().has_critical());
}

TEST(MonitorFaultsTest, TrainerWithMonitorSeesShuffledLabels) {
  torch::manual_seed(0);
  auto data = traindx::prepare_data(breast_cancer(true));
  auto model = traindx::build_model(layers(R"([{"type": "linear", "out": 16}, {"type": "relu"}, {"type": "linear"}])"),
                                    data.info.input_shape, data.info.num_classes);
  traindx::TrainOptions options;
  options.optimizer.name = "adam";
  options.optimizer.lr = 1e-3;
  options.batch_size = 32;
  options.max_steps = 100;
  options.epochs = 20;
  traindx::Trainer trainer(options, std::move(data), model);
  auto monitor = traindx::make_monitor(traindx::MonitorOptions(), trainer);
  trainer.add_callback(std::make_shared<traindx::MonitorCallback>(monitor));
  trainer.fit();
  bool found = false;
  for (const auto& f : monitor->findings().ranked()) found = found || f.rule == "loss_not_decreasing";
  EXPECT_TRUE(found) << "with labels unrelated to inputs the loss stays at the label entropy";
}

}  // namespace
