// The one table of config keys. docs/config.md is generated from it (`traindx config docs`), and a test keeps the
// committed file in sync.
#include "traindx/core/config.h"

namespace traindx {
namespace {

using V = ValueType;

ConfigKey key(std::string path, V type, std::string def, std::string help, std::vector<std::string> choices = {},
              std::optional<double> min = std::nullopt, std::optional<double> max = std::nullopt) {
  return ConfigKey{std::move(path), type, std::move(def), std::move(help), std::move(choices), min, max};
}

std::vector<ConfigKey> make_schema() {
  return {
      // run
      key("run.name", V::String, "\"run\"", "Run name; the default run directory is runs/<name>-<time>."),
      key("run.seed", V::Int, "0", "The one seed behind weight init, data split, shuffling and dropout.", {}, 0),
      key("run.threads", V::Int, "1",
          "LibTorch intra-op threads. 1 is the measured best for small models on 2 cores (docs/benchmarks.md).", {},
          1, 1024),
      key("run.deterministic", V::Bool, "false",
          "Use LibTorch's deterministic algorithms and pin the thread count: same config, bitwise same weights."),
      key("run.device", V::String, "\"cpu\"", "Device to train on: cpu, or cuda / cuda:N where LibTorch has CUDA."),
      key("run.out_root", V::String, "\"runs\"", "Parent directory of run directories when --out is not given."),

      // data
      key("data.source", V::String, "\"fashion-mnist\"", "Where examples come from.", {"fashion-mnist", "idx", "csv"}),
      key("data.path", V::String, "\"\"",
          "fashion-mnist/idx: directory holding train-images-idx3-ubyte[.gz] etc. (default for fashion-mnist: "
          "/usr/share/datasets/fashion-mnist). csv: the table file."),
      key("data.test_path", V::String, "\"\"", "csv: a separate test table; otherwise data.test_fraction is held out."),
      key("data.target", V::String, "\"\"", "csv: name of the target column (default: the last column)."),
      key("data.task", V::String, "\"auto\"",
          "classification or regression; auto: integer or text targets with at most 20 distinct values classify.",
          {"auto", "classification", "regression"}),
      key("data.normalize", V::Bool, "true",
          "Fit a scaler on the training split (false feeds raw values, e.g. pixels 0..255)."),
      key("data.scaler", V::String, "\"standardize\"",
          "standardize (zero mean, unit variance; per channel for images) or minmax (to [0, 1]).",
          {"standardize", "minmax"}),
      key("data.impute", V::String, "\"mean\"", "csv: fill for missing numeric cells, fitted on the training split.",
          {"mean", "median", "zero"}),
      key("data.categorical", V::StringArray, "[]",
          "csv: columns to one-hot even if they look numeric (text columns are always categorical)."),
      key("data.drop_columns", V::StringArray, "[]", "csv: columns to ignore (ids, leaks)."),
      key("data.delimiter", V::String, "\",\"", "csv: field delimiter (one character)."),
      key("data.header", V::String, "\"first_row\"",
          "csv: what the first line holds: column names (first_row), data (none; columns become column_1, ...), or "
          "scikit-learn's bundled layout \"n_samples,n_features,class names\" (sklearn; see docs/data.md).",
          {"first_row", "none", "sklearn"}),
      key("data.val_fraction", V::Float, "0.1", "Fraction of the training split held out for validation.", {}, 0.0,
          0.9),
      key("data.test_fraction", V::Float, "0.2", "csv without test_path: fraction held out for testing.", {}, 0.0,
          0.9),
      key("data.stratify", V::Bool, "true", "Keep class proportions in the validation and test splits."),
      key("data.max_train", V::Int, "0", "Use at most this many training examples (0 = all); for quick runs.", {}, 0),
      key("data.max_test", V::Int, "0", "Use at most this many test examples (0 = all).", {}, 0),
      key("data.shuffle_labels", V::Bool, "false",
          "Permute the training split's targets with the seed (validation and test keep theirs): a check that the "
          "model cannot learn noise (the monitor should report loss_not_decreasing)."),

      // model
      key("model.layers", V::TableArray, "[]",
          "The network, as an array of tables {type = \"conv2d\", out = 32, kernel = 3, ...}; see docs/model.md."),
      key("model.init", V::String, "\"default\"", "Weight initialisation for every layer without its own `init`.",
          {"default", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "orthogonal", "normal",
           "constant", "zeros"}),
      key("model.init_std", V::Float, "0.01", "Standard deviation for init = \"normal\".", {}, 0.0),
      key("model.init_value", V::Float, "0.0", "Value for init = \"constant\"."),
      key("model.bias_init", V::String, "\"default\"",
          "Bias initialisation for every layer without its own `bias_init`: default (LibTorch's), zeros, constant.",
          {"default", "zeros", "constant"}),
      key("model.bias_value", V::Float, "0.0", "Value for bias_init = \"constant\"."),
      key("model.torchscript", V::String, "\"\"",
          "Path of a TorchScript model exported from Python (torch.jit.save); replaces model.layers."),
      key("model.dtype", V::String, "\"float32\"", "Parameter and input dtype.", {"float32", "float64"}),

      // train
      key("train.loss", V::String, "\"auto\"",
          "auto: cross_entropy for classification, mse for regression.",
          {"auto", "cross_entropy", "nll", "mse", "huber", "bce_with_logits"}),
      key("train.optimizer", V::String, "\"sgd\"", "Optimizer.", {"sgd", "adam", "adamw", "rmsprop", "adagrad"}),
      key("train.lr", V::Float, "0.01", "Base learning rate (the peak for one_cycle).", {}, 0.0),
      key("train.momentum", V::Float, "0.0", "sgd and rmsprop momentum.", {}, 0.0, 1.0),
      key("train.nesterov", V::Bool, "false", "sgd: Nesterov momentum (needs momentum > 0)."),
      key("train.weight_decay", V::Float, "0.0", "Optimizer weight decay (decoupled for adamw).", {}, 0.0),
      key("train.beta1", V::Float, "0.9", "adam/adamw first-moment decay.", {}, 0.0, 1.0),
      key("train.beta2", V::Float, "0.999", "adam/adamw second-moment decay.", {}, 0.0, 1.0),
      key("train.eps", V::Float, "1e-8", "adam/adamw/rmsprop/adagrad epsilon.", {}, 0.0),
      key("train.alpha", V::Float, "0.99", "rmsprop smoothing constant.", {}, 0.0, 1.0),
      key("train.l1", V::Float, "0.0", "L1 penalty on weights added to the loss.", {}, 0.0),
      key("train.l2", V::Float, "0.0", "L2 penalty (sum of squares / 2) on weights added to the loss.", {}, 0.0),
      key("train.batch_size", V::Int, "64", "Examples per step.", {}, 1),
      key("train.epochs", V::Int, "1", "Passes over the training split.", {}, 1),
      key("train.max_steps", V::Int, "0", "Stop after this many steps (0 = no limit).", {}, 0),
      key("train.schedule", V::String, "\"constant\"", "Learning-rate schedule.",
          {"constant", "step", "exponential", "cosine", "one_cycle"}),
      key("train.warmup_steps", V::Int, "0", "Linear warm-up from 0 to the scheduled rate over these steps.", {}, 0),
      key("train.step_size", V::Int, "1000", "step/exponential: steps per decay by gamma.", {}, 1),
      key("train.gamma", V::Float, "0.1", "step/exponential: decay factor per step_size steps.", {}, 0.0, 1.0),
      key("train.min_lr", V::Float, "0.0", "cosine: final learning rate.", {}, 0.0),
      key("train.pct_start", V::Float, "0.3", "one_cycle: fraction of steps spent rising.", {}, 0.0, 1.0),
      key("train.div_factor", V::Float, "25.0", "one_cycle: initial rate = lr / div_factor.", {}, 1.0),
      key("train.final_div_factor", V::Float, "10000.0", "one_cycle: final rate = initial / final_div_factor.", {},
          1.0),
      key("train.clip_grad_norm", V::Float, "0.0", "Clip the global gradient L2 norm to this (0 = off).", {}, 0.0),
      key("train.clip_grad_value", V::Float, "0.0", "Clip each gradient element to +-this (0 = off).", {}, 0.0),
      key("train.huber_delta", V::Float, "1.0", "huber: transition point between quadratic and linear.", {}, 0.0),
      key("train.eval_every", V::Int, "0", "Evaluate on the validation split every N steps (0 = each epoch end).",
          {}, 0),
      key("train.eval_examples", V::Int, "0",
          "Mid-run evaluations use N evenly spaced validation examples (0 = all); the final evaluation uses all.",
          {}, 0),
      key("train.early_stopping_metric", V::String, "\"\"",
          "Stop when this validation metric stops improving (e.g. val_loss, val_accuracy; empty = off)."),
      key("train.early_stopping_patience", V::Int, "3", "Evaluations without improvement before stopping.", {}, 1),
      key("train.early_stopping_min_delta", V::Float, "0.0", "Smallest change that counts as improvement.", {},
          0.0),
      key("train.topk", V::Int, "5", "k of the top-k accuracy metric.", {}, 1),
      key("train.log_every", V::Int, "50", "Steps between progress lines when not on a terminal.", {}, 1),

      // monitor (thresholds: where each default comes from is in include/traindx/monitor/rules.h)
      key("monitor.enabled", V::Bool, "true", "Watch training with the rule engine."),
      key("monitor.interval", V::Int, "25",
          "Steps between detailed per-layer captures (the per-step checks run every step).", {}, 1),
      key("monitor.every_step", V::Bool, "false",
          "Detailed capture at every step (for debugging; see docs/benchmarks.md for its cost)."),
      key("monitor.on_critical", V::String, "\"stop\"", "What a critical finding does to the run.",
          {"stop", "warn"}),
      key("monitor.histogram_bins", V::Int, "32", "Bins of the sampled activation histograms.", {}, 2, 1024),
      key("monitor.disabled_rules", V::StringArray, "[]", "Rule ids to switch off, e.g. [\"loss_oscillating\"]."),
      key("monitor.exploding_grad_norm", V::Float, "1000.0", "exploding_gradient: global gradient norm above this.",
          {}, 0.0),
      key("monitor.exploding_growth", V::Float, "100.0",
          "exploding_gradient: gradient norm this many times its early median.", {}, 1.0),
      key("monitor.vanishing_grad_norm", V::Float, "1e-7", "vanishing_gradient: a layer's gradient norm below this.",
          {}, 0.0),
      key("monitor.vanishing_depth_ratio", V::Float, "1e-4",
          "vanishing_gradient: first-layer / last-layer gradient norm below this.", {}, 0.0),
      key("monitor.dead_fraction", V::Float, "0.5", "dead_relu: fraction of units that output zero for the whole batch.",
          {}, 0.0, 1.0),
      key("monitor.saturation_fraction", V::Float, "0.5",
          "saturated_activation: fraction of sigmoid/tanh outputs within 1% of their bounds.", {}, 0.0, 1.0),
      key("monitor.loss_window", V::Int, "40", "Steps in the loss windows of the loss rules.", {}, 5),
      key("monitor.loss_min_improvement", V::Float, "0.01",
          "loss_not_decreasing: smallest relative drop of the windowed loss that counts as learning.", {}, 0.0),
      key("monitor.divergence_factor", V::Float, "3.0",
          "loss_diverging: windowed loss this many times its best (or its start).", {}, 1.0),
      key("monitor.oscillation_cv", V::Float, "0.5",
          "loss_oscillating: scatter of the windowed loss around its trend, relative to its mean, above this; used "
          "where the minibatch sampling noise cannot be measured (otherwise: scatter above twice that noise).",
          {}, 0.0),
      key("monitor.update_ratio_high", V::Float, "0.1", "weight_update_ratio / lr_too_high: update/weight above this.",
          {}, 0.0),
      key("monitor.update_ratio_low", V::Float, "1e-6", "weight_update_ratio / lr_too_low: update/weight below this.",
          {}, 0.0),
      key("monitor.init_loss_tolerance", V::Float, "0.5",
          "poor_initialization: relative distance of the first loss from ln C.", {}, 0.0),
      key("monitor.activation_depth_ratio", V::Float, "100.0",
          "poor_initialization: activation std changing by this factor from first to last layer.", {}, 1.0),
      key("monitor.symmetry_cosine", V::Float, "0.9999",
          "symmetric_weights: cosine above which two units of a layer count as identical.", {}, 0.0, 1.0),
      key("monitor.overfit_gap", V::Float, "0.1",
          "overfitting: train accuracy minus validation accuracy above this (or validation loss rising).", {}, 0.0),
      key("monitor.underfit_accuracy", V::Float, "0.0",
          "underfitting: train accuracy below this at the end (0 = derived from the number of classes).", {}, 0.0,
          1.0),
      key("monitor.imbalance_ratio", V::Float, "10.0", "class_imbalance: largest / smallest class count above this.",
          {}, 1.0),
      key("monitor.input_abs_max", V::Float, "20.0",
          "input_range: largest absolute input value above this (with a root mean square above 3).", {},
          0.0),

      // checkpoint
      key("checkpoint.every_steps", V::Int, "0", "Save a checkpoint every N steps (0 = only at the end).", {}, 0),
      key("checkpoint.keep_last", V::Int, "3", "Checkpoints kept besides the best one.", {}, 1),
      key("checkpoint.at_end", V::Bool, "true", "Save a checkpoint when training ends."),
      key("checkpoint.keep_best", V::String, "\"\"",
          "Also keep the best checkpoint by this validation metric (e.g. val_loss; empty = off)."),
      key("checkpoint.probe_size", V::Int, "64",
          "Examples in the golden probe (from the validation split) stored with every checkpoint.", {}, 1, 4096),
      key("checkpoint.background", V::Bool, "true",
          "Save during training without waiting for the disk: the state is copied (one more copy of parameters, "
          "buffers and optimizer slots in memory) and probed, written and synced on a background thread."),
  };
}

}  // namespace

const std::vector<ConfigKey>& config_schema() {
  static const std::vector<ConfigKey> schema = make_schema();
  return schema;
}

}  // namespace traindx
