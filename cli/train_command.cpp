#include <fmt/format.h>

#include <iostream>

#include "commands.h"
#include "traindx/run/run.h"

namespace traindx::cli {
namespace {

std::string metric_line(const char* split, const Json& m) {
  if (!m.is_object() || m.empty()) return "";
  std::string line = fmt::format("  {:<5} loss {:.4f}", split, m.value("loss", 0.0));
  for (const char* k : {"accuracy", "f1_macro", "r2", "mae"})
    if (m.contains(k) && m[k].is_number()) line += fmt::format("  {} {:.4f}", k, m[k].get<double>());
  return line + "\n";
}

void print_findings(const FindingSet& findings) {
  const auto ranked = findings.ranked();
  if (ranked.empty()) return;
  fmt::print("findings ({}):\n", ranked.size());
  for (const auto& f : ranked) {
    fmt::print("  [{}] {}{} (step {}{}): {}\n", severity_name(f.severity), f.rule,
               f.layer.empty() ? "" : " @ " + f.layer, f.step,
               f.count > 1 ? fmt::format(", seen {}x until {}", f.count, f.last_step) : "", f.message);
    if (!f.fixes.empty()) fmt::print("      try: {}\n", f.fixes.front());
  }
}

struct TrainArgs {
  ConfigArgs config;
  std::string resume;
  int64_t stop_after = 0;
  std::vector<std::string> resume_skip;
};

int run_train(const TrainArgs& args) {
  const Config config = load_config(args.config);
  RunRequest request;
  request.out = args.config.out;
  request.resume = args.resume;
  request.stop_after = args.stop_after;
  for (const auto& component : args.resume_skip) request.restore.skip(component);
  request.quiet = args.config.quiet || args.config.json;
  request.terminal = stdout_is_terminal();
  if (!request.quiet) {
    request.on_ready = [](Trainer& trainer, const std::string& dir) {
      const auto& info = trainer.data().info;
      fmt::print("run {}\ndata: {} ({}), {} train / {} val / {} test examples, input {}\n", dir, info.source,
                 task_name(info.task), trainer.data().train_x.size(0),
                 trainer.data().val_x.defined() ? trainer.data().val_x.size(0) : 0,
                 trainer.data().test_x.defined() ? trainer.data().test_x.size(0) : 0,
                 fmt::join(info.input_shape, "x"));
      fmt::print("{}", trainer.model().summary_table());
      if (trainer.step() > 0) fmt::print("resumed at step {}\n", trainer.step());
      std::fflush(stdout);
    };
  }
  const RunOutcome outcome = run_training(config, request);
  if (args.config.json) {
    std::cout << outcome.summary.dump(2) << "\n";
    return outcome.exit_code();
  }
  const TrainResult& r = outcome.result;
  fmt::print("{}: {} steps in {:.1f} s{}\n", r.status, r.steps, r.wall_seconds,
             r.stop_reason.empty() ? "" : " (" + r.stop_reason + ")");
  fmt::print("{}{}{}", metric_line("train", r.train_metrics), metric_line("val", r.val_metrics),
             metric_line("test", r.test_metrics));
  if (!args.config.quiet) print_findings(outcome.findings);
  fmt::print("wrote {}/summary.json and findings.json{}\n", outcome.run_dir,
             outcome.last_checkpoint.empty() ? "" : "; checkpoint " + outcome.last_checkpoint);
  return outcome.exit_code();
}

}  // namespace

void register_train(CLI::App& app, Action& run) {
  static TrainArgs args;
  auto* cmd = app.add_subcommand("train", "train a model described by a TOML config");
  add_config_args(cmd, args.config);
  cmd->add_option("--resume", args.resume,
                  "continue from a checkpoint (a checkpoint directory, or a run directory's latest)");
  cmd->add_option("--stop-after", args.stop_after,
                  "stop after N steps and checkpoint, as if the job were preempted")
      ->check(CLI::NonNegativeNumber);
  // Hidden: plants a broken resume (a component left unrestored) so resume-check's tests can make it name it.
  cmd->add_option("--resume-skip", args.resume_skip, "do not restore this component on --resume (testing)")
      ->group("");
  cmd->callback([&run] { run = [] { return run_train(args); }; });
}

}  // namespace traindx::cli
