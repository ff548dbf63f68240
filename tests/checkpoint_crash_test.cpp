// Crash safety: a trainer checkpointing after every step is killed with SIGKILL at random moments, over and over,
// each time resuming from `latest` in the same checkpoint root (as a preempted job restarted with --resume would).
// After every kill, `latest` must name a complete checkpoint whose manifest and tensor hashes all verify and whose
// golden probe verify_checkpoint reproduces, every visible step-* directory must be complete too, and the leftovers
// of killed writers must not pile up.
//
// The writers are forked from this process after the data is loaded and the trainer built, so a trial costs only
// the time until the kill (0-300 ms), not a process start. LibTorch runs single-threaded here (run.threads = 1):
// a fork then carries no OpenMP pool that the child could deadlock on.
//
// TRAINDX_CRASH_TRIALS (default 120) and TRAINDX_CRASH_SEED (default: time) override the trial count and seed; the
// seed is printed so a failure can be replayed.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "test_support.h"
#include "traindx/checkpoint/checkpoint.h"
#include "traindx/checkpoint/investigate.h"
#include "traindx/core/error.h"
#include "traindx/core/text.h"
#include "traindx/store/run_store.h"

namespace traindx {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

const char* const kTinyToml = R"(
[run]
name = "crash"
seed = 5
threads = 1
[data]
source = "fashion-mnist"
max_train = 500
max_test = 100
[model]
layers = [ { type = "flatten" }, { type = "linear" } ]
[train]
optimizer = "sgd"
momentum = 0.9
lr = 0.05
batch_size = 50
epochs = 100000
max_steps = 1000000
[checkpoint]
every_steps = 1
keep_last = 3
probe_size = 32
)";

int64_t env_int(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::stoll(v) : fallback;
}

// What a child does between fork and its death. Mode "train": resume from `latest` if there is one and train,
// checkpointing after every step. Mode "resave": resume and save the same step again and again, which exercises
// the replacement of an existing checkpoint directory that `latest` names. Never returns.
[[noreturn]] void child_main(Trainer& trainer, const Config& config, const std::string& root, bool resave,
                             const std::string& error_file) {
  try {
    if (fs::exists(root + "/latest")) restore_trainer(trainer, load_checkpoint(root));
    const CheckpointOptions options = CheckpointOptions::from_config(config);
    if (resave) {
      for (;;) save_checkpoint(root, trainer, config, {}, Json::object(), options);
    }
    trainer.add_callback(std::make_shared<CheckpointCallback>(root, trainer, config, options));
    trainer.fit();
    std::ofstream(error_file) << "training ended before the kill";
  } catch (const std::exception& e) {
    std::ofstream(error_file) << e.what();
  }
  ::_exit(3);
}

struct TrialStats {
  int64_t kills = 0;
  int64_t killed_with_temporary = 0;  ///< a ".step-*.tmp-<pid>" of the killed child was left: killed mid-write
  int64_t resave_trials = 0;
  int64_t max_leftovers = 0;          ///< most hidden leftovers seen in the root after any kill
};

TEST(CheckpointCrashTest, SigkillAtRandomMomentsNeverLeavesLatestUnreadable) {
  const int64_t trials = env_int("TRAINDX_CRASH_TRIALS", 120);
  const auto seed = static_cast<uint64_t>(
      env_int("TRAINDX_CRASH_SEED", std::chrono::system_clock::now().time_since_epoch().count() % 1000000));
  std::printf("crash test: %lld trials, seed %llu (TRAINDX_CRASH_SEED to replay)\n", static_cast<long long>(trials),
              static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> delay_ms(0, 300);

  TempDir dir;
  const std::string root = dir.file("checkpoints");
  const Config config = Config::from_string(kTinyToml, "crash.toml");
  Trainer trainer(config);  // data loaded and model built once; every child starts from this image

  TrialStats stats;
  int64_t last_step = -1;
  const auto start = std::chrono::steady_clock::now();
  for (int64_t trial = 0; trial < trials; ++trial) {
    // Every fourth trial re-saves the step it resumed at, once `latest` exists.
    const bool resave = trial % 4 == 3 && fs::exists(root + "/latest");
    const std::string error_file = dir.file(fmt::format("child-{}.err", trial));
    std::fflush(stdout);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0) << "fork failed: " << std::strerror(errno);
    if (pid == 0) child_main(trainer, config, root, resave, error_file);

    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(rng)));
    ::kill(pid, SIGKILL);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "trial " << trial << ": the child ended on its own: "
        << (fs::exists(error_file) ? read_file(error_file) : std::string("(no message)"));
    ++stats.kills;
    stats.resave_trials += resave ? 1 : 0;

    int64_t leftovers = 0;
    std::error_code ec;  // no root yet when the very first child died before creating it
    for (const auto& e : fs::directory_iterator(root, ec)) {
      const std::string name = e.path().filename().string();
      if (name[0] != '.') continue;
      ++leftovers;
      if (name.find(".tmp-" + std::to_string(pid)) != std::string::npos && name.rfind(".step-", 0) == 0)
        ++stats.killed_with_temporary;
    }
    stats.max_leftovers = std::max(stats.max_leftovers, leftovers);

    if (!fs::exists(root + "/latest")) continue;  // killed before the first checkpoint was complete
    // `latest` names a complete checkpoint: manifest hash and every tensor hash verify.
    const std::string latest = trim(read_file(root + "/latest"));
    Checkpoint c;
    try {
      c = load_checkpoint(root);
    } catch (const std::exception& e) {
      FAIL() << "trial " << trial << " (killed after the child ran " << (resave ? "re-saves" : "training")
             << "): latest = '" << latest << "' does not load: " << e.what();
    }
    EXPECT_GE(c.step(), last_step) << "trial " << trial << ": latest went back in time";
    // And verifies: the model rebuilt from it reproduces its golden probe.
    const VerifyReport verified = verify_checkpoint(root);
    EXPECT_EQ(verified.verdict, "identical") << "trial " << trial << ": " << verified.to_json().dump();
    last_step = c.step();
    // Every visible checkpoint directory is complete (only renamed into place once written and synced).
    for (const auto& e : fs::directory_iterator(root)) {
      const std::string name = e.path().filename().string();
      if (!e.is_directory() || name.rfind("step-", 0) != 0) continue;
      EXPECT_NO_THROW(load_checkpoint(e.path().string())) << "trial " << trial << ": " << name;
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  std::printf(
      "crash test: %lld kills in %.1f s (%lld during re-saves), %lld left a half-written checkpoint directory, "
      "latest reached step %lld, at most %lld leftovers in the root after a kill\n",
      static_cast<long long>(stats.kills), seconds, static_cast<long long>(stats.resave_trials),
      static_cast<long long>(stats.killed_with_temporary), static_cast<long long>(last_step),
      static_cast<long long>(stats.max_leftovers));
  RecordProperty("kills", static_cast<int>(stats.kills));
  RecordProperty("killed_mid_write", static_cast<int>(stats.killed_with_temporary));
  RecordProperty("seconds", fmt::format("{:.1f}", seconds));

  EXPECT_GE(stats.kills, trials);
  // The kills must land while checkpoints are being written, or the test proves nothing: most of a child's life is
  // spent saving (every step), so a good share of kills interrupts a save.
  EXPECT_GE(stats.killed_with_temporary, trials / 10);
  // Training made progress across the kills: each child resumed where the previous one was killed.
  EXPECT_GT(last_step, trials);
  // Leftovers of killed writers are removed by the next save: they do not accumulate with the number of kills.
  EXPECT_LE(stats.max_leftovers, 5);

  // And the surviving state resumes: fresh saves after the last kill clean up and load. Two saves, because a
  // save never removes what `latest` names when it starts, which after a kill during a re-save is a hidden copy.
  restore_trainer(trainer, load_checkpoint(root));
  save_checkpoint(root, trainer, config);
  save_checkpoint(root, trainer, config);
  int64_t hidden = 0;
  for (const auto& e : fs::directory_iterator(root))
    hidden += e.path().filename().string()[0] == '.' ? 1 : 0;
  EXPECT_EQ(hidden, 0) << "stale temporaries survived a save";
  EXPECT_NO_THROW(load_checkpoint(root));
}

}  // namespace
}  // namespace traindx
