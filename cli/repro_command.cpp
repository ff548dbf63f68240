// `traindx ckpt resume-check` and `traindx determinism`: parse, call the library (traindx/run/repro.h), render.
#include <fmt/format.h>
#include <unistd.h>

#include <iostream>

#include "commands.h"
#include "traindx/core/error.h"
#include "traindx/run/repro.h"

namespace traindx::cli {
namespace {

// The checks start fresh processes of this very executable; the library is told its path rather than assuming it.
std::string self_executable() {
  std::string path(4096, '\0');
  const ssize_t n = ::readlink("/proc/self/exe", path.data(), path.size() - 1);
  TRAINDX_CHECK(n > 0, IoError, "cannot find the traindx executable through /proc/self/exe: {}", std::strerror(errno));
  path.resize(static_cast<size_t>(n));
  return path;
}

void describe_work_dir(CLI::App* cmd) {
  cmd->get_option("--out")->description(
      "directory for the check's runs, kept for inspection (default: a temporary directory, removed)");
}

std::string settings_line(bool deterministic, int64_t threads) {
  return fmt::format("run.deterministic = {}, run.threads = {}", deterministic, threads);
}

void print_components(const char* title, const std::vector<ComponentComparison>& cs) {
  fmt::print("{}\n", title);
  for (const auto& c : cs) {
    if (c.equal)
      fmt::print("  {:<15} identical{}\n", c.component,
                 c.tensors > 0 ? fmt::format(" ({} tensor{})", c.tensors, c.tensors == 1 ? "" : "s") : std::string());
    else
      fmt::print("  {:<15} DIFFERS ({} differing): {}\n", c.component, c.differing.size(), c.detail);
  }
}

struct ResumeCheckArgs {
  ConfigArgs config;
  int64_t at = 0;
  int64_t steps = 0;
  std::vector<std::string> resume_skip;
};

int run_resume_check(const ResumeCheckArgs& args) {
  const Config config = load_config(args.config);
  ResumeCheckOptions options;
  options.at = args.at;
  options.steps = args.steps;
  options.exe = self_executable();
  options.work_dir = args.config.out;
  for (const auto& c : args.resume_skip) options.restore.skip(c);
  const ResumeCheckReport r = resume_check(config, options);
  if (args.config.json) {
    std::cout << r.to_json().dump(2) << "\n";
    return r.exit_code();
  }
  if (!args.config.quiet) {
    fmt::print("resume-check: {} + {} steps, {}, resumed in {}{}\n", r.at, r.steps,
               settings_line(r.deterministic, r.threads), r.fresh_process ? "a fresh process" : "this process",
               r.planted.empty() ? "" : fmt::format(" (planted fault: {} not restored)", fmt::join(r.planted, ", ")));
    print_components(fmt::format("final state at step {} (uninterrupted vs resumed):", r.at + r.steps).c_str(),
                     r.final_state);
    if (r.series_difference)
      fmt::print("series over steps {}..{}: first difference {} at step {}\n", r.at, r.at + r.steps,
                 r.series_difference->series, r.series_difference->step);
    else
      fmt::print("series over steps {}..{}: identical ({})\n", r.at, r.at + r.steps,
                 fmt::join(r.series_compared, ", "));
    if (!r.exact) {
      print_components(fmt::format("before the save, step {} (uninterrupted vs interrupted):", r.at).c_str(),
                       r.before_save);
      print_components(fmt::format("load -> save round trip at step {} (saved vs re-saved):", r.at).c_str(),
                       r.round_trip);
    }
    if (!r.work_dir.empty()) fmt::print("runs kept in {}\n", r.work_dir);
  }
  fmt::print("{} ({:.1f} s)\n", r.diagnosis, r.seconds);
  return r.exit_code();
}

struct DeterminismArgs {
  ConfigArgs config;
  int64_t steps = 20;
};

void print_pair(const RunPairResult& p) {
  if (!p.skipped.empty()) {
    fmt::print("  {:<14} {:<40} not run: {}\n", p.pair, p.description, p.skipped);
    return;
  }
  if (p.equal()) {
    fmt::print("  {:<14} {:<40} equal\n", p.pair, p.description);
    return;
  }
  fmt::print("  {:<14} {:<40} DIFFER: {}\n", p.pair, p.description, p.message);
  if (!p.worst_tensor.empty())
    fmt::print("  {:<14} final weights: largest difference in {}: max abs {:.3g}, max rel {:.3g}\n", "", p.worst_tensor,
               p.final_weights.max_abs, p.final_weights.max_rel);
  if (p.layers.empty() || !p.first_step) return;
  if (p.pass != "forward") {
    fmt::print("  {:<14} replay of step {}: all {} layer outputs of the forward pass bitwise equal\n", "",
               *p.first_step, p.layers.size());
    return;
  }
  fmt::print("  {:<14} replay of step {} layer by layer (a = reference):\n", "", *p.first_step);
  fmt::print("  {:<14}   {:<20} {:>9} {:>11} {:>11} {:>6}\n", "", "layer", "differing", "max abs", "max rel", "ulps");
  for (const auto& l : p.layers)
    fmt::print("  {:<14}   {:<20} {:>9} {:>11.3g} {:>11.3g} {:>6}{}\n", "", l.layer, l.comparison.differing,
               l.comparison.max_abs, l.comparison.max_rel, l.comparison.max_ulps,
               l.layer == p.first_layer ? "  <- first" : "");
}

int run_determinism(const DeterminismArgs& args) {
  const Config config = load_config(args.config);
  DeterminismOptions options;
  options.steps = args.steps;
  options.exe = self_executable();
  options.work_dir = args.config.out;
  const DeterminismReport r = determinism_check(config, options);
  if (args.config.json) {
    std::cout << r.to_json().dump(2) << "\n";
    return r.exit_code();
  }
  if (!args.config.quiet) {
    fmt::print("determinism: {} steps, {}\n", r.steps, settings_line(r.deterministic, r.threads));
    for (const auto& p : r.pairs) print_pair(p);
    if (r.deterministic_fixes) {
      fmt::print("with run.deterministic = true:\n");
      for (const auto& p : r.deterministic_pairs) print_pair(p);
      fmt::print("deterministic mode {} the differences\n", *r.deterministic_fixes ? "fixes" : "does not fix");
    }
    if (!r.work_dir.empty()) fmt::print("runs kept in {}\n", r.work_dir);
  }
  std::vector<std::string> differing;
  for (const auto& p : r.pairs)
    if (p.skipped.empty() && !p.equal()) differing.push_back(p.pair);
  if (differing.empty())
    fmt::print("reproducible: every pair is bitwise equal ({:.1f} s)\n", r.seconds);
  else
    fmt::print("{}: {} differ{} ({:.1f} s)\n",
               r.reproducible() ? "reproducible with fixed settings" : "NOT reproducible", fmt::join(differing, ", "),
               r.deterministic_fixes ? (*r.deterministic_fixes ? "; run.deterministic = true fixes it"
                                                               : "; run.deterministic = true does not fix it")
                                     : "",
               r.seconds);
  return r.exit_code();
}

}  // namespace

void register_ckpt_repro(CLI::App& ckpt, Action& run) {
  static ResumeCheckArgs args;
  auto* cmd = ckpt.add_subcommand(
      "resume-check",
      "train N+M steps uninterrupted and N steps, save, resume in a fresh process for M; compare bitwise and name "
      "the state component that breaks the resume (exit 0 bit-exact, 1 not)");
  add_config_args(cmd, args.config);
  describe_work_dir(cmd);
  cmd->add_option("--at", args.at, "N: interrupt and save after this many steps")
      ->required()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--steps", args.steps, "M: steps to train after resuming")->required()->check(CLI::PositiveNumber);
  // Hidden: plants a broken resume so the tests can check that the component is named.
  cmd->add_option("--resume-skip", args.resume_skip, "do not restore this component when resuming (testing)")
      ->group("");
  cmd->callback([&run] { run = [] { return run_resume_check(args); }; });
}

void register_determinism(CLI::App& app, Action& run) {
  static DeterminismArgs args;
  auto* cmd = app.add_subcommand(
      "determinism",
      "run the same steps twice in this process, twice in fresh processes and with 1 vs 2 threads; report where "
      "results part (step, layer, op) and whether run.deterministic fixes it (exit 1 when same-settings runs differ)");
  add_config_args(cmd, args.config);
  describe_work_dir(cmd);
  cmd->add_option("--steps", args.steps, "K: steps per run (a checkpoint is kept after each)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->callback([&run] { run = [] { return run_determinism(args); }; });
}

}  // namespace traindx::cli
