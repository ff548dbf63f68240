// The built-in rules; formulas and thresholds are documented in include/traindx/monitor/rules.h.
#include "traindx/monitor/rules.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace traindx {
namespace {

double median(std::vector<double> v) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Mean of the last n losses (fewer if not available).
double recent_mean(const MonitorState& s, int64_t n) {
  double sum = 0;
  int64_t k = 0;
  for (auto it = s.losses.rbegin(); it != s.losses.rend() && k < n; ++it, ++k) sum += it->second;
  return k ? sum / static_cast<double>(k) : NAN;
}

// Median update/weight ratio over layers updated at the current capture.
std::optional<double> median_update_ratio(const MonitorState& s, int64_t step) {
  std::vector<double> v;
  for (const auto& [name, l] : s.layers)
    if (l.step == step && l.has_params && !std::isnan(l.update_to_weight) && !l.grad_missing)
      v.push_back(l.update_to_weight);
  if (v.empty()) return std::nullopt;
  return median(v);
}

double current_lr(const MonitorState& s) { return s.lrs.empty() ? NAN : s.lrs.back().second; }

// cos(update, weights) below this over the median layer: the updates mostly shrink the weights. Gradient updates
// of a model that learns are nearly orthogonal to its weights (|cos| < 0.2 in the healthy runs of the fault zoo);
// weight decay or an L2 penalty that outweighs the data's gradient pulls every weight straight towards 0 (cos -1).
constexpr double kDecayDominatedCosine = -0.5;

// Median over layers of cos(update, weights) at this capture.
std::optional<double> median_update_weight_cosine(const MonitorState& s, int64_t step) {
  std::vector<double> v;
  for (const auto& [name, l] : s.layers)
    if (l.step == step && l.has_params && !l.grad_missing && std::isfinite(l.update_weight_cosine))
      v.push_back(l.update_weight_cosine);
  if (v.empty()) return std::nullopt;
  return median(v);
}

// Root mean square above which a batch is not standardised: standardised features have RMS 1 (min-max scaled ones
// at most 1); 3 leaves room for batch-to-batch variation.
constexpr double kStandardisedRmsBound = 3.0;

// Whether the inputs seen look standardised; advice to normalise them is noise when they already are.
bool inputs_standardised(const MonitorState& s) { return s.input_rms > 0 && s.input_rms <= kStandardisedRmsBound; }

// Median update/weight ratio at the newest capture that measured updates (none before the first optimizer step).
// `items` without the ones about normalising inputs when the inputs are already standardised.
std::vector<std::string> without_normalising(const MonitorState& s, std::vector<std::string> items) {
  if (!inputs_standardised(s)) return items;
  items.erase(std::remove_if(items.begin(), items.end(),
                             [](const std::string& t) {
                               return t.find("normalize") != std::string::npos ||
                                      t.find("not normalised") != std::string::npos;
                             }),
              items.end());
  return items;
}

std::optional<double> latest_median_update_ratio(const MonitorState& s) {
  int64_t latest = -1;
  for (const auto& [name, l] : s.layers)
    if (l.has_params && !std::isnan(l.update_to_weight)) latest = std::max(latest, l.step);
  if (latest < 0) return std::nullopt;
  return median_update_ratio(s, latest);
}

// Entropy (nats) of the class frequencies seen so far: the cross-entropy of the best predictor that ignores the
// inputs. None for regression or before any label.
std::optional<double> label_entropy(const MonitorState& s) {
  if (s.task != Task::Classification || s.label_counts.empty()) return std::nullopt;
  const double total = static_cast<double>(std::accumulate(s.label_counts.begin(), s.label_counts.end(), int64_t{0}));
  if (total <= 0) return std::nullopt;
  double h = 0;
  for (int64_t c : s.label_counts)
    if (c > 0) h -= static_cast<double>(c) / total * std::log(static_cast<double>(c) / total);
  return h;
}

std::string lr_fix_down(const MonitorState& s, double factor) {
  const double lr = current_lr(s);
  if (std::isnan(lr))
    return fmt::format("lower the learning rate about {}x; `traindx lr-find` suggests a value", factor);
  return fmt::format("lower train.lr from {:.3g} to about {:.3g}; `traindx lr-find` suggests a value", lr, lr / factor);
}

std::string lr_fix_up(const MonitorState& s, double factor) {
  const double lr = current_lr(s);
  if (std::isnan(lr))
    return fmt::format("raise the learning rate about {}x; `traindx lr-find` suggests a value", factor);
  return fmt::format("raise train.lr from {:.3g} to about {:.3g}; `traindx lr-find` suggests a value", lr, lr * factor);
}

// Diverging: the mean of the last 10 losses is above the start and far above the best level reached so far — the
// best 10-step mean of the whole run or the loss at step 0, whichever is lower. The start counts because a loss that
// climbs within the first 10 steps (e.g. 2.3 -> 20) has no earlier block to compare with.
// For batches below 32 examples the blocks are 10 x loss_block_steps steps and the start is the first window's
// mean: one example's loss says little.
bool loss_diverging(const MonitorState& s, const MonitorOptions& o) {
  const int64_t m = loss_block_steps(s.setup);
  const auto n = static_cast<size_t>(10 * m);
  if (s.losses.size() < n || !s.initial_loss || !std::isfinite(*s.initial_loss)) return false;
  const std::optional<double> start = m == 1 ? s.initial_loss : s.first_window_loss;
  if (!start || !std::isfinite(*start)) return false;
  const double last = recent_mean(s, static_cast<int64_t>(n));
  const double best = std::min(s.best_block_loss.value_or(INFINITY), *start);
  return std::isfinite(last) && last > o.divergence_factor * best && last > *start;
}

// Examples a block of steps must hold before its mean loss is judged for oscillation; below 32 a batch's loss
// scatters like that of single examples (batch 1: the per-example loss itself).
constexpr int64_t kOscillationBlockExamples = 32;

int64_t oscillation_block(const MonitorState& s) { return loss_block_steps(s.setup); }

struct Oscillation {
  double cv = 0, mean = 0, slope = 0;
  double scatter = 0;         // std of the residuals around the trend
  double sampling_std = NAN;  // mean minibatch sampling std of the batch losses over the window, when known
  bool present = false;
};

// Scatter this many times what minibatch sampling alone produces is no longer noise: at 2, three quarters of the
// variance of the batch loss come from the model changing between steps. Under a stable model the ratio is
// 1 +- 1/sqrt(2w) (~0.11 for w = 40); healthy runs of the fault zoo measure 1.0-1.3 (1.8 for 8x8 digits near a
// loss of 0, batch 32), runs with a learning rate 10x too high 2-3.7 (docs/benchmarks.md).
constexpr double kOscillationOverSampling = 2.0;

// Oscillation is spread around the trend, not the trend itself: a fast-falling loss early in training has a large
// plain CV but small residuals. Residuals from a least-squares line over the window, relative to the window mean.
Oscillation oscillation(const MonitorState& s, const MonitorOptions& o) {
  Oscillation r;
  // A batch of a few examples scatters like single examples do, whatever the model: the loss is judged on means
  // over blocks of m steps that together hold at least kOscillationBlockExamples examples.
  const int64_t m = oscillation_block(s);
  const auto w = static_cast<size_t>(o.loss_window);
  if (s.losses.size() < w * static_cast<size_t>(m) || s.steps_seen < 2 * o.loss_window * m) return r;
  std::vector<double> v;
  for (size_t i = s.losses.size() - w * static_cast<size_t>(m); i + static_cast<size_t>(m) <= s.losses.size();
       i += static_cast<size_t>(m)) {
    double block = 0;
    for (size_t j = i; j < i + static_cast<size_t>(m); ++j) block += s.losses[j].second;
    v.push_back(block / static_cast<double>(m));
  }
  const double n = static_cast<double>(v.size());
  r.mean = std::accumulate(v.begin(), v.end(), 0.0) / n;
  const double t_mean = (n - 1) / 2.0;
  double sxy = 0, sxx = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    sxy += (static_cast<double>(i) - t_mean) * (v[i] - r.mean);
    sxx += (static_cast<double>(i) - t_mean) * (static_cast<double>(i) - t_mean);
  }
  r.slope = sxx > 0 ? sxy / sxx : 0.0;
  double ss = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    const double fit = r.mean + r.slope * (static_cast<double>(i) - t_mean);
    ss += (v[i] - fit) * (v[i] - fit);
  }
  r.scatter = std::sqrt(ss / (n - 2));
  r.cv = r.mean > 0 ? r.scatter / r.mean : 0.0;
  // How much the batch loss scatters from minibatch sampling alone, pooled over the window (the mean of the
  // variances: averaging stds would understate it for heavy-tailed per-example losses).
  const int64_t window_start = s.losses[s.losses.size() - w * static_cast<size_t>(m)].first;
  double noise_var = 0;
  size_t noise_n = 0;
  for (const auto& [step, sd] : s.loss_sampling_std)
    if (step >= window_start) {
      noise_var += sd * sd;
      ++noise_n;
    }
  // A block mean of m batches scatters sqrt(m) times less than one batch.
  if (noise_n >= w / 2) r.sampling_std = std::sqrt(noise_var / static_cast<double>(noise_n) / static_cast<double>(m));
  const double floor = 0.05 * s.initial_loss.value_or(r.mean);
  // With the sampling noise measured, oscillation is scatter well beyond it: the model's loss moving from step to
  // step, not the batches differing. Without it, a scatter above oscillation_cv of the mean stands in for that
  // test (healthy runs scatter 0.2-0.3 of their mean away from convergence).
  const bool beyond_noise = std::isnan(r.sampling_std) ? std::isfinite(r.cv) && r.cv > o.oscillation_cv
                                                        : r.scatter > kOscillationOverSampling * r.sampling_std;
  r.present = beyond_noise && r.mean > floor;
  return r;
}

// ---- rules ----------------------------------------------------------------------------------------------------

class NanOrInfRule : public Rule {
 public:
  const char* id() const override { return "nan_or_inf"; }
  // The step-level detection and localisation live in Monitor::locate_non_finite; this catches non-finite values
  // that a detailed capture sees in activations or parameters while the loss is still finite.
  void on_detail(const MonitorState& s, const MonitorOptions&, int64_t step, std::vector<Finding>& out) override {
    // A non-finite loss or gradient norm at this step was already located (with the forward/backward phase and
    // the parameter); a second report for the same (rule, layer) would overwrite that evidence.
    if (!s.losses.empty() && s.losses.back().first == step && !std::isfinite(s.losses.back().second)) return;
    if (!s.grad_norms.empty() && s.grad_norms.back().first == step && !std::isfinite(s.grad_norms.back().second))
      return;
    for (const auto& layer : s.layer_order) {
      auto it = s.layers.find(layer);
      if (it == s.layers.end() || it->second.step != step) continue;
      const LayerStats& l = it->second;
      if (l.act_nonfinite > 0 || l.param_nonfinite > 0) {
        out.push_back(make_finding(id(), Severity::Critical, step, layer,
                           fmt::format("layer {} has {} non-finite outputs and {} non-finite parameters at step {}",
                                       layer, l.act_nonfinite, l.param_nonfinite, step),
                           {{"act_nonfinite", l.act_nonfinite}, {"param_nonfinite", l.param_nonfinite}},
                           {"overflow in this layer (huge inputs or weights)", "learning rate too high"},
                           {"lower train.lr by 10x", "set data.normalize = true", "set train.clip_grad_norm = 1.0"}));
        return;  // the first one in forward order is the origin
      }
    }
  }
};

class ExplodingGradientRule : public Rule {
 public:
  const char* id() const override { return "exploding_gradient"; }
  void on_step(const MonitorState& s, const MonitorOptions& o, int64_t step, std::vector<Finding>& out) override {
    if (s.grad_norms.empty()) return;
    const double g = s.grad_norms.back().second;
    if (!std::isfinite(g)) return;  // nan_or_inf reports it
    if (s.grad_norms.size() <= 10 && g <= o.exploding_grad_norm) return;
    std::vector<double> early;
    for (size_t i = 0; i < std::min<size_t>(10, s.grad_norms.size()); ++i) early.push_back(s.grad_norms[i].second);
    const double base = median(early);
    const bool absolute = g > o.exploding_grad_norm;
    const bool growth = s.grad_norms.size() > 10 && base > 0 && g > o.exploding_growth * base;
    if (!absolute && !growth) return;
    out.push_back(make_finding(
        id(), Severity::Warning, step, "",
        absolute ? fmt::format("global gradient norm {:.3g} at step {} exceeds {:.3g}", g, step, o.exploding_grad_norm)
                 : fmt::format("global gradient norm {:.3g} at step {} is {:.0f}x its early median {:.3g}", g, step,
                               g / base, base),
        {{"grad_norm", g}, {"early_median", base}, {"threshold", o.exploding_grad_norm},
         {"growth_threshold", o.exploding_growth}},
        {"learning rate too high", "unnormalised inputs or targets", "a deep network without normalisation layers",
         "loss scale too large (sum instead of mean)"},
        {"set train.clip_grad_norm = 1.0", lr_fix_down(s, 10), "add batchnorm or layernorm layers",
         "set data.normalize = true"}));
  }
};

class VanishingGradientRule : public Rule {
 public:
  const char* id() const override { return "vanishing_gradient"; }
  void on_detail(const MonitorState& s, const MonitorOptions& o, int64_t step, std::vector<Finding>& out) override {
    std::vector<const LayerStats*> with_grads;
    for (const auto& layer : s.layer_order) {
      auto it = s.layers.find(layer);
      if (it == s.layers.end() || it->second.step != step || !it->second.has_params || it->second.grad_missing)
        continue;
      if (std::isnan(it->second.grad_norm)) continue;
      with_grads.push_back(&it->second);
    }
    // Parameter-only layers not in layer_order (custom modules) still count.
    for (const auto& [name, l] : s.layers)
      if (l.step == step && l.has_params && !l.grad_missing && !std::isnan(l.grad_norm) &&
          std::find(s.layer_order.begin(), s.layer_order.end(), name) == s.layer_order.end())
        with_grads.push_back(&l);
    for (const LayerStats* l : with_grads) {
      // Exactly zero is no gradient path at all (dead units, a detached branch): unchanged_parameter's case.
      if (l->grad_norm < o.vanishing_grad_norm && l->grad_norm > 0 && l->weight_norm > 0) {
        out.push_back(make_finding(id(), Severity::Warning, step, l->layer,
                           fmt::format("layer {} has gradient norm {:.3g} < {:.3g} at step {}", l->layer,
                                       l->grad_norm, o.vanishing_grad_norm, step),
                           {{"grad_norm", l->grad_norm}, {"threshold", o.vanishing_grad_norm}},
                           {"saturating activations (sigmoid/tanh) stacked deeply",
                            "weights initialised too small", "dead ReLUs upstream"},
                           {"use relu or gelu activations", "use model.init = \"kaiming_normal\"",
                            "add batchnorm layers or residual blocks"}));
      }
    }
    if (with_grads.size() >= 2) {
      const LayerStats* first = with_grads.front();
      const LayerStats* last = with_grads.back();
      if (last->grad_to_weight > 0 && first->grad_to_weight > 0) {
        const double ratio = first->grad_to_weight / last->grad_to_weight;
        if (ratio < o.vanishing_depth_ratio) {
          out.push_back(make_finding(
              id(), Severity::Warning, step, first->layer,
              fmt::format("gradients shrink {:.3g}x from {} (last) to {} (first) at step {}", 1.0 / ratio,
                          last->layer, first->layer, step),
              {{"first_layer", first->layer}, {"last_layer", last->layer},
               {"first_grad_to_weight", first->grad_to_weight}, {"last_grad_to_weight", last->grad_to_weight},
               {"ratio", ratio}, {"threshold", o.vanishing_depth_ratio}},
              {"a deep stack of saturating activations (sigmoid, tanh)", "no normalisation or skip connections",
               "initialisation that shrinks activations with depth"},
              {"replace sigmoid/tanh by relu", "add batchnorm layers or residual blocks",
               "use model.init = \"kaiming_normal\" (or xavier for tanh)"}));
        }
      }
    }
  }
};

class DeadReluRule : public Rule {
 public:
  const char* id() const override { return "dead_relu"; }
  void on_detail(const MonitorState& s, const MonitorOptions& o, int64_t step, std::vector<Finding>& out) override {
    for (const auto& [name, l] : s.layers) {
      if (l.step != step || l.type != "relu" || std::isnan(l.act_dead_units)) continue;
      if (l.act_dead_units <= o.dead_fraction) continue;
      const bool all = l.act_dead_units >= 1.0;
      out.push_back(make_finding(id(), all ? Severity::Critical : Severity::Warning, step, name,
                         fmt::format("{:.0f}% of the units of {} output 0 for the whole batch at step {}",
                                     100 * l.act_dead_units, name, step),
                         {{"dead_unit_fraction", l.act_dead_units}, {"zero_fraction", l.act_zero_fraction},
                          {"threshold", o.dead_fraction}},
                         without_normalising(s, {"large negative biases (bias_init constant below 0)",
                                                 "learning rate too high knocked units into the negative regime",
                                                 "inputs not normalised"}),
                         {"use model.bias_init = \"zeros\"", "use leaky_relu or gelu", lr_fix_down(s, 10),
                          "add batchnorm before the activation"}));
    }
  }
};

class SaturatedActivationRule : public Rule {
 public:
  const char* id() const override { return "saturated_activation"; }
  void on_detail(const MonitorState& s, const MonitorOptions& o, int64_t step, std::vector<Finding>& out) override {
    for (const auto& [name, l] : s.layers) {
      if (l.step != step || std::isnan(l.act_saturated_fraction)) continue;
      if (l.act_saturated_fraction <= o.saturation_fraction) continue;
      out.push_back(make_finding(id(), Severity::Warning, step, name,
                         fmt::format("{:.0f}% of the {} outputs of {} sit within 1% of their bounds at step {}",
                                     100 * l.act_saturated_fraction, l.type, name, step),
                         {{"saturated_fraction", l.act_saturated_fraction}, {"threshold", o.saturation_fraction},
                          {"act_mean", l.act_mean}, {"act_std", l.act_std}},
                         inputs_standardised(s)
                             ? std::vector<std::string>{"pre-activations too large: weights initialised too large",
                                                        "learning rate too high"}
                             : std::vector<std::string>{"pre-activations too large: unnormalised inputs or weights "
                                                        "initialised too large",
                                                        "learning rate too high"},
                         without_normalising(s, {"set data.normalize = true",
                                                 "use model.init = \"xavier_uniform\" for sigmoid/tanh",
                                                 "replace sigmoid/tanh by relu in hidden layers",
                                                 "add batchnorm before the activation"})));
    }
  }
};

// Causes and fixes for a loss that does not fall, ordered by what the update sizes say: tiny updates point at the
// learning rate being too low, huge ones at it being too high (the loss bounces instead of falling), and updates of
// a healthy size at the data or the wiring (labels unrelated to inputs, frozen parameters).
std::pair<std::vector<std::string>, std::vector<std::string>> not_decreasing_advice(const MonitorState& s,
                                                                                    const MonitorOptions& o) {
  const auto u = latest_median_update_ratio(s);
  if (u && *u < 1e-4)
    return {{"learning rate far too low", "parameters frozen or missing from the optimizer",
             "labels unrelated to inputs (shuffled or wrong labels)"},
            {lr_fix_up(s, 10), "check the unchanged_parameter findings",
             "check labels against inputs (run `traindx doctor`)"}};
  if (u && *u > o.update_ratio_high)
    return {{"learning rate too high: updates overshoot and the loss bounces instead of falling",
             "dead or saturated units after a too-large update"},
            {lr_fix_down(s, 10), "check the dead_relu and saturated_activation findings"}};
  return {{"labels unrelated to inputs (shuffled or wrong labels)", "parameters frozen or missing from the optimizer",
           "a bug between loss and optimizer step", "learning rate too low"},
          {"check labels against inputs (run `traindx doctor`)", "check the unchanged_parameter findings",
           lr_fix_up(s, 3)}};
}

class LossNotDecreasingRule : public Rule {
 public:
  const char* id() const override { return "loss_not_decreasing"; }
  void on_step(const MonitorState& s, const MonitorOptions& o, int64_t step, std::vector<Finding>& out) override {
    if (!s.first_window_loss || s.steps_seen < 2 * o.loss_window || s.steps_seen % (o.loss_window / 2) != 0) return;
    const double recent = recent_mean(s, o.loss_window);
    const double first = *s.first_window_loss;
    if (!std::isfinite(recent)) return;
    const bool flat = recent > (1.0 - o.loss_min_improvement) * first;
    // A classifier that only learned the class frequencies (e.g. from a badly scaled start down to ln C) has a
    // falling loss yet has learned nothing about its inputs: compare with the loss of that input-blind predictor.
    const auto entropy = label_entropy(s);
    const bool blind = entropy && recent > (1.0 - o.loss_min_improvement) * *entropy;
    if (!flat && !blind) return;
    const auto advice = not_decreasing_advice(s, o);
    const std::string message =
        flat ? fmt::format("the loss has not decreased in {} steps: mean {:.4g} over the last {} steps vs {:.4g} over "
                           "the first {}",
                           s.steps_seen, recent, o.loss_window, first, o.loss_window)
             : fmt::format("after {} steps the loss (mean {:.4g} over the last {}) is no lower than {:.4g}, the loss "
                           "of predicting the class frequencies without looking at the inputs",
                           s.steps_seen, recent, o.loss_window, *entropy);
    out.push_back(make_finding(id(), Severity::Warning, step, "", message,
                       {{"recent_mean", recent}, {"first_window_mean", first}, {"window", o.loss_window},
                        {"min_improvement", o.loss_min_improvement},
                        {"label_entropy", entropy ? Json(*entropy) : Json()}},
                       advice.first, advice.second));
  }
};

class LossDivergingRule : public Rule {
 public:
  const char* id() const override { return "loss_diverging"; }
  void on_step(const MonitorState& s, const MonitorOptions& o, int64_t step, std::vector<Finding>& out) override {
    if (!loss_diverging(s, o)) return;
    const double last = recent_mean(s, 10);
    out.push_back(make_finding(id(), Severity::Critical, step, "",
                       fmt::format("the loss is diverging: mean {:.4g} over the last 10 steps, above {}x its best "
                                   "and above the start ({:.4g}) at step {}",
                                   last, o.divergence_factor, s.initial_loss.value_or(NAN), step),
                       {{"recent_mean", last}, {"initial_loss", s.initial_loss.value_or(NAN)},
                        {"factor", o.divergence_factor}, {"lr", current_lr(s)}},
                       {"learning rate too high", "no gradient clipping with exploding gradients",
                        "unnormalised inputs"},
                       {lr_fix_down(s, 10), "set train.clip_grad_norm = 1.0",
                        "add a warm-up: train.warmup_steps = 100"}));
  }
};

class LossOscillatingRule : public Rule {
 public:
  const char* id() const override { return "loss_oscillating"; }
  void on_step(const MonitorState& s, const MonitorOptions& o, int64_t step, std::vector<Finding>& out) override {
    if (s.steps_seen % (o.loss_window / 2) != 0) return;
    const Oscillation r = oscillation(s, o);
    if (!r.present) return;
    out.push_back(make_finding(id(), Severity::Warning, step, "",
                       std::isnan(r.sampling_std)
                           ? fmt::format("the loss oscillates: it scatters {:.2f}x its mean ({:.4g}) around its trend "
                                         "over the last {} steps",
                                         r.cv, r.mean, o.loss_window)
                           : fmt::format("the loss oscillates: over the last {} steps it scatters {:.3g} around its "
                                         "trend (mean {:.4g}), {:.1f}x what minibatch sampling alone explains",
                                         o.loss_window, r.scatter, r.mean, r.scatter / r.sampling_std),
                       {{"residual_cv", r.cv}, {"mean", r.mean}, {"slope_per_step", r.slope},
                        {"threshold", o.oscillation_cv}, {"residual_std", r.scatter},
                        {"sampling_std", std::isnan(r.sampling_std) ? Json() : Json(r.sampling_std)}},
                       {"learning rate too high", "batch too small for the learning rate",
                        "momentum too high"},
                       {lr_fix_down(s, 3), "raise train.batch_size", "use a decaying schedule (train.schedule = "
                        "\"cosine\")"}));
  }
};

class LrTooHighRule : public Rule {
 public:
  const char* id() const override { return "lr_too_high"; }
  void on_detail(const MonitorState& s, const MonitorOptions& o, int64_t step, std::vector<Finding>& out) override {
    const auto u = median_update_ratio(s, step);
    if (!u || !std::isfinite(*u)) return;
    // Updates that only shrink the weights measure lr x weight decay, not a rate too high for the data:
    // regularization_too_strong reports them.
    const auto cosine = median_update_weight_cosine(s, step);
    if (cosine && *cosine < kDecayDominatedCosine) return;
    const bool diverging = loss_diverging(s, o);
    const bool oscillating = oscillation(s, o).present;
    const bool ratio_high = *u > o.update_ratio_high;
    if (!ratio_high && !((diverging || oscillating) && *u > 0.01)) return;
    const Severity sev = (*u > 10 * o.update_ratio_high || diverging) ? Severity::Critical : Severity::Warning;
    out.push_back(make_finding(
        id(), sev, step, "",
        fmt::format("updates are {:.3g} of the weights per step (median over layers; healthy is ~1e-3){} at lr {:.3g}",
                    *u, diverging ? " and the loss diverges" : (oscillating ? " and the loss oscillates" : ""),
                    current_lr(s)),
        {{"median_update_to_weight", *u}, {"threshold", o.update_ratio_high}, {"lr", current_lr(s)},
         {"loss_diverging", diverging}, {"loss_oscillating", oscillating}},
        {"train.lr too high for this optimizer and model", "no warm-up for a large batch or Adam"},
        {lr_fix_down(s, std::max(10.0, std::pow(10.0, std::ceil(std::log10(*u / 1e-3)))))}));
  }
};

class LrTooLowRule : public Rule {
 public:
  const char* id() const override { return "lr_too_low"; }
  void on_detail(const MonitorState& s, const MonitorOptions& o, int64_t step, std::vector<Finding>& out) override {
    const auto u = median_update_ratio(s, step);
    if (!u || !std::isfinite(*u)) return;
    // Updates follow the gradients: when a layer gets (almost) no gradient the updates are small whatever the rate,
    // and raising it would not help. vanishing_gradient / unchanged_parameter / dead_relu name that cause instead.
    for (const auto& [name, l] : s.layers)
      if (l.step == step && l.has_params && !l.grad_missing && l.grad_norm < o.vanishing_grad_norm) return;
    bool stalled = false;
    if (s.first_window_loss && s.steps_seen >= 2 * o.loss_window)
      stalled = recent_mean(s, o.loss_window) > (1.0 - o.loss_min_improvement) * *s.first_window_loss;
    if (!(*u < o.update_ratio_low) && !(stalled && *u < 1e-4)) return;
    out.push_back(make_finding(
        id(), Severity::Warning, step, "",
        fmt::format("updates are only {:.3g} of the weights per step (median over layers; healthy is ~1e-3) at lr "
                    "{:.3g}{}",
                    *u, current_lr(s), stalled ? " and the loss is not decreasing" : ""),
        {{"median_update_to_weight", *u}, {"threshold", o.update_ratio_low}, {"lr", current_lr(s)},
         {"loss_stalled", stalled}},
        {"train.lr far too low", "a schedule that decayed the rate too early"},
        {lr_fix_up(s, std::max(10.0, std::pow(10.0, std::floor(std::log10(1e-3 / std::max(*u, 1e-30))))))}));
  }
};

class WeightUpdateRatioRule : public Rule {
 public:
  const char* id() const override { return "weight_update_ratio"; }
  void on_detail(const MonitorState& s, const MonitorOptions& o, int64_t step, std::vector<Finding>& out) override {
    const auto med = median_update_ratio(s, step);
    if (!med || *med > o.update_ratio_high || *med < o.update_ratio_low) return;  // lr rules speak for all layers
    for (const auto& [name, l] : s.layers) {
      if (l.step != step || !l.has_params || l.grad_missing || std::isnan(l.update_to_weight)) continue;
      const double u = l.update_to_weight;
      if (u > 0 && u >= o.update_ratio_low && u <= o.update_ratio_high) continue;
      if (u == 0) continue;  // unchanged_parameter reports it
      // Moving by more than its own norm in one step, the layer is rewritten rather than trained: worth a warning.
      out.push_back(make_finding(id(), u > 1.0 ? Severity::Warning : Severity::Info, step, name,
                         fmt::format("layer {} updates {:.3g} of its weights per step while the median layer "
                                     "updates {:.3g}",
                                     name, u, *med),
                         {{"update_to_weight", u}, {"median", *med}, {"low", o.update_ratio_low},
                          {"high", o.update_ratio_high}},
                         {"this layer's weights are far smaller or larger than the others'",
                          "its gradients are scaled differently (e.g. an embedding or output layer)"},
                         {"check this layer's initialisation", "use an adaptive optimizer (adam) or per-layer "
                          "learning rates"}));
    }
  }
};

class PoorInitializationRule : public Rule {
 public:
  const char* id() const override { return "poor_initialization"; }
  void on_step(const MonitorState& s, const MonitorOptions& o, int64_t step, std::vector<Finding>& out) override {
    if (s.steps_seen != 1 || s.task != Task::Classification || s.num_classes < 2 || !s.initial_loss) return;
    // A negative cross-entropy is not an initialisation problem: loss_output_mismatch names it.
    if (*s.initial_loss < 0) return;
    const double expected = std::log(static_cast<double>(s.num_classes));
    // With dropout the training-mode loss at init is inflated by the 1/(1-p) scaling of the kept units; the
    // inference-mode loss (setup.eval_forward) says what the initialisation did.
    const bool eval_mode = s.initial_eval_loss.has_value();
    const double l0 = eval_mode ? *s.initial_eval_loss : *s.initial_loss;
    if (!std::isfinite(l0)) return;
    const double rel = std::abs(l0 - expected) / expected;
    if (rel <= o.init_loss_tolerance) return;
    out.push_back(make_finding(id(), Severity::Warning, step, "",
                       fmt::format("loss at initialisation is {:.4g}, {:.0f}% away from ln({}) = {:.4g} expected of "
                                   "a fresh classifier",
                                   l0, 100 * rel, s.num_classes, expected),
                       {{"initial_loss", l0}, {"expected", expected}, {"relative_error", rel},
                        {"tolerance", o.init_loss_tolerance}, {"inference_mode", eval_mode}},
                       {"weights initialised too large (confident wrong predictions)",
                        "unnormalised inputs", "a final layer with a large bias"},
                       {"use model.init = \"kaiming_uniform\" or \"xavier_uniform\"", "set data.normalize = true",
                        "initialise the last layer's weights small (init = \"normal\", init_std = 0.01)"}));
  }
  void on_detail(const MonitorState& s, const MonitorOptions& o, int64_t step, std::vector<Finding>& out) override {
    if (!s.first_step || step != *s.first_step) return;
    std::vector<std::pair<std::string, double>> stds;
    for (const auto& layer : s.layer_order) {
      auto it = s.layers.find(layer);
      if (it == s.layers.end() || it->second.step != step || std::isnan(it->second.act_std)) continue;
      const std::string& t = it->second.type;
      if (t == "linear" || t == "conv2d") stds.emplace_back(layer, it->second.act_std);
    }
    if (stds.size() < 3) return;
    const double first = stds.front().second, last = stds.back().second;
    if (first <= 0 || last < 0) return;
    const double ratio = last / first;
    if (ratio <= o.activation_depth_ratio && ratio >= 1.0 / o.activation_depth_ratio) return;
    out.push_back(make_finding(id(), Severity::Warning, step, stds.back().first,
                       fmt::format("activation scale {} with depth at initialisation: std {:.3g} after {} vs {:.3g} "
                                   "after {} ({:.3g}x)",
                                   ratio < 1 ? "collapses" : "explodes", last, stds.back().first, first,
                                   stds.front().first, ratio),
                       {{"first_layer", stds.front().first}, {"first_std", first}, {"last_layer", stds.back().first},
                        {"last_std", last}, {"ratio", ratio}, {"threshold", o.activation_depth_ratio}},
                       {ratio < 1 ? "weights initialised too small for the depth" : "weights initialised too large",
                        "an init scheme that does not match the activations"},
                       {"use model.init = \"kaiming_normal\" for relu networks or \"xavier_uniform\" for tanh",
                        "add batchnorm layers"}));
  }
};

class SymmetricWeightsRule : public Rule {
 public:
  const char* id() const override { return "symmetric_weights"; }
  void on_detail(const MonitorState& s, const MonitorOptions& o, int64_t step, std::vector<Finding>& out) override {
    // The monitor measures the twin fraction of every weight matrix (Monitor::capture_parameters).
    for (const auto& [name, frac] : s.symmetric_units) {
      if (frac.second != step || frac.first <= 0.5) continue;
      out.push_back(make_finding(id(), Severity::Critical, step, name,
                         fmt::format("{:.0f}% of the units of {} have an identical twin (cosine > {}) at step {}: they "
                                     "get identical gradients and can never become different",
                                     100 * frac.first, name, o.symmetry_cosine, step),
                         {{"twin_fraction", frac.first}, {"cosine_threshold", o.symmetry_cosine}},
                         {"constant or zero weight initialisation (model.init = \"constant\"/\"zeros\")",
                          "weights copied from one unit to all"},
                         {"use model.init = \"kaiming_uniform\" (or \"default\")",
                          "never initialise weights to a constant; constant init is for biases only"}));
    }
  }
};

class OverfittingRule : public Rule {
 public:
  const char* id() const override { return "overfitting"; }
  void on_evaluation(const MonitorState& s, const MonitorOptions& o, int64_t step, std::vector<Finding>& out) override {
    if (s.evaluations.empty()) return;
    const Json& val = s.evaluations.back().second;
    const Json& train = s.train_windows.back().second;
    Json evidence = Json::object();
    std::string message;
    // Running train accuracy averages over the steps since the last evaluation while validation sees the current
    // weights; an unstable run can open a gap for one evaluation. Two evaluations in a row (early stopping's
    // patience of 2) make it a trend.
    auto accuracy_gap = [&](size_t i) -> double {
      const Json& v = s.evaluations[i].second;
      const Json& t = s.train_windows[i].second;
      if (!v.contains("val_accuracy") || !t.contains("accuracy")) return -std::numeric_limits<double>::infinity();
      return t["accuracy"].get<double>() - v["val_accuracy"].get<double>();
    };
    if (s.evaluations.size() >= 2 && val.contains("val_accuracy") && train.contains("accuracy")) {
      const double gap = accuracy_gap(s.evaluations.size() - 1);
      if (gap > o.overfit_gap && accuracy_gap(s.evaluations.size() - 2) > o.overfit_gap) {
        evidence = {{"train_accuracy", train["accuracy"]}, {"val_accuracy", val["val_accuracy"]}, {"gap", gap},
                    {"threshold", o.overfit_gap}};
        message = fmt::format("train accuracy {:.3f} vs validation {:.3f} at step {}: a gap of {:.3f}",
                              train["accuracy"].get<double>(), val["val_accuracy"].get<double>(), step, gap);
      }
    }
    if (message.empty() && s.evaluations.size() >= 3 && val.contains("val_loss")) {
      double best = INFINITY;
      for (const auto& [st, m] : s.evaluations)
        if (m.contains("val_loss")) best = std::min(best, m["val_loss"].get<double>());
      const double now = val["val_loss"].get<double>();
      // Two evaluations in a row above the bound (early stopping's patience of 2): one noisy evaluation near a
      // small loss floor is not a trend.
      const Json& before = s.evaluations[s.evaluations.size() - 2].second;
      const double previous = before.contains("val_loss") ? before["val_loss"].get<double>() : NAN;
      const double train_then = s.train_windows.front().second.value("loss", NAN);
      const double train_now = train.value("loss", NAN);
      // Relative to |best|, so that a loss below zero (a bug loss_output_mismatch reports) cannot flip the test.
      const double bound = best + 0.2 * std::abs(best);
      if (best >= 0 && now > bound && previous > bound && train_now < train_then) {
        evidence = {{"val_loss", now}, {"best_val_loss", best}, {"train_loss", train_now}};
        message = fmt::format("validation loss rose to {:.4g} from its best {:.4g} while the train loss kept "
                              "falling ({:.4g}) at step {}",
                              now, best, train_now, step);
      }
    }
    if (message.empty()) return;
    out.push_back(make_finding(id(), Severity::Warning, step, "", message, evidence,
                       {"too little training data for the model's capacity", "no regularisation",
                        "training too long"},
                       {"add regularisation: train.weight_decay = 1e-4 or dropout layers",
                        "enable early stopping: train.early_stopping_metric = \"val_loss\"",
                        "use more training data or augmentation", "use a smaller model"}));
  }
};

class UnderfittingRule : public Rule {
 public:
  const char* id() const override { return "underfitting"; }
  static double threshold(const MonitorState& s, const MonitorOptions& o) {
    if (o.underfit_accuracy > 0) return o.underfit_accuracy;
    const double chance = 1.0 / static_cast<double>(std::max<int64_t>(2, s.num_classes));
    return chance + 0.5 * (1.0 - chance);
  }
  void check(const MonitorState& s, const MonitorOptions& o, int64_t step, std::vector<Finding>& out, bool at_end) {
    if (s.task != Task::Classification || s.train_windows.empty()) return;
    const Json& train = s.train_windows.back().second;
    if (!train.contains("accuracy")) return;
    const double acc = train["accuracy"].get<double>();
    const double th = threshold(s, o);
    if (acc >= th) return;
    if (!at_end) {
      // Mid-run, only once the loss has stopped improving (otherwise it may simply be early).
      if (!s.first_window_loss || s.steps_seen < 4 * o.loss_window) return;
      const double recent = recent_mean(s, o.loss_window);
      double older = 0;
      int64_t k = 0;
      for (auto it = s.losses.rbegin(); it != s.losses.rend(); ++it, ++k)
        if (k >= o.loss_window && k < 2 * o.loss_window) older += it->second;
      older /= static_cast<double>(o.loss_window);
      if (recent < (1.0 - o.loss_min_improvement) * older) return;
    }
    out.push_back(make_finding(id(), Severity::Warning, step, "",
                       fmt::format("train accuracy is only {:.3f} at step {} (threshold {:.3f} for {} classes): the "
                                   "model does not fit the data it trains on",
                                   acc, step, th, s.num_classes),
                       {{"train_accuracy", acc}, {"threshold", th}, {"num_classes", s.num_classes}},
                       {"model too small for the task", "learning rate too low or too few steps",
                        "too much regularisation", "labels noisy or unrelated to inputs"},
                       {"use a wider or deeper model (try `traindx doctor --ladder`)", "train longer or raise train.lr",
                        "lower train.weight_decay / dropout", "check the labels"}));
  }
  void on_evaluation(const MonitorState& s, const MonitorOptions& o, int64_t step, std::vector<Finding>& out) override {
    check(s, o, step, out, false);
  }
  void on_end(const MonitorState& s, const MonitorOptions& o, int64_t step, std::vector<Finding>& out) override {
    check(s, o, step, out, true);
  }
};

class ClassImbalanceRule : public Rule {
 public:
  const char* id() const override { return "class_imbalance"; }
  void on_step(const MonitorState& s, const MonitorOptions& o, int64_t step, std::vector<Finding>& out) override {
    if (fired_ || s.label_counts.size() < 2) return;
    const int64_t total = std::accumulate(s.label_counts.begin(), s.label_counts.end(), int64_t{0});
    if (total < 20 * static_cast<int64_t>(s.label_counts.size())) return;
    fired_ = true;  // judged once, on the first 20 C labels
    const auto [mn, mx] = std::minmax_element(s.label_counts.begin(), s.label_counts.end());
    const double ratio = *mn > 0 ? static_cast<double>(*mx) / static_cast<double>(*mn) : INFINITY;
    if (ratio <= o.imbalance_ratio) return;
    const auto rare = std::distance(s.label_counts.begin(), mn);
    out.push_back(make_finding(id(), Severity::Warning, step, "",
                       *mn == 0 ? fmt::format("class {} never appeared in the first {} training labels", rare, total)
                                : fmt::format("class counts differ {:.1f}x in the first {} training labels (class {} "
                                              "has {})",
                                              ratio, total, rare, *mn),
                       {{"label_counts", s.label_counts}, {"ratio", std::isfinite(ratio) ? Json(ratio) : Json("inf")},
                        {"threshold", o.imbalance_ratio}},
                       {"the data set is imbalanced", "a split or filter dropped most of a class"},
                       {"report per-class metrics (f1_macro) rather than accuracy",
                        "rebalance: oversample rare classes or weight the loss", "check the data split"}));
  }

 private:
  bool fired_ = false;
};

class UnchangedParameterRule : public Rule {
 public:
  const char* id() const override { return "unchanged_parameter"; }
  void on_detail(const MonitorState& s, const MonitorOptions& o, int64_t step, std::vector<Finding>& out) override {
    if (!s.first_step) return;
    // Gradients are judged from the first capture on: after the first backward every parameter that reaches the
    // loss has a gradient, so a missing or all-zero one is already a fault.
    for (const auto& [name, l] : s.layers) {
      if (l.step != step || !l.has_params) continue;
      if (l.grad_missing) {
        emit(out, step, name, "has no gradient", "frozen (requires_grad false) or not connected to the loss");
      } else if (l.grad_norm == 0) {
        emit(out, step, name, "has an all-zero gradient", "no gradient path: a dead activation or a detached branch");
      }
    }
    // Movement only after the first step: a warm-up may start at lr 0, so the first update can legitimately be 0.
    if (step == *s.first_step) return;
    for (const auto& [param, change] : s.param_change) {
      const auto dot = param.rfind('.');
      const std::string layer = dot == std::string::npos ? param : param.substr(0, dot);
      auto it = s.layers.find(layer);
      if (it == s.layers.end() || it->second.grad_missing || std::isnan(it->second.grad_norm) ||
          it->second.grad_norm == 0)
        continue;
      if (change == 0.0)
        emit(out, step, layer, fmt::format("parameter {} has a gradient but has not changed since the start", param),
             "missing from the optimizer's parameter list");
    }
  }

 private:
  void emit(std::vector<Finding>& out, int64_t step, const std::string& layer, const std::string& what,
            const std::string& cause) {
    out.push_back(make_finding(id(), Severity::Warning, step, layer, fmt::format("layer {} {} at step {}", layer, what, step),
                       {{"what", what}},
                       {cause, "frozen by mistake", "missing from the optimizer"},
                       {"check requires_grad and `trainable` on this layer",
                        "pass all model.parameters() to the optimizer",
                        "check that the layer's output reaches the loss"}));
  }
};

class InputRangeRule : public Rule {
 public:
  const char* id() const override { return "input_range"; }
  void on_step(const MonitorState& s, const MonitorOptions& o, int64_t step, std::vector<Finding>& out) override {
    // Standardised data has a root mean square of 1 however heavy its tails: a sparse feature (a pixel that is
    // almost always 0) standardises to z-scores of 50 and more. Only a large bulk as well says "not normalised".
    if (!(s.input_abs_max > o.input_abs_max) || !(s.input_rms > kStandardisedRmsBound)) return;
    const Severity sev = s.input_abs_max > 10 * o.input_abs_max ? Severity::Critical : Severity::Warning;
    out.push_back(make_finding(id(), sev, step, "input",
                       fmt::format("inputs are not normalised: max |x| = {:.4g}, root mean square {:.4g}, mean {:.4g}, "
                                   "std {:.4g}",
                                   s.input_abs_max, s.input_rms, s.input_mean, s.input_std),
                       {{"input_abs_max", s.input_abs_max}, {"input_rms", s.input_rms}, {"input_mean", s.input_mean},
                        {"input_std", s.input_std}, {"threshold", o.input_abs_max},
                        {"rms_bound", kStandardisedRmsBound}},
                       {"raw values fed to the model (e.g. pixels 0..255)", "a feature with a much larger scale"},
                       {"set data.normalize = true (standardise with statistics of the training split)",
                        "scale features to comparable ranges"}));
  }
};


// ---- setup rules: what the training setup itself says (TrainingSetup), confirmed or sharpened by the numbers ----

// Output activations and the range of values they can produce.
struct BoundedOutput {
  double lo, hi;
};
std::optional<BoundedOutput> output_range(const std::string& activation) {
  if (activation == "sigmoid") return BoundedOutput{0.0, 1.0};
  if (activation == "tanh") return BoundedOutput{-1.0, 1.0};
  if (activation == "relu") return BoundedOutput{0.0, INFINITY};
  return std::nullopt;
}

class LossOutputMismatchRule : public Rule {
 public:
  const char* id() const override { return "loss_output_mismatch"; }
  void on_step(const MonitorState& s, const MonitorOptions& o, int64_t step, std::vector<Finding>& out) override {
    const double loss = s.losses.empty() ? NAN : s.losses.back().second;
    const TrainingSetup& u = s.setup;
    const std::string& act = u.output_activation;
    // Negative: a cross-entropy of probabilities is >= 0, so the model's outputs are not log-probabilities.
    if (!negative_reported_ && s.task == Task::Classification && std::isfinite(loss) && loss < -1e-6) {
      negative_reported_ = true;
      out.push_back(make_finding(
          id(), Severity::Critical, step, "",
          fmt::format("the loss is negative ({:.4g} at step {}): a cross-entropy of probabilities is never below 0, "
                      "so the model's outputs are not log-probabilities{}",
                      loss, step, u.loss == "nll" ? " (nll expects log_softmax outputs)" : ""),
          {{"loss", loss}, {"loss_function", u.loss}, {"output_activation", act}},
          {"nll loss on raw logits: the model has no log_softmax layer, so pushing one logit up lowers the loss "
           "without bound",
           "a custom loss or output layer that does not produce log-probabilities"},
          {"set train.loss = \"cross_entropy\" (it applies log_softmax to the logits itself)",
           "or add {type = \"log_softmax\"} as the last layer and keep train.loss = \"nll\""}));
    }
    if (static_judged_ || s.steps_seen != 1) return;
    static_judged_ = true;
    if (u.loss == "nll" && !act.empty() && act != "log_softmax") {
      out.push_back(make_finding(
          id(), Severity::Critical, step, "",
          fmt::format("train.loss = nll but the model ends in {}, not log_softmax: nll reads its input as "
                      "log-probabilities",
                      act),
          {{"loss_function", u.loss}, {"output_activation", act}},
          {"the output layer does not produce log-probabilities"},
          {"set train.loss = \"cross_entropy\" and drop the final activation",
           "or end the model with {type = \"log_softmax\"}"}));
    } else if (u.loss == "nll" && act.empty() && s.task == Task::Classification) {
      out.push_back(make_finding(
          id(), Severity::Critical, step, "",
          "train.loss = nll but the model ends in a linear layer: nll reads raw logits as log-probabilities, and its "
          "loss falls without bound as one logit grows",
          {{"loss_function", u.loss}, {"output_activation", "linear"}},
          {"nll loss without a log_softmax layer"},
          {"set train.loss = \"cross_entropy\" (it applies log_softmax itself)",
           "or end the model with {type = \"log_softmax\"}"}));
    } else if ((u.loss == "cross_entropy" || u.loss == "bce_with_logits") && output_range(act)) {
      const auto r = *output_range(act);
      out.push_back(make_finding(
          id(), Severity::Warning, step, "",
          fmt::format("the model's outputs pass through {} before {}, which expects unbounded logits: outputs in "
                      "[{:g}, {:g}] cap how confident a prediction can get, so the loss cannot approach 0",
                      act, u.loss, r.lo, r.hi),
          {{"loss_function", u.loss}, {"output_activation", act}},
          {fmt::format("a final {} layer: {} applies its own {}", act, u.loss,
                       u.loss == "cross_entropy" ? "softmax" : "sigmoid")},
          {fmt::format("remove the final {} layer: give the loss the raw logits", act)}));
    } else if ((u.loss == "mse" || u.loss == "huber") && output_range(act) && !std::isnan(s.target_min)) {
      const auto r = *output_range(act);
      if (s.target_min < r.lo - 1e-9 || s.target_max > r.hi + 1e-9)
        out.push_back(make_finding(
            id(), Severity::Critical, step, "",
            fmt::format("the model ends in {} and can only output values in [{:g}, {:g}], but the targets span "
                        "[{:.4g}, {:.4g}]: most of them cannot be reached",
                        act, r.lo, r.hi, s.target_min, s.target_max),
            {{"loss_function", u.loss}, {"output_activation", act}, {"target_min", s.target_min},
             {"target_max", s.target_max}},
            {fmt::format("a bounded output activation ({}) on a regression", act)},
            {fmt::format("remove the final {} layer: a regression ends in a linear layer", act),
             "or scale the targets into the activation's range"}));
    }
  }

 private:
  bool negative_reported_ = false, static_judged_ = false;
};

// Regression targets whose scale is far from 1: with an output layer initialised for unit-scale outputs, the
// first errors, losses and gradients are (target scale)^2 times what the rate was chosen for.
constexpr double kTargetRmsBound = 10.0;

class TargetScaleRule : public Rule {
 public:
  const char* id() const override { return "target_scale"; }
  void on_step(const MonitorState& s, const MonitorOptions& o, int64_t step, std::vector<Finding>& out) override {
    if (fired_ || s.task != Task::Regression || !(s.target_rms > kTargetRmsBound)) return;
    fired_ = true;
    const double loss = s.initial_loss.value_or(NAN);
    out.push_back(make_finding(
        id(), Severity::Warning, step, "target",
        fmt::format("the regression targets are not scaled: root mean square {:.4g}, range [{:.4g}, {:.4g}]; the "
                    "loss at init is {:.4g}, so errors and gradients are {:.0f}x what unit-scale targets give",
                    s.target_rms, s.target_min, s.target_max, loss, s.target_rms * s.target_rms),
        {{"target_rms", s.target_rms}, {"target_mean", s.target_mean}, {"target_min", s.target_min},
         {"target_max", s.target_max}, {"initial_loss", loss}, {"threshold", kTargetRmsBound}},
        {"targets in their raw units (e.g. 25..346) while the output layer starts near 0 with unit scale"},
        {"set data.target_scaler = \"standardize\" (zero mean, unit variance, fitted on the training split)",
         "or divide the targets by their standard deviation before training"}));
  }

 private:
  bool fired_ = false;
};

// The per-step shrinkage lr x decay above which weight decay dominates any gradient a model that learns gets:
// 1e-3 halves an unused weight in ~700 steps. Healthy settings sit at 1e-5..1e-4 (sgd lr 0.1 x wd 5e-4; adamw
// lr 1e-3 x wd 1e-2). Adaptive optimizers with coupled decay (adam, rmsprop, adagrad, and an L2 penalty with any of
// them) normalise the decay term with the gradient: a coefficient of 0.1 there already outweighs typical gradients.
constexpr double kDecayShrinkPerStep = 1e-3;
constexpr double kCoupledAdaptiveDecay = 0.1;
// Dropout rates from which most of a layer is switched off at every step.
constexpr double kDropoutTooStrong = 0.8;

class RegularizationTooStrongRule : public Rule {
 public:
  const char* id() const override { return "regularization_too_strong"; }
  void on_step(const MonitorState& s, const MonitorOptions& o, int64_t step, std::vector<Finding>& out) override {
    if (static_judged_ || s.steps_seen != 1) return;
    static_judged_ = true;
    const TrainingSetup& u = s.setup;
    const bool adaptive = !u.optimizer.empty() && u.optimizer != "sgd";
    const bool decoupled = u.optimizer == "adamw";
    const double lr = u.lr;
    std::vector<std::string> what;
    Json evidence = {{"optimizer", u.optimizer}, {"lr", std::isfinite(lr) ? Json(lr) : Json()}};
    auto strong = [&](double coefficient, bool coupled) {
      if (!(coefficient > 0)) return false;
      if (coupled && adaptive) return coefficient >= kCoupledAdaptiveDecay;
      return std::isfinite(lr) && lr * coefficient > kDecayShrinkPerStep;
    };
    if (strong(u.weight_decay, !decoupled)) {
      what.push_back(fmt::format("train.weight_decay = {:g}", u.weight_decay));
      evidence["weight_decay"] = u.weight_decay;
    }
    if (strong(u.l2, true)) {
      what.push_back(fmt::format("train.l2 = {:g}", u.l2));
      evidence["l2"] = u.l2;
    }
    std::string dropout_layer;
    for (const auto& [layer, p] : u.dropout)
      if (p >= kDropoutTooStrong && dropout_layer.empty()) {
        dropout_layer = layer;
        what.push_back(fmt::format("dropout p = {:g} in {}", p, layer));
        evidence["dropout_p"] = p;
      }
    if (what.empty()) return;
    std::string joined;
    for (const auto& w : what) joined += (joined.empty() ? "" : ", ") + w;
    out.push_back(make_finding(
        id(), Severity::Warning, step, "",
        fmt::format("regularisation this strong keeps the model from fitting: {}{}", joined,
                    (evidence.contains("weight_decay") || evidence.contains("l2")) && !(adaptive && !decoupled) &&
                            std::isfinite(lr)
                        ? fmt::format(" (each step shrinks the weights by {:.2g} of themselves)",
                                      lr * std::max(u.weight_decay, u.l2))
                        : ""),
        evidence,
        {"a weight decay or L2 coefficient meant for another scale (e.g. 0.5 instead of 5e-4)",
         "dropout so high that most units are off at every step"},
        {evidence.contains("weight_decay") ? "lower train.weight_decay to 1e-4 (or 0)"
         : evidence.contains("l2")         ? "lower train.l2 to 1e-4 (or 0)"
                                           : "lower the dropout rate to 0.1-0.3",
         "regularise only once the model fits the training data (check with `traindx doctor`)"}));
  }
  void on_detail(const MonitorState& s, const MonitorOptions& o, int64_t step, std::vector<Finding>& out) override {
    if (!s.first_step || step == *s.first_step) return;
    const auto cosine = median_update_weight_cosine(s, step);
    if (!cosine || *cosine >= kDecayDominatedCosine) return;
    const TrainingSetup& u = s.setup;
    out.push_back(make_finding(
        id(), Severity::Warning, step, "",
        fmt::format("the updates only shrink the weights: cos(update, weights) = {:.2f} at step {} (median over "
                    "layers; a model that learns has updates nearly orthogonal to its weights)",
                    *cosine, step),
        {{"update_weight_cosine", *cosine}, {"threshold", kDecayDominatedCosine}, {"weight_decay", u.weight_decay},
         {"l2", u.l2}},
        {"weight decay or an L2 penalty that outweighs the gradient of the data loss"},
        {u.l2 > u.weight_decay ? "lower train.l2 to 1e-4 (or 0)" : "lower train.weight_decay to 1e-4 (or 0)"}));
  }

 private:
  bool static_judged_ = false;
};

// Adaptive optimizers divide by sqrt(v) + eps; eps far above the gradients' scale (1e-3 here; the default is 1e-8)
// turns the update into lr x m / eps. Momentum m makes the effective rate lr / (1 - m): 0.99 is 100x.
constexpr double kEpsTooLarge = 1e-3;
constexpr double kMomentumTooHigh = 0.99;

class OptimizerHyperparametersRule : public Rule {
 public:
  const char* id() const override { return "optimizer_hyperparameters"; }
  void on_step(const MonitorState& s, const MonitorOptions& o, int64_t step, std::vector<Finding>& out) override {
    if (judged_ || s.steps_seen != 1) return;
    judged_ = true;
    const TrainingSetup& u = s.setup;
    std::vector<std::string> what, fixes;
    Json evidence = {{"optimizer", u.optimizer}};
    if (std::isfinite(u.eps) && u.eps >= kEpsTooLarge) {
      what.push_back(fmt::format("train.eps = {:g} (the default is 1e-8): {} divides its steps by sqrt(v) + eps, so "
                                 "with gradients well below eps every step is ~lr x gradient / eps",
                                 u.eps, u.optimizer));
      fixes.push_back("set train.eps = 1e-8");
      evidence["eps"] = u.eps;
    }
    if ((u.optimizer == "sgd" || u.optimizer == "rmsprop") && u.momentum >= kMomentumTooHigh) {
      what.push_back(fmt::format("train.momentum = {:g}: the effective rate is lr / (1 - momentum) = {:.3g}x lr", u.momentum,
                                 1 / (1 - u.momentum)));
      fixes.push_back("set train.momentum = 0.9");
      evidence["momentum"] = u.momentum;
    }
    if (std::isfinite(u.beta1) && u.beta1 >= 0.999) {
      what.push_back(fmt::format("train.beta1 = {:g}: the first moment averages over ~{:.0f} steps and reacts to "
                                 "nothing",
                                 u.beta1, 1 / (1 - u.beta1)));
      fixes.push_back("set train.beta1 = 0.9");
      evidence["beta1"] = u.beta1;
    }
    if (std::isfinite(u.beta2) && std::isfinite(u.beta1) && u.beta2 < u.beta1) {
      what.push_back(fmt::format("train.beta2 = {:g} is below beta1 = {:g}: the step size swings with every batch",
                                 u.beta2, u.beta1));
      fixes.push_back("set train.beta2 = 0.999");
      evidence["beta2"] = u.beta2;
    }
    if (what.empty()) return;
    std::string joined;
    for (const auto& w : what) joined += (joined.empty() ? "" : "; ") + w;
    out.push_back(make_finding(id(), Severity::Warning, step, "", joined, evidence,
                               {"an optimizer setting far from its usual range"}, fixes));
  }

 private:
  bool judged_ = false;
};

// Batches this small follow one or two examples' gradients: the step noise is sqrt(64 / B) times that of a batch of
// 64, so a rate tuned for 64 overshoots.
constexpr int64_t kTinyBatch = 4;

class BatchLrMismatchRule : public Rule {
 public:
  const char* id() const override { return "batch_lr_mismatch"; }
  void on_step(const MonitorState& s, const MonitorOptions& o, int64_t step, std::vector<Finding>& out) override {
    const int64_t b = s.setup.batch_size;
    if (b <= 0 || b > kTinyBatch || s.steps_seen % (o.loss_window / 2) != 0) return;
    const bool diverging = loss_diverging(s, o);
    const Oscillation r = oscillation(s, o);
    if (!diverging && !r.present) return;
    const double lr = current_lr(s);
    out.push_back(make_finding(
        id(), diverging ? Severity::Critical : Severity::Warning, step, "",
        fmt::format("batches of {} at lr {:.3g}: the loss {} (judged on means over {} steps); each step follows {} "
                    "example(s), so its noise is {:.0f}x a batch of 64's",
                    b, lr, diverging ? "diverges" : "oscillates", oscillation_block(s), b, std::sqrt(64.0 / b)),
        {{"batch_size", b}, {"lr", std::isfinite(lr) ? Json(lr) : Json()}, {"diverging", diverging},
         {"oscillating", r.present}},
        {"a learning rate chosen for larger batches used with a batch of a few examples"},
        {"set train.batch_size = 32 (or 64)",
         std::isfinite(lr) ? fmt::format("or scale the rate with the batch: train.lr = {:.3g}", lr * b / 64.0)
                           : std::string("or lower the rate in proportion to the batch size")}));
  }
};

// A hidden layer this much narrower than what it must carry: fewer units than half the classes, or 1-2 units
// between layers 16x wider.
class CapacityBottleneckRule : public Rule {
 public:
  const char* id() const override { return "capacity_bottleneck"; }
  void on_step(const MonitorState& s, const MonitorOptions& o, int64_t step, std::vector<Finding>& out) override {
    if (judged_ || s.steps_seen != 1) return;
    judged_ = true;
    const auto& w = s.setup.hidden_widths;
    for (size_t i = 0; i < w.size(); ++i) {
      const int64_t width = w[i].second;
      const int64_t before = i > 0 ? w[i - 1].second : 0;
      const int64_t after = i + 1 < w.size() ? w[i + 1].second : 0;
      const int64_t neighbour = std::max(before, after);
      const bool below_classes = s.task == Task::Classification && s.num_classes >= 4 && 2 * width < s.num_classes;
      const bool pinched = width <= 2 && neighbour >= 16 * width;
      if (!below_classes && !pinched) continue;
      out.push_back(make_finding(
          id(), Severity::Warning, step, w[i].first,
          fmt::format("{} has only {} unit(s){}: everything the model knows must pass through it", w[i].first, width,
                      below_classes ? fmt::format(", fewer than half the {} classes", s.num_classes)
                                    : fmt::format(" between layers of {}", neighbour)),
          {{"width", width}, {"neighbour_width", neighbour}, {"num_classes", s.num_classes}},
          {"a hidden layer far too narrow (a typo in `out`, or a layer meant as a projection)"},
          {fmt::format("widen {} to at least {}", w[i].first,
                       std::max<int64_t>({s.num_classes, neighbour / 2, 16}))}));
      return;
    }
  }

 private:
  bool judged_ = false;
};

}  // namespace

int64_t loss_block_steps(const TrainingSetup& setup) {
  const int64_t b = setup.batch_size;
  if (b <= 0 || b >= kOscillationBlockExamples) return 1;
  return (kOscillationBlockExamples + b - 1) / b;
}

std::vector<std::unique_ptr<Rule>> make_builtin_rules() {
  std::vector<std::unique_ptr<Rule>> r;
  r.push_back(std::make_unique<LossOutputMismatchRule>());
  r.push_back(std::make_unique<TargetScaleRule>());
  r.push_back(std::make_unique<RegularizationTooStrongRule>());
  r.push_back(std::make_unique<OptimizerHyperparametersRule>());
  r.push_back(std::make_unique<CapacityBottleneckRule>());
  r.push_back(std::make_unique<BatchLrMismatchRule>());
  r.push_back(std::make_unique<NanOrInfRule>());
  r.push_back(std::make_unique<InputRangeRule>());
  r.push_back(std::make_unique<PoorInitializationRule>());
  r.push_back(std::make_unique<SymmetricWeightsRule>());
  r.push_back(std::make_unique<ExplodingGradientRule>());
  r.push_back(std::make_unique<VanishingGradientRule>());
  r.push_back(std::make_unique<DeadReluRule>());
  r.push_back(std::make_unique<SaturatedActivationRule>());
  r.push_back(std::make_unique<LrTooHighRule>());
  r.push_back(std::make_unique<LrTooLowRule>());
  r.push_back(std::make_unique<WeightUpdateRatioRule>());
  r.push_back(std::make_unique<LossDivergingRule>());
  r.push_back(std::make_unique<LossOscillatingRule>());
  r.push_back(std::make_unique<LossNotDecreasingRule>());
  r.push_back(std::make_unique<UnchangedParameterRule>());
  r.push_back(std::make_unique<ClassImbalanceRule>());
  r.push_back(std::make_unique<OverfittingRule>());
  r.push_back(std::make_unique<UnderfittingRule>());
  return r;
}

std::vector<std::string> builtin_rule_ids() {
  std::vector<std::string> ids;
  for (const auto& r : make_builtin_rules()) ids.emplace_back(r->id());
  return ids;
}

}  // namespace traindx
