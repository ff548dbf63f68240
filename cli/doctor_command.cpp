#include <fmt/format.h>

#include <iostream>

#include "commands.h"
#include "traindx/doctor/doctor.h"
#include "traindx/report/report.h"

namespace traindx::cli {
namespace {

struct DoctorArgs {
  ConfigArgs config;
  bool quick = false;
  bool ladder = false;
};

int run_doctor_command(const DoctorArgs& args) {
  Config config = args.config.config_path.empty() ? default_doctor_config() : Config::from_file(args.config.config_path);
  for (const auto& s : args.config.sets) config.set(s);
  DoctorOptions options;
  options.quick = args.quick;
  options.ladder = args.ladder;
  options.out = args.config.out;
  const bool chatty = !args.config.quiet && !args.config.json;
  if (chatty) {
    options.on_check = [](const std::string&, const std::string& title, const std::string& status,
                          const std::string& summary) {
      if (status == "running") {
        fmt::print(stderr, "  {:<42}", title + " ...");
      } else {
        fmt::print(stderr, "{:<7} {}\n", status, summary);
      }
      std::fflush(stderr);
    };
    fmt::print(stderr, "traindx doctor{}: {}\n", args.quick ? " --quick" : "",
               args.config.config_path.empty() ? "built-in Fashion-MNIST CNN" : args.config.config_path);
  }
  const DoctorResult result = run_doctor(config, options);
  if (args.config.json) {
    std::cout << result.report.dump(2) << "\n";
  } else {
    std::cout << render_console(result.report, stdout_is_terminal());
    fmt::print("report: {}/report.html (and report.json) in {:.1f} s\n", result.dir,
               result.report.value("seconds", 0.0));
  }
  return result.exit_code();
}

}  // namespace

void register_doctor(CLI::App& app, Action& run) {
  static DoctorArgs args;
  auto* cmd = app.add_subcommand(
      "doctor", "is this model learning, and if not, why? A fail-fast battery and a report (default: Fashion-MNIST CNN)");
  add_config_args(cmd, args.config, /*config_required=*/false);
  cmd->add_flag("--quick", args.quick, "smaller budgets (about 20 s)");
  cmd->add_flag("--ladder", args.ladder, "also train narrower-to-wider variants and report where the score stops improving");
  cmd->callback([&run] { run = [] { return run_doctor_command(args); }; });
}

}  // namespace traindx::cli
