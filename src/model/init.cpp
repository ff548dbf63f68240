// Weight initialisation schemes of model.init / a layer's `init` key.
#include <torch/torch.h>

#include <string>
#include <vector>

#include "traindx/core/error.h"
#include "traindx/core/text.h"
#include "traindx/model/model.h"

namespace traindx {
namespace {

// "Did you mean" candidate: a choice that starts with what was typed ("xavier" -> "xavier_uniform") beats raw
// edit distance, which prefers short unrelated words ("normal").
std::string suggest(const std::string& word, const std::vector<std::string>& choices) {
  for (const auto& c : choices) {
    if (!word.empty() && c.rfind(word, 0) == 0) return c;
  }
  return closest_match(word, choices);
}

}  // namespace

const std::vector<std::string>& init_schemes() {
  static const std::vector<std::string> schemes = {"default",        "xavier_uniform", "xavier_normal",
                                                   "kaiming_uniform", "kaiming_normal", "orthogonal",
                                                   "normal",          "constant",       "zeros"};
  return schemes;
}

void init_tensor(torch::Tensor& weight, const std::string& scheme, double std_dev, double value) {
  TRAINDX_CHECK(weight.defined(), ModelError, "init '{}': the tensor to initialise is undefined", scheme);
  // Parameters are leaves that require grad; writing them in place must not be recorded by autograd.
  torch::NoGradGuard no_grad;
  namespace init = torch::nn::init;
  if (scheme == "default") return;  // keep what the layer's constructor drew (LibTorch's reset_parameters)
  if (scheme == "zeros") {
    init::zeros_(weight);
    return;
  }
  if (scheme == "constant") {
    init::constant_(weight, value);
    return;
  }
  if (scheme == "normal") {
    TRAINDX_CHECK(std_dev >= 0.0, ModelError, "init 'normal': init_std must be >= 0, got {}", std_dev);
    init::normal_(weight, 0.0, std_dev);
    return;
  }
  const bool fan_based = scheme == "xavier_uniform" || scheme == "xavier_normal" || scheme == "kaiming_uniform" ||
                         scheme == "kaiming_normal" || scheme == "orthogonal";
  if (!fan_based) {
    TRAINDX_FAIL(ModelError, "unknown init scheme '{}'; did you mean '{}'? (one of: {})", scheme,
                 suggest(scheme, init_schemes()), fmt::join(init_schemes(), ", "));
  }
  // Fans (and the orthogonal matrix) are defined over [out, in, kernel...]; a 1-D tensor has no fan_out.
  TRAINDX_CHECK(weight.dim() >= 2, ModelError,
                "init '{}' needs a weight with at least 2 dimensions ([out, in, ...]), got shape {}; use normal, "
                "constant or zeros for this tensor",
                scheme, fmt::join(weight.sizes(), "x"));
  if (scheme == "xavier_uniform") {
    init::xavier_uniform_(weight);
  } else if (scheme == "xavier_normal") {
    init::xavier_normal_(weight);
  } else if (scheme == "kaiming_uniform") {
    init::kaiming_uniform_(weight, 0.0, torch::kFanIn, torch::kReLU);
  } else if (scheme == "kaiming_normal") {
    init::kaiming_normal_(weight, 0.0, torch::kFanIn, torch::kReLU);
  } else {
    init::orthogonal_(weight);
  }
}

}  // namespace traindx
