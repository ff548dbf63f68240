// Optimizers: OptimizerOptions -> LibTorch optimizer. Every value is checked here against the range its train.*
// key declares, so a bad value fails as a ConfigError naming the key rather than as a c10::Error from inside
// LibTorch's constructors.
#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <string>

#include "traindx/core/error.h"
#include "traindx/train/objective.h"

namespace traindx {
namespace {

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

/// Adam's bias correction divides by 1 - beta^t, so beta = 1 (allowed by the key's closed range) cannot work.
void check_beta(const char* key, double value) {
  check_in_schema_range(key, value);
  TRAINDX_CHECK(value < 1.0, ConfigError, "{} = {} must be < 1 (Adam divides by 1 - {}^step)", key, value, key);
}

}  // namespace

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const OptimizerOptions& o,
                                                        const std::vector<torch::Tensor>& parameters) {
  namespace optim = torch::optim;
  check_in_schema_range("train.lr", o.lr);
  check_in_schema_range("train.weight_decay", o.weight_decay);
  if (o.name == "sgd") {
    check_in_schema_range("train.momentum", o.momentum);
    TRAINDX_CHECK(!o.nesterov || o.momentum > 0.0, ConfigError,
                  "train.nesterov = true needs momentum: set train.momentum > 0 (e.g. 0.9) or train.nesterov = "
                  "false");
    return std::make_unique<optim::SGD>(
        parameters,
        optim::SGDOptions(o.lr).momentum(o.momentum).nesterov(o.nesterov).weight_decay(o.weight_decay));
  }
  if (o.name == "adam" || o.name == "adamw") {
    check_beta("train.beta1", o.beta1);
    check_beta("train.beta2", o.beta2);
    check_in_schema_range("train.eps", o.eps);
    if (o.name == "adam") {
      return std::make_unique<optim::Adam>(parameters, optim::AdamOptions(o.lr)
                                                           .betas(std::make_tuple(o.beta1, o.beta2))
                                                           .eps(o.eps)
                                                           .weight_decay(o.weight_decay));
    }
    // AdamWOptions defaults weight_decay to 1e-2; it is always set so train.weight_decay = 0 means none.
    return std::make_unique<optim::AdamW>(parameters, optim::AdamWOptions(o.lr)
                                                          .betas(std::make_tuple(o.beta1, o.beta2))
                                                          .eps(o.eps)
                                                          .weight_decay(o.weight_decay));
  }
  if (o.name == "rmsprop") {
    check_in_schema_range("train.alpha", o.alpha);
    check_in_schema_range("train.eps", o.eps);
    check_in_schema_range("train.momentum", o.momentum);
    return std::make_unique<optim::RMSprop>(
        parameters,
        optim::RMSpropOptions(o.lr).alpha(o.alpha).eps(o.eps).momentum(o.momentum).weight_decay(o.weight_decay));
  }
  if (o.name == "adagrad") {
    check_in_schema_range("train.eps", o.eps);
    return std::make_unique<optim::Adagrad>(parameters,
                                            optim::AdagradOptions(o.lr).eps(o.eps).weight_decay(o.weight_decay));
  }
  TRAINDX_FAIL(ConfigError,
               "train.optimizer = \"{}\" is not a known optimizer; use one of sgd, adam, adamw, rmsprop, adagrad",
               o.name);
}

void set_learning_rate(torch::optim::Optimizer& optimizer, double lr) {
  TRAINDX_CHECK(std::isfinite(lr) && lr >= 0.0, ConfigError, "learning rate {} must be finite and >= 0", lr);
  // Every option class of LibTorch 1.13 overrides set_lr, so no per-optimizer cast is needed. The defaults are
  // updated too so that a group added later starts at the current rate.
  for (auto& group : optimizer.param_groups()) {
    group.options().set_lr(lr);
  }
  optimizer.defaults().set_lr(lr);
}

double get_learning_rate(const torch::optim::Optimizer& optimizer) {
  const auto& groups = optimizer.param_groups();
  return groups.empty() ? optimizer.defaults().get_lr() : groups.front().options().get_lr();
}

}  // namespace traindx
