// Learning-rate schedules as pure functions of the step. The arithmetic follows torch.optim.lr_scheduler term by
// term (same operation order), so tests/reference/fixtures/objective.json matches to the last bits or close.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <utility>

#include "traindx/core/error.h"
#include "traindx/train/objective.h"

namespace traindx {
namespace {

constexpr double kPi = 3.14159265358979323846;

/// Checks `value` against the bounds declared for `key` in config_schema() (one source of truth for ranges).
void check_in_schema_range(const char* key, double value) {
  const ConfigKey* declared = find_config_key(key);
  TRAINDX_ASSERT(declared != nullptr, "option {} is not declared in config_schema()", key);
  const double lo = declared->min.value_or(-std::numeric_limits<double>::infinity());
  const double hi = declared->max.value_or(std::numeric_limits<double>::infinity());
  TRAINDX_CHECK(std::isfinite(value) && value >= lo && value <= hi, ConfigError,
                "{} = {} is out of range: it must be a finite number in [{}, {}] ({})", key, value, lo, hi,
                declared->help);
}

/// PyTorch's _annealing_cos: cosine interpolation from `start` (pct 0) to `end` (pct 1).
double annealing_cos(double start, double end, double pct) {
  const double cos_out = std::cos(kPi * pct) + 1.0;
  return end + (start - end) / 2.0 * cos_out;
}

}  // namespace

LrSchedule::LrSchedule(ScheduleOptions options, double base_lr, int64_t total_steps)
    : options_(std::move(options)), base_lr_(base_lr), total_steps_(total_steps) {
  const std::string& name = options_.name;
  TRAINDX_CHECK(name == "constant" || name == "step" || name == "exponential" || name == "cosine" ||
                    name == "one_cycle",
                ConfigError,
                "train.schedule = \"{}\" is not a known schedule; use one of constant, step, exponential, cosine, "
                "one_cycle",
                name);
  check_in_schema_range("train.lr", base_lr_);
  check_in_schema_range("train.warmup_steps", static_cast<double>(options_.warmup_steps));
  TRAINDX_CHECK(total_steps_ >= 0, ConfigError, "total_steps = {} must be >= 0", total_steps_);
  // Only the fields the chosen schedule reads are checked, like make_optimizer, so one config can sweep schedules.
  if (name == "step" || name == "exponential") {
    check_in_schema_range("train.step_size", static_cast<double>(options_.step_size));
    check_in_schema_range("train.gamma", options_.gamma);
  } else if (name == "cosine" || name == "one_cycle") {
    TRAINDX_CHECK(total_steps_ >= 1, ConfigError,
                  "train.schedule = \"{}\" needs the total number of steps, got {}; it comes from train.epochs x "
                  "steps per epoch, or train.max_steps",
                  name, total_steps_);
    if (name == "cosine") {
      check_in_schema_range("train.min_lr", options_.min_lr);
    } else {
      check_in_schema_range("train.pct_start", options_.pct_start);
      check_in_schema_range("train.div_factor", options_.div_factor);
      check_in_schema_range("train.final_div_factor", options_.final_div_factor);
    }
  }
}

double LrSchedule::lr_at(int64_t step) const {
  TRAINDX_ASSERT(step >= 0, "lr_at called with step {}", step);
  const std::string& name = options_.name;
  double lr = base_lr_;
  if (name == "step") {
    lr = base_lr_ * std::pow(options_.gamma, static_cast<double>(step / options_.step_size));
  } else if (name == "exponential") {
    lr = base_lr_ * std::pow(options_.gamma, static_cast<double>(step) / static_cast<double>(options_.step_size));
  } else if (name == "cosine") {
    // CosineAnnealingLR's closed form; past T it would rise again (its period is 2T), so it holds min_lr.
    const double t = static_cast<double>(std::min(step, total_steps_));
    const double T = static_cast<double>(total_steps_);
    lr = options_.min_lr + (base_lr_ - options_.min_lr) * (1.0 + std::cos(kPi * t / T)) / 2.0;
  } else if (name == "one_cycle") {
    // OneCycleLR(three_phase=False): phase 1 ends at pct_start*T - 1, phase 2 at T - 1 (PyTorch raises past T).
    const double initial_lr = base_lr_ / options_.div_factor;
    const double final_lr = initial_lr / options_.final_div_factor;
    const double t = static_cast<double>(std::min(step, total_steps_ - 1));
    const double rise_end = options_.pct_start * static_cast<double>(total_steps_) - 1.0;
    const double fall_end = static_cast<double>(total_steps_) - 1.0;
    if (t <= rise_end) {
      const double pct = rise_end > 0.0 ? t / rise_end : 1.0;
      lr = annealing_cos(initial_lr, base_lr_, pct);
    } else {
      // t > rise_end and t <= fall_end, so the phase has positive length here.
      lr = annealing_cos(base_lr_, final_lr, (t - rise_end) / (fall_end - rise_end));
    }
  }
  if (step < options_.warmup_steps) {
    lr *= static_cast<double>(step + 1) / static_cast<double>(options_.warmup_steps);
  }
  return lr;
}

}  // namespace traindx
