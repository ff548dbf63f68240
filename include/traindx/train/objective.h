#pragma once
/// The pieces a training step is made of: loss functions, optimizers, learning-rate schedules and metrics.
/// Each works inside a user's own LibTorch loop as well as inside traindx::Trainer.
#include <torch/optim/optimizer.h>
#include <torch/types.h>

#include <memory>
#include <string>
#include <vector>

#include "traindx/core/config.h"
#include "traindx/data/data.h"

namespace traindx {

// ---- losses --------------------------------------------------------------------------------------------------

enum class LossKind { CrossEntropy, Nll, Mse, Huber, BceWithLogits };

/// Resolves train.loss ("auto" picks cross_entropy for classification and mse for regression).
/// Throws ConfigError on an unknown name.
LossKind resolve_loss(const std::string& name, Task task);
const char* loss_name(LossKind kind);

/// Mean loss of a batch. Classification losses take logits [B, C] (log-probabilities for nll) and int64 targets
/// [B]; bce_with_logits takes [B] or [B, 1] logits with binary targets, or [B, C] with one-hot of the targets;
/// regression losses take [B] or [B, 1] outputs. Throws DataError naming the shapes when they cannot match.
torch::Tensor compute_loss(LossKind kind, const torch::Tensor& output, const torch::Tensor& target,
                           double huber_delta = 1.0);

// ---- optimizers ----------------------------------------------------------------------------------------------

/// Options of the optimizer; fields mirror train.* keys.
struct OptimizerOptions {
  std::string name = "sgd";  ///< sgd, adam, adamw, rmsprop, adagrad
  double lr = 0.01;
  double momentum = 0.0;
  bool nesterov = false;
  double weight_decay = 0.0;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, alpha = 0.99;
  static OptimizerOptions from_config(const Config& config);
};

/// Creates a LibTorch optimizer over `parameters`. Throws ConfigError for an unknown name or invalid combination
/// (nesterov without momentum).
std::unique_ptr<torch::optim::Optimizer> make_optimizer(const OptimizerOptions& options,
                                                        const std::vector<torch::Tensor>& parameters);

/// Sets the learning rate of every parameter group (works for all five optimizers).
void set_learning_rate(torch::optim::Optimizer& optimizer, double lr);
/// The learning rate of the first parameter group.
double get_learning_rate(const torch::optim::Optimizer& optimizer);

// ---- schedules -----------------------------------------------------------------------------------------------

/// Options of the learning-rate schedule; fields mirror train.* keys.
struct ScheduleOptions {
  std::string name = "constant";  ///< constant, step, exponential, cosine, one_cycle
  int64_t warmup_steps = 0;
  int64_t step_size = 1000;
  double gamma = 0.1;
  double min_lr = 0.0;
  double pct_start = 0.3;
  double div_factor = 25.0;
  double final_div_factor = 1e4;
  static ScheduleOptions from_config(const Config& config);
};

/// A learning-rate schedule as a pure function of the step, so its whole state is the step counter (LibTorch's
/// schedulers cannot be saved). Formulas (t = step, T = total_steps, base = lr):
///   constant: base; step: base * gamma^floor(t / step_size); exponential: base * gamma^(t / step_size);
///   cosine: min_lr + (base - min_lr) * (1 + cos(pi * t / T)) / 2;
///   one_cycle (as torch.optim.lr_scheduler.OneCycleLR, cosine annealing): from base/div_factor up to base over
///   pct_start*T steps, then down to base/(div_factor*final_div_factor) at T.
/// Warm-up multiplies by (t + 1) / warmup_steps for t < warmup_steps.
class LrSchedule {
 public:
  /// Throws ConfigError on an unknown name or total_steps < 1 for cosine/one_cycle.
  LrSchedule(ScheduleOptions options, double base_lr, int64_t total_steps);
  /// Learning rate to use for step `step` (0-based).
  double lr_at(int64_t step) const;
  const ScheduleOptions& options() const { return options_; }
  double base_lr() const { return base_lr_; }
  int64_t total_steps() const { return total_steps_; }

 private:
  ScheduleOptions options_;
  double base_lr_;
  int64_t total_steps_;
};

// ---- metrics -------------------------------------------------------------------------------------------------

/// Accumulates predictions batch by batch and computes the metrics of a split.
/// Classification: loss, accuracy, top-k accuracy, macro precision/recall/F1 (classes with no support or no
/// predictions count 0, as sklearn's zero_division=0), confusion matrix [true][predicted].
/// Regression: loss, mse, mae, r2 (1 - SS_res/SS_tot; 0 when SS_tot is 0).
class MetricAccumulator {
 public:
  MetricAccumulator(Task task, int64_t num_classes, int64_t topk = 5);
  /// Adds a batch: model outputs (logits / predictions), targets, and the batch's mean loss.
  void add(const torch::Tensor& output, const torch::Tensor& target, double batch_loss);
  /// Metrics as a flat JSON object: {"loss": .., "accuracy": .., "top5_accuracy": .., "precision_macro": ..,
  /// "recall_macro": .., "f1_macro": .., "confusion_matrix": [[..]]} or {"loss", "mse", "mae", "r2"}.
  Json result() const;
  int64_t count() const { return count_; }

 private:
  Task task_;
  int64_t num_classes_, topk_;
  int64_t count_ = 0;
  double loss_sum_ = 0.0;
  int64_t correct_ = 0, topk_correct_ = 0;
  std::vector<int64_t> confusion_;  // num_classes x num_classes
  double sum_sq_ = 0, sum_abs_ = 0, sum_y_ = 0, sum_y2_ = 0;
};

}  // namespace traindx
