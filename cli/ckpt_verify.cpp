#include <fmt/format.h>

#include <iostream>

#include "commands.h"
#include "traindx/checkpoint/investigate.h"

namespace traindx::cli {
namespace {

struct VerifyArgs {
  std::string path;
  int64_t threads = 0;
  bool train_mode = false;
  std::vector<std::string> sets;
  std::string weights;
  bool json = false;
  bool no_localise = false;
};

void print_report(const VerifyReport& r) {
  const auto& o = r.outputs;
  fmt::print("checkpoint {}\n", r.checkpoint);
  if (r.verdict == "identical") {
    fmt::print("identical: the golden probe ({} values) is reproduced bitwise in {:.2f} s\n", o.numel, r.seconds);
  } else {
    fmt::print("{}: max abs error {:.3g}, max rel error {:.3g}, max ULPs {}, {} of {} values differ, cosine {:.9f}\n",
               r.verdict == "mismatch" ? "MISMATCH" : "within tolerance", o.max_abs, o.max_rel, o.max_ulps, o.differing,
               o.numel, o.cosine);
    fmt::print("tolerance: {}\n", r.tolerance.derivation);
  }
  if (r.hypotheses.empty()) return;
  fmt::print("\nwhat explains it (each hypothesis tested):\n");
  for (const auto& h : r.hypotheses) {
    fmt::print("  [{}] {}: {}\n", h.holds ? "HOLDS" : "no", h.id, h.message);
    if (h.holds) fmt::print("         fix: {}\n", h.fix);
  }
  if (!r.layers.empty()) {
    fmt::print("\nlayer by layer (reference = checkpoint replayed as saved):\n");
    fmt::print("  {:<20} {:>5} {:>11} {:>11} {:>12} {:>10}  {}\n", "layer", "depth", "max abs", "max rel", "cosine",
               "tolerance", "");
    for (const auto& row : r.layers)
      fmt::print("  {:<20} {:>5} {:>11.3g} {:>11.3g} {:>12.9f} {:>10.2g}  {}\n", row.layer, row.depth,
                 row.comparison.max_abs, row.comparison.max_rel, row.comparison.cosine, row.tolerance.value,
                 row.comparison.bitwise_equal ? "identical" : (row.within ? "within" : "OUT"));
  }
  if (!r.first_divergent_layer.empty())
    fmt::print("\nfirst layer out of tolerance: {}\n", r.first_divergent_layer);
}

int run_verify(const VerifyArgs& args) {
  VerifyOptions options;
  if (args.threads > 0) options.threads = args.threads;
  options.train_mode = args.train_mode;
  options.sets = args.sets;
  options.weights = args.weights;
  options.localise = !args.no_localise;
  const VerifyReport report = verify_checkpoint(args.path, options);
  if (args.json)
    std::cout << report.to_json().dump(2) << "\n";
  else
    print_report(report);
  return report.exit_code();
}

}  // namespace

void register_ckpt_verify(CLI::App& ckpt, Action& run) {
  static VerifyArgs args;
  auto* cmd = ckpt.add_subcommand(
      "verify", "rebuild the model, replay the golden probe in eval mode and compare; on a difference, say why");
  cmd->add_option("PATH", args.path, "checkpoint directory, checkpoint root, or run directory")->required();
  cmd->add_option("--threads", args.threads, "intra-op threads for the replay (default: as in training)")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--train-mode", args.train_mode, "replay with the model in train mode (a forgotten eval())");
  cmd->add_option("--set", args.sets, "change a config key for the replay, e.g. data.scaler=minmax (repeatable)");
  cmd->add_option("--weights", args.weights, "replay with these weights (.safetensors or a torch.save state_dict)");
  cmd->add_flag("--json", args.json, "print the report as JSON");
  cmd->add_flag("--no-localise", args.no_localise, "skip the layer-by-layer comparison");
  cmd->callback([&run] { run = [] { return run_verify(args); }; });
}

}  // namespace traindx::cli
