// resume_check and determinism_check with every job in this process (the CLI tests in tests/cli/repro_*.sh run
// the same checks with fresh processes). The model has everything that makes resuming hard: BatchNorm, dropout,
// shuffling, SGD momentum and a schedule, interrupted mid-epoch with an epoch boundary after the resume.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>

#include "test_support.h"
#include "traindx/core/error.h"
#include "traindx/run/repro.h"
#include "traindx/run/run.h"

namespace fs = std::filesystem;
using traindx::Config;
using traindx::testing::TempDir;

namespace {

// 600 Fashion-MNIST images, 540 for training: 17 batches of 32 per epoch.
const char* kFastConfig = R"(
[run]
name = "repro-test"
seed = 7
deterministic = true

[data]
source = "fashion-mnist"
max_train = 600
max_test = 100
val_fraction = 0.1

[model]
layers = [
  { type = "conv2d", out = 4, kernel = 3, padding = 1 },
  { type = "batchnorm" },
  { type = "relu" },
  { type = "maxpool2d", kernel = 2 },
  { type = "flatten" },
  { type = "linear", out = 16 },
  { type = "relu" },
  { type = "dropout", p = 0.3 },
  { type = "linear" },
]

[train]
optimizer = "sgd"
momentum = 0.9
lr = 0.05
batch_size = 32
epochs = 3
schedule = "cosine"
)";

Config fast_config() { return Config::from_string(kFastConfig, "run_repro_test"); }

bool have_fashion() {
  return fs::exists(std::string(traindx::testing::kFashionMnistDir) + "/train-images-idx3-ubyte.gz");
}

const traindx::ComponentComparison& component(const std::vector<traindx::ComponentComparison>& cs,
                                              const std::string& name) {
  for (const auto& c : cs)
    if (c.component == name) return c;
  throw std::runtime_error("no component " + name);
}

}  // namespace

TEST(RunReproTest, ResumeInProcessIsBitExactMidEpochWithDropoutBatchNormMomentumAndSchedule) {
  if (!have_fashion()) GTEST_SKIP() << "Fashion-MNIST not installed";
  TempDir tmp;
  traindx::ResumeCheckOptions o;
  o.at = 6;      // mid-epoch
  o.steps = 14;  // crosses the epoch boundary at step 17: a new permutation and an evaluation after the resume
  o.work_dir = tmp.file("work");
  Config config = fast_config();
  config.set("monitor.enabled=false");
  const auto r = traindx::resume_check(config, o);
  EXPECT_TRUE(r.exact) << r.to_json().dump(2);
  EXPECT_TRUE(r.training_exact);
  EXPECT_EQ(r.exit_code(), 0);
  EXPECT_FALSE(r.fresh_process);
  EXPECT_TRUE(r.deterministic);
  ASSERT_EQ(r.final_state.size(), traindx::training_state_components().size());
  for (const auto& c : r.final_state) EXPECT_TRUE(c.equal) << c.component << ": " << c.detail;
  EXPECT_GT(component(r.final_state, "model").compared, 0);
  EXPECT_GT(component(r.final_state, "optimizer").compared, 0);  // momentum buffers are compared, not just present
  EXPECT_FALSE(r.series_difference.has_value());
  EXPECT_NE(std::find(r.series_compared.begin(), r.series_compared.end(), "loss"), r.series_compared.end());
  EXPECT_NE(std::find(r.series_compared.begin(), r.series_compared.end(), "val_loss"), r.series_compared.end());
  EXPECT_TRUE(r.round_trip.empty());  // only run on a mismatch
  EXPECT_TRUE(r.culprits.empty());
  EXPECT_EQ(r.work_dir, o.work_dir);  // kept when given

  const auto j = r.to_json();
  for (const char* key : {"check", "at", "steps", "deterministic", "threads", "fresh_process", "planted", "exact",
                          "training_exact", "verdict", "final_state", "series", "before_save", "round_trip", "culprits",
                          "diagnosis", "work_dir", "seconds"})
    EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_EQ(j["verdict"], "bit_exact");
  EXPECT_TRUE(j["series"]["first_difference"].is_null());
}

TEST(RunReproTest, ResumeWithTheMonitorKeepsTrainingExactAndBlamesOnlyTheMonitorState) {
  if (!have_fashion()) GTEST_SKIP() << "Fashion-MNIST not installed";
  traindx::ResumeCheckOptions o;
  o.at = 6;
  o.steps = 14;
  const auto r = traindx::resume_check(fast_config(), o);
  // The monitor never changes the numbers, so training must be exact with it too. Whether its own state resumes
  // exactly depends on Monitor::save_state() holding all of it; when it does not, that is what must be named.
  EXPECT_TRUE(r.training_exact) << r.to_json().dump(2);
  if (!r.exact) {
    ASSERT_EQ(r.culprits.size(), 1u) << r.diagnosis;
    EXPECT_EQ(r.culprits[0].component, "monitor");
    EXPECT_EQ(r.culprits[0].cause, "not_saved");
    EXPECT_NE(r.diagnosis.find("monitor state is not fully saved"), std::string::npos) << r.diagnosis;
  }
}

TEST(RunReproTest, ResumeCheckNamesAPlantedUnrestoredComponent) {
  if (!have_fashion()) GTEST_SKIP() << "Fashion-MNIST not installed";
  for (const std::string planted : {"rng", "optimizer", "batcher"}) {
    TempDir tmp;
    traindx::ResumeCheckOptions o;
    o.at = 6;
    o.steps = 4;
    o.restore.skip(planted);
    const auto r = traindx::resume_check(fast_config(), o);
    EXPECT_FALSE(r.exact) << planted;
    EXPECT_EQ(r.exit_code(), 1);
    EXPECT_EQ(r.planted, std::vector<std::string>{planted});
    ASSERT_EQ(r.culprits.size(), 1u) << r.to_json().dump(2);
    EXPECT_EQ(r.culprits[0].component, planted);
    EXPECT_EQ(r.culprits[0].cause, "not_restored");
    for (const auto& c : r.before_save) EXPECT_TRUE(c.equal) << planted << ": " << c.component;
    ASSERT_TRUE(r.series_difference.has_value()) << planted;
    // The loss of step N uses the restored weights and batch (and dropout masks); momentum only enters the update.
    EXPECT_EQ(r.series_difference->step, planted == "optimizer" ? 7 : 6) << planted;
    EXPECT_NE(r.diagnosis.find("does not restore " + planted), std::string::npos) << r.diagnosis;
    EXPECT_TRUE(r.work_dir.empty());  // temporary, removed
  }
}

TEST(RunReproTest, RejectsBadArgumentsAndConfigsThatStopBeforeTheCheckedStep) {
  if (!have_fashion()) GTEST_SKIP() << "Fashion-MNIST not installed";
  traindx::ResumeCheckOptions o;
  o.at = 0;
  o.steps = 3;
  EXPECT_THROW(traindx::resume_check(fast_config(), o), traindx::UsageError);
  o.at = 40;
  o.steps = 20;  // 3 epochs of 17 batches = 51 steps < 60
  try {
    traindx::resume_check(fast_config(), o);
    FAIL() << "expected UsageError";
  } catch (const traindx::UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("train.epochs"), std::string::npos) << e.what();
  }
  EXPECT_THROW(traindx::RestoreOptions().skip("weights"), traindx::UsageError);
}

TEST(RunReproTest, CompareTrainingStateAndSeriesOfOneRunAgainstItself) {
  if (!have_fashion()) GTEST_SKIP() << "Fashion-MNIST not installed";
  TempDir tmp;
  Config c = fast_config();
  c.set("train.max_steps=3");
  traindx::RunRequest request;
  request.out = tmp.file("run");
  request.quiet = true;
  const auto outcome = traindx::run_training(c, request);
  const auto ckpt = traindx::load_checkpoint(outcome.last_checkpoint);
  const auto same = traindx::compare_training_state(ckpt, ckpt);
  for (const auto& s : same) EXPECT_TRUE(s.equal) << s.component;
  EXPECT_FALSE(traindx::first_series_difference(request.out, request.out, 0, 3).has_value());

  // A changed weight is found and described with compare_tensors' numbers.
  auto changed = ckpt;
  auto weight = std::find_if(changed.model.begin(), changed.model.end(),
                             [](const traindx::NamedTensor& t) { return t.second.is_floating_point(); });
  ASSERT_NE(weight, changed.model.end());
  weight->second = weight->second.clone();
  weight->second.view(-1)[0] += 1.0f;
  const auto diff = traindx::compare_training_state(ckpt, changed);
  EXPECT_FALSE(component(diff, "model").equal);
  EXPECT_EQ(component(diff, "model").differing, std::vector<std::string>{weight->first});
  EXPECT_NE(component(diff, "model").detail.find("1 of"), std::string::npos) << component(diff, "model").detail;
  EXPECT_TRUE(component(diff, "optimizer").equal);
}

TEST(RunReproTest, DeterminismInProcessReportsEqualRunsAndSkipsFreshProcessesWithoutAnExecutable) {
  if (!have_fashion()) GTEST_SKIP() << "Fashion-MNIST not installed";
  traindx::DeterminismOptions o;
  o.steps = 4;
  const auto r = traindx::determinism_check(fast_config(), o);
  ASSERT_EQ(r.pairs.size(), 3u);
  EXPECT_EQ(r.pairs[0].pair, "same_process");
  EXPECT_TRUE(r.pairs[0].equal()) << r.pairs[0].message;
  EXPECT_EQ(r.pairs[1].pair, "fresh_process");
  EXPECT_FALSE(r.pairs[1].skipped.empty());
  EXPECT_EQ(r.pairs[2].pair, "threads");
  // 1 vs 2 threads may legitimately reorder float sums; whatever happened, a difference must be located.
  if (!r.pairs[2].equal()) {
    EXPECT_TRUE(r.pairs[2].first_step.has_value());
    EXPECT_FALSE(r.pairs[2].pass.empty());
  }
  EXPECT_TRUE(r.reproducible());
  EXPECT_EQ(r.exit_code(), 0);
  const auto j = r.to_json();
  for (const char* key : {"check", "steps", "deterministic", "threads", "reproducible", "pairs", "deterministic_mode",
                          "work_dir", "seconds"})
    EXPECT_TRUE(j.contains(key)) << key;
  for (const char* key : {"pair", "description", "ran", "skipped", "equal", "loss_equal", "weights_equal", "first_step",
                          "pass", "first_layer", "op", "layers", "final_weights", "message"})
    EXPECT_TRUE(j["pairs"][0].contains(key)) << key;
}
