#pragma once
// The CLI is a thin shell: each command parses flags with CLI11, calls the library, and renders the result.
#include <CLI/CLI.hpp>

#include <string>
#include <vector>

#include "traindx/core/config.h"

namespace traindx::cli {

/// Flags shared by every command that takes a config: CONFIG, --set, --out, --json, --quiet.
struct ConfigArgs {
  std::string config_path;
  std::vector<std::string> sets;
  std::string out;
  bool json = false;
  bool quiet = false;
};

/// Declares the shared flags on `cmd`; `config_required` makes CONFIG positional-required.
void add_config_args(CLI::App* cmd, ConfigArgs& args, bool config_required = true);

/// Loads CONFIG (or defaults when empty) and applies every --set in order.
Config load_config(const ConfigArgs& args);

/// Each register_* adds a subcommand and sets `run` to its action; the action returns the exit code.
using Action = std::function<int()>;
void register_train(CLI::App& app, Action& run);
void register_runs(CLI::App& app, Action& run);
void register_config(CLI::App& app, Action& run);
void register_env(CLI::App& app, Action& run);
void register_ckpt(CLI::App& app, Action& run);
/// `ckpt verify` (cli/ckpt_verify.cpp).
void register_ckpt_verify(CLI::App& ckpt, Action& run);
/// `ckpt inspect`, `ckpt diff`, `ckpt import`, `ckpt export` (cli/ckpt_tools.cpp).
void register_ckpt_tools(CLI::App& ckpt, Action& run);
/// `ckpt resume-check` (cli/repro_command.cpp).
void register_ckpt_repro(CLI::App& ckpt, Action& run);
/// `doctor` (cli/doctor_command.cpp).
void register_doctor(CLI::App& app, Action& run);
/// `determinism` (cli/repro_command.cpp).
void register_determinism(CLI::App& app, Action& run);
/// `lr-find` (cli/lr_find_command.cpp).
void register_lr_find(CLI::App& app, Action& run);

/// True when stdout is a terminal (progress bars, colours).
bool stdout_is_terminal();

}  // namespace traindx::cli
