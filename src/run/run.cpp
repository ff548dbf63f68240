#include "traindx/run/run.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <filesystem>

#include "traindx/checkpoint/checkpoint.h"
#include "traindx/core/environment.h"
#include "traindx/core/error.h"
#include "traindx/monitor/monitor.h"
#include "traindx/store/run_store.h"

namespace traindx {
namespace {

// Progress for humans on stderr: a redrawn bar on a terminal (10 redraws a second at most), plain lines otherwise.
class ProgressPrinter {
 public:
  ProgressPrinter(bool terminal, int64_t log_every) : terminal_(terminal), log_every_(log_every) {}
  void operator()(const Trainer::Progress& p) {
    if (terminal_) {
      const auto now = std::chrono::steady_clock::now();
      if (!p.final && now - last_draw_ < std::chrono::milliseconds(100)) return;
      last_draw_ = now;
      constexpr int kWidth = 30;
      const double frac = p.total_steps > 0 ? static_cast<double>(p.step) / static_cast<double>(p.total_steps) : 1.0;
      const int filled = static_cast<int>(frac * kWidth);
      std::string bar(static_cast<size_t>(filled), '=');
      if (filled < kWidth) bar += '>' + std::string(static_cast<size_t>(kWidth - filled - 1), ' ');
      fmt::print(stderr, "\r[{}] {}/{} ep {} loss {:.4f} lr {:.3g} {:.1f} it/s ETA {}   ", bar, p.step,
                 p.total_steps, p.epoch + 1, p.loss, p.lr, p.steps_per_second, duration(p.eta_seconds));
      if (p.final) fmt::print(stderr, "\n");
      std::fflush(stderr);
    } else if (!p.final && p.step % log_every_ == 0) {
      fmt::print(stderr, "step {}/{} epoch {} loss {:.4f} lr {:.4g} {:.1f} it/s eta {}\n", p.step, p.total_steps,
                 p.epoch + 1, p.loss, p.lr, p.steps_per_second, duration(p.eta_seconds));
    }
  }
  static std::string duration(double s) {
    if (!std::isfinite(s) || s < 0) return "?";
    const auto t = static_cast<int64_t>(s + 0.5);
    if (t >= 3600) return fmt::format("{}h{:02d}m", t / 3600, (t % 3600) / 60);
    if (t >= 60) return fmt::format("{}m{:02d}s", t / 60, t % 60);
    return fmt::format("{}s", t);
  }

 private:
  bool terminal_;
  int64_t log_every_;
  std::chrono::steady_clock::time_point last_draw_{};
};

// Stops the loop after a fixed number of steps, as a preemption would (resume-check uses it).
class StopAfter : public TrainerCallback {
 public:
  explicit StopAfter(int64_t steps) : steps_(steps) {}
  void on_iteration_end(int64_t steps_done) override { done_ = steps_done >= steps_; }
  std::optional<std::string> stop_requested() override {
    if (!done_) return std::nullopt;
    return fmt::format("stopped after {} steps as requested (--stop-after)", steps_);
  }

 private:
  int64_t steps_;
  bool done_ = false;
};

}  // namespace

int RunOutcome::exit_code() const { return result.status == "failed" || findings.has_critical() ? 1 : 0; }

RunOutcome run_training(const Config& config, const RunRequest& request) {
  RunOutcome outcome;
  outcome.run_dir = create_run_dir(config.get_string("run.out_root"), config.get_string("run.name"), request.out);
  outcome.run_id = std::filesystem::path(outcome.run_dir).filename().string();
  const std::string& dir = outcome.run_dir;
  write_file_atomic(dir + "/config.toml", config.to_toml());

  auto store = open_sqlite_store(dir + "/" + kRunStoreFile);
  RunRecord record;
  record.run_id = outcome.run_id;
  record.name = config.get_string("run.name");
  record.dir = dir;
  record.status = "running";
  record.started_at = utc_now_iso();
  record.config_toml = config.to_toml();
  store->begin_run(record);

  try {
    Trainer trainer(config);
    trainer.set_store(store.get(), outcome.run_id);
    if (!request.quiet) trainer.set_progress(ProgressPrinter(request.terminal, config.get_int("train.log_every")));

    const MonitorOptions monitor_options = MonitorOptions::from_config(config);
    std::shared_ptr<Monitor> monitor;
    if (monitor_options.enabled) {
      monitor = make_monitor(monitor_options, trainer);
      monitor->set_store(store.get(), outcome.run_id);
      if (!request.quiet) {
        const bool terminal = request.terminal;
        monitor->set_listener([terminal](const Finding& f) {
          fmt::print(stderr, "{}[{}] {}{}: {}\n", terminal ? "\r" : "", severity_name(f.severity), f.rule,
                     f.layer.empty() ? "" : " @ " + f.layer, f.message);
        });
      }
    }

    const CheckpointOptions checkpoint_options = CheckpointOptions::from_config(config);
    auto checkpoints = std::make_shared<CheckpointCallback>(
        dir + "/checkpoints", trainer, config, checkpoint_options, [monitor]() {
          std::map<std::string, Json> extra;
          if (monitor) extra["monitor"] = monitor->save_state();
          return extra;
        });

    if (!request.resume.empty()) {
      const Checkpoint checkpoint = load_checkpoint(request.resume);
      const auto extra = restore_trainer(trainer, checkpoint, request.restore);
      auto it = extra.find("monitor");
      if (monitor && it != extra.end()) monitor->load_state(it->second);
    }
    if (request.on_ready) request.on_ready(trainer, dir);

    if (monitor) trainer.add_callback(std::make_shared<MonitorCallback>(monitor));
    if (request.stop_after > 0) trainer.add_callback(std::make_shared<StopAfter>(request.stop_after));
    // Checkpoints come last so they capture the other callbacks' state after each step.
    trainer.add_callback(checkpoints);

    const int64_t start_step = trainer.step();
    if (request.stop_after > 0 && start_step >= request.stop_after) {
      // fit() would take one step before any callback can stop it; save what was loaded instead.
      outcome.result.status = "stopped";
      outcome.result.stop_reason =
          fmt::format("resumed at step {}, already at --stop-after {}: saved without training", start_step,
                      request.stop_after);
      outcome.result.steps = start_step;
      checkpoints->save_now();
    } else {
      outcome.result = trainer.fit();
    }
    if (monitor) outcome.findings = monitor->findings();
    outcome.last_checkpoint = checkpoints->last_saved();

    Json& summary = outcome.summary;
    summary = outcome.result.summary();
    summary["run_id"] = outcome.run_id;
    summary["run_dir"] = dir;
    summary["resumed_from"] = request.resume;
    summary["last_checkpoint"] = outcome.last_checkpoint;
    summary["findings"] = {{"total", outcome.findings.size()}, {"critical", outcome.findings.has_critical()}};
    // The monitor's own wall time inside its calls (bench/monitor_overhead.py reads it).
    summary["monitor_seconds"] = monitor ? monitor->seconds() : 0.0;
    summary["data"] = {{"source", trainer.data().info.source},
                       {"task", task_name(trainer.data().info.task)},
                       {"num_classes", trainer.data().info.num_classes},
                       {"train_examples", trainer.data().train_x.size(0)}};
    summary["environment"] = environment_fingerprint();
    const double loop_seconds = outcome.result.compute_seconds + outcome.result.data_seconds;
    const int64_t steps_run = outcome.result.steps - start_step;
    summary["steps_run"] = steps_run;
    summary["samples_per_second"] =
        loop_seconds > 0 ? static_cast<double>(steps_run * config.get_int("train.batch_size")) / loop_seconds : 0.0;
  } catch (...) {
    try {
      store->end_run(outcome.run_id, "failed", Json::object());
    } catch (const std::exception&) {
      // The original error matters more than a failure to record it.
    }
    throw;
  }
  write_file_atomic(dir + "/summary.json", outcome.summary.dump(2) + "\n");
  write_file_atomic(dir + "/findings.json", outcome.findings.to_json().dump(2) + "\n");
  store->end_run(outcome.run_id, outcome.result.status, outcome.summary);
  return outcome;
}

}  // namespace traindx
