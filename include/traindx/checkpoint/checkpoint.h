#pragma once
/// Reproducible checkpoints: the full training state (parameters and buffers, every optimizer slot, schedule
/// position, RNG states, batcher position, early-stopping and monitor state, the fitted preprocessing pipeline, the
/// effective config), an environment fingerprint, a golden probe (fixed raw examples and the eval-mode outputs the
/// model gave in the training process), and a hash per tensor plus one for the manifest.
///
/// Layout of one checkpoint directory (docs/checkpoints.md):
///   manifest.json          everything that is not a tensor, with every tensor's hash; "manifest_hash" last
///   model.safetensors      parameters and buffers under their model names
///   optimizer.safetensors  "<parameter>/<slot>" (momentum_buffer, exp_avg, exp_avg_sq, ...)
///   rng.safetensors        generator states ("cpu", "cuda:N")
///   probe.safetensors      "inputs" (preprocessed), "outputs" (golden, eval mode), "raw_images" for image data
/// A directory is written under a temporary name, every file fsynced, then renamed into place, and the root's
/// `latest` file is replaced atomically afterwards: a crash at any moment leaves `latest` naming a complete
/// checkpoint.
#include <torch/types.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "traindx/core/config.h"
#include "traindx/core/rng.h"  // cpu_rng_state(): the RNG states a checkpoint holds
#include "traindx/data/data.h"
#include "traindx/model/model.h"
#include "traindx/train/trainer.h"

namespace traindx {

/// Options of checkpointing; fields mirror checkpoint.* keys.
struct CheckpointOptions {
  int64_t every_steps = 0;  ///< 0: only at the end (when at_end)
  int64_t keep_last = 3;
  bool at_end = true;
  std::string keep_best_metric;  ///< e.g. "val_loss": the best checkpoint by it is kept besides the last K
  int64_t probe_size = 64;       ///< examples in the golden probe
  bool background = true;        ///< CheckpointCallback saves through a CheckpointWriter
  static CheckpointOptions from_config(const Config& config);
};

/// Name of a checkpoint directory for a step ("step-00000500").
std::string checkpoint_dir_name(int64_t step);

/// Writes a checkpoint of `trainer` under `root` (created if needed) and points `latest` at it. `config` is the
/// effective config the trainer was built from; `extra` holds the JSON state of other components (e.g.
/// {"monitor": ...}). `metrics` (e.g. the last validation metrics) decide keep-best retention.
/// Returns the checkpoint directory. Throws IoError / CheckpointError naming the path.
std::string save_checkpoint(const std::string& root, Trainer& trainer, const Config& config,
                            const std::map<std::string, Json>& extra = {}, const Json& metrics = Json::object(),
                            const CheckpointOptions& options = {});

/// Saves checkpoints without holding training up for the disk. save() copies the training state into buffers it
/// keeps between saves (hashing each tensor while it is in cache) and returns; a background thread runs the golden
/// probe through a copy of the model (Model::clone), writes and syncs the files, renames the directory into place
/// and points `latest` at it, exactly as save_checkpoint does, so a crash at any moment still leaves `latest` naming
/// a complete checkpoint. One save is in flight at a time: save() first waits for the previous one, and a failed
/// background save is rethrown by the next save() or wait(). Costs one more copy of parameters, buffers and
/// optimizer slots in memory. A model whose clone() returns null is saved in the calling thread instead.
class CheckpointWriter {
 public:
  CheckpointWriter(std::string root, CheckpointOptions options);
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;
  /// Waits for the save in flight; prints (does not throw) its failure.
  ~CheckpointWriter();
  /// Starts a checkpoint of `trainer` now (arguments as save_checkpoint's). Returns the directory it will have.
  std::string save(Trainer& trainer, const Config& config, const std::map<std::string, Json>& extra = {},
                   const Json& metrics = Json::object());
  /// Waits until the save in flight is complete and durable; returns the last checkpoint written ("" if none).
  /// Rethrows the failure of a background save.
  std::string wait();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

/// Resolves a checkpoint path: a checkpoint directory, or a root holding `latest`, or a run directory holding
/// checkpoints/latest. Throws CheckpointError naming what was looked for.
std::string resolve_checkpoint(const std::string& path);

/// A checkpoint read back and verified against its hashes.
struct Checkpoint {
  std::string dir;
  Json manifest;
  std::vector<NamedTensor> model;      ///< parameters and buffers as saved
  std::vector<NamedTensor> optimizer;  ///< "<parameter>/<slot>"
  std::vector<NamedTensor> rng;
  std::vector<NamedTensor> probe;      ///< "inputs", "outputs", maybe "raw_images"
  Config config() const;               ///< the effective config stored in the manifest
  Pipeline pipeline() const;
  int64_t step() const;
  torch::Tensor probe_tensor(const std::string& name) const;  ///< undefined when absent
};

/// Reads a checkpoint, checks the manifest hash and every tensor hash. Never executes code from the files.
/// Throws CheckpointError naming the file and tensor on corruption, truncation, a hash mismatch or a path
/// outside the checkpoint directory. `on_manifest`, when given, is called with the checkpoint's dir and checked
/// manifest (no tensors yet) before the tensor files are read in this thread, to start work that needs only the
/// manifest (e.g. building the model) alongside the reading.
Checkpoint load_checkpoint(const std::string& path,
                           const std::function<void(const Checkpoint&)>& on_manifest = {});

/// How tensors of a checkpoint were matched to a model.
struct KeyReport {
  std::vector<std::string> missing;     ///< in the model, not in the checkpoint
  std::vector<std::string> unexpected;  ///< in the checkpoint, not in the model
  std::vector<std::string> reshaped;    ///< in both with different shapes ("name: [a] vs [b]")
  std::vector<std::string> retyped;     ///< in both with different dtypes
  bool clean() const { return missing.empty() && unexpected.empty() && reshaped.empty() && retyped.empty(); }
  Json to_json() const;
};

/// Copies checkpoint tensors into the model's parameters and buffers by name (converting dtype when the model's
/// differs). With strict, any mismatch throws CheckpointError listing it; otherwise matching tensors are loaded
/// and the report says what was not.
KeyReport load_model_tensors(Model& model, const std::vector<NamedTensor>& tensors, bool strict = true);

/// Which parts of a checkpoint restore_trainer() puts back. A real resume restores all of them; switching one off
/// plants a known fault, so that `ckpt resume-check` can be shown to name the component that breaks a resume
/// (`traindx train --resume-skip COMPONENT`, a hidden flag for its tests).
struct RestoreOptions {
  bool model = true;
  bool optimizer = true;
  bool rng = true;
  bool batcher = true;
  bool early_stopping = true;
  /// Switches off the component named "model", "optimizer", "rng", "batcher" or "early_stopping".
  /// Throws UsageError naming the allowed names.
  RestoreOptions& skip(const std::string& component);
  /// The names skip() accepts, in that order.
  static const std::vector<std::string>& component_names();
  /// The components switched off (empty for a real resume).
  std::vector<std::string> skipped() const;
};

/// Restores everything a checkpoint holds into a trainer built from the same config: model, optimizer slots,
/// schedule position (step), RNG states, batcher position, early stopping (less what `options` switches off).
/// Returns the `extra` JSON states for other components (e.g. "monitor"). Throws CheckpointError on any mismatch.
std::map<std::string, Json> restore_trainer(Trainer& trainer, const Checkpoint& checkpoint,
                                            const RestoreOptions& options = {});

/// A raw table as JSON (the golden probe of tabular data) and back; NaN cells become null.
Json table_to_json(const Table& table);
Table table_from_json(const Json& doc);


/// The optimizer's per-parameter state as named tensors "<parameter>/<slot>" plus scalar slots (step counts) in
/// `scalars`; parameter names from `named_parameters` (the optimizer's keys are tensor addresses).
std::vector<NamedTensor> optimizer_state_tensors(torch::optim::Optimizer& optimizer,
                                                 const std::vector<NamedTensor>& named_parameters, Json& scalars);
/// Inverse of optimizer_state_tensors for the same optimizer type. Throws CheckpointError on unknown slots.
void load_optimizer_state(torch::optim::Optimizer& optimizer, const std::vector<NamedTensor>& named_parameters,
                          const std::vector<NamedTensor>& tensors, const Json& scalars);

/// Saves checkpoints from inside Trainer::fit(): every `every_steps`, at the end, with retention. `extra_state`
/// is called at save time for other components' JSON state. With options.background, saves during training go
/// through a CheckpointWriter; the end of training waits until the last one is durable.
class CheckpointCallback : public TrainerCallback {
 public:
  CheckpointCallback(std::string root, Trainer& trainer, Config config, CheckpointOptions options,
                     std::function<std::map<std::string, Json>()> extra_state = {});
  ~CheckpointCallback() override;
  void on_step_end(const StepContext& ctx) override;
  void on_iteration_end(int64_t steps_done) override;
  void on_evaluation(int64_t step, const Json& metrics) override;
  void on_train_end(int64_t steps, const std::string& status) override;
  /// Saves now (e.g. before a deliberate stop) and waits until the checkpoint is durable. Returns the directory.
  std::string save_now();
  /// The last checkpoint known to be complete (a background save in flight is not counted until waited for).
  const std::string& last_saved() const { return last_saved_; }

 private:
  void save_in_background();

  std::string root_;
  Trainer& trainer_;
  Config config_;
  CheckpointOptions options_;
  std::function<std::map<std::string, Json>()> extra_state_;
  Json last_metrics_ = Json::object();
  std::string last_saved_;
  int64_t last_saved_step_ = -1;
  std::unique_ptr<CheckpointWriter> writer_;  // null unless options.background
};

}  // namespace traindx
