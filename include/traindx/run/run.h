#pragma once
/// A training job end to end, as `traindx train` runs it: run directory, effective config, run store, trainer,
/// monitor, checkpoints, resume, summary.json and findings.json. The CLI, the doctor and the reproducibility checks
/// all start runs through this one function.
#include <functional>
#include <optional>
#include <string>

#include "traindx/checkpoint/checkpoint.h"
#include "traindx/core/config.h"
#include "traindx/monitor/finding.h"
#include "traindx/train/trainer.h"

namespace traindx {

/// How to run a job beyond what its config says.
struct RunRequest {
  std::string out;              ///< run directory; empty: <run.out_root>/<run.name>-<time>
  std::string resume;           ///< checkpoint (or run directory) to resume from; empty: start fresh
  /// Stop after this many steps and checkpoint, as if preempted (0: off). A resume at or past this step trains
  /// nothing and re-saves what it loaded: a load→save round trip that `ckpt resume-check` compares.
  int64_t stop_after = 0;
  RestoreOptions restore;       ///< parts of the checkpoint a resume restores (all, except to plant a fault)
  bool quiet = false;           ///< no progress, no findings on stderr
  bool terminal = false;        ///< progress as a redrawn bar
  /// Called once the trainer is built, before training (e.g. to print the data and model summary).
  std::function<void(Trainer&, const std::string& run_dir)> on_ready;
};

/// What a finished job produced.
struct RunOutcome {
  std::string run_dir;
  std::string run_id;
  TrainResult result;
  FindingSet findings;
  Json summary;                 ///< as written to summary.json
  std::string last_checkpoint;  ///< empty when none was written
  /// 0: nothing critical; 1: the run failed (non-finite loss) or a critical finding appeared.
  int exit_code() const;
};

/// Runs one job. Throws Error subclasses for bad input (config, data, model, checkpoint); records the run as
/// "failed" in its store before rethrowing.
RunOutcome run_training(const Config& config, const RunRequest& request);

}  // namespace traindx
