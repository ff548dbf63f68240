#pragma once
/// The trainer: one loop over data, model, optimizer and schedule that callbacks (the monitor, checkpointing,
/// progress) observe. Everything it does is also available piecewise (objective.h) for users' own loops.
#include <torch/optim/optimizer.h>
#include <torch/types.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "traindx/core/config.h"
#include "traindx/data/data.h"
#include "traindx/model/model.h"
#include "traindx/store/run_store.h"
#include "traindx/train/objective.h"

namespace traindx {

/// Options of the training loop; fields mirror train.* and run.* keys.
struct TrainOptions {
  std::string loss = "auto";
  OptimizerOptions optimizer;
  ScheduleOptions schedule;
  double l1 = 0.0, l2 = 0.0;
  int64_t batch_size = 64;
  int64_t epochs = 1;
  int64_t max_steps = 0;  ///< 0 = no limit
  double clip_grad_norm = 0.0, clip_grad_value = 0.0;
  double huber_delta = 1.0;
  int64_t eval_every = 0;  ///< 0 = at each epoch end
  int64_t eval_examples = 0;  ///< mid-run evaluations on N evenly spaced validation examples (0 = all)
  std::string early_stopping_metric;  ///< empty = off
  int64_t early_stopping_patience = 3;
  double early_stopping_min_delta = 0.0;
  int64_t topk = 5;
  int64_t log_every = 50;
  uint64_t seed = 0;
  std::string device = "cpu";
  static TrainOptions from_config(const Config& config);
};

/// Early stopping on a validation metric. Lower is better for metrics whose name contains "loss", "mse" or "mae";
/// higher otherwise. State is plain numbers so checkpoints can carry it.
struct EarlyStopping {
  std::string metric;
  int64_t patience = 3;
  double min_delta = 0.0;
  std::optional<double> best;
  int64_t best_step = -1;
  int64_t bad_evaluations = 0;
  bool lower_is_better() const;
  /// Records an evaluation; returns true when training should stop.
  bool update(double value, int64_t step);
  Json to_json() const;
  void load_json(const Json& doc);
};

/// What callbacks see at each step. Tensors are the step's own (do not keep them beyond the call).
struct StepContext {
  int64_t step = 0;        ///< 0-based index of this optimizer step
  int64_t epoch = 0;
  double lr = 0.0;         ///< learning rate used by this step
  double loss = 0.0;       ///< the batch's data loss (without L1/L2 penalties)
  torch::Tensor inputs, targets, outputs;
  Model* model = nullptr;
  torch::optim::Optimizer* optimizer = nullptr;
};

/// Observes training. All methods have empty defaults; override what you need. A callback asks to stop by
/// returning a reason from stop_requested(); the trainer then ends the run with status "stopped".
class TrainerCallback {
 public:
  virtual ~TrainerCallback() = default;
  virtual void on_train_begin(Model& model, torch::optim::Optimizer& optimizer) {}
  /// Return true to receive on_activation() for every layer during this step's forward pass.
  virtual bool wants_activations(int64_t step) { return false; }
  virtual void on_activation(int64_t step, const std::string& layer, const torch::Tensor& output) {}
  /// After backward, before clipping and the optimizer step: gradients are available.
  virtual void on_after_backward(const StepContext& ctx) {}
  /// After the optimizer step (trainer.step() already counts this step).
  virtual void on_step_end(const StepContext& ctx) {}
  /// At the very end of a loop iteration, after any evaluation and early-stopping update: the state is then
  /// exactly what resuming at step `steps_done` needs (checkpoints are written here).
  virtual void on_iteration_end(int64_t steps_done) {}
  /// After an evaluation on the validation split; metrics as MetricAccumulator::result() with "val_" prefixes.
  virtual void on_evaluation(int64_t step, const Json& metrics) {}
  virtual void on_train_end(int64_t steps, const std::string& status) {}
  virtual std::optional<std::string> stop_requested() { return std::nullopt; }
};

/// The result of fit().
struct TrainResult {
  std::string status;       ///< completed, stopped (early stopping or a callback), failed
  std::string stop_reason;  ///< why, when stopped
  int64_t steps = 0;
  int64_t epochs_completed = 0;
  double wall_seconds = 0.0;
  double data_seconds = 0.0;     ///< time spent assembling batches
  double compute_seconds = 0.0;  ///< forward, backward, optimizer
  Json train_metrics, val_metrics, test_metrics;  ///< final evaluations
  Json summary() const;
};

/// Runs training. Construct from a Config (builds data, model and optimizer) or from parts you built yourself.
class Trainer {
 public:
  /// Everything from a validated config: prepares data, seeds, builds the model, optimizer and schedule.
  explicit Trainer(const Config& config);
  /// From parts: data already prepared, model already built.
  Trainer(TrainOptions options, PreparedData data, std::shared_ptr<Model> model);

  void add_callback(std::shared_ptr<TrainerCallback> callback);
  /// Logs per-step scalars and evaluations to `store` under `run_id`.
  void set_store(RunStore* store, std::string run_id);
  /// Progress: called after every step (the sink throttles) and once more with final = true.
  struct Progress {
    int64_t step = 0, total_steps = 0, epoch = 0;
    double loss = 0.0, lr = 0.0, steps_per_second = 0.0, eta_seconds = 0.0;
    bool final = false;
  };
  using ProgressSink = std::function<void(const Progress&)>;
  void set_progress(ProgressSink sink);

  /// Trains until epochs or max_steps are done, early stopping fires, or a callback asks to stop. Non-finite loss
  /// does not throw: it is a finding for the monitor; without a monitor the trainer stops with status "failed".
  TrainResult fit();

  /// Evaluates on examples `x`/`y` in eval mode without gradients (restores the previous mode).
  Json evaluate(const torch::Tensor& x, const torch::Tensor& y);

  /// One optimizer step on the given batch; the building block of fit(), usable for custom schedules.
  StepContext train_step(const torch::Tensor& x, const torch::Tensor& y);

  Model& model() { return *model_; }
  std::shared_ptr<Model> model_ptr() { return model_; }
  torch::optim::Optimizer& optimizer() { return *optimizer_; }
  const PreparedData& data() const { return data_; }
  const TrainOptions& options() const { return options_; }
  LossKind loss_kind() const { return loss_; }
  const LrSchedule& schedule() const { return *schedule_; }
  ShuffleBatcher& batcher() { return *batcher_; }
  EarlyStopping& early_stopping() { return early_stopping_; }
  /// Steps taken so far (the next step's index); settable for resuming.
  int64_t step() const { return step_; }
  void set_step(int64_t step) { step_ = step; }
  /// Total steps fit() will run (epochs x batches, capped by max_steps).
  int64_t total_steps() const;

 private:
  void init_common();
  bool evaluate_and_maybe_stop(int64_t step);
  void log_scalars(int64_t step, const Scalars& values);

  TrainOptions options_;
  PreparedData data_;
  std::shared_ptr<Model> model_;
  torch::Device device_{torch::kCPU};
  torch::Dtype dtype_ = torch::kFloat32;
  LossKind loss_ = LossKind::CrossEntropy;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  std::unique_ptr<LrSchedule> schedule_;
  std::unique_ptr<ShuffleBatcher> batcher_;
  EarlyStopping early_stopping_;
  std::vector<std::shared_ptr<TrainerCallback>> callbacks_;
  RunStore* store_ = nullptr;
  std::string run_id_;
  ProgressSink progress_;
  int64_t step_ = 0;
  Json last_val_metrics_;
};

/// Parses run.device ("cpu", "cuda", "cuda:1"). Throws ConfigError when CUDA is asked for but unavailable.
torch::Device parse_device(const std::string& name);

}  // namespace traindx
