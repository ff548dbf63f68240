// The learning-rate range test: the sweep reuses Trainer::train_step (so penalties, clipping and the loss are the
// training run's own) on a throwaway Trainer that shares the model; the suggestion rules are pure functions of the
// recorded curve.
#include "traindx/doctor/lr_finder.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include "traindx/checkpoint/checkpoint.h"
#include "traindx/core/error.h"
#include "traindx/train/trainer.h"

namespace traindx {
namespace {

using Clock = std::chrono::steady_clock;

// NaN and infinity are not JSON numbers; they are written as null.
Json number(double v) { return std::isfinite(v) ? Json(v) : Json(); }

Json numbers(const std::vector<double>& v) {
  Json out = Json::array();
  for (double x : v) out.push_back(number(x));
  return out;
}

/// The points fastai's lr_find hands its suggestion functions: [num_steps / 10, n - 5), cut at the first
/// non-finite loss. Returns [begin, end) in sweep indices (empty when end <= begin).
std::pair<int64_t, int64_t> fastai_window(const std::vector<double>& smoothed, int64_t num_steps) {
  const int64_t begin = num_steps / 10;
  int64_t end = static_cast<int64_t>(smoothed.size()) - 5;
  for (int64_t i = begin; i < end; ++i) {
    if (!std::isfinite(smoothed[static_cast<size_t>(i)])) {
      end = i;
      break;
    }
  }
  return {begin, std::max(begin, end)};
}

/// Centred running mean of `w` points (windows shrink at the ends).
std::vector<double> running_mean(const std::vector<double>& y, int64_t w) {
  const auto n = static_cast<int64_t>(y.size());
  std::vector<double> out(y.size());
  for (int64_t i = 0; i < n; ++i) {
    const int64_t lo = std::max<int64_t>(0, i - w / 2), hi = std::min(n, i + w / 2 + 1);
    out[static_cast<size_t>(i)] = std::accumulate(y.begin() + lo, y.begin() + hi, 0.0) / static_cast<double>(hi - lo);
  }
  return out;
}

/// Puts the model back after the sweep: values of parameters and buffers (copied in place, so every holder of the
/// tensors sees the original values again), gradients, training mode and torch's CPU generator.
class ModelRestorer {
 public:
  explicit ModelRestorer(Model& model) : model_(model), was_training_(model.is_training()), rng_(cpu_rng_state()) {
    torch::NoGradGuard no_grad;
    for (const auto& [name, t] : model.named_parameters()) {
      saved_.push_back({t, t.detach().clone()});
      grads_.push_back({t, t.grad().defined() ? t.grad().detach().clone() : torch::Tensor()});
    }
    for (const auto& [name, t] : model.named_buffers()) saved_.push_back({t, t.detach().clone()});
  }
  ModelRestorer(const ModelRestorer&) = delete;
  ModelRestorer& operator=(const ModelRestorer&) = delete;
  ~ModelRestorer() {
    // A destructor must not throw; copying same-shaped tensors back does not fail on tensors that were valid when
    // saved, so nothing is lost by not reporting.
    try {
      torch::NoGradGuard no_grad;
      for (auto& [tensor, value] : saved_) tensor.detach().copy_(value);
      for (auto& [tensor, grad] : grads_) tensor.mutable_grad() = grad;
      model_.train(was_training_);
      set_cpu_rng_state(rng_);
    } catch (...) {
    }
  }

 private:
  Model& model_;
  bool was_training_;
  torch::Tensor rng_;
  std::vector<std::pair<torch::Tensor, torch::Tensor>> saved_, grads_;
};

/// Sets the sweep's rate after backward, before the optimizer step: train_step has just set the schedule's rate,
/// and this is the one hook between that and the update.
class SweepRate : public TrainerCallback {
 public:
  double lr = 0.0;
  void on_after_backward(const StepContext& ctx) override { set_learning_rate(*ctx.optimizer, lr); }
};

/// The plot's marker of a rule: its initial.
char rule_letter(const std::string& rule) { return rule.empty() ? '?' : rule[0]; }

std::string rate_text(double lr) { return fmt::format("{:.2g}", lr); }

void add_findings(LrFinderResult& r) {
  if (r.losses.empty() || !std::isfinite(r.losses.front())) {
    Finding f;
    f.rule = "lr_range_nonfinite";
    f.severity = Severity::Warning;
    f.message = fmt::format("the loss is not finite even at the sweep's smallest rate {:.2g}, so no rate can be "
                            "suggested",
                            r.lrs.empty() ? r.options.min_lr : r.lrs.front());
    f.evidence = {{"loss", r.losses.empty() ? Json() : number(r.losses.front())}, {"lr", r.options.min_lr}};
    f.causes = {"the forward pass overflows at initialisation (weights or inputs far too large)",
                "non-finite values in the data"};
    f.fixes = {"fix the initialisation or the input scaling first; the range test needs a finite starting loss"};
    r.findings.push_back(f);
    return;
  }
  // 5%: below the batch-to-batch noise of a smoothed loss that is not learning, well below any real descent.
  constexpr double kMinDescent = 0.05;
  if (r.descent < kMinDescent) {
    Finding f;
    f.rule = "lr_range_no_descent";
    f.severity = Severity::Warning;
    f.message = fmt::format(
        "the smoothed loss never fell more than {:.0f}% below its start ({:.4g}, best {:.4g}) at any rate from {:.2g} "
        "to {:.2g}: the learning rate is not what stops this model",
        100 * kMinDescent, r.smoothed.front(), r.best_smoothed, r.lrs.front(), r.lrs.back());
    f.evidence = {{"start", r.smoothed.front()}, {"best", r.best_smoothed}, {"descent", r.descent},
                  {"min_lr", r.lrs.front()}, {"max_lr_reached", r.lrs.back()}};
    f.causes = {"labels unrelated to the inputs (shuffled or misaligned labels)",
                "gradients do not reach the weights (zero or constant init, dead ReLUs, frozen layers)",
                "the model is already at a minimum (a trained checkpoint)"};
    f.fixes = {"run the doctor's overfit-one-batch check to tell a data problem from a model problem",
               "check the initialisation and that the labels match the inputs"};
    r.findings.push_back(f);
    return;
  }
  if (!r.has_suggestion() || !(r.configured_lr > 0)) return;
  // The range the stable rules span: a rate inside it (or within far_factor of it) is one some rule would pick.
  double lo = std::numeric_limits<double>::infinity(), hi = 0.0;
  for (const auto& rule : lr_range_rules()) {
    const auto it = r.alternatives.find(rule);
    if (it == r.alternatives.end()) continue;
    lo = std::min(lo, it->second);
    hi = std::max(hi, it->second);
  }
  if (!(hi > 0)) return;
  const double far = r.options.far_factor;
  const bool high = r.configured_lr > far * hi;
  if (!high && !(r.configured_lr < lo / far)) return;
  Finding f;
  f.rule = high ? "lr_too_high" : "lr_too_low";
  f.severity = Severity::Warning;
  std::string diverged;
  if (high && r.stopped_early && std::isfinite(r.lrs.back()) && r.configured_lr >= r.lrs.back()) {
    diverged = fmt::format("; the sweep's loss diverged by lr {:.2g}", r.lrs.back());
  }
  const double ratio = high ? r.configured_lr / hi : lo / r.configured_lr;
  // "1829x" reads better than "1.83e+03x"; small factors keep two digits ("13x", "5.3x").
  const std::string times = ratio < 100 ? fmt::format("{:.2g}", ratio) : fmt::format("{:.0f}", ratio);
  f.message = fmt::format("train.lr = {:.3g} is {}x {} what the range test's rules suggest ({:.2g} .. {:.2g}; "
                          "{} rule: {:.2g}){}",
                          r.configured_lr, times, high ? "above" : "below", lo, hi, r.rule, r.suggestion, diverged);
  f.evidence = {{"configured_lr", r.configured_lr},
                {"suggestion", r.suggestion},
                {"rule", r.rule},
                {"range", {lo, hi}},
                {"ratio", ratio},
                {"far_factor", far},
                {"alternatives", r.alternatives},
                {"best_lr", r.best_lr},
                {"stopped_early", r.stopped_early},
                {"last_lr", r.lrs.back()}};
  f.causes = high ? std::vector<std::string>{"train.lr copied from a setup with another optimizer, batch size or "
                                             "normalisation",
                                             "no warm-up before a large rate"}
                  : std::vector<std::string>{"train.lr copied from a setup with another optimizer (Adam's rates are "
                                             "~10-100x below SGD's)",
                                             "a rate meant for fine-tuning used to train from scratch"};
  f.fixes = {fmt::format("set train.lr = {}", rate_text(r.suggestion)),
             fmt::format("try rates between {} and {} and keep the one with the best validation loss", rate_text(lo),
                         rate_text(hi))};
  r.findings.push_back(f);
}

}  // namespace

void LrFinderOptions::validate() const {
  TRAINDX_CHECK(std::isfinite(min_lr) && min_lr > 0, ConfigError, "lr-find: min_lr = {} must be > 0 (default 1e-7)",
                min_lr);
  TRAINDX_CHECK(std::isfinite(max_lr) && max_lr > min_lr, ConfigError,
                "lr-find: max_lr = {} must be > min_lr = {} (default 10)", max_lr, min_lr);
  TRAINDX_CHECK(num_steps >= 2, ConfigError, "lr-find: num_steps = {} must be >= 2 (default 100)", num_steps);
  TRAINDX_CHECK(beta >= 0 && beta < 1, ConfigError, "lr-find: beta = {} must be in [0, 1) (default 0.98)", beta);
  TRAINDX_CHECK(divergence_factor == 0 || divergence_factor > 1, ConfigError,
                "lr-find: divergence_factor = {} must be > 1, or 0 to never stop early (default 4)", divergence_factor);
  TRAINDX_CHECK(far_factor > 1, ConfigError, "lr-find: far_factor = {} must be > 1 (default 10)", far_factor);
  const auto& rules = lr_rules();
  TRAINDX_CHECK(std::find(rules.begin(), rules.end(), rule) != rules.end(), ConfigError,
                "lr-find: unknown rule '{}'; use one of {}", rule, fmt::join(rules, ", "));
}

Json LrFinderOptions::to_json() const {
  return {{"min_lr", min_lr},   {"max_lr", max_lr},         {"num_steps", num_steps}, {"beta", beta},
          {"divergence_factor", divergence_factor}, {"rule", rule}, {"far_factor", far_factor}};
}

Json LrSuggestion::to_json() const { return {{"rule", rule}, {"lr", lr}, {"index", index}}; }

const std::vector<std::string>& lr_rules() {
  static const std::vector<std::string> rules = {"minimum", "centred_min", "valley", "steepest"};
  return rules;
}

const std::vector<std::string>& lr_range_rules() {
  static const std::vector<std::string> rules = {"minimum", "centred_min", "valley"};
  return rules;
}

std::optional<LrSuggestion> suggest_steepest(const std::vector<double>& lrs, const std::vector<double>& smoothed) {
  constexpr int64_t kSkipBegin = 10, kSkipEnd = 1;  // Lightning's defaults
  const auto n = static_cast<int64_t>(smoothed.size());
  std::vector<double> y;
  for (int64_t i = kSkipBegin; i < n - kSkipEnd; ++i)
    if (std::isfinite(smoothed[static_cast<size_t>(i)])) y.push_back(smoothed[static_cast<size_t>(i)]);
  if (y.size() < 2) return std::nullopt;
  // np.gradient with unit spacing and edge_order 1: one-sided at the ends, central inside.
  const size_t m = y.size();
  size_t best = 0;
  double best_grad = std::numeric_limits<double>::infinity();
  for (size_t i = 0; i < m; ++i) {
    const double g = i == 0 ? y[1] - y[0] : (i == m - 1 ? y[m - 1] - y[m - 2] : (y[i + 1] - y[i - 1]) / 2.0);
    if (g < best_grad) {
      best_grad = g;
      best = i;
    }
  }
  const int64_t index = static_cast<int64_t>(best) + kSkipBegin;  // Lightning's offset (ignores dropped points)
  return LrSuggestion{"steepest", lrs[static_cast<size_t>(index)], index};
}

std::optional<LrSuggestion> suggest_valley(const std::vector<double>& lrs, const std::vector<double>& smoothed,
                                           int64_t num_steps) {
  const auto [begin, end] = fastai_window(smoothed, num_steps);
  const int64_t n = end - begin;
  if (n <= 0) return std::nullopt;
  auto loss = [&](int64_t i) { return smoothed[static_cast<size_t>(begin + i)]; };
  // lds[i]: length of the longest strictly decreasing subsequence ending at i; fastai updates max_end inside the
  // inner loop, which this reproduces (the first i reaching a new maximum wins).
  std::vector<int64_t> lds(static_cast<size_t>(n), 1);
  int64_t max_start = 0, max_end = 0;
  for (int64_t i = 1; i < n; ++i) {
    for (int64_t j = 0; j < i; ++j) {
      if (loss(i) < loss(j) && lds[static_cast<size_t>(i)] < lds[static_cast<size_t>(j)] + 1)
        lds[static_cast<size_t>(i)] = lds[static_cast<size_t>(j)] + 1;
      if (lds[static_cast<size_t>(max_end)] < lds[static_cast<size_t>(i)]) {
        max_end = i;
        max_start = max_end - lds[static_cast<size_t>(max_end)];
      }
    }
  }
  const double sections = static_cast<double>(max_end - max_start) / 3.0;
  const int64_t idx = max_start + static_cast<int64_t>(sections) + static_cast<int64_t>(sections / 2.0);
  const int64_t index = begin + std::clamp<int64_t>(idx, 0, n - 1);
  return LrSuggestion{"valley", lrs[static_cast<size_t>(index)], index};
}

std::optional<LrSuggestion> suggest_minimum(const std::vector<double>& lrs, const std::vector<double>& smoothed,
                                            int64_t num_steps) {
  const auto [begin, end] = fastai_window(smoothed, num_steps);
  if (end <= begin) return std::nullopt;
  int64_t best = begin;
  for (int64_t i = begin; i < end; ++i)
    if (smoothed[static_cast<size_t>(i)] < smoothed[static_cast<size_t>(best)]) best = i;
  return LrSuggestion{"minimum", lrs[static_cast<size_t>(best)] / 10.0, best};
}

std::optional<LrSuggestion> suggest_centred_min(const std::vector<double>& lrs, const std::vector<double>& losses) {
  int64_t n = 0;
  while (n < static_cast<int64_t>(losses.size()) && std::isfinite(losses[static_cast<size_t>(n)])) ++n;
  if (n < 3) return std::nullopt;
  const std::vector<double> raw(losses.begin(), losses.begin() + n);
  // 0.4 decade: ~5 batches at the default density, enough to average batch noise, narrow enough not to blur where
  // the loss turns (estimated regret was flat from 0.4 to 0.8 decade; 0.4 had the smallest worst-case spread over
  // sweeps).
  const double spacing =
      (std::log10(lrs[static_cast<size_t>(n - 1)]) - std::log10(lrs.front())) / static_cast<double>(n - 1);
  auto w = static_cast<int64_t>(std::lround(0.4 / spacing));
  if (w % 2 == 0) ++w;
  w = std::max<int64_t>(w, 3);
  const std::vector<double> curve = running_mean(raw, w);
  const int64_t skip = n / 10;
  int64_t m = skip;
  for (int64_t i = skip; i < n; ++i)
    if (curve[static_cast<size_t>(i)] < curve[static_cast<size_t>(m)]) m = i;
  constexpr double kBackOff = 5.0;  // the middle of the flat part of the estimated regret (divisors 3 to 8)
  return LrSuggestion{"centred_min", lrs[static_cast<size_t>(m)] / kBackOff, m};
}

Json LrFinderResult::to_json() const {
  Json alt = Json::object(), alt_index = Json::object();
  for (const auto& [rule_name, lr] : alternatives) alt[rule_name] = lr;
  for (const auto& [rule_name, index] : alternative_index) alt_index[rule_name] = index;
  Json f = Json::array();
  for (const auto& finding : findings) f.push_back(finding.to_json());
  return {{"lrs", numbers(lrs)},
          {"losses", numbers(losses)},
          {"smoothed", numbers(smoothed)},
          {"suggestion", number(suggestion)},
          {"suggestion_index", suggestion_index},
          {"rule", rule},
          {"alternatives", alt},
          {"alternative_index", alt_index},
          {"stopped_early", stopped_early},
          {"stop_reason", stop_reason},
          {"configured_lr", configured_lr},
          {"best_smoothed", number(best_smoothed)},
          {"best_lr", best_lr},
          {"descent", number(descent)},
          {"options", options.to_json()},
          {"seconds", seconds},
          {"findings", f}};
}

LrFinderResult find_learning_rate(const Config& config, const LrFinderOptions& options) {
  options.validate();
  Trainer trainer(config);
  return find_learning_rate(trainer, options);
}

LrFinderResult find_learning_rate(Trainer& trainer, const LrFinderOptions& options) {
  options.validate();
  const auto start = Clock::now();
  LrFinderResult r;
  r.options = options;
  r.rule = options.rule;
  r.configured_lr = trainer.options().optimizer.lr;

  Model& model = trainer.model();
  ModelRestorer restorer(model);

  // A throwaway trainer over the same model: a fresh optimizer of the configured kind, a constant schedule (the
  // callback sets every step's rate), and only the training split (nothing else is read).
  TrainOptions sweep_options = trainer.options();
  sweep_options.schedule = ScheduleOptions{};
  sweep_options.optimizer.lr = options.min_lr;
  sweep_options.max_steps = options.num_steps;
  PreparedData sweep_data;
  sweep_data.train_x = trainer.data().train_x;
  sweep_data.train_y = trainer.data().train_y;
  sweep_data.info = trainer.data().info;
  Trainer sweep(sweep_options, sweep_data, trainer.model_ptr());
  auto rate = std::make_shared<SweepRate>();
  sweep.add_callback(rate);

  const torch::Device device = parse_device(sweep_options.device);
  const auto params = model.parameters();
  const torch::Dtype dtype = params.empty() ? torch::kFloat32 : params.front().scalar_type();
  model.train(true);
  const double log_ratio = std::log(options.max_lr / options.min_lr);
  double avg = 0.0, best = std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < options.num_steps; ++i) {
    const double lr =
        options.min_lr * std::exp(log_ratio * static_cast<double>(i) / static_cast<double>(options.num_steps - 1));
    rate->lr = lr;
    const Batch batch = sweep.batcher().next();
    const torch::Tensor x = sweep_data.train_x.index_select(0, batch.indices).to(device, dtype);
    const torch::Tensor y = sweep_data.train_y.index_select(0, batch.indices).to(device);
    const StepContext ctx = sweep.train_step(x, y);
    avg = options.beta * avg + (1.0 - options.beta) * ctx.loss;
    const double smooth = avg / (1.0 - std::pow(options.beta, static_cast<double>(i + 1)));
    r.lrs.push_back(lr);
    r.losses.push_back(ctx.loss);
    r.smoothed.push_back(smooth);
    if (!std::isfinite(ctx.loss)) {
      r.stopped_early = i + 1 < options.num_steps;
      r.stop_reason = fmt::format("the loss became non-finite ({}) at lr {:.3g}", ctx.loss, lr);
      break;
    }
    best = std::min(best, smooth);
    if (options.divergence_factor > 0 && smooth > options.divergence_factor * best) {
      r.stopped_early = i + 1 < options.num_steps;
      r.stop_reason = fmt::format("the smoothed loss {:.4g} exceeded {:g}x its best {:.4g} at lr {:.3g}", smooth,
                                  options.divergence_factor, best, lr);
      break;
    }
  }

  if (std::isfinite(best)) {
    r.best_smoothed = best;
    r.best_lr = r.lrs[static_cast<size_t>(std::find(r.smoothed.begin(), r.smoothed.end(), best) - r.smoothed.begin())];
    r.descent = r.smoothed.front() > 0 ? 1.0 - best / r.smoothed.front() : 0.0;
  } else {
    r.best_smoothed = r.descent = std::numeric_limits<double>::quiet_NaN();
  }
  for (const auto& rule_name : lr_rules()) {
    std::optional<LrSuggestion> s;
    if (rule_name == "centred_min") s = suggest_centred_min(r.lrs, r.losses);
    if (rule_name == "valley") s = suggest_valley(r.lrs, r.smoothed, options.num_steps);
    if (rule_name == "steepest") s = suggest_steepest(r.lrs, r.smoothed);
    if (rule_name == "minimum") s = suggest_minimum(r.lrs, r.smoothed, options.num_steps);
    if (!s) continue;
    r.alternatives[rule_name] = s->lr;
    r.alternative_index[rule_name] = s->index;
    if (rule_name == options.rule) {
      r.suggestion = s->lr;
      r.suggestion_index = s->index;
    }
  }
  add_findings(r);
  r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return r;
}

std::string lr_find_plot(const LrFinderResult& r, int width, int height) {
  TRAINDX_CHECK(width >= 16 && height >= 4, ConfigError, "lr-find plot: {}x{} is too small (at least 16x4)", width,
                height);
  std::vector<size_t> finite;
  for (size_t i = 0; i < r.smoothed.size(); ++i)
    if (std::isfinite(r.smoothed[i]) && r.lrs[i] > 0) finite.push_back(i);
  if (finite.size() < 2) return "(not enough finite points to plot)\n";

  const double x0 = std::log10(r.lrs[finite.front()]), x1 = std::log10(r.lrs[finite.back()]);
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (size_t i : finite) lo = std::min(lo, r.smoothed[i]);
  // The top is the highest point before the minimum (the start of the curve): the divergence tail would otherwise
  // squash the part that matters; points above it are drawn as '^'.
  for (size_t i : finite) {
    hi = std::max(hi, r.smoothed[i]);
    if (r.smoothed[i] == lo) break;
  }
  if (hi <= lo) hi = lo + std::max(1e-12, std::abs(lo) * 1e-3);
  auto column = [&](double lr) {
    const double t = x1 > x0 ? (std::log10(lr) - x0) / (x1 - x0) : 0.0;
    return std::clamp(static_cast<int>(std::lround(t * (width - 1))), 0, width - 1);
  };
  std::vector<std::string> grid(static_cast<size_t>(height), std::string(static_cast<size_t>(width), ' '));
  std::vector<double> sum(static_cast<size_t>(width), 0.0);
  std::vector<int> count(static_cast<size_t>(width), 0);
  for (size_t i : finite) {
    const int c = column(r.lrs[i]);
    sum[static_cast<size_t>(c)] += r.smoothed[i];
    ++count[static_cast<size_t>(c)];
  }
  for (int c = 0; c < width; ++c) {
    if (count[static_cast<size_t>(c)] == 0) continue;
    const double v = sum[static_cast<size_t>(c)] / count[static_cast<size_t>(c)];
    if (v > hi) {
      grid[0][static_cast<size_t>(c)] = '^';
      continue;
    }
    const int row = static_cast<int>(std::lround((hi - v) / (hi - lo) * (height - 1)));
    grid[static_cast<size_t>(std::clamp(row, 0, height - 1))][static_cast<size_t>(c)] = '*';
  }

  std::string out = fmt::format("smoothed loss vs learning rate (log scale)\n");
  for (int row = 0; row < height; ++row) {
    std::string label;
    if (row == 0 || row == height - 1 || row == (height - 1) / 2) {
      label = fmt::format("{:.4g}", hi - (hi - lo) * row / (height - 1));
    }
    out += fmt::format("{:>10} |{}\n", label, grid[static_cast<size_t>(row)]);
  }
  out += fmt::format("{:>10} +{}\n", "", std::string(static_cast<size_t>(width), '-'));
  // Decade labels under the axis.
  std::string ticks(static_cast<size_t>(width) + 8, ' ');
  for (int d = static_cast<int>(std::ceil(x0 - 1e-9)); d <= static_cast<int>(std::floor(x1 + 1e-9)); ++d) {
    const int c = column(std::pow(10.0, d));
    const std::string label = fmt::format("1e{}", d);
    if (c + label.size() <= ticks.size() && (c == 0 || ticks[static_cast<size_t>(c) - 1] == ' ') &&
        ticks.substr(static_cast<size_t>(c), label.size()).find_first_not_of(' ') == std::string::npos) {
      ticks.replace(static_cast<size_t>(c), label.size(), label);
    }
  }
  out += fmt::format("{:>10}  {}\n", "", ticks.substr(0, ticks.find_last_not_of(' ') + 1));
  // Suggestion markers: one letter per rule, the chosen rule's in upper case.
  std::string marks(static_cast<size_t>(width), ' ');
  std::string legend;
  for (const auto& rule_name : lr_rules()) {
    const auto it = r.alternatives.find(rule_name);
    if (it == r.alternatives.end()) continue;
    const bool chosen = rule_name == r.rule;
    const char base = rule_letter(rule_name);
    const char letter = static_cast<char>(chosen ? std::toupper(base) : base);
    char& slot = marks[static_cast<size_t>(column(it->second))];
    slot = slot == ' ' || chosen ? letter : '+';
    legend += fmt::format("{}{} = {} {:.2g}", legend.empty() ? "" : ", ", letter, rule_name, it->second);
  }
  out += fmt::format("{:>10}  {}\n", "rules", marks.substr(0, marks.find_last_not_of(' ') + 1));
  if (!legend.empty()) out += fmt::format("{:>10}  {} ('+': several)\n", "", legend);
  return out;
}

}  // namespace traindx
