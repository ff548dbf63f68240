// The gradient check: one engine compares autograd's Jacobian rows with central differences for a list of leaf
// tensors and a function of them; the model form and the function form only differ in what the tensors and the
// function are.
#include "traindx/doctor/gradcheck.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <set>

#include "traindx/checkpoint/checkpoint.h"
#include "traindx/core/error.h"
#include "traindx/data/data.h"

namespace traindx {
namespace {

using Clock = std::chrono::steady_clock;

/// A tensor under check: a float64, contiguous CPU leaf that requires grad, perturbed in place.
struct Target {
  std::string name;
  std::string layer;
  torch::Tensor tensor;
};

/// `k` distinct indices of [0, n) in increasing order (Floyd's algorithm), or all of them when k is 0 or >= n.
std::vector<int64_t> sample_indices(int64_t n, int64_t k, uint64_t seed) {
  std::vector<int64_t> out;
  if (k <= 0 || k >= n) {
    out.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) out[static_cast<size_t>(i)] = i;
    return out;
  }
  SplitMix64 rng(seed);
  std::set<int64_t> chosen;
  for (int64_t j = n - k; j < n; ++j) {
    const auto t = static_cast<int64_t>(rng.below(static_cast<uint64_t>(j + 1)));
    chosen.insert(chosen.count(t) ? j : t);
  }
  return {chosen.begin(), chosen.end()};
}

/// Per-tensor seed for the element sample: the same options give the same elements whatever else is checked.
uint64_t tensor_seed(uint64_t seed, size_t index) { return seed ^ (0x9E3779B97F4A7C15ULL * (index + 1)); }

torch::Tensor flat_double(const torch::Tensor& t) { return t.detach().reshape(-1).to(torch::kDouble); }

/// A kink within eps of the sample point: the one-sided differences disagree with each other, and autograd's value
/// is one of them (autograd differentiates one side of a kink; a wrong backward matches neither side).
bool is_kink(double analytical, double plus, double base, double minus, const GradcheckOptions& o) {
  const double right = (plus - base) / o.eps;
  const double left = (base - minus) / o.eps;
  auto close = [&](double a, double b) { return std::abs(a - b) <= o.atol + o.rtol * std::abs(b); };
  const bool sides_differ = std::abs(right - left) > o.atol + o.rtol * std::max(std::abs(right), std::abs(left));
  return sides_differ && (close(analytical, right) || close(analytical, left));
}

// NaN and infinity are not JSON numbers; they are written as null.
Json number(double v) { return std::isfinite(v) ? Json(v) : Json(); }

/// Compares analytical and numerical Jacobians of every target. `eval` computes the function at the targets'
/// current values; it is called with grad mode on once (for the analytical rows), then under NoGradGuard.
std::vector<GradcheckRow> compare_jacobians(const std::vector<Target>& targets,
                                            const std::function<torch::Tensor()>& eval, const GradcheckOptions& o,
                                            int64_t& evaluations) {
  // Analytical: one backward per sampled output element, each giving that output's row for every target.
  const torch::Tensor out = eval();
  TRAINDX_CHECK(out.defined(), DataError, "gradient check: the function returned an undefined tensor");
  TRAINDX_CHECK(out.is_floating_point(), DataError,
                "gradient check: the function returned a {} tensor; only floating outputs have gradients",
                c10::toString(out.scalar_type()));
  const torch::Tensor out_flat = out.reshape(-1);
  const int64_t n_out = out_flat.numel();
  const std::vector<int64_t> rows = sample_indices(n_out, o.max_elements_per_tensor, o.seed ^ 0xD1B54A32D192ED03ULL);
  const auto n_rows = static_cast<int64_t>(rows.size());
  const torch::Tensor row_index = torch::tensor(rows, torch::kLong);

  std::vector<std::vector<int64_t>> elements;
  std::vector<torch::Tensor> analytical;  // per target: [rows, sampled elements]
  std::vector<torch::Tensor> inputs;
  for (size_t t = 0; t < targets.size(); ++t) {
    const int64_t n = targets[t].tensor.numel();
    elements.push_back(sample_indices(n, o.max_elements_per_tensor, tensor_seed(o.seed, t)));
    analytical.push_back(torch::zeros({n_rows, static_cast<int64_t>(elements.back().size())}, torch::kDouble));
    inputs.push_back(targets[t].tensor);
  }
  if (out.requires_grad() && !targets.empty()) {
    for (int64_t r = 0; r < n_rows; ++r) {
      torch::Tensor grad_out = torch::zeros_like(out_flat);
      grad_out.index_put_({rows[static_cast<size_t>(r)]}, 1.0);
      const auto grads = torch::autograd::grad({out_flat}, inputs, {grad_out}, /*retain_graph=*/true,
                                               /*create_graph=*/false, /*allow_unused=*/true);
      for (size_t t = 0; t < targets.size(); ++t) {
        if (!grads[t].defined()) continue;  // unused input: a zero row, as torch's gradcheck
        const torch::Tensor idx = torch::tensor(elements[t], torch::kLong);
        analytical[t][r].copy_(flat_double(grads[t]).index_select(0, idx));
      }
    }
  }

  // Numerical: perturb one element at a time in place (outside autograd) and difference the sampled outputs.
  torch::NoGradGuard no_grad;
  torch::Tensor base;
  if (o.excuse_kinks) {
    base = flat_double(eval()).index_select(0, row_index);
    ++evaluations;
  }
  std::vector<GradcheckRow> result;
  for (size_t t = 0; t < targets.size(); ++t) {
    const Target& target = targets[t];
    double* data = target.tensor.data_ptr<double>();
    GradcheckRow row;
    row.name = target.name;
    row.layer = target.layer;
    row.elements = target.tensor.numel();
    row.checked_elements = static_cast<int64_t>(elements[t].size());
    row.checked_outputs = n_rows;
    row.sampled = row.checked_elements < row.elements || n_rows < n_out;
    const auto a_all = analytical[t].accessor<double, 2>();
    bool saw_nan = false;
    for (size_t k = 0; k < elements[t].size(); ++k) {
      const int64_t e = elements[t][k];
      const double original = data[e];
      data[e] = original - o.eps;
      const torch::Tensor minus = flat_double(eval()).index_select(0, row_index);
      data[e] = original + o.eps;
      const torch::Tensor plus = flat_double(eval()).index_select(0, row_index);
      data[e] = original;
      evaluations += 2;
      const torch::Tensor numerical = (plus - minus) / (2.0 * o.eps);
      const auto n_acc = numerical.accessor<double, 1>();
      for (int64_t r = 0; r < n_rows; ++r) {
        const double a = a_all[r][static_cast<int64_t>(k)];
        const double n = n_acc[r];
        const double err = std::abs(a - n);
        const double allowed = o.atol + o.rtol * std::abs(n);
        if (!(err <= allowed) && o.excuse_kinks && is_kink(a, plus[r].item<double>(), base[r].item<double>(),
                                                             minus[r].item<double>(), o)) {
          ++row.kink_entries;
          continue;
        }
        // NaN on either side fails and ranks worst.
        const bool ok = err <= allowed;
        const double ratio = std::isnan(err) ? std::numeric_limits<double>::infinity() : err / allowed;
        if (!ok) ++row.failed_entries;
        if (std::isnan(err)) {
          saw_nan = true;
        } else {
          row.max_abs_error = std::max(row.max_abs_error, err);
          row.max_rel_error = std::max(row.max_rel_error, err / std::max({std::abs(a), std::abs(n), o.atol}));
        }
        if (row.worst_element < 0 || ratio > row.max_error_ratio) {
          row.max_error_ratio = ratio;
          row.worst_element = e;
          row.worst_output = rows[static_cast<size_t>(r)];
          row.worst_analytical = a;
          row.worst_numerical = n;
        }
      }
    }
    if (saw_nan) row.max_abs_error = row.max_rel_error = std::numeric_limits<double>::quiet_NaN();
    row.passed = row.failed_entries == 0;
    result.push_back(row);
  }
  return result;
}

Finding layer_finding(const std::string& layer, const std::vector<const GradcheckRow*>& failing,
                      const GradcheckOptions& o) {
  const GradcheckRow* worst = failing.front();
  for (const auto* r : failing)
    if (r->max_error_ratio > worst->max_error_ratio) worst = r;
  std::vector<std::string> names;
  Json tensors = Json::array();
  for (const auto* r : failing) {
    names.push_back(r->name);
    tensors.push_back(r->to_json());
  }
  Finding f;
  f.rule = "gradient_check";
  f.severity = Severity::Critical;
  f.layer = layer;
  const std::string what = layer == "input" ? std::string("the gradient with respect to the model input")
                                            : fmt::format("backward of layer {}", layer);
  f.message = fmt::format(
      "{} disagrees with finite differences: {} has {} of {} checked entries outside atol {:g} + rtol {:g} x "
      "|numerical|; worst at element {}: autograd {:.6g} vs numerical {:.6g} (abs error {:.3g})",
      what, worst->name, worst->failed_entries, worst->checked_elements * worst->checked_outputs, o.atol, o.rtol,
      worst->worst_element, worst->worst_analytical, worst->worst_numerical,
      std::abs(worst->worst_analytical - worst->worst_numerical));
  f.evidence = {{"tensors", tensors}, {"failing", names}, {"eps", o.eps}, {"atol", o.atol}, {"rtol", o.rtol},
                {"mode", gradcheck_mode_name(o.mode)}};
  f.causes = {"a custom layer's backward (a torch::autograd::Function) computes the wrong gradient",
              "detach(), .data or an in-place write inside forward changes or cuts the gradient path",
              "a non-differentiable point (ReLU at 0, a max or sort tie) within eps of the sampled values"};
  f.fixes = {fmt::format("check the layer alone with torch.autograd.gradcheck in float64 and fix its backward "
                         "(the failing tensors: {})",
                         fmt::join(names, ", ")),
             "remove detach() / .data / in-place writes from the forward pass, or write the layer with differentiable "
             "operations only",
             "rerun with another seed or batch (GradcheckOptions::seed, excuse_kinks): a failure that moves or "
             "vanishes is a kink, not a wrong backward"};
  return f;
}

void finish(GradcheckResult& result) {
  result.passed = true;
  std::map<std::string, std::vector<const GradcheckRow*>> failing_by_layer;
  std::vector<std::string> order;
  for (const auto& row : result.rows) {
    if (row.passed) continue;
    result.passed = false;
    if (!failing_by_layer.count(row.layer)) order.push_back(row.layer);
    failing_by_layer[row.layer].push_back(&row);
  }
  for (const auto& layer : order)
    result.findings.push_back(layer_finding(layer, failing_by_layer[layer], result.options));
}

/// Puts the model into float64 on the CPU for the check and back afterwards. Each parameter and buffer gets a
/// private float64 copy through set_data (so the check never writes into the caller's storage, even when the model
/// already is float64), and its original data is put back through set_data on destruction: the same tensor
/// objects, holding their original storage, dtype and device.
class Float64Scope {
 public:
  explicit Float64Scope(Model& model) : model_(model), was_training_(model.is_training()), rng_(cpu_rng_state()) {
    for (const auto& [name, t] : model.named_parameters()) entries_.push_back({t, t.detach()});
    for (const auto& [name, t] : model.named_buffers()) entries_.push_back({t, t.detach()});
    torch::NoGradGuard no_grad;
    for (auto& e : entries_) {
      const torch::Dtype dtype = e.original.is_floating_point() ? torch::kDouble : e.original.scalar_type();
      e.handle.set_data(e.original.to(torch::TensorOptions().dtype(dtype).device(torch::kCPU), /*non_blocking=*/false,
                                      /*copy=*/true)
                            .contiguous());
    }
  }
  Float64Scope(const Float64Scope&) = delete;
  Float64Scope& operator=(const Float64Scope&) = delete;
  ~Float64Scope() {
    // A destructor must not throw; restoring is plain metadata swaps that do not fail on tensors that were valid
    // a moment ago, so nothing is lost by not reporting.
    try {
      torch::NoGradGuard no_grad;
      for (auto& e : entries_) e.handle.set_data(e.original);
      model_.train(was_training_);
      set_cpu_rng_state(rng_);
    } catch (...) {
    }
  }

 private:
  struct Entry {
    torch::Tensor handle;    // shares the TensorImpl with the model
    torch::Tensor original;  // an alias of the original data, kept while the model holds the copy
  };
  Model& model_;
  bool was_training_;
  torch::Tensor rng_;
  std::vector<Entry> entries_;
};

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

}  // namespace

const char* gradcheck_mode_name(GradcheckMode mode) {
  switch (mode) {
    case GradcheckMode::TrainFixedSeed: return "train_fixed_seed";
    case GradcheckMode::Eval: return "eval";
  }
  return "?";
}

void GradcheckOptions::validate() const {
  TRAINDX_CHECK(std::isfinite(eps) && eps > 0, ConfigError, "gradient check: eps = {} must be > 0 (default 1e-6)", eps);
  TRAINDX_CHECK(std::isfinite(atol) && atol >= 0, ConfigError, "gradient check: atol = {} must be >= 0 (default 1e-5)",
                atol);
  TRAINDX_CHECK(std::isfinite(rtol) && rtol >= 0, ConfigError, "gradient check: rtol = {} must be >= 0 (default 1e-3)",
                rtol);
  TRAINDX_CHECK(max_elements_per_tensor >= 0, ConfigError,
                "gradient check: max_elements_per_tensor = {} must be >= 0 (0 = every element)",
                max_elements_per_tensor);
  TRAINDX_CHECK(batch_size >= 0, ConfigError, "gradient check: batch_size = {} must be >= 0 (0 = the whole batch)",
                batch_size);
  TRAINDX_CHECK(huber_delta > 0, ConfigError, "gradient check: huber_delta = {} must be > 0", huber_delta);
}

Json GradcheckOptions::to_json() const {
  return {{"eps", eps},
          {"atol", atol},
          {"rtol", rtol},
          {"max_elements_per_tensor", max_elements_per_tensor},
          {"seed", std::to_string(seed)},
          {"mode", gradcheck_mode_name(mode)},
          {"batch_size", batch_size},
          {"check_input", check_input},
          {"huber_delta", huber_delta},
          {"excuse_kinks", excuse_kinks}};
}

Json GradcheckRow::to_json() const {
  return {{"parameter", name},
          {"layer", layer},
          {"elements", elements},
          {"checked_elements", checked_elements},
          {"checked_outputs", checked_outputs},
          {"sampled", sampled},
          {"failed_entries", failed_entries},
          {"kink_entries", kink_entries},
          {"max_abs_error", number(max_abs_error)},
          {"max_rel_error", number(max_rel_error)},
          {"max_error_ratio", number(max_error_ratio)},
          {"worst_element", worst_element},
          {"worst_output", worst_output},
          {"worst_analytical", number(worst_analytical)},
          {"worst_numerical", number(worst_numerical)},
          {"passed", passed}};
}

Json GradcheckResult::to_json() const {
  Json r = Json::array();
  for (const auto& row : rows) r.push_back(row.to_json());
  Json f = Json::array();
  for (const auto& finding : findings) f.push_back(finding.to_json());
  return {{"passed", passed},
          {"skip_reason", skip_reason},
          {"rows", r},
          {"skipped", skipped},
          {"options", options.to_json()},
          {"batch_size", batch_size},
          {"loss", number(loss)},
          {"evaluations", evaluations},
          {"seconds", seconds},
          {"findings", f}};
}

std::string gradcheck_layer_of(const std::string& parameter) {
  const auto dot = parameter.rfind('.');
  return dot == std::string::npos ? parameter : parameter.substr(0, dot);
}

GradcheckResult gradient_check(Model& model, const torch::Tensor& inputs, const torch::Tensor& targets, LossKind loss,
                               const GradcheckOptions& options) {
  options.validate();
  TRAINDX_CHECK(inputs.defined() && inputs.dim() >= 1 && inputs.size(0) > 0, DataError,
                "gradient check: the input batch is undefined or empty");
  TRAINDX_CHECK(targets.defined() && targets.dim() >= 1 && targets.size(0) == inputs.size(0), DataError,
                "gradient check: {} targets for {} inputs; give one target per example",
                targets.defined() && targets.dim() >= 1 ? targets.size(0) : 0, inputs.size(0));
  const auto start = Clock::now();
  GradcheckResult result;
  result.options = options;
  const int64_t b = options.batch_size > 0 ? std::min(options.batch_size, inputs.size(0)) : inputs.size(0);
  result.batch_size = b;

  Float64Scope scope(model);
  model.train(options.mode == GradcheckMode::TrainFixedSeed);
  torch::Tensor x = inputs.slice(0, 0, b).detach().to(torch::kCPU);
  if (x.is_floating_point()) x = x.to(torch::kDouble, /*non_blocking=*/false, /*copy=*/true).contiguous();
  const torch::Tensor y = targets.slice(0, 0, b).detach().to(torch::kCPU);

  std::vector<Target> checked;
  if (options.check_input) {
    TRAINDX_CHECK(x.is_floating_point(), DataError, "gradient check: check_input needs a floating input, got {}",
                  c10::toString(x.scalar_type()));
    x.requires_grad_(true);
    checked.push_back({"input", "input", x});
  }
  for (const auto& [name, p] : model.named_parameters()) {
    if (!p.requires_grad()) {
      result.skipped.push_back(name);
      continue;
    }
    checked.push_back({name, gradcheck_layer_of(name), p});
  }
  auto eval = [&] {
    if (options.mode == GradcheckMode::TrainFixedSeed) torch::manual_seed(options.seed);
    return compute_loss(loss, model.forward(x), y, options.huber_delta);
  };
  {
    torch::NoGradGuard no_grad;
    result.loss = eval().item<double>();
    ++result.evaluations;
  }
  // Central differences carry round-off of about DBL_EPSILON * |loss| / eps; past atol, rounding alone fails entries
  // and the verdict would say nothing about the backward.
  const double rounding = std::numeric_limits<double>::epsilon() * std::abs(result.loss) / options.eps;
  if (!std::isfinite(result.loss) || rounding > options.atol) {
    result.skip_reason =
        std::isfinite(result.loss)
            ? fmt::format("the loss on the check batch is {:.3g}: central differences with eps {:g} carry round-off "
                          "of ~{:.2g} in float64, above atol {:g}, so rounding alone would fail entries",
                          result.loss, options.eps, rounding, options.atol)
            : fmt::format("the loss on the check batch is {} even in float64", result.loss);
    result.findings.push_back(make_finding(
        "gradient_check_skipped", Severity::Warning, -1, "", "the gradient check could not run: " + result.skip_reason,
        {{"loss", number(result.loss)}, {"batch_size", b}, {"eps", options.eps}, {"atol", options.atol},
         {"round_off", number(rounding)}},
        {"weights, activations or outputs of enormous scale (initialisation far too large, unnormalised inputs or "
         "regression targets)",
         "non-finite values in the data"},
        {"fix the scale first (the doctor's data and initialisation checks say where), then rerun the check"}));
    result.passed = false;
    result.seconds = seconds_since(start);
    return result;
  }
  result.rows = compare_jacobians(checked, eval, options, result.evaluations);
  finish(result);
  result.seconds = seconds_since(start);
  return result;
}

GradcheckResult gradient_check_function(const TensorFunction& f, std::vector<torch::Tensor> inputs,
                                        const GradcheckOptions& options) {
  options.validate();
  TRAINDX_CHECK(static_cast<bool>(f), ConfigError, "gradient_check_function: no function given");
  const auto start = Clock::now();
  GradcheckResult result;
  result.options = options;
  std::vector<Target> checked;
  for (size_t i = 0; i < inputs.size(); ++i) {
    torch::Tensor& t = inputs[i];
    if (!t.defined() || !t.is_floating_point()) continue;
    const bool wants_grad = t.requires_grad();
    t = t.detach().to(torch::kDouble, /*non_blocking=*/false, /*copy=*/true).contiguous().requires_grad_(wants_grad);
    if (wants_grad) checked.push_back({"input" + std::to_string(i), "input" + std::to_string(i), t});
  }
  TRAINDX_CHECK(!checked.empty(), ConfigError,
                "gradient_check_function: no input requires grad; call requires_grad_(true) on the inputs to check "
                "(torch.autograd.gradcheck refuses this too)");
  auto eval = [&] { return f(inputs); };
  result.rows = compare_jacobians(checked, eval, options, result.evaluations);
  finish(result);
  result.seconds = seconds_since(start);
  return result;
}

}  // namespace traindx
