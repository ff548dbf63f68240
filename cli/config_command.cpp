#include <iostream>

#include "commands.h"
#include "traindx/core/environment.h"

namespace traindx::cli {

void register_config(CLI::App& app, Action& run) {
  auto* cmd = app.add_subcommand("config", "show configuration keys and effective configurations");
  cmd->require_subcommand(1);

  auto* docs = cmd->add_subcommand("docs", "print the configuration reference (docs/config.md)");
  docs->callback([&run] {
    run = [] {
      std::cout << config_reference_markdown();
      return 0;
    };
  });

  static ConfigArgs show_args;
  auto* show = cmd->add_subcommand("show", "print the effective configuration after defaults and --set");
  add_config_args(show, show_args, /*config_required=*/false);
  show->callback([&run] {
    run = [] {
      const Config config = load_config(show_args);
      if (show_args.json)
        std::cout << config.to_json().dump(2) << "\n";
      else
        std::cout << config.to_toml();
      return 0;
    };
  });
}

void register_env(CLI::App& app, Action& run) {
  auto* cmd = app.add_subcommand("env", "print the environment fingerprint (versions, CPU, BLAS, threads)");
  cmd->callback([&run] {
    run = [] {
      std::cout << environment_fingerprint().dump(2) << "\n";
      return 0;
    };
  });
}

}  // namespace traindx::cli
