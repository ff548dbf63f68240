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
/// Targets may also be [B, 1]; they are converted to int64 (class losses) or to the output's dtype, and checked:
/// class indices in [0, C), binary bce targets in [0, 1]; bce_with_logits also takes [B, C] targets as they are
/// (multi-label). Throws ConfigError for huber_delta <= 0.
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
/// Each optimizer reads only its own fields and ignores the rest (so one config can sweep optimizers):
/// sgd: lr, momentum, nesterov, weight_decay; adam/adamw: lr, beta1, beta2, eps, weight_decay (decoupled for
/// adamw); rmsprop: lr, alpha, eps, momentum, weight_decay; adagrad: lr, eps, weight_decay. Values out of the
/// train.* keys' ranges (and beta1/beta2 = 1) throw ConfigError naming the key.
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
/// Details: exponential decays continuously (step_size 1 is ExponentialLR(gamma)); cosine and one_cycle hold their
/// final value past the end (cosine from t = T, one_cycle from t = T - 1). one_cycle uses PyTorch's phase
/// boundaries, pct_start*T - 1 and T - 1, and its cosine annealing, so it matches OneCycleLR step for step; a
/// rising phase of zero length (pct_start*T = 1, where PyTorch divides by zero) gives base. Momentum is not cycled.
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
/// Details: "loss" is the example-weighted mean of the batch losses. The macro averages run over the classes that
/// occur as truth or prediction (sklearn's default labels), so a class absent from both is left out. Top-k ranks
/// ties as sklearn's top_k_accuracy_score does (higher class index first); the key keeps the requested k
/// ("top5_accuracy") while k is clamped to num_classes. Binary models with one logit ([B] or [B, 1], num_classes
/// 2) predict class 1 when the logit is > 0. Outputs may be float32 or float64; sums are kept in double. With no
/// examples added the metrics are NaN. Throws DataError on shapes that do not fit or class targets out of range.
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
  // Squared and absolute error sums, and the targets' mean and sum of squared deviations, merged batch by batch
  // (Chan et al.) because sum(y^2) - n*mean^2 loses digits when targets have a large mean.
  double sum_sq_ = 0, sum_abs_ = 0, mean_y_ = 0, m2_y_ = 0;
};

}  // namespace traindx
