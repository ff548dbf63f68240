// `ckpt inspect`, `ckpt diff`, `ckpt import`, `ckpt export`: flags in, library call, rendering out
// (traindx/checkpoint/tools.h). Errors propagate to main, which maps traindx::Error to exit 2.
#include <fmt/format.h>

#include <iostream>

#include "commands.h"
#include "traindx/checkpoint/tools.h"

namespace traindx::cli {
namespace {

struct InspectArgs {
  std::string path;
  bool json = false;
};

struct DiffArgs {
  std::string a, b;
  bool json = false;
  bool all = false;
};

struct ImportArgs {
  std::string weights;
  ConfigArgs config;
};

struct ExportArgs {
  std::string path;
  std::string out;
  bool json = false;
};

int run_inspect(const InspectArgs& args) {
  const Json doc = inspect_checkpoint(args.path);
  if (args.json)
    std::cout << doc.dump(2) << "\n";
  else
    std::cout << render_inspection(doc);
  return 0;
}

int run_diff(const DiffArgs& args) {
  const CheckpointDiff diff = diff_checkpoints(args.a, args.b);
  if (args.json)
    std::cout << diff.to_json().dump(2) << "\n";
  else
    std::cout << render_diff(diff, args.all);
  return diff.exit_code();
}

int run_import(const ImportArgs& args) {
  const ImportReport report = import_state_dict(args.weights, load_config(args.config), args.config.out);
  if (args.config.json) {
    std::cout << report.to_json().dump(2) << "\n";
    return 0;
  }
  fmt::print("imported {} tensors from {} ({}) into {}\n", report.tensors, report.source, report.format,
             report.checkpoint);
  if (!report.skipped.empty())
    fmt::print("skipped non-tensor entries: {}\n", fmt::join(report.skipped, ", "));
  if (!report.keys.retyped.empty())
    fmt::print("converted to the model's dtype: {}\n", fmt::join(report.keys.retyped, "; "));
  fmt::print("check it with: traindx ckpt verify {}\n", report.checkpoint);
  return 0;
}

int run_export(const ExportArgs& args) {
  const ExportReport report = export_safetensors(args.path, args.out);
  if (args.json)
    std::cout << report.to_json().dump(2) << "\n";
  else
    fmt::print("wrote {} model tensors of {} to {} ({} bytes)\n", report.tensors, report.checkpoint, report.path,
               report.bytes);
  return 0;
}

}  // namespace

void register_ckpt_tools(CLI::App& ckpt, Action& run) {
  static InspectArgs inspect_args;
  auto* inspect = ckpt.add_subcommand(
      "inspect", "verify a checkpoint's hashes and print what it holds: step, model, optimizer, schedule, data, "
                 "environment and every tensor");
  inspect->add_option("PATH", inspect_args.path, "checkpoint directory, checkpoint root (latest) or run directory")
      ->required();
  inspect->add_flag("--json", inspect_args.json, "print JSON");
  inspect->callback([&run] { run = [] { return run_inspect(inspect_args); }; });

  static DiffArgs diff_args;
  auto* diff = ckpt.add_subcommand(
      "diff", "compare two checkpoints tensor by tensor, plus config, manifest and environment; exit 0 when "
              "identical, 1 when they differ");
  diff->add_option("A", diff_args.a, "reference checkpoint (relative errors divide by A)")->required();
  diff->add_option("B", diff_args.b, "checkpoint compared against A")->required();
  diff->add_flag("--json", diff_args.json, "print JSON");
  diff->add_flag("--all", diff_args.all, "list identical tensors too");
  diff->callback([&run] { run = [] { return run_diff(diff_args); }; });

  static ImportArgs import_args;
  auto* import = ckpt.add_subcommand(
      "import", "turn a PyTorch state_dict (torch.save) or a .safetensors file into a traindx checkpoint for the "
                "model a config describes");
  import->add_option("STATE_DICT", import_args.weights, "torch.save(model.state_dict()) file or .safetensors")
      ->required();
  import->add_option("--config", import_args.config.config_path, "run description (TOML) whose model fits the file")
      ->required();
  import->add_option("--set", import_args.config.sets, "override a config key (repeatable)")
      ->take_all()
      ->allow_extra_args(false);
  import->add_option("--out", import_args.config.out,
                     "checkpoint root to create (default: <run.out_root>/<file stem>-import)");
  import->add_flag("--json", import_args.config.json, "print JSON");
  import->callback([&run] { run = [] { return run_import(import_args); }; });

  static ExportArgs export_args;
  auto* exp = ckpt.add_subcommand("export", "write a checkpoint's model tensors as one plain .safetensors file");
  exp->add_option("PATH", export_args.path, "checkpoint directory, checkpoint root (latest) or run directory")
      ->required();
  exp->add_option("--out", export_args.out, "the .safetensors file to write")->required();
  exp->add_flag("--json", export_args.json, "print JSON");
  exp->callback([&run] { run = [] { return run_export(export_args); }; });
}

}  // namespace traindx::cli
