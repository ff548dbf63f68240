#include "traindx/monitor/monitor.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <set>

#include "traindx/core/error.h"
#include "traindx/core/text.h"
#include "traindx/monitor/rules.h"

namespace traindx {
namespace {

constexpr int64_t kHistogramSample = 4096;  // activations sampled per histogram: enough for 32 bins, O(1) cost
// Activation values per layer that a detailed capture reads (2^16 = 256 KiB of float32): enough for means and
// fractions to ~0.5% and for per-channel dead-unit counts (each channel still spans >= 1 example x all its
// positions), at a bounded cost per layer (~0.1 ms) whatever the batch and layer size.
constexpr int64_t kActivationSample = int64_t{1} << 16;
constexpr size_t kMaxEvaluations = 1000;

// Adds the wall time of a scope to a running total: how the monitor accounts for its own cost.
class Stopwatch {
 public:
  explicit Stopwatch(double& total) : total_(total), start_(std::chrono::steady_clock::now()) {}
  ~Stopwatch() { total_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count(); }
  Stopwatch(const Stopwatch&) = delete;
  Stopwatch& operator=(const Stopwatch&) = delete;

 private:
  double& total_;
  std::chrono::steady_clock::time_point start_;
};

template <typename T>
void push_bounded(std::deque<T>& d, T v, size_t cap) {
  d.push_back(std::move(v));
  while (d.size() > cap) d.pop_front();
}

bool is_saturating(const std::string& type) { return type == "sigmoid" || type == "tanh"; }

// Fraction of units (rows of a weight viewed as [units, fan_in]) that have a twin: another row with cosine above
// `threshold`, or both rows exactly zero. At most 1024 units are compared (O(units^2 fan_in)). float32 is enough: the
// cosine of two unit vectors comes out within ~1e-6, far inside the 1e-4 margin of the default threshold.
double twin_fraction(const torch::Tensor& weight, double threshold) {
  auto w = weight.detach().to(torch::kFloat32).reshape({weight.size(0), -1});
  if (w.size(0) > 1024) w = w.slice(0, 0, 1024);
  const int64_t n = w.size(0);
  // With a fan-in of 1 every pair of same-sign units has cosine 1: direction says nothing there.
  if (n < 2 || w.size(1) < 2) return 0.0;
  const auto norms = w.norm(2, 1);
  // Only rows that are exactly zero count as twins of each other (zero or constant init). Rows that strong weight
  // decay has shrunk towards zero keep their directions, so the cosine still tells whether they are twins.
  const auto zero = norms == 0;
  const auto unit = w / norms.clamp_min(std::numeric_limits<float>::min()).unsqueeze(1);
  auto cos = unit.matmul(unit.t());
  cos.fill_diagonal_(-2.0);
  auto twin = std::get<0>(cos.max(1)) > threshold;
  if (zero.sum().item<int64_t>() >= 2) twin = twin | zero;
  return twin.to(torch::kFloat64).mean().item<double>();
}

// Sum of squares in the tensor's own dtype, as one BLAS dot: in LibTorch 1.13 on CPU, Tensor::norm() and
// _foreach_norm take a slow generic path (~100x slower than dot on a 400k-element weight), and this runs every step.
double sum_of_squares(const torch::Tensor& t) {
  const auto flat = t.reshape({-1});
  return torch::dot(flat, flat).item<double>();
}

// L2 norm of a tensor and how many of its elements are non-finite. The norm is computed in the tensor's own dtype
// (one pass, no copy); only when it comes out non-finite are the elements counted, and a float64 norm tells an
// overflow of finite values (float32 past ~3e38) from non-finite ones.
std::pair<double, int64_t> checked_norm(const torch::Tensor& t) {
  const double norm = std::sqrt(sum_of_squares(t));
  if (std::isfinite(norm)) return {norm, 0};
  const int64_t bad = t.numel() - torch::isfinite(t).sum().item<int64_t>();
  if (bad > 0) return {norm, bad};
  return {t.to(torch::kFloat64).norm().item<double>(), 0};
}

}  // namespace

MonitorOptions MonitorOptions::from_config(const Config& c) {
  MonitorOptions o;
  o.enabled = c.get_bool("monitor.enabled");
  o.interval = c.get_int("monitor.interval");
  o.every_step = c.get_bool("monitor.every_step");
  o.on_critical = c.get_string("monitor.on_critical");
  o.histogram_bins = c.get_int("monitor.histogram_bins");
  o.disabled_rules = c.get_string_array("monitor.disabled_rules");
  o.exploding_grad_norm = c.get_double("monitor.exploding_grad_norm");
  o.exploding_growth = c.get_double("monitor.exploding_growth");
  o.vanishing_grad_norm = c.get_double("monitor.vanishing_grad_norm");
  o.vanishing_depth_ratio = c.get_double("monitor.vanishing_depth_ratio");
  o.dead_fraction = c.get_double("monitor.dead_fraction");
  o.saturation_fraction = c.get_double("monitor.saturation_fraction");
  o.loss_window = c.get_int("monitor.loss_window");
  o.loss_min_improvement = c.get_double("monitor.loss_min_improvement");
  o.divergence_factor = c.get_double("monitor.divergence_factor");
  o.oscillation_cv = c.get_double("monitor.oscillation_cv");
  o.update_ratio_high = c.get_double("monitor.update_ratio_high");
  o.update_ratio_low = c.get_double("monitor.update_ratio_low");
  o.init_loss_tolerance = c.get_double("monitor.init_loss_tolerance");
  o.activation_depth_ratio = c.get_double("monitor.activation_depth_ratio");
  o.symmetry_cosine = c.get_double("monitor.symmetry_cosine");
  o.overfit_gap = c.get_double("monitor.overfit_gap");
  o.underfit_accuracy = c.get_double("monitor.underfit_accuracy");
  o.imbalance_ratio = c.get_double("monitor.imbalance_ratio");
  o.input_abs_max = c.get_double("monitor.input_abs_max");
  return o;
}

Json MonitorOptions::to_json() const {
  return {{"enabled", enabled},
          {"interval", interval},
          {"every_step", every_step},
          {"on_critical", on_critical},
          {"histogram_bins", histogram_bins},
          {"disabled_rules", disabled_rules},
          {"exploding_grad_norm", exploding_grad_norm},
          {"exploding_growth", exploding_growth},
          {"vanishing_grad_norm", vanishing_grad_norm},
          {"vanishing_depth_ratio", vanishing_depth_ratio},
          {"dead_fraction", dead_fraction},
          {"saturation_fraction", saturation_fraction},
          {"loss_window", loss_window},
          {"loss_min_improvement", loss_min_improvement},
          {"divergence_factor", divergence_factor},
          {"oscillation_cv", oscillation_cv},
          {"update_ratio_high", update_ratio_high},
          {"update_ratio_low", update_ratio_low},
          {"init_loss_tolerance", init_loss_tolerance},
          {"activation_depth_ratio", activation_depth_ratio},
          {"symmetry_cosine", symmetry_cosine},
          {"overfit_gap", overfit_gap},
          {"underfit_accuracy", underfit_accuracy},
          {"imbalance_ratio", imbalance_ratio},
          {"input_abs_max", input_abs_max}};
}

Scalars LayerStats::scalars() const {
  Scalars out;
  auto add = [&](const char* name, double v) {
    if (!std::isnan(v)) out.emplace_back(name, v);
  };
  add("weight_norm", weight_norm);
  add("grad_norm", grad_norm);
  add("grad_to_weight", grad_to_weight);
  add("update_to_weight", update_to_weight);
  add("act_mean", act_mean);
  add("act_std", act_std);
  add("act_abs_max", act_abs_max);
  add("act_zero_fraction", act_zero_fraction);
  add("act_dead_units", act_dead_units);
  add("act_saturated_fraction", act_saturated_fraction);
  if (act_nonfinite > 0) out.emplace_back("act_nonfinite", static_cast<double>(act_nonfinite));
  if (grad_nonfinite > 0) out.emplace_back("grad_nonfinite", static_cast<double>(grad_nonfinite));
  return out;
}

Monitor::Monitor(MonitorOptions options, std::vector<std::pair<std::string, torch::Tensor>> parameters)
    : options_(std::move(options)), parameters_(std::move(parameters)) {
  TRAINDX_CHECK(options_.on_critical == "stop" || options_.on_critical == "warn", ConfigError,
                "monitor.on_critical = \"{}\" must be \"stop\" or \"warn\"", options_.on_critical);
  const auto ids = builtin_rule_ids();
  for (const auto& d : options_.disabled_rules)
    TRAINDX_CHECK(std::find(ids.begin(), ids.end(), d) != ids.end(), ConfigError,
                  "monitor.disabled_rules names '{}', which is not a rule; did you mean '{}'?", d,
                  closest_match(d, ids));
  for (auto& rule : make_builtin_rules())
    if (std::find(options_.disabled_rules.begin(), options_.disabled_rules.end(), rule->id()) ==
        options_.disabled_rules.end())
      rules_.push_back(std::move(rule));
  torch::NoGradGuard no_grad;
  for (const auto& [name, p] : parameters_) {
    initial_params_.push_back(p.detach().clone());
    initial_norms_.push_back(checked_norm(p.detach()).first);
  }
}

void Monitor::set_task(Task task, int64_t num_classes) {
  state_.task = task;
  state_.num_classes = num_classes;
  if (task == Task::Classification && num_classes > 0) state_.label_counts.assign(num_classes, 0);
}

void Monitor::set_layers(const std::vector<std::pair<std::string, std::string>>& names_and_types) {
  state_.layer_order.clear();
  for (const auto& [name, type] : names_and_types) {
    state_.layer_order.push_back(name);
    state_.layer_types[name] = type;
  }
}

void Monitor::set_setup(TrainingSetup setup) { state_.setup = std::move(setup); }

double TrainingSetup::max_dropout() const {
  double p = 0;
  for (const auto& [layer, rate] : dropout) p = std::max(p, rate);
  return p;
}

// The loss at initialisation in inference mode, for classification when the setup can run the model so: dropout's
// 1/(1-p) scaling makes a training-mode loss at init look like a poor initialisation.
void Monitor::record_initial_eval_loss(const torch::Tensor& inputs, const torch::Tensor& targets) {
  if (!state_.setup.eval_forward || state_.setup.max_dropout() <= 0 || !inputs.defined() || !targets.defined() ||
      state_.task != Task::Classification || targets.scalar_type() != torch::kLong)
    return;
  const auto out = state_.setup.eval_forward(inputs.detach());
  if (!out.defined() || out.dim() != 2 || out.size(0) != targets.size(0) || out.size(1) < 2) return;
  const auto ce = torch::nll_loss(torch::log_softmax(out.to(torch::kFloat64), 1), targets.reshape({-1}));
  state_.initial_eval_loss = ce.item<double>();
}

void Monitor::set_store(RunStore* store, std::string run_id) {
  store_ = store;
  run_id_ = std::move(run_id);
}

void Monitor::set_listener(std::function<void(const Finding&)> listener) { listener_ = std::move(listener); }

void Monitor::set_forward(std::function<torch::Tensor(const torch::Tensor&, const LayerTap&)> forward) {
  forward_ = std::move(forward);
}

std::string Monitor::layer_of(const std::string& parameter) const {
  const auto dot = parameter.rfind('.');
  return dot == std::string::npos ? parameter : parameter.substr(0, dot);
}

bool Monitor::wants_activations(int64_t step) const {
  if (!options_.enabled) return false;
  return options_.every_step || step % options_.interval == 0 || !state_.first_step.has_value();
}

void Monitor::record_activation(int64_t step, const std::string& layer, const torch::Tensor& output) {
  if (!options_.enabled || !output.defined() || !output.is_floating_point() || output.dim() == 0) return;
  const Stopwatch timer(seconds_);
  torch::NoGradGuard no_grad;
  if (step != detail_step_) {
    detail_step_ = step;
    detail_pending_ = true;
  }
  LayerStats& s = state_.layers[layer];
  s.layer = layer;
  s.step = step;
  auto it = state_.layer_types.find(layer);
  if (it != state_.layer_types.end()) s.type = it->second;
  if (std::find(state_.layer_order.begin(), state_.layer_order.end(), layer) == state_.layer_order.end())
    state_.layer_order.push_back(layer);

  // Bounded cost whatever the batch and layer size: the statistics describe the first examples of the batch, as
  // many as fit in kActivationSample values (the whole batch for vector layers, 2 examples of a 32x28x28 feature
  // map); for an example larger than that, the first rows of each channel.
  torch::Tensor x = output.detach();
  if (x.dim() >= 2 && x.size(0) > 1) {
    const int64_t per_example = std::max<int64_t>(1, x.numel() / x.size(0));
    const int64_t keep = std::clamp<int64_t>(kActivationSample / per_example, 1, x.size(0));
    if (keep < x.size(0)) x = x.slice(0, 0, keep);
  }
  if (x.dim() >= 3 && x.numel() > kActivationSample) {
    const int64_t per_row = std::max<int64_t>(1, x.numel() / x.size(2));
    x = x.slice(2, 0, std::clamp<int64_t>(kActivationSample / per_row, 1, x.size(2)));
  }
  x = x.contiguous();
  const auto flat = x.reshape({-1});
  if (flat.numel() == 0) return;
  // A finite sum means finite values (the exact count is only needed otherwise).
  s.act_nonfinite = 0;
  torch::Tensor xf = flat;
  double sum = flat.sum().item<double>();
  if (!std::isfinite(sum)) {
    const auto finite = torch::isfinite(flat);
    s.act_nonfinite = flat.numel() - finite.sum().item<int64_t>();
    if (s.act_nonfinite > 0) xf = flat.masked_select(finite);
    if (xf.numel() == 0) return;
    sum = xf.sum().item<double>();
  }
  // Mean, then the std from centred values (LibTorch's std_mean is a slow Welford loop on CPU; centring first avoids
  // the cancellation of E[x^2] - E[x]^2 for outputs far from zero, such as saturated sigmoids).
  const auto n = static_cast<double>(xf.numel());
  s.act_mean = sum / n;
  s.act_std = xf.numel() > 1 ? std::sqrt(sum_of_squares(xf - s.act_mean) / (n - 1)) : 0.0;
  const auto [lo, hi] = torch::aminmax(xf);
  s.act_abs_max = std::max(std::abs(lo.item<double>()), std::abs(hi.item<double>()));
  s.act_zero_fraction = (x == 0).sum().item<double>() / static_cast<double>(x.numel());
  // A unit is a feature ([B, F]) or a channel ([B, C, ...]); dead = zero for every example and position.
  if (x.dim() >= 2) {
    std::vector<int64_t> others = {0};
    for (int64_t d = 2; d < x.dim(); ++d) others.push_back(d);
    const auto per_unit = x.abs().amax(others) == 0;
    s.act_dead_units = per_unit.sum().item<double>() / static_cast<double>(per_unit.numel());
  }
  if (is_saturating(s.type)) {
    const auto sat = s.type == "sigmoid" ? (xf < 0.01) | (xf > 0.99) : xf.abs() > 0.99;
    s.act_saturated_fraction = sat.sum().item<double>() / n;
  }
  if (options_.histogram_bins > 0) {
    auto sample = xf.numel() > kHistogramSample ? xf.slice(0, 0, kHistogramSample) : xf;
    s.hist_min = sample.min().item<double>();
    s.hist_max = sample.max().item<double>();
    auto h = torch::histc(sample.to(torch::kFloat32), options_.histogram_bins, s.hist_min,
                          s.hist_max > s.hist_min ? s.hist_max : s.hist_min + 1.0);
    s.histogram.assign(h.data_ptr<float>(), h.data_ptr<float>() + h.numel());
  }
  if (!state_.first_layers.count(layer)) state_.first_layers[layer] = s;
}

void Monitor::capture_parameters(int64_t step, bool with_update) {
  torch::NoGradGuard no_grad;
  if (with_update) {
    // After the optimizer step: how far each layer moved, relative to its weights before the step (captured after
    // backward), and how far each parameter has moved since the start.
    // The ratio is taken over a layer's weight matrices (or kernels) when it has any: its bias is often the larger
    // vector at initialisation and hid a weight matrix moving 10x its own norm per step behind a ratio of 0.15.
    // Layers without one (norm scales and shifts) use all their parameters.
    std::map<std::string, double> update_sq, matrix_update_sq, matrix_update_dot;
    for (size_t i = 0; i < parameters_.size() && i < before_step_.size(); ++i) {
      const auto& [name, p] = parameters_[i];
      const std::string layer = layer_of(name);
      const auto delta = p.detach() - before_step_[i];
      const auto [update, bad] = checked_norm(delta);
      update_sq[layer] += update * update;
      if (p.dim() >= 2) {
        matrix_update_sq[layer] += update * update;
        const auto flat_delta = delta.reshape({-1});
        matrix_update_dot[layer] += torch::dot(flat_delta, before_step_[i].reshape({-1})).item<double>();
      }
      // Finite weights plus a finite update stay finite; only a non-finite update needs the weights recounted.
      if (bad > 0) state_.layers[layer].param_nonfinite = checked_norm(p.detach()).second;
      state_.param_change[name] =
          checked_norm(p.detach() - initial_params_[i]).first / (initial_norms_[i] + 1e-12);
    }
    for (const auto& [layer, sq] : update_sq) {
      LayerStats& s = state_.layers[layer];
      if (s.step != step) continue;
      // Against the norms measured after backward, before the step.
      s.update_to_weight = std::isnan(s.matrix_weight_norm)
                               ? std::sqrt(sq) / (s.weight_norm + 1e-12)
                               : std::sqrt(matrix_update_sq[layer]) / (s.matrix_weight_norm + 1e-12);
      const double matrix_update = std::sqrt(matrix_update_sq[layer]);
      s.update_weight_cosine = std::isnan(s.matrix_weight_norm) || !(matrix_update > 0) || !(s.matrix_weight_norm > 0)
                                   ? NAN
                                   : matrix_update_dot[layer] / (matrix_update * s.matrix_weight_norm);
    }
    return;
  }
  std::map<std::string, double> weight_sq, matrix_sq, grad_sq;  // layer -> sum of squares
  for (const auto& [name, p] : parameters_) {
    const std::string layer = layer_of(name);
    LayerStats& s = state_.layers[layer];
    if (s.step != step) {
      // A layer with parameters but no tap at this step (e.g. a custom module): start its record fresh.
      const std::string type = s.type;
      s = LayerStats();
      s.layer = layer;
      s.type = type;
      s.step = step;
    }
    s.param_nonfinite = s.grad_nonfinite = 0;
    s.grad_missing = false;
  }
  const bool symmetry = state_.captures % 10 == 0;  // O(units^2 fan_in): every 10th capture is enough
  for (const auto& [name, p] : parameters_) {
    const std::string layer = layer_of(name);
    LayerStats& s = state_.layers[layer];
    s.has_params = true;
    const auto [weight, bad_weights] = checked_norm(p.detach());
    s.param_nonfinite += bad_weights;
    weight_sq[layer] += weight * weight;
    if (p.dim() >= 2) matrix_sq[layer] += weight * weight;
    if (p.grad().defined()) {
      const auto [grad, bad_grads] = checked_norm(p.grad().detach());
      s.grad_nonfinite += bad_grads;
      grad_sq[layer] += grad * grad;
    } else {
      s.grad_missing = true;
    }
    if (symmetry && p.dim() >= 2) state_.symmetric_units[layer] = {twin_fraction(p, options_.symmetry_cosine), step};
  }
  ++state_.captures;
  for (auto& [layer, w] : weight_sq) {
    LayerStats& s = state_.layers[layer];
    s.weight_norm = std::sqrt(w);
    const auto matrix = matrix_sq.find(layer);
    s.matrix_weight_norm = matrix == matrix_sq.end() ? NAN : std::sqrt(matrix->second);
    if (grad_sq.count(layer)) {
      s.grad_norm = std::sqrt(grad_sq[layer]);
      s.grad_to_weight = s.grad_norm / (s.weight_norm + 1e-12);
    }
    if (!state_.first_layers.count(layer) || std::isnan(state_.first_layers[layer].grad_norm))
      state_.first_layers[layer] = s;
  }
}

void Monitor::after_backward(int64_t step, double loss, const torch::Tensor& inputs, const torch::Tensor& targets,
                             const torch::Tensor& outputs, double lr) {
  if (!options_.enabled) return;
  const Stopwatch timer(seconds_);
  torch::NoGradGuard no_grad;
  // Four loss windows; for small batches, windows of block means (loss_block_steps) need that many more steps.
  const size_t cap = static_cast<size_t>(options_.loss_window * 4 * loss_block_steps(state_.setup));
  if (!state_.first_step) {
    state_.first_step = step;
    state_.initial_loss = loss;
    record_initial_eval_loss(inputs, targets);
  }
  ++state_.steps_seen;
  push_bounded(state_.losses, {step, loss}, cap);
  if (!state_.first_window_loss && state_.steps_seen == options_.loss_window) {
    double sum = 0;
    for (const auto& [s, l] : state_.losses) sum += l;
    state_.first_window_loss = sum / static_cast<double>(state_.losses.size());
  }
  const int64_t block = 10 * loss_block_steps(state_.setup);
  if (state_.steps_seen % block == 0 && static_cast<int64_t>(state_.losses.size()) >= block) {
    double sum = 0;
    for (size_t i = state_.losses.size() - static_cast<size_t>(block); i < state_.losses.size(); ++i)
      sum += state_.losses[i].second;
    const double mean = sum / static_cast<double>(block);
    if (std::isfinite(mean) && (!state_.best_block_loss || mean < *state_.best_block_loss))
      state_.best_block_loss = mean;
  }
  if (!std::isnan(lr)) push_bounded(state_.lrs, {step, lr}, cap);

  // Global gradient norm: one dot per parameter.
  std::vector<torch::Tensor> grads;
  double grad_sq = 0;
  for (const auto& [name, p] : parameters_)
    if (p.grad().defined()) {
      grads.push_back(p.grad().detach());
      grad_sq += sum_of_squares(grads.back());
    }
  double grad_norm = std::sqrt(grad_sq);
  if (!std::isfinite(grad_norm) && !grads.empty()) {
    // A float32 norm overflows past ~3e38 while every element is finite; only a float64 norm tells an exploding
    // gradient (finite, huge) from a non-finite one.
    std::vector<torch::Tensor> norms;
    for (const auto& g : grads) norms.push_back(g.to(torch::kFloat64).norm());
    grad_norm = torch::stack(norms).norm().item<double>();
  }
  push_bounded(state_.grad_norms, {step, grad_norm}, cap);

  const bool detail = wants_activations(step) || detail_step_ == step;
  if (targets.defined() && state_.task == Task::Classification && !state_.label_counts.empty() &&
      targets.scalar_type() == torch::kLong) {
    const auto y = targets.reshape({-1});
    const auto counts = torch::bincount(y.cpu(), {}, state_.num_classes).contiguous();
    const int64_t* count = counts.data_ptr<int64_t>();  // one read, not one item() per class
    for (int64_t c = 0; c < std::min<int64_t>(counts.numel(), state_.num_classes); ++c)
      state_.label_counts[c] += count[c];
    const int64_t batch = y.size(0);
    if (outputs.defined() && outputs.dim() == 2 && outputs.size(0) == batch) {
      // One read for three numbers: correct predictions, and mean and std of the per-example cross-entropies.
      std::vector<torch::Tensor> parts = {(outputs.argmax(1) == y).sum().to(torch::kFloat64)};
      const bool per_example = outputs.size(1) == state_.num_classes && batch >= 2;
      if (per_example) {
        const auto ce = -torch::log_softmax(outputs.detach(), 1).gather(1, y.unsqueeze(1)).squeeze(1);
        const auto [sd, mean] = torch::std_mean(ce.to(torch::kFloat64));
        parts.push_back(mean);
        parts.push_back(sd);
      }
      const auto values = torch::stack(parts).cpu();
      const double* v = values.data_ptr<double>();
      state_.running_correct += v[0];
      state_.running_count += static_cast<double>(batch);
      // Only when our cross-entropy reproduces the reported loss (not e.g. label smoothing or another loss).
      if (per_example && std::isfinite(loss) && std::abs(v[1] - loss) <= 1e-3 * std::max(1.0, std::abs(loss)))
        push_bounded(state_.loss_sampling_std, {step, v[2] / std::sqrt(static_cast<double>(batch))}, cap);
    }
  }
  if (targets.defined() && state_.task == Task::Regression && targets.is_floating_point() &&
      (detail || state_.steps_seen <= 3)) {
    const auto yt = targets.detach().to(torch::kFloat64).reshape({-1});
    if (yt.numel() > 0) {
      const auto [lo, hi] = torch::aminmax(yt);
      const double y_lo = lo.item<double>(), y_hi = hi.item<double>();
      state_.target_abs_max = std::max({state_.target_abs_max, std::abs(y_lo), std::abs(y_hi)});
      state_.target_min = std::isnan(state_.target_min) ? y_lo : std::min(state_.target_min, y_lo);
      state_.target_max = std::isnan(state_.target_max) ? y_hi : std::max(state_.target_max, y_hi);
      state_.target_mean = yt.mean().item<double>();
      state_.target_rms = std::max(state_.target_rms, std::sqrt(sum_of_squares(yt) / static_cast<double>(yt.numel())));
    }
  }
  if (inputs.defined() && inputs.is_floating_point() && (detail || state_.steps_seen <= 3)) {
    const auto xi = inputs.detach().contiguous();
    const auto n = static_cast<double>(xi.numel());
    const auto [lo, hi] = torch::aminmax(xi);
    state_.input_abs_max =
        std::max({state_.input_abs_max, std::abs(lo.item<double>()), std::abs(hi.item<double>())});
    state_.input_mean = xi.sum().item<double>() / n;
    state_.input_std = xi.numel() > 1 ? std::sqrt(sum_of_squares(xi - state_.input_mean) / (n - 1)) : 0.0;
    state_.input_rms = std::max(state_.input_rms, std::sqrt(sum_of_squares(xi) / n));
  }

  if (!std::isfinite(loss) || !std::isfinite(grad_norm)) locate_non_finite(step, inputs);
  if (detail) {
    detail_step_ = step;
    detail_pending_ = true;
    capture_parameters(step, /*with_update=*/false);
    before_step_.clear();
    for (const auto& [name, p] : parameters_) before_step_.push_back(p.detach().clone());
  }
  run_rules(step, &Rule::on_step);
}

void Monitor::after_step(int64_t step) {
  if (!options_.enabled || !detail_pending_ || detail_step_ != step) return;
  const Stopwatch timer(seconds_);
  detail_pending_ = false;
  capture_parameters(step, /*with_update=*/true);
  before_step_.clear();
  run_rules(step, &Rule::on_detail);
  if (store_) {
    for (const auto& layer : state_.layer_order) {
      auto it = state_.layers.find(layer);
      if (it != state_.layers.end() && it->second.step == step)
        store_->log_layer_stats(run_id_, step, layer, it->second.scalars());
    }
    Scalars run_scalars;
    if (!state_.grad_norms.empty()) run_scalars.emplace_back("grad_norm", state_.grad_norms.back().second);
    store_->log_scalars(run_id_, step, run_scalars);
  }
}

void Monitor::on_evaluation(int64_t step, const Json& metrics) {
  if (!options_.enabled) return;
  const Stopwatch timer(seconds_);
  state_.evaluations.emplace_back(step, metrics);
  Json train = Json::object();
  if (state_.running_count > 0) train["accuracy"] = state_.running_correct / state_.running_count;
  double sum = 0;
  int64_t n = 0;
  for (auto it = state_.losses.rbegin(); it != state_.losses.rend() && n < options_.loss_window; ++it, ++n)
    sum += it->second;
  if (n > 0) train["loss"] = sum / static_cast<double>(n);
  state_.train_windows.emplace_back(step, train);
  state_.running_correct = state_.running_count = 0;
  if (state_.evaluations.size() > kMaxEvaluations) {
    state_.evaluations.erase(state_.evaluations.begin());
    state_.train_windows.erase(state_.train_windows.begin());
  }
  run_rules(step, &Rule::on_evaluation);
}

void Monitor::on_train_end(int64_t step) {
  if (!options_.enabled || state_.ended) return;
  state_.ended = true;
  {
    const Stopwatch timer(seconds_);
    capture_parameters(step, /*with_update=*/false);
    run_rules(step, &Rule::on_end);
  }
  // Its own cost (seconds()) goes to summary.json, not to the step series: wall time is not reproducible, and the
  // series must be (ckpt resume-check compares them bitwise).
  if (store_) store_->flush();
}

namespace {
Json series_json(const std::deque<std::pair<int64_t, double>>& d) {
  Json out = Json::array();
  for (const auto& [step, v] : d) out.push_back({step, std::isfinite(v) ? Json(v) : Json()});
  return out;
}
std::deque<std::pair<int64_t, double>> series_from(const Json& j) {
  std::deque<std::pair<int64_t, double>> out;
  for (const auto& p : j) out.emplace_back(p.at(0).get<int64_t>(), p.at(1).is_null() ? NAN : p.at(1).get<double>());
  return out;
}
}  // namespace

Json Monitor::save_state() const {
  Json j;
  j["findings"] = findings_.to_json();
  j["losses"] = series_json(state_.losses);
  j["grad_norms"] = series_json(state_.grad_norms);
  j["lrs"] = series_json(state_.lrs);
  j["initial_loss"] = state_.initial_loss ? Json(*state_.initial_loss) : Json();
  j["first_window_loss"] = state_.first_window_loss ? Json(*state_.first_window_loss) : Json();
  j["best_block_loss"] = state_.best_block_loss ? Json(*state_.best_block_loss) : Json();
  j["first_step"] = state_.first_step ? Json(*state_.first_step) : Json();
  j["label_counts"] = state_.label_counts;
  j["steps_seen"] = state_.steps_seen;
  j["running_correct"] = state_.running_correct;
  j["running_count"] = state_.running_count;
  Json evals = Json::array();
  for (size_t i = 0; i < state_.evaluations.size(); ++i)
    evals.push_back({state_.evaluations[i].first, state_.evaluations[i].second,
                     i < state_.train_windows.size() ? state_.train_windows[i].second : Json::object()});
  j["evaluations"] = evals;
  return j;
}

void Monitor::load_state(const Json& j) {
  try {
    for (const auto& f : j.at("findings")) findings_.add(Finding::from_json(f));
    state_.losses = series_from(j.at("losses"));
    state_.grad_norms = series_from(j.at("grad_norms"));
    state_.lrs = series_from(j.at("lrs"));
    if (!j.at("initial_loss").is_null()) state_.initial_loss = j["initial_loss"].get<double>();
    if (!j.at("first_window_loss").is_null()) state_.first_window_loss = j["first_window_loss"].get<double>();
    // Absent in checkpoints written before it existed: divergence then measures from the resumed steps on.
    if (j.contains("best_block_loss") && !j["best_block_loss"].is_null())
      state_.best_block_loss = j["best_block_loss"].get<double>();
    if (!j.at("first_step").is_null()) state_.first_step = j["first_step"].get<int64_t>();
    state_.label_counts = j.at("label_counts").get<std::vector<int64_t>>();
    state_.steps_seen = j.at("steps_seen").get<int64_t>();
    // Older checkpoints lack these; rules then restart their evaluation history.
    state_.running_correct = j.value("running_correct", 0.0);
    state_.running_count = j.value("running_count", 0.0);
    state_.evaluations.clear();
    state_.train_windows.clear();
    for (const auto& e : j.value("evaluations", Json::array())) {
      state_.evaluations.emplace_back(e.at(0).get<int64_t>(), e.at(1));
      state_.train_windows.emplace_back(e.at(0).get<int64_t>(), e.at(2));
    }
  } catch (const Json::exception& e) {
    TRAINDX_FAIL(CheckpointError, "the monitor state in the checkpoint is malformed: {}", e.what());
  }
}

void Monitor::add_findings(const std::vector<Finding>& findings) {
  for (const auto& f : findings) {
    if (!findings_.add(f)) continue;
    if (store_) store_->log_finding(run_id_, f.to_json());
    if (listener_) listener_(f);
    if (f.severity == Severity::Critical && options_.on_critical == "stop" && !stop_reason_) {
      // The headline is the cause the ranking puts first, which may be another finding than the one that
      // crossed the line (e.g. target_scale behind a diverging loss).
      const auto ranked = findings_.ranked();
      const Finding& top = ranked.empty() ? f : ranked.front();
      stop_reason_ = top.rule == f.rule && top.layer == f.layer
                         ? fmt::format("monitor: {} ({})", f.rule, f.message)
                         : fmt::format("monitor: {} ({}), which caused {} ({})", top.rule, top.message, f.rule,
                                       f.message);
    }
  }
}

void Monitor::run_rules(int64_t step, void (Rule::*hook)(const MonitorState&, const MonitorOptions&, int64_t,
                                                         std::vector<Finding>&)) {
  std::vector<Finding> out;
  for (auto& rule : rules_) (rule.get()->*hook)(state_, options_, step, out);
  add_findings(out);
}

std::optional<std::string> Monitor::stop_requested() const { return stop_reason_; }

void Monitor::locate_non_finite(int64_t step, const torch::Tensor& inputs) {
  if (located_non_finite_) return;
  located_non_finite_ = true;
  Finding f;
  f.rule = "nan_or_inf";
  f.severity = Severity::Critical;
  f.step = step;
  const double loss = state_.losses.empty() ? NAN : state_.losses.back().second;
  const double grad_norm = state_.grad_norms.empty() ? NAN : state_.grad_norms.back().second;
  f.evidence = {{"loss", loss}, {"grad_norm", grad_norm}};
  torch::NoGradGuard no_grad;

  // 1. Parameters already non-finite: an earlier update blew them up.
  for (const auto& [name, p] : parameters_) {
    const auto bad = p.numel() - torch::isfinite(p.detach()).sum().item<int64_t>();
    if (bad > 0) {
      f.layer = layer_of(name);
      f.evidence["phase"] = "parameters";
      f.evidence["parameter"] = name;
      f.evidence["non_finite_elements"] = bad;
      f.message = fmt::format("parameter {} holds {} non-finite values at step {}: an earlier update diverged",
                              name, bad, step);
      break;
    }
  }
  // 2. Forward: the first layer whose output is non-finite.
  if (f.layer.empty() && forward_ && inputs.defined()) {
    const int64_t bad_inputs = inputs.numel() - torch::isfinite(inputs).sum().item<int64_t>();
    if (bad_inputs > 0) {
      f.evidence["phase"] = "input";
      f.evidence["non_finite_inputs"] = bad_inputs;
      f.message = fmt::format("the input batch at step {} holds {} non-finite values", step, bad_inputs);
      f.layer = "input";
    } else {
      std::string first_bad;
      double input_abs_max = 0;
      std::string previous = "input";
      double previous_abs_max = inputs.abs().max().item<double>();
      forward_(inputs, [&](const std::string& layer, const torch::Tensor& out) {
        if (!first_bad.empty() || !out.is_floating_point()) return;
        const auto finite = torch::isfinite(out);
        if (!finite.all().item<bool>()) {
          first_bad = layer;
          input_abs_max = previous_abs_max;
          f.evidence["non_finite_outputs"] = out.numel() - finite.sum().item<int64_t>();
          f.evidence["previous_layer"] = previous;
        } else {
          previous = layer;
          previous_abs_max = out.abs().max().item<double>();
        }
      });
      if (!first_bad.empty()) {
        f.layer = first_bad;
        f.evidence["phase"] = "forward";
        f.evidence["input_abs_max"] = input_abs_max;
        f.message = fmt::format(
            "forward pass: layer {} is the first to output non-finite values at step {} (its input was finite, "
            "max |x| = {:.3g})",
            first_bad, step, input_abs_max);
      }
    }
  }
  // 3. Backward: the layer nearest the output with non-finite gradients is where they started.
  if (f.layer.empty()) {
    std::string origin;
    for (const auto& [name, p] : parameters_)
      if (p.grad().defined() && !torch::isfinite(p.grad()).all().item<bool>()) origin = name;  // last in order
    if (!origin.empty()) {
      f.layer = layer_of(origin);
      f.evidence["phase"] = "backward";
      f.evidence["parameter"] = origin;
      f.message = fmt::format(
          "backward pass: gradients first become non-finite at {} (nearest the output) at step {}; loss = {}",
          origin, step, loss);
    } else {
      f.evidence["phase"] = "loss";
      f.message = forward_ && inputs.defined()
                      ? fmt::format("the loss is {} at step {} while every layer output is finite: the loss "
                                    "computation itself overflowed (log of 0, huge targets)",
                                    loss, step)
                      : fmt::format("the loss is {} at step {} and no gradient is non-finite; give the monitor a "
                                    "forward function (Monitor::set_forward) to find the layer",
                                    loss, step);
    }
  }
  if (state_.first_step && step == *state_.first_step) {
    // Before any update the learning rate cannot be the cause: the weights or the inputs are.
    f.causes = {"weights initialised far too large for the depth (activations grow layer by layer)",
                "unnormalised inputs or targets (e.g. pixels 0..255) produce huge activations",
                "a numerically unsafe operation (log or division near 0, exp of a large value)"};
    f.fixes = {"use model.init = \"kaiming_normal\" (relu) or \"xavier_uniform\" (tanh/sigmoid), or a smaller "
               "init_std",
               "set data.normalize = true so inputs are standardised",
               "use a numerically stable loss (cross_entropy / bce_with_logits on logits, not log of softmax)"};
  } else {
    f.causes = {"learning rate too high: an update overshot and weights overflowed",
                "unnormalised inputs or targets (e.g. pixels 0..255) produce huge activations",
                "a numerically unsafe operation (log or division near 0, exp of a large value)",
                "exploding gradients without clipping"};
    f.fixes = {"lower train.lr by 10x (`traindx lr-find` suggests a value)",
               "set data.normalize = true so inputs are standardised", "set train.clip_grad_norm = 1.0",
               "use a numerically stable loss (cross_entropy / bce_with_logits on logits, not log of softmax)"};
  }
  add_findings({f});
}

torch::Tensor tapped_forward(torch::nn::Sequential& sequential, const torch::Tensor& input, Monitor& monitor,
                             int64_t step) {
  const auto names = sequential->named_children().keys();
  torch::Tensor x = input;
  size_t i = 0;
  for (auto it = sequential->begin(); it != sequential->end(); ++it, ++i) {
    x = it->forward(x);
    monitor.record_activation(step, i < names.size() ? names[i] : std::to_string(i), x);
  }
  return x;
}

TrainingSetup training_setup(Trainer& trainer) {
  TrainingSetup s;
  const TrainOptions& o = trainer.options();
  s.optimizer = o.optimizer.name;
  s.lr = o.optimizer.lr;
  s.weight_decay = o.optimizer.weight_decay;
  s.l2 = o.l2;
  s.momentum = o.optimizer.momentum;
  if (s.optimizer != "sgd") s.eps = o.optimizer.eps;
  if (s.optimizer == "adam" || s.optimizer == "adamw") {
    s.beta1 = o.optimizer.beta1;
    s.beta2 = o.optimizer.beta2;
  }
  s.batch_size = o.batch_size;
  s.loss = loss_name(trainer.loss_kind());
  const auto rows = trainer.model().summary();
  static const std::set<std::string> weight_types = {"linear", "conv2d"};
  std::vector<std::pair<std::string, int64_t>> weights;
  for (const auto& row : rows)
    if (weight_types.count(row.type) && !row.output_shape.empty()) weights.emplace_back(row.name, row.output_shape[0]);
  if (!weights.empty()) weights.pop_back();  // the output layer
  s.hidden_widths = weights;
  // The last layer at the top level that is not a weight, reshaping or pooling layer: an output activation.
  for (auto it = rows.rbegin(); it != rows.rend(); ++it) {
    if (it->name.find('.') != std::string::npos) continue;  // inside a residual block
    if (weight_types.count(it->type) || it->type == "residual") break;
    if (it->type == "flatten" || it->type == "dropout") continue;
    s.output_activation = it->type;
    break;
  }
  if (auto module = trainer.model().module()) {
    for (const auto& item : module->named_modules("", /*include_self=*/false)) {
      if (auto* d = item.value()->as<torch::nn::Dropout>()) s.dropout.emplace_back(item.key(), d->options.p());
    }
  }
  Model* model = &trainer.model();
  s.eval_forward = [model](const torch::Tensor& x) {
    torch::NoGradGuard no_grad;
    const bool was_training = model->is_training();
    model->train(false);
    auto out = model->forward(x);
    model->train(was_training);
    return out;
  };
  return s;
}

std::shared_ptr<Monitor> make_monitor(const MonitorOptions& options, Trainer& trainer) {
  auto monitor = std::make_shared<Monitor>(options, trainer.model().named_parameters());
  monitor->set_task(trainer.data().info.task, trainer.data().info.num_classes);
  std::vector<std::pair<std::string, std::string>> layers;
  for (const auto& row : trainer.model().summary()) layers.emplace_back(row.name, row.type);
  monitor->set_layers(layers);
  monitor->set_setup(training_setup(trainer));
  Model* model = &trainer.model();
  monitor->set_forward([model](const torch::Tensor& x, const LayerTap& tap) {
    torch::NoGradGuard no_grad;
    return model->forward_with_taps(x, tap);
  });
  return monitor;
}

}  // namespace traindx
