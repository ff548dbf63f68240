// traindx command-line entry point: dispatches to a subcommand and maps outcomes to exit codes:
// 0 ran and found nothing critical, 1 ran and found a problem, 2 bad usage or input, 3 internal error.
#include <c10/util/Exception.h>

#include <iostream>

#include "commands.h"
#include "traindx/core/environment.h"
#include "traindx/core/error.h"

int main(int argc, char** argv) {
  traindx::keep_freed_memory_for_reuse();
  CLI::App app{"traindx: find out why training goes wrong and why a reloaded checkpoint disagrees", "traindx"};
  app.set_version_flag("--version", std::string("traindx ") + traindx::traindx_version() + " (" +
                                        traindx::traindx_git_commit() + ")");
  app.require_subcommand(1);
  traindx::cli::Action run;

  traindx::cli::register_doctor(app, run);
  traindx::cli::register_train(app, run);
  traindx::cli::register_runs(app, run);
  traindx::cli::register_config(app, run);
  traindx::cli::register_env(app, run);
  traindx::cli::register_ckpt(app, run);
  traindx::cli::register_determinism(app, run);
  traindx::cli::register_lr_find(app, run);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  try {
    return run();
  } catch (const traindx::Error& e) {
    std::cerr << "traindx: " << traindx::error_kind_name(e.kind()) << ": " << e.what() << "\n";
    return e.kind() == traindx::ErrorKind::Internal ? 3 : 2;
  } catch (const c10::Error& e) {
    // LibTorch rejects an operation mostly when a model and its inputs do not fit; its first line says why.
    std::string msg = e.what_without_backtrace();
    std::cerr << "traindx: LibTorch error: " << msg.substr(0, msg.find('\n')) << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "traindx: internal error: " << e.what() << "\n";
    return 3;
  }
}
