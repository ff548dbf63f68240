#include "traindx/data/data.h"

namespace traindx {

const char* task_name(Task task) { return task == Task::Classification ? "classification" : "regression"; }

DataOptions DataOptions::from_config(const Config& c) {
  DataOptions o;
  o.source = c.get_string("data.source");
  o.path = c.get_string("data.path");
  o.test_path = c.get_string("data.test_path");
  o.target = c.get_string("data.target");
  o.task = c.get_string("data.task");
  o.normalize = c.get_bool("data.normalize");
  o.scaler = c.get_string("data.scaler");
  o.impute = c.get_string("data.impute");
  o.categorical = c.get_string_array("data.categorical");
  o.drop_columns = c.get_string_array("data.drop_columns");
  o.delimiter = c.get_string("data.delimiter");
  o.header = c.get_string("data.header");
  o.val_fraction = c.get_double("data.val_fraction");
  o.test_fraction = c.get_double("data.test_fraction");
  o.stratify = c.get_bool("data.stratify");
  o.max_train = c.get_int("data.max_train");
  o.max_test = c.get_int("data.max_test");
  o.shuffle_labels = c.get_bool("data.shuffle_labels");
  o.seed = static_cast<uint64_t>(c.get_int("run.seed"));
  return o;
}

}  // namespace traindx
