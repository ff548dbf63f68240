// The learning-rate range test: the suggestion rules on curves whose answer is known (fastai's and Lightning's
// rules by their definitions, traindx's centred-minimum rule under noise), and the sweep on a real table end to
// end: the schedule, the smoothing, the stop at 4x, the findings, and a model left untrained.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <fstream>
#include <random>

#include "test_support.h"
#include "traindx/core/error.h"
#include "traindx/doctor/lr_finder.h"
#include "traindx/train/trainer.h"

using traindx::Config;
using traindx::LrFinderOptions;
using traindx::LrFinderResult;

namespace {

std::vector<double> sweep_lrs(int64_t n, double lo = 1e-7, double hi = 10.0) {
  std::vector<double> lrs;
  for (int64_t i = 0; i < n; ++i) lrs.push_back(lo * std::pow(hi / lo, static_cast<double>(i) / (n - 1)));
  return lrs;
}

// A range-test-shaped curve: flat at 2.3, a descent centred at lr = 10^centre (a logistic in log10 lr, `width`
// decades wide) to 0.3, then a quadratic rise (instability) past 10^(centre + 0.8).
std::vector<double> curve(const std::vector<double>& lrs, double centre, double width = 0.5) {
  std::vector<double> y;
  for (double lr : lrs) {
    const double u = std::log10(lr);
    double v = 0.3 + 2.0 / (1.0 + std::exp((u - centre) / (width / 4)));
    if (u > centre + 0.8) v += 1.5 * (u - centre - 0.8) * (u - centre - 0.8);
    y.push_back(v);
  }
  return y;
}

Config breast_cancer(const std::string& extra = "", int batch_size = 32) {
  return Config::from_string(std::string(R"(
[run]
seed = 3
[data]
source = "csv"
path = "/usr/lib/python3/dist-packages/sklearn/datasets/data/breast_cancer.csv"
header = "sklearn"
[model]
layers = [{ type = "linear", out = 16 }, { type = "relu" }, { type = "linear" }]
[train]
optimizer = "sgd"
momentum = 0.9
)") + fmt::format("batch_size = {}\n", batch_size) + extra);
}

bool have_breast_cancer() {
  return std::ifstream("/usr/lib/python3/dist-packages/sklearn/datasets/data/breast_cancer.csv").good();
}

}  // namespace

TEST(DoctorLrFinderTest, SteepestIsLightningsArgminOfTheGradientAfterTenPoints) {
  const auto lrs = sweep_lrs(40);
  std::vector<double> y(40, 1.0);
  // The most negative central difference is at index 20 ((y[21] - y[19]) / 2 = -0.16); steeper pairs sit in the
  // skipped first 10 points and at the dropped last one.
  y[3] = 5.0;
  y[39] = -9.0;
  for (int i = 20; i < 39; ++i) y[static_cast<size_t>(i)] = 0.7 - 0.001 * i;
  y[19] = 1.0;
  y[20] = 0.8;
  const auto s = traindx::suggest_steepest(lrs, y);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->index, 20);
  EXPECT_DOUBLE_EQ(s->lr, lrs[20]);
  EXPECT_FALSE(traindx::suggest_steepest(sweep_lrs(12), std::vector<double>(12, 1.0)));  // 1 point left
}

TEST(DoctorLrFinderTest, ValleyIsFastaisLongestValley) {
  // num_steps 20: fastai uses points [2, n - 5). Strictly decreasing from index 4 to 12 (9 points), after a bump.
  const auto lrs = sweep_lrs(20);
  const std::vector<double> y = {9, 9, 3.0, 3.5, 3.4, 3.3, 3.2, 3.1, 3.0, 2.9, 2.8, 2.7, 2.6, 4, 5, 6, 7, 8, 9, 9};
  const auto v = traindx::suggest_valley(lrs, y, 20);
  ASSERT_TRUE(v);
  // In window coordinates (sweep index - 2) the longest strictly decreasing subsequence is 3.5 .. 2.6, 10 points
  // ending at max_end = 10; fastai's max_start = max_end - lds = 0, sections = 10 / 3, idx = 0 + 3 + 1 = 4, which
  // is sweep index 6.
  EXPECT_EQ(v->index, 6);
  EXPECT_DOUBLE_EQ(v->lr, lrs[6]);
  // fastai cuts at the first NaN and needs points left.
  std::vector<double> nan_early = y;
  nan_early[2] = std::nan("");
  EXPECT_FALSE(traindx::suggest_valley(lrs, nan_early, 20));
}

TEST(DoctorLrFinderTest, MinimumIsATenthOfTheLowestPoint) {
  const auto lrs = sweep_lrs(100);
  const auto y = curve(lrs, -3.0);
  const auto m = traindx::suggest_minimum(lrs, y, 100);
  ASSERT_TRUE(m);
  EXPECT_DOUBLE_EQ(m->lr, lrs[static_cast<size_t>(m->index)] / 10);
  const double u = std::log10(lrs[static_cast<size_t>(m->index)]);
  EXPECT_GT(u, -2.6);  // at the bowl's bottom, lagged to the right by the EMA
  EXPECT_LT(u, -1.0);
}

TEST(DoctorLrFinderTest, CentredMinIsAFifthOfTheLagFreeMinimum) {
  const auto lrs = sweep_lrs(100);
  for (double centre : {-5.0, -3.0, -1.5}) {
    const auto y = curve(lrs, centre);
    const auto s = traindx::suggest_centred_min(lrs, y);
    ASSERT_TRUE(s) << centre;
    EXPECT_DOUBLE_EQ(s->lr, lrs[static_cast<size_t>(s->index)] / 5) << centre;
    // The bowl's bottom is near 10^(centre + 0.75); a fifth of it is 0.7 decade lower.
    EXPECT_NEAR(std::log10(s->lr), centre + 0.05, 0.1) << centre;
  }
  // The EMA's minimum lags behind: fastai's minimum rule lands later on the same clean curve.
  std::vector<double> smoothed;
  double avg = 0;
  const auto y = curve(lrs, -3.0);
  for (size_t i = 0; i < y.size(); ++i) {
    avg = 0.98 * avg + 0.02 * y[i];
    smoothed.push_back(avg / (1 - std::pow(0.98, static_cast<double>(i + 1))));
  }
  EXPECT_GT(traindx::suggest_minimum(lrs, smoothed, 100)->index, traindx::suggest_centred_min(lrs, y)->index + 5);
  EXPECT_FALSE(traindx::suggest_centred_min(lrs, {1.0, 0.5, std::nan("")}));
}

TEST(DoctorLrFinderTest, CentredMinSurvivesNoiseAndSpikes) {
  // Batch noise (5% of the loss) plus a +1.5 spike in one batch of 12, 20 seeds: every answer within half a decade
  // of the clean curve's, and within 0.2 decade on average.
  const auto lrs = sweep_lrs(100);
  const auto clean = curve(lrs, -3.0);
  const double target = std::log10(traindx::suggest_centred_min(lrs, clean)->lr);
  double total = 0;
  for (unsigned seed = 0; seed < 20; ++seed) {
    std::mt19937 gen(seed);
    std::normal_distribution<double> noise(0.0, 0.05);
    std::uniform_int_distribution<int> spike(0, 11);
    std::vector<double> y;
    for (size_t i = 0; i < clean.size(); ++i) y.push_back(clean[i] * (1 + noise(gen)) + (spike(gen) == 0 ? 1.5 : 0));
    const auto s = traindx::suggest_centred_min(lrs, y);
    ASSERT_TRUE(s) << seed;
    EXPECT_NEAR(std::log10(s->lr), target, 0.5) << seed;
    total += std::abs(std::log10(s->lr) - target);
  }
  EXPECT_LT(total / 20, 0.2);
}

TEST(DoctorLrFinderTest, OptionsAreValidated) {
  EXPECT_NO_THROW(LrFinderOptions().validate());
  EXPECT_THROW(LrFinderOptions().set_min_lr(0).validate(), traindx::ConfigError);
  EXPECT_THROW(LrFinderOptions().set_max_lr(1e-8).validate(), traindx::ConfigError);
  EXPECT_THROW(LrFinderOptions().set_num_steps(1).validate(), traindx::ConfigError);
  EXPECT_THROW(LrFinderOptions().set_beta(1.0).validate(), traindx::ConfigError);
  EXPECT_THROW(LrFinderOptions().set_divergence_factor(0.5).validate(), traindx::ConfigError);
  EXPECT_THROW(LrFinderOptions().set_rule("vally").validate(), traindx::ConfigError);
  EXPECT_EQ(traindx::lr_rules(), (std::vector<std::string>{"minimum", "centred_min", "valley", "steepest"}));
  EXPECT_EQ(LrFinderOptions().rule, "minimum");
}

TEST(DoctorLrFinderTest, SweepsSmoothsStopsAndLeavesTheModelUntrained) {
  if (!have_breast_cancer()) GTEST_SKIP() << "python3-sklearn's breast_cancer.csv is not installed";
  traindx::Trainer trainer(breast_cancer("lr = 0.01\n"));
  std::vector<torch::Tensor> before;
  for (const auto& [name, t] : trainer.model().named_parameters()) before.push_back(t.detach().clone());
  const int64_t step = trainer.step();
  const auto batcher = trainer.batcher().state();

  const LrFinderResult r = traindx::find_learning_rate(trainer);
  // The schedule: exponential from min_lr towards max_lr, ending at max_lr exactly on the 100th step.
  ASSERT_GE(r.lrs.size(), 20u);
  EXPECT_LE(r.lrs.size(), 100u);
  for (size_t i = 0; i < r.lrs.size(); ++i) EXPECT_NEAR(r.lrs[i] / (1e-7 * std::pow(1e8, i / 99.0)), 1.0, 1e-12);
  // The smoothing: bias-corrected EMA with beta 0.98.
  double avg = 0;
  for (size_t i = 0; i < r.losses.size(); ++i) {
    avg = 0.98 * avg + 0.02 * r.losses[i];
    EXPECT_NEAR(r.smoothed[i], avg / (1 - std::pow(0.98, i + 1)), 1e-12 * std::abs(avg) + 1e-15);
  }
  EXPECT_DOUBLE_EQ(r.smoothed.front(), r.losses.front());
  // SGD with momentum cannot take lr 10 on this table: the sweep stops once the smoothed loss passes 4x its best.
  EXPECT_TRUE(r.stopped_early);
  EXPECT_LT(r.lrs.size(), 100u);
  if (std::isfinite(r.losses.back())) {
    EXPECT_GT(r.smoothed.back(), 4 * r.best_smoothed);
  }
  EXPECT_GT(r.descent, 0.3);
  // Every rule answers inside the sweep, and the chosen one is the suggestion.
  EXPECT_EQ(r.rule, "minimum");
  ASSERT_TRUE(r.has_suggestion());
  EXPECT_EQ(r.alternatives.size(), 4u);
  EXPECT_DOUBLE_EQ(r.alternatives.at("minimum"), r.suggestion);
  for (const auto& [rule, lr] : r.alternatives) {
    EXPECT_GE(lr, 1e-8) << rule;
    EXPECT_LE(lr, r.lrs.back()) << rule;
  }
  EXPECT_GT(r.suggestion, 1e-4);
  EXPECT_LT(r.suggestion, 3.0);

  // Nothing of the trainer moved: weights, step, batcher (its own optimizer was never used).
  const auto after = trainer.model().named_parameters();
  for (size_t i = 0; i < before.size(); ++i) EXPECT_TRUE(torch::equal(after[i].second, before[i])) << after[i].first;
  EXPECT_EQ(trainer.step(), step);
  EXPECT_EQ(trainer.batcher().state(), batcher);
  EXPECT_TRUE(trainer.model().is_training());

  // The JSON holds the curve and every rule's answer.
  const traindx::Json j = r.to_json();
  EXPECT_EQ(j["lrs"].size(), r.lrs.size());
  EXPECT_EQ(j["alternatives"].size(), 4u);
  EXPECT_EQ(j["rule"], "minimum");
  EXPECT_TRUE(j["stopped_early"].get<bool>());

  // The plot: a curve, the axis, every rule's marker with the chosen one in upper case.
  const std::string plot = traindx::lr_find_plot(r);
  EXPECT_NE(plot.find('*'), std::string::npos) << plot;
  EXPECT_NE(plot.find("M = minimum"), std::string::npos) << plot;
  EXPECT_NE(plot.find("c = centred_min"), std::string::npos) << plot;
  EXPECT_NE(plot.find("v = valley"), std::string::npos) << plot;
  EXPECT_NE(plot.find("1e-7"), std::string::npos) << plot;
}

TEST(DoctorLrFinderTest, FindingsWhenTheConfiguredRateIsFarFromTheSuggestion) {
  if (!have_breast_cancer()) GTEST_SKIP() << "python3-sklearn's breast_cancer.csv is not installed";
  const LrFinderResult high = traindx::find_learning_rate(breast_cancer("lr = 5.0\n"));
  ASSERT_TRUE(high.has_suggestion());
  ASSERT_EQ(high.findings.size(), 1u);
  EXPECT_EQ(high.findings[0].rule, "lr_too_high");
  EXPECT_EQ(high.findings[0].severity, traindx::Severity::Warning);
  EXPECT_EQ(high.findings[0].fixes.front().rfind("set train.lr = ", 0), 0u) << high.findings[0].fixes.front();
  EXPECT_DOUBLE_EQ(high.findings[0].evidence["configured_lr"].get<double>(), 5.0);

  const LrFinderResult low = traindx::find_learning_rate(breast_cancer("lr = 1e-6\n"));
  ASSERT_EQ(low.findings.size(), 1u);
  EXPECT_EQ(low.findings[0].rule, "lr_too_low");
  EXPECT_NE(low.findings[0].message.find("below"), std::string::npos);

  // Same data, model and seed: the same sweep, and train.lr at the suggestion raises nothing.
  EXPECT_EQ(low.lrs, high.lrs);
  EXPECT_EQ(low.losses, high.losses);
  const LrFinderResult right = traindx::find_learning_rate(breast_cancer(fmt::format("lr = {}\n", high.suggestion)));
  EXPECT_TRUE(right.findings.empty()) << right.findings[0].message;

  // The comparison is with the range the stable rules span, widened by far_factor (10) on both sides.
  const double lo = high.findings[0].evidence["range"][0].get<double>();
  const double hi = high.findings[0].evidence["range"][1].get<double>();
  EXPECT_LE(lo, high.suggestion);
  EXPECT_GE(hi, high.suggestion);
  for (const auto& rule : traindx::lr_range_rules()) {
    EXPECT_GE(high.alternatives.at(rule), lo) << rule;
    EXPECT_LE(high.alternatives.at(rule), hi) << rule;
  }
  EXPECT_TRUE(traindx::find_learning_rate(breast_cancer(fmt::format("lr = {}\n", 9 * hi))).findings.empty());
  EXPECT_TRUE(traindx::find_learning_rate(breast_cancer(fmt::format("lr = {}\n", lo / 9))).findings.empty());
  const auto just_above = traindx::find_learning_rate(breast_cancer(fmt::format("lr = {}\n", 11 * hi))).findings;
  ASSERT_EQ(just_above.size(), 1u);
  EXPECT_EQ(just_above[0].rule, "lr_too_high");
}

TEST(DoctorLrFinderTest, ALossThatCannotFallIsNotBlamedOnTheRate) {
  if (!have_breast_cancer()) GTEST_SKIP() << "python3-sklearn's breast_cancer.csv is not installed";
  // Rates too small to move anything and every batch the whole training split: the loss is the same at every rate
  // of the sweep, as it would be for a model that cannot learn (the rule only looks at the curve).
  const LrFinderResult r = traindx::find_learning_rate(breast_cancer("lr = 1e-6\n", 4096),
                                                       LrFinderOptions().set_min_lr(1e-12).set_max_lr(1e-10));
  EXPECT_EQ(r.lrs.size(), 100u);
  EXPECT_FALSE(r.stopped_early);
  EXPECT_NEAR(r.descent, 0.0, 1e-4);
  ASSERT_EQ(r.findings.size(), 1u);
  EXPECT_EQ(r.findings[0].rule, "lr_range_no_descent");
  EXPECT_EQ(r.findings[0].severity, traindx::Severity::Warning);
}
