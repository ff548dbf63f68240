// Losses, optimizers, schedules and metrics against golden values from PyTorch 1.13 and sklearn 1.2
// (tests/reference/make_objective_fixtures.py -> tests/reference/fixtures/objective.json), plus their error paths.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iostream>
#include <limits>
#include <string>
#include <vector>

#include "traindx/core/config.h"
#include "traindx/core/error.h"
#include "traindx/train/objective.h"

using traindx::ConfigError;
using traindx::DataError;
using traindx::Json;
using traindx::LossKind;
using traindx::LrSchedule;
using traindx::MetricAccumulator;
using traindx::OptimizerOptions;
using traindx::ScheduleOptions;
using traindx::Task;

namespace {

const Json& fixtures() {
  static const Json doc = [] {
    const std::string path = TRAINDX_SOURCE_DIR "/tests/reference/fixtures/objective.json";
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot open " + path);
    return Json::parse(in);
  }();
  return doc;
}

void flatten(const Json& j, std::vector<double>& values, std::vector<int64_t>& shape, size_t depth) {
  if (!j.is_array()) {
    values.push_back(j.get<double>());
    return;
  }
  if (shape.size() == depth) shape.push_back(static_cast<int64_t>(j.size()));
  for (const auto& e : j) flatten(e, values, shape, depth + 1);
}

/// Nested JSON arrays of numbers -> a tensor of `dtype` (float values pass through double exactly).
torch::Tensor tensor_of(const Json& j, torch::ScalarType dtype) {
  std::vector<double> values;
  std::vector<int64_t> shape;
  flatten(j, values, shape, 0);
  return torch::tensor(values, torch::kFloat64).reshape(shape).to(dtype);
}

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

/// |a - b| <= atol + rtol * |b|, reporting the deviation.
::testing::AssertionResult close(double actual, double expected, double atol, double rtol) {
  const double dev = std::abs(actual - expected);
  if (dev <= atol + rtol * std::abs(expected)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << actual << " vs " << expected << " (|dev| = " << dev << ")";
}

template <typename Fn>
std::string error_message(Fn&& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

/// Rebuilds the fixture's linear problem and runs the optimizer with the fixture's per-step learning rates.
struct LinearProblem {
  torch::Tensor w, b, x, y;
  explicit LinearProblem(const Json& p)
      : w(tensor_of(p["weight"], torch::kFloat32).requires_grad_(true)),
        b(tensor_of(p["bias"], torch::kFloat32).requires_grad_(true)),
        x(tensor_of(p["x"], torch::kFloat32)),
        y(tensor_of(p["y"], torch::kFloat32)) {}
  torch::Tensor loss() const {
    return traindx::compute_loss(LossKind::Mse, torch::nn::functional::linear(x, w, b).reshape({-1}),
                                 y.reshape({-1}));
  }
};

OptimizerOptions options_of(const Json& j) {
  OptimizerOptions o;
  o.name = j.at("name").get<std::string>();
  o.lr = j.at("lr").get<double>();
  o.momentum = j.value("momentum", 0.0);
  o.nesterov = j.value("nesterov", false);
  o.weight_decay = j.value("weight_decay", 0.0);
  o.beta1 = j.value("beta1", o.beta1);
  o.beta2 = j.value("beta2", o.beta2);
  o.eps = j.value("eps", o.eps);
  o.alpha = j.value("alpha", o.alpha);
  return o;
}

}  // namespace

// ---- losses --------------------------------------------------------------------------------------------------

TEST(LossTest, ResolvesNamesAndAuto) {
  EXPECT_EQ(traindx::resolve_loss("auto", Task::Classification), LossKind::CrossEntropy);
  EXPECT_EQ(traindx::resolve_loss("auto", Task::Regression), LossKind::Mse);
  for (const char* name : {"cross_entropy", "nll", "bce_with_logits"}) {
    EXPECT_STREQ(traindx::loss_name(traindx::resolve_loss(name, Task::Classification)), name);
  }
  for (const char* name : {"mse", "huber", "bce_with_logits"}) {
    EXPECT_STREQ(traindx::loss_name(traindx::resolve_loss(name, Task::Regression)), name);
  }
}

TEST(LossTest, BadNameOrTaskThrowsConfigError) {
  const std::string msg = error_message([] { traindx::resolve_loss("crossentropy", Task::Classification); });
  EXPECT_NE(msg.find("train.loss"), std::string::npos) << msg;
  EXPECT_NE(msg.find("cross_entropy"), std::string::npos) << msg;
  EXPECT_THROW(traindx::resolve_loss("crossentropy", Task::Classification), ConfigError);
  EXPECT_THROW(traindx::resolve_loss("cross_entropy", Task::Regression), ConfigError);
  EXPECT_THROW(traindx::resolve_loss("mse", Task::Classification), ConfigError);
}

class LossGolden : public ::testing::TestWithParam<torch::ScalarType> {};

TEST_P(LossGolden, MatchesPyTorch) {
  const torch::ScalarType dtype = GetParam();
  const bool f64 = dtype == torch::kFloat64;
  const Json& in = fixtures()["losses"]["inputs"];
  const Json& expected = fixtures()["losses"][f64 ? "float64" : "float32"];
  // Both sides compute in the same dtype, so the deviation is summation order only.
  const double atol = f64 ? 1e-12 : 1e-6, rtol = f64 ? 1e-12 : 1e-6;
  const auto logits = tensor_of(in["logits"], dtype);
  const auto classes = tensor_of(in["classes"], torch::kInt64);
  const auto binary_logits = tensor_of(in["binary_logits"], dtype);
  const auto binary = tensor_of(in["binary"], torch::kInt64);
  const auto reg_out = tensor_of(in["reg_out"], dtype);
  const auto reg_target = tensor_of(in["reg_target"], torch::kFloat32);  // converted to the output's dtype

  double max_dev = 0;
  const auto check = [&](const char* id, const torch::Tensor& loss) {
    EXPECT_EQ(loss.scalar_type(), dtype) << id;
    const double v = loss.item<double>(), e = expected[id].get<double>();
    EXPECT_TRUE(close(v, e, atol, rtol)) << id;
    max_dev = std::max(max_dev, std::abs(v - e));
  };
  using traindx::compute_loss;
  check("cross_entropy", compute_loss(LossKind::CrossEntropy, logits, classes));
  check("nll", compute_loss(LossKind::Nll, torch::log_softmax(logits, 1), classes));
  check("bce_binary", compute_loss(LossKind::BceWithLogits, binary_logits, binary));
  check("bce_binary", compute_loss(LossKind::BceWithLogits, binary_logits.unsqueeze(1), binary));
  check("bce_onehot", compute_loss(LossKind::BceWithLogits, logits, classes));
  if (f64) {  // regression targets were float32 above; the float64 fixture used float64 targets
    const auto t64 = tensor_of(in["reg_target"], torch::kFloat64);
    check("mse", compute_loss(LossKind::Mse, reg_out, t64));
    check("mse", compute_loss(LossKind::Mse, reg_out.unsqueeze(1), t64));
    check("huber_1", compute_loss(LossKind::Huber, reg_out.unsqueeze(1), t64.unsqueeze(1), 1.0));
    check("huber_0_5", compute_loss(LossKind::Huber, reg_out, t64, 0.5));
  } else {
    check("mse", compute_loss(LossKind::Mse, reg_out, reg_target));
    check("mse", compute_loss(LossKind::Mse, reg_out.unsqueeze(1), reg_target));
    check("huber_1", compute_loss(LossKind::Huber, reg_out.unsqueeze(1), reg_target.unsqueeze(1), 1.0));
    check("huber_0_5", compute_loss(LossKind::Huber, reg_out, reg_target, 0.5));
  }
  std::cout << "[golden] losses " << c10::toString(dtype) << " max |dev| vs PyTorch = " << max_dev << "\n";
}

INSTANTIATE_TEST_SUITE_P(Dtypes, LossGolden, ::testing::Values(torch::kFloat32, torch::kFloat64));

TEST(LossTest, TargetDtypesAreConverted) {
  const auto logits = torch::randn({5, 3}, torch::kFloat64);
  const auto classes = torch::tensor({0, 2, 1, 1, 0}, torch::kInt64);
  const auto ref = torch::nn::functional::cross_entropy(logits, classes).item<double>();
  // Float class labels holding whole numbers, and [B, 1] targets.
  EXPECT_DOUBLE_EQ(traindx::compute_loss(LossKind::CrossEntropy, logits, classes.to(torch::kFloat32)).item<double>(),
                   ref);
  EXPECT_DOUBLE_EQ(traindx::compute_loss(LossKind::CrossEntropy, logits, classes.unsqueeze(1)).item<double>(), ref);
  // Integer regression targets against a float64 output.
  const auto out = torch::tensor({1.5, 2.0, -1.0}, torch::kFloat64);
  const auto loss = traindx::compute_loss(LossKind::Mse, out, torch::tensor({1, 2, 0}, torch::kInt32));
  EXPECT_EQ(loss.scalar_type(), torch::kFloat64);
  EXPECT_DOUBLE_EQ(loss.item<double>(), (0.25 + 0.0 + 1.0) / 3.0);
  // Multi-label bce targets with the output's shape pass through.
  const auto multi =
      torch::tensor({{1.0, 0.0, 1.0}, {0.0, 0.0, 1.0}, {1.0, 1.0, 1.0}, {0.0, 0.0, 0.0}, {0.0, 1.0, 0.0}});
  EXPECT_NEAR(traindx::compute_loss(LossKind::BceWithLogits, logits.to(torch::kFloat32), multi).item<double>(),
              torch::nn::functional::binary_cross_entropy_with_logits(logits, multi.to(torch::kFloat64))
                  .item<double>(),
              1e-6);
}

TEST(LossTest, GradientFlowsThroughTheLoss) {
  const auto logits = torch::randn({4, 3}).requires_grad_(true);
  traindx::compute_loss(LossKind::CrossEntropy, logits, torch::tensor({0, 1, 2, 1})).backward();
  ASSERT_TRUE(logits.grad().defined());
  // Softmax-minus-one-hot rows sum to zero.
  EXPECT_LT(logits.grad().sum(1).abs().max().item<double>(), 1e-6);
}

TEST(LossTest, ShapeMismatchNamesBothShapes) {
  const std::string reg = error_message(
      [] { traindx::compute_loss(LossKind::Mse, torch::zeros({8, 3}), torch::zeros({8})); });
  EXPECT_NE(reg.find("[8, 3]"), std::string::npos) << reg;
  EXPECT_NE(reg.find("[8]"), std::string::npos) << reg;
  EXPECT_THROW(traindx::compute_loss(LossKind::Mse, torch::zeros({8, 3}), torch::zeros({8})), DataError);
  EXPECT_THROW(traindx::compute_loss(LossKind::Huber, torch::zeros({8}), torch::zeros({7})), DataError);

  const std::string ce = error_message([] {
    traindx::compute_loss(LossKind::CrossEntropy, torch::zeros({4, 3}), torch::zeros({5}, torch::kInt64));
  });
  EXPECT_NE(ce.find("[4, 3]"), std::string::npos) << ce;
  EXPECT_NE(ce.find("[5]"), std::string::npos) << ce;
  EXPECT_THROW(traindx::compute_loss(LossKind::CrossEntropy, torch::zeros({4}), torch::zeros({4}, torch::kInt64)),
               DataError);
  EXPECT_THROW(traindx::compute_loss(LossKind::BceWithLogits, torch::zeros({4, 1}), torch::zeros({3})), DataError);
}

TEST(LossTest, BadTargetValuesThrowDataError) {
  const auto logits = torch::zeros({3, 4});
  const std::string msg = error_message(
      [&] { traindx::compute_loss(LossKind::CrossEntropy, logits, torch::tensor({0, 4, 1}, torch::kInt64)); });
  EXPECT_NE(msg.find("4 classes"), std::string::npos) << msg;
  EXPECT_THROW(traindx::compute_loss(LossKind::Nll, logits, torch::tensor({-1, 0, 1}, torch::kInt64)), DataError);
  EXPECT_THROW(traindx::compute_loss(LossKind::CrossEntropy, logits, torch::tensor({0.5, 1.0, 2.0})), DataError);
  EXPECT_THROW(traindx::compute_loss(LossKind::BceWithLogits, torch::zeros({3}), torch::tensor({0.0, 2.0, 1.0})),
               DataError);
  EXPECT_THROW(traindx::compute_loss(LossKind::Huber, torch::zeros({3}), torch::zeros({3}), 0.0), ConfigError);
}

// ---- optimizers ----------------------------------------------------------------------------------------------

TEST(OptimizerTest, MatchesPyTorchAfterFiveSteps) {
  const Json& fx = fixtures()["optimizers"];
  double max_param_dev = 0, max_loss_dev = 0;
  for (const Json& c : fx["cases"]) {
    const std::string id = c["id"].get<std::string>();
    SCOPED_TRACE(id);
    LinearProblem problem(fx["problem"]);
    auto optimizer = traindx::make_optimizer(options_of(c["options"]), {problem.w, problem.b});
    std::vector<double> losses;
    for (const Json& lr : c["lrs"]) {
      traindx::set_learning_rate(*optimizer, lr.get<double>());
      EXPECT_DOUBLE_EQ(traindx::get_learning_rate(*optimizer), lr.get<double>());
      optimizer->zero_grad();
      auto loss = problem.loss();
      loss.backward();
      optimizer->step();
      losses.push_back(loss.item<double>());
    }
    ASSERT_EQ(losses.size(), c["losses"].size());
    for (size_t i = 0; i < losses.size(); ++i) {
      const double e = c["losses"][i].get<double>();
      EXPECT_TRUE(close(losses[i], e, 1e-6, 1e-6)) << "loss at step " << i;
      max_loss_dev = std::max(max_loss_dev, std::abs(losses[i] - e));
    }
    // float32 on both sides: a few ulps of difference from operation order, amplified a little by 1/sqrt(v).
    const auto w_expected = tensor_of(c["weight"], torch::kFloat32);
    const auto b_expected = tensor_of(c["bias"], torch::kFloat32);
    const double dev = std::max(max_abs_diff(problem.w, w_expected), max_abs_diff(problem.b, b_expected));
    EXPECT_TRUE(torch::allclose(problem.w, w_expected, 1e-6, 1e-6)) << "weight |dev| " << dev;
    EXPECT_TRUE(torch::allclose(problem.b, b_expected, 1e-6, 1e-6)) << "bias |dev| " << dev;
    // The parameters moved: a test that ran no step would pass the comparison only by accident.
    EXPECT_GT(max_abs_diff(problem.w, tensor_of(fx["problem"]["weight"], torch::kFloat32)), 1e-3);
    max_param_dev = std::max(max_param_dev, dev);
  }
  std::cout << "[golden] optimizers max |param dev| vs PyTorch = " << max_param_dev
            << ", max |loss dev| = " << max_loss_dev << "\n";
}

TEST(OptimizerTest, NesterovWithoutMomentumThrows) {
  OptimizerOptions o;
  o.nesterov = true;
  auto p = torch::zeros({2}, torch::requires_grad());
  const std::string msg = error_message([&] { traindx::make_optimizer(o, {p}); });
  EXPECT_NE(msg.find("train.momentum"), std::string::npos) << msg;
  EXPECT_THROW(traindx::make_optimizer(o, {p}), ConfigError);
  o.momentum = 0.9;
  EXPECT_NO_THROW(traindx::make_optimizer(o, {p}));
}

TEST(OptimizerTest, BadNamesAndValuesThrowConfigError) {
  auto p = torch::zeros({2}, torch::requires_grad());
  OptimizerOptions o;
  o.name = "lbfgs";
  const std::string msg = error_message([&] { traindx::make_optimizer(o, {p}); });
  EXPECT_NE(msg.find("train.optimizer"), std::string::npos) << msg;
  EXPECT_THROW(traindx::make_optimizer(o, {p}), ConfigError);

  const auto expect_key = [&](OptimizerOptions bad, const char* key) {
    const std::string m = error_message([&] { traindx::make_optimizer(bad, {p}); });
    EXPECT_NE(m.find(key), std::string::npos) << m;
    EXPECT_THROW(traindx::make_optimizer(bad, {p}), ConfigError) << key;
  };
  OptimizerOptions bad;
  bad.lr = -0.1;
  expect_key(bad, "train.lr");
  bad = {};
  bad.name = "adam";
  bad.beta1 = 1.0;
  expect_key(bad, "train.beta1");
  bad = {};
  bad.name = "adamw";
  bad.weight_decay = std::numeric_limits<double>::quiet_NaN();
  expect_key(bad, "train.weight_decay");
  bad = {};
  bad.name = "rmsprop";
  bad.alpha = 1.5;
  expect_key(bad, "train.alpha");
  bad = {};
  bad.name = "adagrad";
  bad.eps = -1.0;
  expect_key(bad, "train.eps");
}

TEST(OptimizerTest, SetAndGetLearningRateOnEveryOptimizerAndGroup) {
  for (const char* name : {"sgd", "adam", "adamw", "rmsprop", "adagrad"}) {
    SCOPED_TRACE(name);
    OptimizerOptions o;
    o.name = name;
    o.lr = 0.125;
    auto a = torch::zeros({2}, torch::requires_grad());
    auto b = torch::zeros({3}, torch::requires_grad());
    auto optimizer = traindx::make_optimizer(o, {a});
    EXPECT_DOUBLE_EQ(traindx::get_learning_rate(*optimizer), 0.125);
    optimizer->add_param_group(torch::optim::OptimizerParamGroup({b}));
    ASSERT_EQ(optimizer->param_groups().size(), 2u);
    traindx::set_learning_rate(*optimizer, 0.03);
    EXPECT_DOUBLE_EQ(traindx::get_learning_rate(*optimizer), 0.03);
    for (const auto& group : optimizer->param_groups()) {
      EXPECT_DOUBLE_EQ(group.options().get_lr(), 0.03);
    }
    EXPECT_THROW(traindx::set_learning_rate(*optimizer, -1.0), ConfigError);
  }
}

TEST(OptimizerTest, OptionsReachLibTorch) {
  auto p = torch::zeros({2}, torch::requires_grad());
  OptimizerOptions o;
  o.name = "adamw";  // LibTorch's AdamWOptions would default weight_decay to 1e-2
  o.weight_decay = 0.0;
  o.beta1 = 0.8;
  auto adamw = traindx::make_optimizer(o, {p});
  const auto& aw = dynamic_cast<const torch::optim::AdamWOptions&>(adamw->param_groups()[0].options());
  EXPECT_EQ(aw.weight_decay(), 0.0);
  EXPECT_EQ(std::get<0>(aw.betas()), 0.8);

  o = {};
  o.momentum = 0.9;
  o.nesterov = true;
  o.weight_decay = 1e-4;
  auto sgd = traindx::make_optimizer(o, {p});
  const auto& so = dynamic_cast<const torch::optim::SGDOptions&>(sgd->param_groups()[0].options());
  EXPECT_EQ(so.momentum(), 0.9);
  EXPECT_TRUE(so.nesterov());
  EXPECT_EQ(so.weight_decay(), 1e-4);

  o = {};
  o.name = "adagrad";  // traindx's eps default (1e-8) replaces LibTorch's 1e-10
  auto adagrad = traindx::make_optimizer(o, {p});
  EXPECT_EQ(dynamic_cast<const torch::optim::AdagradOptions&>(adagrad->param_groups()[0].options()).eps(), 1e-8);
}

TEST(OptimizerTest, FromConfigDefaultsBuild) {
  traindx::Config config;
  const auto o = OptimizerOptions::from_config(config);
  auto p = torch::zeros({2}, torch::requires_grad());
  auto optimizer = traindx::make_optimizer(o, {p});
  EXPECT_DOUBLE_EQ(traindx::get_learning_rate(*optimizer), config.get_double("train.lr"));
}

// ---- schedules -----------------------------------------------------------------------------------------------

TEST(ScheduleTest, MatchesPyTorchSchedulers) {
  double max_rel_dev = 0;
  for (const Json& c : fixtures()["schedules"]) {
    const std::string id = c["id"].get<std::string>();
    SCOPED_TRACE(id);
    const Json& j = c["options"];
    ScheduleOptions o;
    o.name = j["name"].get<std::string>();
    o.step_size = j.value("step_size", o.step_size);
    o.gamma = j.value("gamma", o.gamma);
    o.min_lr = j.value("min_lr", o.min_lr);
    o.pct_start = j.value("pct_start", o.pct_start);
    o.div_factor = j.value("div_factor", o.div_factor);
    o.final_div_factor = j.value("final_div_factor", o.final_div_factor);
    const LrSchedule schedule(o, c["base_lr"].get<double>(), c["total_steps"].get<int64_t>());
    const Json& lrs = c["lrs"];
    for (size_t t = 0; t < lrs.size(); ++t) {
      const double e = lrs[t].get<double>(), v = schedule.lr_at(static_cast<int64_t>(t));
      // PyTorch steps StepLR, ExponentialLR and CosineAnnealingLR recursively, so values differ from the closed
      // forms by rounding only.
      EXPECT_TRUE(close(v, e, 1e-15, 1e-12)) << "step " << t;
      max_rel_dev = std::max(max_rel_dev, std::abs(v - e) / std::abs(e));
    }
  }
  std::cout << "[golden] schedules max relative dev vs PyTorch = " << max_rel_dev << "\n";
}

TEST(ScheduleTest, ClosedForms) {
  ScheduleOptions o;
  EXPECT_DOUBLE_EQ(LrSchedule(o, 0.3, 0).lr_at(12345), 0.3);  // constant needs no total
  o.name = "step";
  o.step_size = 10;
  o.gamma = 0.5;
  const LrSchedule step(o, 1.0, 0);
  EXPECT_DOUBLE_EQ(step.lr_at(9), 1.0);
  EXPECT_DOUBLE_EQ(step.lr_at(10), 0.5);
  EXPECT_DOUBLE_EQ(step.lr_at(25), 0.25);
  o.name = "exponential";  // continuous: half-way through a step_size is sqrt(gamma)
  EXPECT_DOUBLE_EQ(LrSchedule(o, 1.0, 0).lr_at(5), std::sqrt(0.5));
  EXPECT_DOUBLE_EQ(LrSchedule(o, 1.0, 0).lr_at(20), 0.25);
  o = {};
  o.name = "cosine";
  o.min_lr = 0.1;
  const LrSchedule cosine(o, 1.1, 100);
  EXPECT_DOUBLE_EQ(cosine.lr_at(0), 1.1);
  EXPECT_DOUBLE_EQ(cosine.lr_at(50), 0.6);
  EXPECT_DOUBLE_EQ(cosine.lr_at(100), 0.1);
  EXPECT_DOUBLE_EQ(cosine.lr_at(250), 0.1);  // holds past the end
}

TEST(ScheduleTest, OneCycleEndpointsAndHold) {
  ScheduleOptions o;
  o.name = "one_cycle";
  const LrSchedule s(o, 0.1, 100);  // rise ends at 0.3 * 100 - 1 = 29
  EXPECT_DOUBLE_EQ(s.lr_at(0), 0.1 / 25.0);
  EXPECT_DOUBLE_EQ(s.lr_at(29), 0.1);
  EXPECT_DOUBLE_EQ(s.lr_at(99), 0.1 / 25.0 / 1e4);
  EXPECT_DOUBLE_EQ(s.lr_at(100), s.lr_at(99));
  EXPECT_DOUBLE_EQ(s.lr_at(1000), s.lr_at(99));
  // pct_start * T = 1: a rise of zero length (PyTorch divides by zero) starts at the peak.
  o.pct_start = 0.1;
  EXPECT_DOUBLE_EQ(LrSchedule(o, 0.1, 10).lr_at(0), 0.1);
  // A single step: PyTorch's boundaries put step 0 at the end of the fall.
  o.pct_start = 0.3;
  EXPECT_DOUBLE_EQ(LrSchedule(o, 0.1, 1).lr_at(0), 0.1 / 25.0 / 1e4);
  for (int64_t t = 0; t < 100; ++t) {
    EXPECT_TRUE(std::isfinite(s.lr_at(t)) && s.lr_at(t) > 0.0) << t;
  }
}

TEST(ScheduleTest, WarmupMultipliesTheSchedule) {
  ScheduleOptions o;
  o.warmup_steps = 4;
  const LrSchedule constant(o, 0.1, 0);
  const std::vector<double> expected = {0.025, 0.05, 0.075, 0.1, 0.1, 0.1};
  for (size_t t = 0; t < expected.size(); ++t) {
    EXPECT_DOUBLE_EQ(constant.lr_at(static_cast<int64_t>(t)), expected[t]) << t;
  }
  o.name = "cosine";
  const LrSchedule cosine(o, 0.1, 20);
  ScheduleOptions plain = o;
  plain.warmup_steps = 0;
  const LrSchedule cosine_plain(plain, 0.1, 20);
  EXPECT_DOUBLE_EQ(cosine.lr_at(1), cosine_plain.lr_at(1) * 2.0 / 4.0);
  EXPECT_DOUBLE_EQ(cosine.lr_at(4), cosine_plain.lr_at(4));
}

TEST(ScheduleTest, InvalidOptionsThrowConfigErrorNamingTheKey) {
  ScheduleOptions o;
  o.name = "one_cycle";
  const std::string msg = error_message([&] { LrSchedule(o, 0.1, 0); });
  EXPECT_NE(msg.find("one_cycle"), std::string::npos) << msg;
  EXPECT_THROW(LrSchedule(o, 0.1, 0), ConfigError);
  o.name = "cosine";
  EXPECT_THROW(LrSchedule(o, 0.1, 0), ConfigError);
  o.name = "linear";
  EXPECT_NE(error_message([&] { LrSchedule(o, 0.1, 10); }).find("train.schedule"), std::string::npos);
  EXPECT_THROW(LrSchedule(o, 0.1, 10), ConfigError);

  const auto expect_key = [](ScheduleOptions bad, const char* key) {
    const std::string m = error_message([&] { LrSchedule(bad, 0.1, 10); });
    EXPECT_NE(m.find(key), std::string::npos) << m;
    EXPECT_THROW(LrSchedule(bad, 0.1, 10), ConfigError) << key;
  };
  ScheduleOptions bad;
  bad.name = "step";
  bad.gamma = 1.5;
  expect_key(bad, "train.gamma");
  bad.gamma = 0.5;
  bad.step_size = 0;
  expect_key(bad, "train.step_size");
  bad = {};
  bad.warmup_steps = -1;
  expect_key(bad, "train.warmup_steps");
  bad = {};
  bad.name = "one_cycle";
  bad.pct_start = 1.2;
  expect_key(bad, "train.pct_start");
  bad.pct_start = 0.3;
  bad.div_factor = 0.5;
  expect_key(bad, "train.div_factor");
  bad = {};
  bad.name = "cosine";
  bad.min_lr = -1.0;
  expect_key(bad, "train.min_lr");
}

TEST(ScheduleTest, FromConfigDefaultsAreConstant) {
  const LrSchedule s(ScheduleOptions::from_config(traindx::Config()), 0.01, 100);
  EXPECT_EQ(s.options().name, "constant");
  EXPECT_DOUBLE_EQ(s.lr_at(50), 0.01);
}

// ---- metrics -------------------------------------------------------------------------------------------------

TEST(MetricsTest, ClassificationMatchesSklearn) {
  const Json& fx = fixtures()["metrics"]["classification"];
  const int64_t classes = fx["num_classes"].get<int64_t>();
  const auto scores = tensor_of(fx["scores"], torch::kFloat64);
  const auto y = tensor_of(fx["y_true"], torch::kInt64);
  double max_dev = 0;
  for (const int64_t batch : {int64_t{40}, int64_t{7}}) {  // one batch, then uneven batches
    for (const char* k : {"1", "2", "3", "10"}) {
      SCOPED_TRACE(std::string("batch ") + std::to_string(batch) + " k " + k);
      MetricAccumulator acc(Task::Classification, classes, std::stoll(k));
      for (int64_t start = 0; start < scores.size(0); start += batch) {
        const int64_t end = std::min(start + batch, scores.size(0));
        acc.add(scores.slice(0, start, end), y.slice(0, start, end), 0.0);
      }
      const Json r = acc.result();
      EXPECT_EQ(acc.count(), 40);
      for (const char* key : {"accuracy", "precision_macro", "recall_macro", "f1_macro"}) {
        EXPECT_TRUE(close(r[key].get<double>(), fx[key].get<double>(), 1e-12, 0)) << key;
        max_dev = std::max(max_dev, std::abs(r[key].get<double>() - fx[key].get<double>()));
      }
      const std::string topk_key = std::string("top") + k + "_accuracy";
      ASSERT_TRUE(r.contains(topk_key)) << r.dump();
      EXPECT_TRUE(close(r[topk_key].get<double>(), fx["topk_accuracy"][k].get<double>(), 1e-12, 0)) << topk_key;
      EXPECT_EQ(r["confusion_matrix"], fx["confusion_matrix"]);
    }
  }
  std::cout << "[golden] classification metrics max |dev| vs sklearn = " << max_dev << "\n";
}

TEST(MetricsTest, ClassificationWithFloat32Outputs) {
  const Json& fx = fixtures()["metrics"]["classification"];
  MetricAccumulator acc(Task::Classification, fx["num_classes"].get<int64_t>(), 2);
  acc.add(tensor_of(fx["scores"], torch::kFloat32), tensor_of(fx["y_true"], torch::kInt64), 0.0);
  const Json r = acc.result();
  EXPECT_DOUBLE_EQ(r["accuracy"].get<double>(), fx["accuracy"].get<double>());
  EXPECT_DOUBLE_EQ(r["top2_accuracy"].get<double>(), fx["topk_accuracy"]["2"].get<double>());
  EXPECT_EQ(r["confusion_matrix"], fx["confusion_matrix"]);
}

TEST(MetricsTest, RegressionMatchesSklearn) {
  const Json& fx = fixtures()["metrics"]["regression"];
  const auto pred = tensor_of(fx["y_pred"], torch::kFloat64);
  const auto y = tensor_of(fx["y_true"], torch::kFloat64);
  double max_dev = 0;
  for (const int64_t batch : {int64_t{37}, int64_t{5}, int64_t{1}}) {
    SCOPED_TRACE(batch);
    MetricAccumulator acc(Task::Regression, 0);
    for (int64_t start = 0; start < pred.size(0); start += batch) {
      const int64_t end = std::min(start + batch, pred.size(0));
      acc.add(pred.slice(0, start, end).unsqueeze(1), y.slice(0, start, end), 1.0);
    }
    const Json r = acc.result();
    for (const char* key : {"mse", "mae", "r2"}) {
      EXPECT_TRUE(close(r[key].get<double>(), fx[key].get<double>(), 1e-12, 1e-12)) << key;
      max_dev = std::max(max_dev, std::abs(r[key].get<double>() - fx[key].get<double>()));
    }
    EXPECT_DOUBLE_EQ(r["loss"].get<double>(), 1.0);
  }
  std::cout << "[golden] regression metrics max |dev| vs sklearn = " << max_dev << "\n";
}

TEST(MetricsTest, LossIsExampleWeighted) {
  MetricAccumulator acc(Task::Regression, 0);
  acc.add(torch::zeros({3}), torch::zeros({3}), 1.0);
  acc.add(torch::zeros({1}), torch::zeros({1}), 5.0);
  EXPECT_DOUBLE_EQ(acc.result()["loss"].get<double>(), (3.0 * 1.0 + 1.0 * 5.0) / 4.0);
  EXPECT_EQ(acc.count(), 4);
}

TEST(MetricsTest, R2IsZeroForConstantTargetsAndNaNWhenEmpty) {
  MetricAccumulator acc(Task::Regression, 0);
  EXPECT_TRUE(std::isnan(acc.result()["mse"].get<double>()));
  acc.add(torch::tensor({1.0, 2.0}), torch::tensor({3.0, 3.0}), 0.0);
  EXPECT_EQ(acc.result()["r2"].get<double>(), 0.0);
  MetricAccumulator cls(Task::Classification, 3, 5);
  EXPECT_TRUE(std::isnan(cls.result()["accuracy"].get<double>()));
}

TEST(MetricsTest, BinarySingleLogitAndTopkClamp) {
  MetricAccumulator acc(Task::Classification, 2, 1);
  acc.add(torch::tensor({2.0, -1.0, 0.5, -3.0}).unsqueeze(1), torch::tensor({1, 0, 0, 0}), 0.3);
  Json r = acc.result();
  EXPECT_DOUBLE_EQ(r["accuracy"].get<double>(), 0.75);
  EXPECT_DOUBLE_EQ(r["top1_accuracy"].get<double>(), 0.75);
  EXPECT_EQ(r["confusion_matrix"], Json::parse("[[2, 1], [0, 1]]"));
  // k = 5 on 3 classes counts every example (the key keeps the requested k).
  MetricAccumulator top5(Task::Classification, 3, 5);
  top5.add(torch::randn({6, 3}), torch::tensor({0, 1, 2, 0, 1, 2}), 0.0);
  EXPECT_DOUBLE_EQ(top5.result()["top5_accuracy"].get<double>(), 1.0);
}

TEST(MetricsTest, BadShapesAndTargetsThrowDataError) {
  MetricAccumulator acc(Task::Classification, 3);
  const std::string msg = error_message([&] { acc.add(torch::zeros({4, 5}), torch::zeros({4}, torch::kInt64), 0); });
  EXPECT_NE(msg.find("[4, 5]"), std::string::npos) << msg;
  EXPECT_THROW(acc.add(torch::zeros({4, 5}), torch::zeros({4}, torch::kInt64), 0), DataError);
  EXPECT_THROW(acc.add(torch::zeros({4, 3}), torch::zeros({3}, torch::kInt64), 0), DataError);
  EXPECT_THROW(acc.add(torch::zeros({2, 3}), torch::tensor({0, 3}), 0), DataError);
  EXPECT_EQ(acc.count(), 0);
  MetricAccumulator reg(Task::Regression, 0);
  EXPECT_THROW(reg.add(torch::zeros({4, 2}), torch::zeros({4}), 0), DataError);
  EXPECT_THROW(MetricAccumulator(Task::Classification, 3, 0), ConfigError);
}
