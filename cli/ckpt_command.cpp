#include "commands.h"

namespace traindx::cli {

void register_ckpt(CLI::App& app, Action& run) {
  auto* cmd = app.add_subcommand("ckpt", "inspect, verify, compare and resume-check checkpoints");
  cmd->require_subcommand(1);
  register_ckpt_verify(*cmd, run);
  register_ckpt_tools(*cmd, run);
  register_ckpt_repro(*cmd, run);
}

}  // namespace traindx::cli
