#pragma once
/// The training monitor: capture -> statistics -> rules -> findings, cheap enough to leave on.
///
/// Every step it reads the loss and the global gradient norm (one fused reduction). Every `interval` steps (and on
/// any anomaly) it captures per-layer detail: weight norm, gradient norm, gradient/weight and update/weight ratios,
/// activation mean/std, fraction of zeros, fraction saturated, dead units, non-finite counts and a sampled
/// histogram. Rules (rules.h) read these bounded histories and emit Findings.
///
/// In your own LibTorch loop (examples/user_loop.cpp is a complete one; docs/monitor.md explains each call):
///   traindx::Monitor monitor(traindx::MonitorOptions(), named_parameters);  // {"fc1.weight", tensor}, ...
///   monitor.set_task(traindx::Task::Classification, num_classes);           // optional, sharpens rules
///   for (step ...) {
///     auto out = monitor.wants_activations(step) ? traindx::tapped_forward(seq, x, monitor, step) : seq->forward(x);
///     auto loss = ...; loss.backward();
///     monitor.after_backward(step, loss.item<double>(), x, y, out.detach(), lr);
///     optimizer.step();
///     monitor.after_step(step);
///     if (monitor.stop_requested()) break;
///   }
///   monitor.on_train_end(steps);
///   std::cout << monitor.findings().to_json().dump(2);
#include <torch/nn/modules/container/sequential.h>
#include <torch/types.h>

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "traindx/core/config.h"
#include "traindx/monitor/finding.h"
#include "traindx/store/run_store.h"
#include "traindx/train/trainer.h"

namespace traindx {

/// Thresholds and switches of the monitor; every field mirrors a `monitor.*` key (docs/config.md, which also
/// says where each default comes from).
struct MonitorOptions {
  bool enabled = true;
  int64_t interval = 25;          ///< steps between detailed captures
  bool every_step = false;        ///< full detail at every step (for debugging; ~1.05x step time, docs/benchmarks.md)
  std::string on_critical = "stop";  ///< "stop" or "warn"
  int64_t histogram_bins = 32;
  std::vector<std::string> disabled_rules;
  // thresholds (see rules.h for the formulas)
  double exploding_grad_norm = 1e3;
  double exploding_growth = 1e2;
  double vanishing_grad_norm = 1e-7;
  double vanishing_depth_ratio = 1e-4;
  double dead_fraction = 0.5;
  double saturation_fraction = 0.5;
  int64_t loss_window = 40;
  double loss_min_improvement = 0.01;
  double divergence_factor = 3.0;
  double oscillation_cv = 0.5;
  double update_ratio_high = 1e-1;
  double update_ratio_low = 1e-6;
  double init_loss_tolerance = 0.5;
  double activation_depth_ratio = 1e2;
  double symmetry_cosine = 0.9999;
  double overfit_gap = 0.1;
  double underfit_accuracy = 0.0;  ///< 0: derived from the number of classes (see rules.h)
  double imbalance_ratio = 10.0;
  double input_abs_max = 20.0;
  static MonitorOptions from_config(const Config& config);
  Json to_json() const;
};

/// How training is set up, beyond the numbers the monitor sees. Rules use it to name causes the statistics alone
/// cannot tell apart: weights shrinking under strong weight decay look like a collapse, an unscaled regression
/// target like a rate far too high, a loss without log_softmax like a model that learns too well. Every field is
/// optional (a user's own loop may set none); make_monitor() fills it from the Trainer.
struct TrainingSetup {
  std::string optimizer;  ///< sgd, adam, adamw, rmsprop, adagrad; empty when unknown
  double lr = NAN;        ///< base learning rate
  double weight_decay = 0.0, l2 = 0.0, momentum = 0.0;
  double eps = NAN, beta1 = NAN, beta2 = NAN;  ///< adaptive optimizers' settings; NaN when unknown
  int64_t batch_size = 0;  ///< 0 when unknown
  std::string loss;        ///< cross_entropy, nll, mse, huber, bce_with_logits; empty when unknown
  /// Type of the model's last layer when it is an activation or normalisation (sigmoid, tanh, relu, log_softmax,
  /// ...); empty when the last layer is a weight layer or unknown.
  std::string output_activation;
  std::vector<std::pair<std::string, double>> dropout;  ///< (layer, p) of each dropout layer, in forward order
  /// (layer, width) of each weight layer but the last, in forward order: output features or channels.
  std::vector<std::pair<std::string, int64_t>> hidden_widths;
  /// The model's forward pass in inference mode (dropout off, running statistics), restoring the mode after: the
  /// loss at initialisation is judged on it, since dropout's 1/(1-p) scaling inflates a training-mode loss.
  std::function<torch::Tensor(const torch::Tensor&)> eval_forward;
  double max_dropout() const;
};

/// Per-layer statistics of one detailed capture. NaN where not measured.
struct LayerStats {
  std::string layer;
  std::string type;  ///< layer type when known ("relu", "conv2d", ...); empty otherwise
  int64_t step = -1;
  // parameters of the layer (all tensors named "<layer>.*")
  double weight_norm = NAN, grad_norm = NAN, grad_to_weight = NAN, update_to_weight = NAN;
  /// cos(update, weights before it) over the layer's weight matrices: near 0 when the updates follow the data,
  /// near -1 when they only shrink the weights (weight decay or an L2 penalty dominating the gradient).
  double update_weight_cosine = NAN;
  double matrix_weight_norm = NAN;  ///< over its weight matrices/kernels (rank >= 2); NaN when it has none
  int64_t param_nonfinite = 0, grad_nonfinite = 0;
  bool has_params = false, grad_missing = false;
  // output activation
  double act_mean = NAN, act_std = NAN, act_abs_max = NAN;
  double act_zero_fraction = NAN;       ///< fraction of exactly-zero outputs
  double act_dead_units = NAN;          ///< fraction of units (features/channels) zero for every example
  double act_saturated_fraction = NAN;  ///< sigmoid/tanh outputs within 1% of their bounds
  int64_t act_nonfinite = 0;
  std::vector<double> histogram;        ///< counts over [hist_min, hist_max]
  double hist_min = NAN, hist_max = NAN;
  Scalars scalars() const;              ///< the numeric fields as (name, value) for the store
};

/// What the monitor knows; rules read it. Histories are bounded (fixed windows).
struct MonitorState {
  Task task = Task::Classification;
  int64_t num_classes = 0;
  std::vector<std::string> layer_order;                 ///< forward order
  std::map<std::string, std::string> layer_types;       ///< layer -> type
  std::deque<std::pair<int64_t, double>> losses;        ///< (step, loss), last loss_window * 4 steps
  std::deque<std::pair<int64_t, double>> grad_norms;    ///< (step, global gradient norm)
  std::deque<std::pair<int64_t, double>> lrs;           ///< (step, learning rate)
  /// (step, std of the batch's per-example cross-entropies / sqrt(batch size)): how much the batch loss scatters
  /// from minibatch sampling alone. Only for classification steps whose outputs reproduce the reported loss.
  std::deque<std::pair<int64_t, double>> loss_sampling_std;
  std::optional<double> initial_loss;                   ///< loss at step 0 (first step seen)
  std::optional<double> first_window_loss;              ///< mean loss of the first loss_window steps
  std::optional<double> best_block_loss;                ///< lowest mean of a block of 10 x loss_block_steps losses
  std::optional<int64_t> first_step;
  std::map<std::string, LayerStats> layers;             ///< last detailed capture per layer
  std::map<std::string, LayerStats> first_layers;       ///< first detailed capture per layer (at init)
  std::vector<std::pair<int64_t, Json>> evaluations;    ///< (step, val metrics), bounded
  std::vector<std::pair<int64_t, Json>> train_windows;  ///< (step, running train metrics) at each evaluation
  std::map<std::string, double> param_change;           ///< parameter -> relative change since the first step
  /// weight layer -> (fraction of units with an identical twin, step measured); measured every 10th capture
  std::map<std::string, std::pair<double, int64_t>> symmetric_units;
  int64_t captures = 0;                                 ///< detailed captures so far
  std::vector<int64_t> label_counts;                    ///< training labels seen so far, per class
  double input_abs_max = 0.0, input_mean = NAN, input_std = NAN;
  double input_rms = 0.0;                               ///< largest root mean square of an examined input batch
  /// Regression targets seen in the first examined batches: largest |y|, mean and root mean square.
  double target_abs_max = 0.0, target_mean = NAN, target_rms = 0.0;
  /// Smallest and largest regression target seen (what a bounded output activation must be able to reach).
  double target_min = NAN, target_max = NAN;
  std::optional<double> initial_eval_loss;              ///< loss at step 0 in inference mode (setup.eval_forward)
  TrainingSetup setup;
  int64_t steps_seen = 0;
  double running_correct = 0, running_count = 0;        ///< train accuracy since the last evaluation
  bool ended = false;
};

/// A detector. Rules are stateless between calls except for what they keep in MonitorState; each documents
/// its formula and default threshold in rules.h. They may run at each step (cheap), after a detailed capture,
/// after an evaluation, and at the end.
class Rule {
 public:
  virtual ~Rule() = default;
  virtual const char* id() const = 0;
  virtual void on_step(const MonitorState&, const MonitorOptions&, int64_t step, std::vector<Finding>& out) {}
  virtual void on_detail(const MonitorState&, const MonitorOptions&, int64_t step, std::vector<Finding>& out) {}
  virtual void on_evaluation(const MonitorState&, const MonitorOptions&, int64_t step, std::vector<Finding>& out) {}
  virtual void on_end(const MonitorState&, const MonitorOptions&, int64_t step, std::vector<Finding>& out) {}
};

/// All built-in rules, in the order they run.
std::vector<std::unique_ptr<Rule>> make_builtin_rules();
/// Ids of all built-in rules.
std::vector<std::string> builtin_rule_ids();

/// Watches a training run. Works with any set of named parameters; activation statistics come from taps.
class Monitor {
 public:
  /// `parameters`: the model's named parameters ("conv1.weight"); layers are the prefixes before the last dot.
  Monitor(MonitorOptions options, std::vector<std::pair<std::string, torch::Tensor>> parameters);

  /// Optional facts that sharpen rules: task and classes (loss at init vs ln C, class imbalance), layer types in
  /// forward order (dead ReLU, saturation, depth ratios).
  void set_task(Task task, int64_t num_classes);
  void set_layers(const std::vector<std::pair<std::string, std::string>>& names_and_types);
  /// How training is set up (optimizer, regularisation, loss, output layer): rules name causes from it.
  void set_setup(TrainingSetup setup);
  /// Persists layer series and findings to a run store as they come.
  void set_store(RunStore* store, std::string run_id);
  /// Called for every new or escalated finding (the CLI prints them as they come).
  void set_listener(std::function<void(const Finding&)> listener);
  /// Lets the monitor re-run a forward pass with taps to locate the first non-finite activation.
  void set_forward(std::function<torch::Tensor(const torch::Tensor&, const LayerTap&)> forward);

  /// True when this step gets a detailed capture (activations should be tapped).
  bool wants_activations(int64_t step) const;
  /// The tap: records the output of `layer` at `step` (cheap reductions; the tensor is not kept).
  void record_activation(int64_t step, const std::string& layer, const torch::Tensor& output);
  /// After backward, before the optimizer step. `inputs`/`targets` may be undefined.
  void after_backward(int64_t step, double loss, const torch::Tensor& inputs = {}, const torch::Tensor& targets = {},
                      const torch::Tensor& outputs = {}, double lr = NAN);
  /// After the optimizer step.
  void after_step(int64_t step);
  /// After a validation evaluation; metrics with "val_" prefixes as the Trainer reports them.
  void on_evaluation(int64_t step, const Json& metrics);
  /// At the end of training: runs end-of-run rules.
  void on_train_end(int64_t step);

  /// A reason to stop when on_critical = "stop" and a critical finding appeared.
  std::optional<std::string> stop_requested() const;
  const FindingSet& findings() const { return findings_; }
  const MonitorState& state() const { return state_; }
  const MonitorOptions& options() const { return options_; }
  /// Wall seconds spent inside the monitor's calls so far: its own cost (the trainer writes it to summary.json as
  /// "monitor_seconds"; not to the step series, which must be reproducible).
  double seconds() const { return seconds_; }
  /// What a checkpoint keeps of the monitor: findings, loss / gradient / lr histories, initial and first-window
  /// losses, label counts, step count. Restoring it lets rules continue across a resume.
  Json save_state() const;
  /// Inverse of save_state(). Throws CheckpointError on a malformed document.
  void load_state(const Json& doc);
  /// Checks an arbitrary set of findings produced outside the step loop (e.g. the doctor's battery).
  void add_findings(const std::vector<Finding>& findings);

 private:
  void capture_parameters(int64_t step, bool with_update);
  void run_rules(int64_t step, void (Rule::*hook)(const MonitorState&, const MonitorOptions&, int64_t,
                                                  std::vector<Finding>&));
  void locate_non_finite(int64_t step, const torch::Tensor& inputs);
  void record_initial_eval_loss(const torch::Tensor& inputs, const torch::Tensor& targets);
  std::string layer_of(const std::string& parameter) const;

  MonitorOptions options_;
  std::vector<std::pair<std::string, torch::Tensor>> parameters_;
  std::vector<std::unique_ptr<Rule>> rules_;
  MonitorState state_;
  FindingSet findings_;
  RunStore* store_ = nullptr;
  std::string run_id_;
  std::function<torch::Tensor(const torch::Tensor&, const LayerTap&)> forward_;
  std::function<void(const Finding&)> listener_;
  std::vector<torch::Tensor> before_step_;  // parameter copies on detailed steps, for update ratios
  std::vector<torch::Tensor> initial_params_;
  std::vector<double> initial_norms_;  // |initial_params_[i]|, the denominator of param_change
  int64_t detail_step_ = -1;
  bool detail_pending_ = false;
  bool located_non_finite_ = false;
  double seconds_ = 0.0;
  std::optional<std::string> stop_reason_;
};

/// Runs a torch::nn::Sequential child by child, tapping each output into the monitor (children are named by
/// their index or registered name). The one-line alternative for custom modules: call
/// monitor.record_activation(step, "name", tensor) inside your forward().
torch::Tensor tapped_forward(torch::nn::Sequential& sequential, const torch::Tensor& input, Monitor& monitor,
                             int64_t step);

/// Adapts a Monitor to the Trainer's callback interface.
class MonitorCallback : public TrainerCallback {
 public:
  explicit MonitorCallback(std::shared_ptr<Monitor> monitor) : monitor_(std::move(monitor)) {}
  bool wants_activations(int64_t step) override { return monitor_->wants_activations(step); }
  void on_activation(int64_t step, const std::string& layer, const torch::Tensor& output) override {
    monitor_->record_activation(step, layer, output);
  }
  void on_after_backward(const StepContext& ctx) override {
    monitor_->after_backward(ctx.step, ctx.loss, ctx.inputs, ctx.targets, ctx.outputs, ctx.lr);
  }
  void on_step_end(const StepContext& ctx) override { monitor_->after_step(ctx.step); }
  void on_evaluation(int64_t step, const Json& metrics) override { monitor_->on_evaluation(step, metrics); }
  void on_train_end(int64_t steps, const std::string& status) override { monitor_->on_train_end(steps); }
  std::optional<std::string> stop_requested() override { return monitor_->stop_requested(); }
  Monitor& monitor() { return *monitor_; }

 private:
  std::shared_ptr<Monitor> monitor_;
};

/// What a Trainer's options and model say about the setup (make_monitor() passes it to the monitor).
TrainingSetup training_setup(Trainer& trainer);

/// Builds a monitor for a Trainer's model and data (layer order and types from the model summary, the setup from
/// training_setup()).
std::shared_ptr<Monitor> make_monitor(const MonitorOptions& options, Trainer& trainer);

}  // namespace traindx
