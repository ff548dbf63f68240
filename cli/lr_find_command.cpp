// `traindx lr-find CONFIG`: the learning-rate range test (traindx/doctor/lr_finder.h), rendered as the suggestion,
// every rule's answer, a text plot and the findings; --out keeps lr_find.json, lr_find.csv and lr_find.txt.
#include <fmt/format.h>

#include <filesystem>
#include <iostream>

#include "commands.h"
#include "traindx/core/error.h"
#include "traindx/doctor/lr_finder.h"
#include "traindx/store/run_store.h"

namespace traindx::cli {
namespace {

struct LrFindArgs {
  ConfigArgs config;
  LrFinderOptions options;
  int width = 64;
  int height = 16;
};

std::string curve_csv(const LrFinderResult& r) {
  std::string csv = "step,lr,loss,smoothed\n";
  for (size_t i = 0; i < r.lrs.size(); ++i)
    csv += fmt::format("{},{:.17g},{:.17g},{:.17g}\n", i, r.lrs[i], r.losses[i], r.smoothed[i]);
  return csv;
}

void write_outputs(const std::string& dir, const LrFinderResult& r, const std::string& plot) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  TRAINDX_CHECK(!ec, IoError, "lr-find: cannot create the output directory '{}': {}", dir, ec.message());
  write_file_atomic(dir + "/lr_find.json", r.to_json().dump(2) + "\n");
  write_file_atomic(dir + "/lr_find.csv", curve_csv(r));
  write_file_atomic(dir + "/lr_find.txt", plot);
}

int run_lr_find(const LrFindArgs& args) {
  const Config config = load_config(args.config);
  const LrFinderResult r = find_learning_rate(config, args.options);
  const std::string plot = lr_find_plot(r, args.width, args.height);
  if (!args.config.out.empty()) write_outputs(args.config.out, r, plot);
  if (args.config.json) {
    std::cout << r.to_json().dump(2) << "\n";
    return 0;
  }
  fmt::print("lr-find: {} steps from {:.2g} to {:.2g} ({}, batch {}) in {:.2g} s{}\n", r.lrs.size(),
             r.options.min_lr, r.lrs.empty() ? r.options.min_lr : r.lrs.back(), config.get_string("train.optimizer"),
             config.get_int("train.batch_size"), r.seconds, r.stopped_early ? "; stopped: " + r.stop_reason : "");
  if (r.has_suggestion()) {
    fmt::print("suggestion: train.lr = {:.2g} ({} rule)\n", r.suggestion, r.rule);
  } else {
    fmt::print("suggestion: none (the {} rule finds no descent in this curve)\n", r.rule);
  }
  std::vector<std::string> others;
  for (const auto& rule : lr_rules()) {
    if (rule == r.rule) continue;
    const auto it = r.alternatives.find(rule);
    others.push_back(it == r.alternatives.end() ? rule + " -" : fmt::format("{} {:.2g}", rule, it->second));
  }
  fmt::print("other rules: {}\nconfigured: train.lr = {:.3g}\n", fmt::join(others, ", "), r.configured_lr);
  if (!args.config.quiet) fmt::print("\n{}\n", plot);
  for (const auto& f : r.findings) {
    fmt::print("[{}] {}: {}\n", severity_name(f.severity), f.rule, f.message);
    if (!f.fixes.empty()) fmt::print("    try: {}\n", f.fixes.front());
  }
  if (!args.config.out.empty()) {
    fmt::print("wrote {0}/lr_find.json, {0}/lr_find.csv and {0}/lr_find.txt\n", args.config.out);
  }
  return 0;
}

}  // namespace

void register_lr_find(CLI::App& app, Action& run) {
  static LrFindArgs args;
  auto* cmd = app.add_subcommand(
      "lr-find", "learning-rate range test: sweep the rate exponentially, plot the smoothed loss, suggest a rate");
  add_config_args(cmd, args.config);
  cmd->get_option("--out")->description(
      "directory for lr_find.json (result and curve), lr_find.csv (the curve) and lr_find.txt (the plot); default: "
      "write nothing");
  const LrFinderOptions defaults;
  cmd->add_option("--steps", args.options.num_steps, "sweep length in optimizer steps")
      ->default_val(defaults.num_steps)
      ->check(CLI::Range(int64_t{2}, int64_t{100000}));
  cmd->add_option("--min-lr", args.options.min_lr, "first learning rate of the sweep")
      ->default_val(defaults.min_lr)
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-lr", args.options.max_lr, "last learning rate of the sweep")
      ->default_val(defaults.max_lr)
      ->check(CLI::PositiveNumber);
  cmd->add_option("--rule", args.options.rule, "rule behind the suggestion (docs/doctor.md compares them)")
      ->default_val(defaults.rule)
      ->check(CLI::IsMember(lr_rules()));
  cmd->add_option("--width", args.width, "plot width in characters")->default_val(64)->check(CLI::Range(16, 400));
  cmd->add_option("--height", args.height, "plot height in lines")->default_val(16)->check(CLI::Range(4, 200));
  cmd->callback([&run] { run = [] { return run_lr_find(args); }; });
}

}  // namespace traindx::cli
