// The trainer's evaluation schedule: train.eval_examples bounds mid-run evaluations, never the final one.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "test_support.h"
#include "traindx/data/data.h"
#include "traindx/model/model.h"
#include "traindx/train/trainer.h"

using traindx::Json;

namespace {

struct RecordEvaluations : traindx::TrainerCallback {
  std::vector<Json> metrics;
  void on_evaluation(int64_t, const Json& m) override { metrics.push_back(m); }
};

int64_t examples_in(const Json& confusion) {
  int64_t n = 0;
  for (const auto& row : confusion)
    for (const auto& cell : row) n += cell.get<int64_t>();
  return n;
}

TEST(TrainTrainerTest, EvalExamplesBoundsMidRunEvaluationsButNotTheFinalOne) {
  torch::manual_seed(0);
  traindx::DataOptions d;
  d.source = "csv";
  d.path = std::string(traindx::testing::kSklearnDataDir) + "/breast_cancer.csv";
  d.header = "sklearn";
  auto data = traindx::prepare_data(d);
  const int64_t val_size = data.val_x.size(0);
  ASSERT_GT(val_size, 20);
  traindx::ModelOptions mo;
  mo.layers = Json::parse(R"([{"type": "linear", "out": 8}, {"type": "relu"}, {"type": "linear"}])");
  auto model = traindx::build_model(mo, data.info.input_shape, data.info.num_classes);
  traindx::TrainOptions options;
  options.batch_size = 32;
  options.max_steps = 2;
  options.eval_every = 1;
  options.eval_examples = 20;
  traindx::Trainer trainer(options, std::move(data), model);
  auto record = std::make_shared<RecordEvaluations>();
  trainer.add_callback(record);
  const traindx::TrainResult result = trainer.fit();

  ASSERT_FALSE(record->metrics.empty());
  for (const auto& m : record->metrics) EXPECT_EQ(examples_in(m.at("val_confusion_matrix")), 20) << m.dump();
  EXPECT_EQ(examples_in(result.val_metrics.at("confusion_matrix")), val_size);
}

}  // namespace
