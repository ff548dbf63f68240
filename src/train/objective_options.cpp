#include "traindx/train/objective.h"

namespace traindx {

OptimizerOptions OptimizerOptions::from_config(const Config& c) {
  OptimizerOptions o;
  o.name = c.get_string("train.optimizer");
  o.lr = c.get_double("train.lr");
  o.momentum = c.get_double("train.momentum");
  o.nesterov = c.get_bool("train.nesterov");
  o.weight_decay = c.get_double("train.weight_decay");
  o.beta1 = c.get_double("train.beta1");
  o.beta2 = c.get_double("train.beta2");
  o.eps = c.get_double("train.eps");
  o.alpha = c.get_double("train.alpha");
  return o;
}

ScheduleOptions ScheduleOptions::from_config(const Config& c) {
  ScheduleOptions o;
  o.name = c.get_string("train.schedule");
  o.warmup_steps = c.get_int("train.warmup_steps");
  o.step_size = c.get_int("train.step_size");
  o.gamma = c.get_double("train.gamma");
  o.min_lr = c.get_double("train.min_lr");
  o.pct_start = c.get_double("train.pct_start");
  o.div_factor = c.get_double("train.div_factor");
  o.final_div_factor = c.get_double("train.final_div_factor");
  return o;
}

}  // namespace traindx
