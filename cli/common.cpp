#include <unistd.h>

#include "commands.h"

namespace traindx::cli {

void add_config_args(CLI::App* cmd, ConfigArgs& args, bool config_required) {
  auto* opt = cmd->add_option("CONFIG", args.config_path, "run description (TOML); see docs/config.md");
  if (config_required) opt->required();
  cmd->add_option("--set", args.sets, "override a key: --set train.lr=0.1 (TOML value syntax; repeatable)")
      ->take_all()
      ->allow_extra_args(false);
  cmd->add_option("--out", args.out, "run directory (default: <run.out_root>/<run.name>-<time>)");
  cmd->add_flag("--json", args.json, "print the result as JSON on stdout");
  cmd->add_flag("--quiet,-q", args.quiet, "print nothing but errors and the final line");
}

Config load_config(const ConfigArgs& args) {
  Config config = args.config_path.empty() ? Config() : Config::from_file(args.config_path);
  for (const auto& s : args.sets) config.set(s);
  return config;
}

bool stdout_is_terminal() { return isatty(STDOUT_FILENO) == 1; }

}  // namespace traindx::cli
