#pragma once
/// Reproducibility checks that train: `ckpt resume-check` (is a run interrupted, saved and resumed in a fresh
/// process bitwise the same as the uninterrupted run?) and `determinism` (do repeated runs agree, and where do they
/// part?). Both start ordinary jobs through run_training, in this process or as fresh processes of the traindx
/// executable, and compare what the jobs wrote: checkpoints (every tensor by its bytes, the rest of the state as
/// JSON) and the run stores' scalar series (loss, lr, validation metrics, ...). See docs/checkpoints.md.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "traindx/checkpoint/checkpoint.h"
#include "traindx/checkpoint/investigate.h"
#include "traindx/core/config.h"

namespace traindx {

/// One component of the training state compared bitwise between two checkpoints.
struct ComponentComparison {
  /// model, optimizer, rng, batcher, schedule, early_stopping or monitor (training_state_components() order).
  std::string component;
  bool equal = true;
  int64_t compared = 0;                ///< tensors and JSON documents compared
  int64_t tensors = 0;                 ///< of which tensors
  std::vector<std::string> differing;  ///< tensors or JSON paths that differ ("fc1.weight/exp_avg", "position")
  std::string detail;                  ///< the largest difference in words; empty when equal
  Json to_json() const;
};

/// The component names compare_training_state() reports, in its order.
const std::vector<std::string>& training_state_components();

/// Compares every resume-relevant component of two checkpoints: model, optimizer (slots and step counts) and RNG
/// tensors by their bytes (a tensor only in one side differs); batcher position, schedule step, early-stopping and
/// monitor state by JSON value. Numbers for differing floating tensors come from compare_tensors().
std::vector<ComponentComparison> compare_training_state(const Checkpoint& reference, const Checkpoint& current);

/// The first place where two runs' scalar series differ.
struct SeriesDifference {
  std::string series;  ///< "loss", "val_accuracy", ...
  int64_t step = 0;
  std::optional<double> reference;  ///< absent when the reference run did not log this point
  std::optional<double> current;
  Json to_json() const;
};

/// Compares the scalar series of two run directories (their store.sqlite) bitwise over steps [from_step,
/// to_step]: every series either run logged, point by point. Returns the first difference by step (at one step
/// "loss" is named before the others), or nullopt when all are equal. `compared` receives the series names.
/// Throws IoError when a run directory has no readable store.
std::optional<SeriesDifference> first_series_difference(const std::string& reference_run_dir,
                                                        const std::string& current_run_dir, int64_t from_step,
                                                        int64_t to_step, std::vector<std::string>* compared = nullptr);

/// What `ckpt resume-check` runs.
struct ResumeCheckOptions {
  int64_t at = 0;     ///< N: steps before the interruption (>= 1)
  int64_t steps = 0;  ///< M: steps after it (>= 1)
  /// The traindx executable; jobs run as `<exe> train ...` in fresh processes, so the resumed run shares nothing
  /// with the process that saved. Empty: every job runs in this process (for the library's own tests; weaker,
  /// and the report says so).
  std::string exe;
  /// Where the jobs' run directories go (created; must be empty if it exists). Empty: a temporary directory,
  /// removed afterwards.
  std::string work_dir;
  /// Parts of the checkpoint the resumed jobs restore; all but to plant a fault (`--resume-skip`).
  RestoreOptions restore;
};

/// A component found to break a resume, and how.
struct ResumeCulprit {
  std::string component;
  /// "not_restored": loading the checkpoint and saving it again changes the component (a resume does not put it
  /// back); "not_saved": it round-trips, training is exact, yet it ends differently: part of its state is not in
  /// the checkpoint.
  std::string cause;
  std::string detail;
  Json to_json() const;
};

/// The outcome of resume_check().
struct ResumeCheckReport {
  int64_t at = 0, steps = 0;
  bool deterministic = false;        ///< run.deterministic of the jobs
  int64_t threads = 1;               ///< run.threads of the jobs
  bool fresh_process = true;         ///< the resumed job ran in a fresh process
  std::vector<std::string> planted;  ///< components the resumed jobs were told not to restore
  bool exact = false;                ///< final state and every series bitwise equal
  /// Everything that decides the numbers (model, optimizer, rng, batcher, schedule, early stopping, series)
  /// bitwise equal; only the monitor's state may differ.
  bool training_exact = false;
  /// Uninterrupted (reference) vs resumed (current) at step at + steps.
  std::vector<ComponentComparison> final_state;
  std::vector<std::string> series_compared;
  std::optional<SeriesDifference> series_difference;  ///< first, over steps at .. at + steps
  /// Only when not exact: uninterrupted vs interrupted at step `at` (both trained from scratch, so a difference
  /// means training itself is not deterministic) ...
  std::vector<ComponentComparison> before_save;
  /// ... and the interrupted job's checkpoint vs the same state loaded and saved again in a fresh process: what
  /// a resume fails to put back.
  std::vector<ComponentComparison> round_trip;
  std::vector<ResumeCulprit> culprits;  ///< components found to break the resume
  std::string diagnosis;                ///< in words, with the first differing step
  std::string work_dir;                 ///< empty when it was temporary and is gone
  double seconds = 0.0;
  int exit_code() const { return exact ? 0 : 1; }
  Json to_json() const;
};

/// Trains `config` for at + steps steps uninterrupted; for `at` steps and saves (as a preemption would); resumes
/// that checkpoint (in a fresh process) for `steps` more. All three use train.max_steps = at + steps (one schedule)
/// and save every `at` steps. Compares the final state and the series bitwise; when they differ, also the state at
/// `at` before the save and through a load→save round trip, and names the components that break the resume.
/// Throws UsageError when at or steps < 1 or the config cannot train at + steps steps; rethrows a job's error with
/// its kind (e.g. DataError) prefixed by which job failed.
ResumeCheckReport resume_check(const Config& config, const ResumeCheckOptions& options);

/// What `determinism` runs.
struct DeterminismOptions {
  int64_t steps = 20;    ///< K: steps per run (a checkpoint is saved after each, so keep K small)
  std::string exe;       ///< the traindx executable; empty: the fresh-process pair is skipped
  std::string work_dir;  ///< as ResumeCheckOptions::work_dir
  /// When a pair differs with run.deterministic = false, run the same pairs again with it on.
  bool try_deterministic = true;
};

/// Two runs of the same K steps and how they compare.
struct RunPairResult {
  std::string pair;           ///< same_process, fresh_process, threads
  std::string description;    ///< "run.threads 1 vs 2 (fresh processes)"
  std::string skipped;        ///< why the pair was not run; empty when it ran
  bool loss_equal = true;     ///< every step's loss bitwise equal
  bool weights_equal = true;  ///< final parameters and buffers bitwise equal
  bool equal() const { return skipped.empty() && loss_equal && weights_equal; }
  /// The first step (0-based) whose computation differed: its starting state was bitwise equal in both runs,
  /// its loss or the state after it was not.
  std::optional<int64_t> first_step;
  std::optional<double> loss_a, loss_b;  ///< the runs' losses at first_step
  /// Where replaying first_step (same state, same batch, same dropout masks, each run's settings) shows the first
  /// difference: "forward" (a layer's output), "loss", "backward" (a gradient), "optimizer" (the update), or
  /// "not_reproduced" (the replay agrees: run-to-run nondeterminism or state outside the checkpoint).
  std::string pass;
  std::string first_layer;              ///< the layer (forward: first in execution order; backward: nearest the output)
  std::string op;                       ///< its type from the model summary ("conv2d"), or the loss / optimizer name
  std::vector<LayerComparison> layers;  ///< the replay's layer-by-layer forward comparison (a = reference)
  std::string worst_tensor;             ///< the final model tensor with the largest difference
  TensorComparison final_weights;       ///< compare_tensors() of worst_tensor
  std::string message;
  Json to_json() const;
};

/// The outcome of determinism_check().
struct DeterminismReport {
  int64_t steps = 0;
  bool deterministic = false;  ///< run.deterministic as configured
  int64_t threads = 1;         ///< run.threads as configured
  std::vector<RunPairResult> pairs;
  /// When a pair differed with run.deterministic = false: the same pairs with it on, and whether every pair that
  /// differed is then equal.
  std::vector<RunPairResult> deterministic_pairs;
  std::optional<bool> deterministic_fixes;
  std::string work_dir;  ///< empty when it was temporary and is gone
  double seconds = 0.0;
  /// True when runs with the configured settings agree: the same_process and fresh_process pairs (a different
  /// thread count may legitimately reorder float sums, so the threads pair is reported, not required).
  bool reproducible() const;
  int exit_code() const { return reproducible() ? 0 : 1; }
  Json to_json() const;
};

/// Runs `config` for `steps` steps twice in this process, twice in fresh processes (needs options.exe), and with
/// run.threads = 1 and 2; compares per-step losses and final weights bitwise; where a pair parts, finds the step and
/// replays it to name the pass, layer and op (compare_layers() on the step's batch). Then, if anything differed
/// with run.deterministic = false, repeats with it on. Throws UsageError for steps < 1, and as resume_check for
/// failing jobs.
DeterminismReport determinism_check(const Config& config, const DeterminismOptions& options);

}  // namespace traindx
