#include "traindx/model/model.h"

namespace traindx {

ModelOptions ModelOptions::from_config(const Config& c) {
  ModelOptions o;
  o.layers = c.get("model.layers");
  o.init = c.get_string("model.init");
  o.init_std = c.get_double("model.init_std");
  o.init_value = c.get_double("model.init_value");
  o.bias_init = c.get_string("model.bias_init");
  o.bias_value = c.get_double("model.bias_value");
  o.torchscript = c.get_string("model.torchscript");
  o.dtype = c.get_string("model.dtype");
  return o;
}

}  // namespace traindx
