#pragma once
/// The learning-rate range test (L. Smith, "Cyclical Learning Rates for Training Neural Networks", 2017; as fastai's
/// Learner.lr_find and Lightning's Tuner.lr_find run it): train from the current weights for num_steps batches while
/// the learning rate grows exponentially from min_lr to max_lr, record the loss, smooth it, stop once it has clearly
/// diverged, and read a learning rate off the curve with a suggestion rule. The model is put back as it was.
///
///   lr_i       = min_lr * (max_lr / min_lr)^(i / (num_steps - 1)),  i = 0 .. num_steps - 1 (ends exactly at max_lr)
///   avg_i      = beta * avg_{i-1} + (1 - beta) * loss_i,  avg_{-1} = 0
///   smoothed_i = avg_i / (1 - beta^(i + 1))        (bias-corrected EMA, fastai's and Lightning's; beta = 0.98)
///   stop after step i when smoothed_i > divergence_factor * min_{j<=i} smoothed_j (4, both libraries), or when the
///   loss is not finite.
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "traindx/core/config.h"
#include "traindx/monitor/finding.h"

namespace traindx {

class Trainer;

/// Options of the range test. Defaults are fastai's lr_find (min_lr 1e-7, max_lr 10, 100 steps, stop at 4x the
/// best smoothed loss) with fastai's and Lightning's smoothing (beta 0.98).
struct LrFinderOptions {
  double min_lr = 1e-7;
  double max_lr = 10.0;
  int64_t num_steps = 100;
  double beta = 0.98;              ///< EMA factor of the smoothed loss; 0 = no smoothing
  double divergence_factor = 4.0;  ///< stop once smoothed > factor x best smoothed; 0 = never stop early
  /// The rule behind `suggestion` (one of lr_rules()). fastai's "minimum" had the lowest median regret and the
  /// smallest spread between sweeps on the fault zoo (docs/benchmarks.md; docs/doctor.md says why it is the default).
  std::string rule = "minimum";
  /// lr_too_high / lr_too_low when train.lr lies more than this factor outside the range [lo, hi] spanned by the
  /// answers of the stable rules (lr_range_rules()). 10: over the fault zoo's sweeps it raised no false alarm on 45
  /// well-chosen rates and flagged the planted rates of lr_too_high, lr_too_low and loss_diverging every time;
  /// comparing with the suggestion alone raised 12 false alarms (docs/benchmarks.md).
  double far_factor = 10.0;

  LrFinderOptions& set_min_lr(double v) { min_lr = v; return *this; }
  LrFinderOptions& set_max_lr(double v) { max_lr = v; return *this; }
  LrFinderOptions& set_num_steps(int64_t v) { num_steps = v; return *this; }
  LrFinderOptions& set_beta(double v) { beta = v; return *this; }
  LrFinderOptions& set_divergence_factor(double v) { divergence_factor = v; return *this; }
  LrFinderOptions& set_rule(std::string v) { rule = std::move(v); return *this; }
  LrFinderOptions& set_far_factor(double v) { far_factor = v; return *this; }

  /// Throws ConfigError naming the option: 0 < min_lr < max_lr, num_steps >= 2, 0 <= beta < 1,
  /// divergence_factor == 0 or > 1, far_factor > 1, a known rule.
  void validate() const;
  Json to_json() const;
};

/// Where a rule points: the learning rate and the index of the sweep point it was read from (for the rules that
/// divide, "minimum", the index is the point it divided).
struct LrSuggestion {
  std::string rule;
  double lr = 0.0;
  int64_t index = -1;
  Json to_json() const;
};

/// The suggestion rules, in documentation order: "minimum" (fastai, the default), "centred_min" (traindx),
/// "valley" (fastai's default), "steepest" (Lightning's).
const std::vector<std::string>& lr_rules();

/// The rules whose answers span the range that lr_too_high / lr_too_low compare train.lr with: "minimum",
/// "centred_min", "valley". Lightning's "steepest" is left out: its answer moves by ~0.9 decade between sweeps of
/// the same model (median over the fault zoo; the others move by 0.3 to 0.5).
const std::vector<std::string>& lr_range_rules();

/// Lightning's rule (lightning.pytorch.tuner.lr_finder._LRFinder.suggestion, skip_begin 10, skip_end 1): drop the
/// first 10 and the last sweep point, drop non-finite smoothed losses, take np.gradient of what is left (unit
/// spacing, which is log-lr spacing for an exponential sweep) and return the lr at its argmin (index + 10, as
/// Lightning counts it). Empty with fewer than 2 points left.
std::optional<LrSuggestion> suggest_steepest(const std::vector<double>& lrs, const std::vector<double>& smoothed);

/// fastai's rule (fastai.callback.schedule.valley, fastai's default since 2.5): on the points
/// [num_steps / 10, n - 5) cut at the first NaN, find the longest valley — the longest strictly decreasing
/// subsequence, ending at max_end and starting lds[max_end] points earlier — and return the lr 1/3 + 1/6 of the way
/// into it (idx = start + int(len/3) + int(len/6)). `num_steps` is the planned sweep length, as fastai uses it.
std::optional<LrSuggestion> suggest_valley(const std::vector<double>& lrs, const std::vector<double>& smoothed,
                                           int64_t num_steps);

/// fastai's older rule (fastai.callback.schedule.minimum; fastai v1's default): on the same points as valley, the
/// lr at the smallest smoothed loss, divided by 10.
std::optional<LrSuggestion> suggest_minimum(const std::vector<double>& lrs, const std::vector<double>& smoothed,
                                            int64_t num_steps);

/// traindx's rule: the lr at the minimum of a centred running mean of the raw losses, divided by 5. On the finite
/// prefix of `losses`, a centred mean over w points (w = the odd number of points nearest 0.4 decade of lr, at least
/// 3; 5 at the default density of 12.4 points per decade; windows shrink at the ends); m = its argmin over the points
/// after the first 10%; the answer is lrs[m] / 5 (index m). Why: the EMA that the other rules read lags by
/// 1 / (1 - beta) = 50 steps, 4 decades at the default density, so its minimum lands to the right of the real one by
/// an amount that depends on how fast the loss moves; a centred mean has no lag, and single-batch blow-ups in the
/// unstable regime raise it, so its minimum marks where larger steps stop paying. Dividing by 5 backs off into the
/// stable region; estimated on the fault zoo's recorded sweeps, the regret was flat for divisors from 3 to 8 and
/// windows from 0.4 to 0.8 decade (docs/doctor.md). Empty with fewer than 3 finite points.
std::optional<LrSuggestion> suggest_centred_min(const std::vector<double>& lrs, const std::vector<double>& losses);

/// The result of a range test.
struct LrFinderResult {
  std::vector<double> lrs;       ///< learning rate of each step taken
  std::vector<double> losses;    ///< the batch loss of each step (data loss, without L1/L2 penalties)
  std::vector<double> smoothed;  ///< bias-corrected EMA of `losses`
  /// The learning rate `rule` reads off the curve; NaN when the curve gives no answer (has_suggestion()).
  double suggestion = std::numeric_limits<double>::quiet_NaN();
  int64_t suggestion_index = -1;  ///< sweep point the suggestion was read from
  std::string rule;
  /// Every rule's answer by rule name (the chosen one included); rules without an answer are absent.
  std::map<std::string, double> alternatives;
  std::map<std::string, int64_t> alternative_index;  ///< sweep point of each answer
  bool has_suggestion() const { return std::isfinite(suggestion); }
  bool stopped_early = false;
  std::string stop_reason;       ///< why the sweep ended before num_steps
  double configured_lr = 0.0;    ///< train.lr of the trainer / config
  double best_smoothed = 0.0;    ///< smallest smoothed loss
  double best_lr = 0.0;          ///< lr at that point
  double descent = 0.0;          ///< 1 - best_smoothed / smoothed[0]: how much the loss fell during the sweep
  LrFinderOptions options;
  double seconds = 0.0;
  /// lr_too_high / lr_too_low (warning) when train.lr lies more than far_factor outside the range of the stable
  /// rules' answers (lr_range_rules()), with "set train.lr = X" (the suggestion) as the first fix;
  /// lr_range_no_descent (warning) when the loss never fell by 5% at any rate (then no rate is to blame and no lr
  /// finding is made); lr_range_nonfinite (warning) when the loss is not finite even at min_lr.
  std::vector<Finding> findings;
  /// lr_find.json: {lrs, losses, smoothed, suggestion, rule, alternatives {rule: lr}, stopped_early, ...}.
  Json to_json() const;
};

/// Runs the range test on a fresh trainer built from `config` (data, model and optimizer exactly as `traindx train`
/// would build them). Throws what Trainer(config) throws and ConfigError on invalid options.
LrFinderResult find_learning_rate(const Config& config, const LrFinderOptions& options = {});

/// Runs the range test with `trainer`'s model, data, loss and optimizer settings, on a fresh optimizer of the same
/// kind (train_step: same penalties and clipping) and a batcher seeded like the trainer's. Afterwards the model's
/// parameters, buffers, gradients and training mode and torch's CPU generator are restored; the trainer's own
/// optimizer, batcher, schedule and step are never touched. Throws ConfigError on invalid options.
LrFinderResult find_learning_rate(Trainer& trainer, const LrFinderOptions& options = {});

/// The smoothed loss against log10(lr) as a fixed-width text chart, `width` x `height` characters of plot area,
/// with the rules' suggestions marked under the x axis (the chosen rule's letter in upper case) and a legend.
/// Points above the chart (the divergence tail) are drawn as '^' on the top row.
std::string lr_find_plot(const LrFinderResult& result, int width = 64, int height = 16);

}  // namespace traindx
