#pragma once
/// The doctor's gradient check: autograd's gradients against central finite differences in double precision,
/// with the conventions of torch.autograd.gradcheck (PyTorch 1.13, torch/autograd/gradcheck.py):
///   numerical  n = (f(x + eps) - f(x - eps)) / (2 eps) for one element x at a time, eps = 1e-6;
///   analytical a = the vector-Jacobian product with a one-hot output gradient (one Jacobian row per output element);
///   an entry passes iff |a - n| <= atol + rtol * |n| (torch.allclose(a, n, rtol, atol)), atol = 1e-5, rtol = 1e-3;
///   a tensor passes iff every checked entry passes; a NaN on either side fails.
/// Two forms: gradient_check() checks a Model's parameters (and optionally its input) through its loss on a small
/// batch; gradient_check_function() mirrors torch.autograd.gradcheck(fn, inputs) for any function of tensors, e.g. a
/// TorchScript module's forward. tests/doctor_gradcheck_test.cpp checks that both give torch.autograd.gradcheck's
/// pass/fail verdict on the same TorchScript functions.
#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "traindx/core/config.h"
#include "traindx/model/model.h"
#include "traindx/monitor/finding.h"
#include "traindx/train/objective.h"

namespace traindx {

/// How dropout and batch norm behave while the model form evaluates the loss (it evaluates it 2k + 1 times and
/// every evaluation must compute the same function of the parameters).
enum class GradcheckMode {
  /// Training behaviour, with torch's CPU generator re-seeded with `seed` before every evaluation: dropout draws
  /// the same mask each time and batch norm normalises with the batch's statistics. Checks the backward training
  /// actually runs. The caller's generator state is restored afterwards. Needs a batch of >= 2 for batch norm.
  TrainFixedSeed,
  /// Inference behaviour (model.train(false)): dropout is the identity, batch norm uses its running statistics.
  Eval,
};

const char* gradcheck_mode_name(GradcheckMode mode);

/// Options of both forms. Defaults are torch.autograd.gradcheck's (eps, atol, rtol) and the doctor's (the rest).
struct GradcheckOptions {
  double eps = 1e-6;   ///< central-difference step (torch.autograd.gradcheck's default)
  double atol = 1e-5;  ///< absolute tolerance (torch.autograd.gradcheck's default)
  double rtol = 1e-3;  ///< relative tolerance, times |numerical| (torch.autograd.gradcheck's default)
  /// Elements checked per tensor (parameter, input, and output rows of the function form); larger tensors get a
  /// seeded sample without replacement, and the row says so. 0 = every element (torch's behaviour). A wrong backward
  /// corrupts most elements of a tensor, so 32 samples catch it, while the model form of examples/fashion_cnn.toml
  /// (12 tensors) stays at ~730 forward passes: 0.5 s on an idle 2-core machine, 7 s with both cores busy.
  int64_t max_elements_per_tensor = 32;
  uint64_t seed = 0;  ///< seeds the element sample and, in TrainFixedSeed mode, every evaluation's dropout
  GradcheckMode mode = GradcheckMode::TrainFixedSeed;
  /// Model form: examples used from the front of the batch (0 = all). Each checked element costs two forward
  /// passes over them, so the cost is linear in this; 2 is the least batch norm's batch statistics allow.
  int64_t batch_size = 2;
  bool check_input = false;  ///< model form: also check d loss / d input (the row is named "input")
  double huber_delta = 1.0;  ///< model form: for LossKind::Huber (train.huber_delta)
  /// A failing entry whose one-sided differences (f(x+eps) - f(x)) / eps and (f(x) - f(x-eps)) / eps disagree with
  /// each other while the analytical value matches one of them sits on a kink (ReLU at 0, a max tie) within eps of
  /// the sample point: with this on it counts as a kink, not a failure. Off by default, as torch.autograd.gradcheck,
  /// which fails such points.
  bool excuse_kinks = false;

  GradcheckOptions& set_eps(double v) { eps = v; return *this; }
  GradcheckOptions& set_atol(double v) { atol = v; return *this; }
  GradcheckOptions& set_rtol(double v) { rtol = v; return *this; }
  GradcheckOptions& set_max_elements_per_tensor(int64_t v) { max_elements_per_tensor = v; return *this; }
  GradcheckOptions& set_seed(uint64_t v) { seed = v; return *this; }
  GradcheckOptions& set_mode(GradcheckMode v) { mode = v; return *this; }
  GradcheckOptions& set_batch_size(int64_t v) { batch_size = v; return *this; }
  GradcheckOptions& set_check_input(bool v) { check_input = v; return *this; }
  GradcheckOptions& set_huber_delta(double v) { huber_delta = v; return *this; }
  GradcheckOptions& set_excuse_kinks(bool v) { excuse_kinks = v; return *this; }

  /// Throws ConfigError naming the option when eps <= 0, a tolerance < 0, or a count < 0.
  void validate() const;
  Json to_json() const;
};

/// The check of one tensor (a parameter, the model input, or the i-th input of the function form).
struct GradcheckRow {
  std::string name;    ///< "conv1.weight", "input", or "input0", "input1", ... in the function form
  std::string layer;   ///< the layer owning a parameter ("conv1"; "res1.proj"), else the name
  int64_t elements = 0;          ///< elements of the tensor
  int64_t checked_elements = 0;  ///< elements perturbed (== elements unless sampled)
  int64_t checked_outputs = 0;   ///< Jacobian rows compared (1 for a scalar loss)
  bool sampled = false;          ///< true when checked_elements < elements or outputs were sampled
  int64_t failed_entries = 0;    ///< Jacobian entries outside atol + rtol * |numerical|
  int64_t kink_entries = 0;      ///< entries excused as kinks (options.excuse_kinks)
  double max_abs_error = 0.0;    ///< max |a - n| over checked entries
  /// max |a - n| / max(|a|, |n|, atol) over checked entries: the relative error, floored at atol so entries whose
  /// true gradient is ~0 do not turn round-off into huge ratios.
  double max_rel_error = 0.0;
  /// max |a - n| / (atol + rtol * |n|): <= 1 exactly when the tensor passes; how close it came to failing.
  double max_error_ratio = 0.0;
  int64_t worst_element = -1;    ///< flat index in the tensor of the worst entry (by error ratio)
  int64_t worst_output = -1;     ///< output element of the worst entry
  double worst_analytical = 0.0, worst_numerical = 0.0;
  bool passed = true;
  Json to_json() const;
};

/// What a gradient check found.
struct GradcheckResult {
  std::vector<GradcheckRow> rows;   ///< one per checked tensor, in named_parameters() / input order
  bool passed = true;               ///< the check ran and every row passed
  /// Why the model form checked nothing (empty when it ran): a non-finite loss, or a loss so large that the
  /// round-off of the central differences, DBL_EPSILON * |loss| / eps, exceeds atol, so rounding alone would fail
  /// entries (a 10-layer stack with std 100 weights gives a float64 loss of ~1e39).
  std::string skip_reason;
  std::vector<std::string> skipped; ///< parameters without requires_grad (frozen): nothing to check
  GradcheckOptions options;         ///< as run
  int64_t batch_size = 0;           ///< model form: examples the loss was evaluated on
  double loss = 0.0;                ///< model form: the loss at the unperturbed point
  int64_t evaluations = 0;          ///< function/loss evaluations the numerical Jacobian took
  double seconds = 0.0;
  /// Critical "gradient_check" findings, one per layer with a failing tensor ("backward of layer X disagrees with
  /// finite differences"); a "gradient_check_skipped" warning with the skip reason when nothing could be checked
  /// (the cause, e.g. an exploding forward pass, is for the doctor's initialisation checks to name).
  std::vector<Finding> findings;
  Json to_json() const;
};

/// Checks d loss / d parameter for every trainable parameter of `model` (and d loss / d input with
/// options.check_input), where loss = compute_loss(loss, model.forward(inputs), targets) on the first
/// options.batch_size examples, in float64 on the CPU. The model is converted to float64 for the check and put
/// back exactly as it was before returning (also when throwing): parameter and buffer values, dtypes and device
/// (the same tensor objects, so optimizers holding them are unaffected), training mode, and torch's CPU generator
/// state. Parameters' .grad are not touched. Do not use the model from another thread meanwhile.
/// Throws DataError when inputs or targets are undefined or empty or their batch sizes differ, ConfigError on
/// invalid options; LibTorch errors from the model's forward pass propagate (c10::Error).
GradcheckResult gradient_check(Model& model, const torch::Tensor& inputs, const torch::Tensor& targets, LossKind loss,
                               const GradcheckOptions& options = {});

/// A function of tensors returning one tensor (e.g. a TorchScript module's forward).
using TensorFunction = std::function<torch::Tensor(const std::vector<torch::Tensor>&)>;

/// torch.autograd.gradcheck(f, inputs) (slow mode): for every input that requires grad, compares each output
/// element's Jacobian row (autograd) with central differences of f, perturbing one input element at a time.
/// Inputs are copied, so the caller's tensors are never modified: floating inputs become float64 (finite
/// differences in float32 are meaningless at eps = 1e-6) keeping their requires_grad; others pass unchanged.
/// An output that does not require grad has a zero analytical Jacobian, as in torch. Options batch_size, mode,
/// check_input and huber_delta do not apply. Throws ConfigError when no input requires grad (torch raises too),
/// DataError when f returns an undefined or non-floating tensor.
GradcheckResult gradient_check_function(const TensorFunction& f, std::vector<torch::Tensor> inputs,
                                        const GradcheckOptions& options = {});

/// The layer a qualified parameter name belongs to: "conv1.weight" -> "conv1", "res1.proj.bias" -> "res1.proj".
std::string gradcheck_layer_of(const std::string& parameter);

}  // namespace traindx
