#include "traindx/checkpoint/investigate.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <future>
#include <limits>

#include "traindx/checkpoint/tensor_convert.h"
#include "traindx/core/environment.h"
#include "traindx/core/error.h"

namespace traindx {
namespace {

double eps_of(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat64: return std::numeric_limits<double>::epsilon();
    case torch::kFloat16: return 9.765625e-4;
    case torch::kBFloat16: return 7.8125e-3;
    default: return std::numeric_limits<float>::epsilon();
  }
}

// Distance in units in the last place, via the lexicographic order of IEEE bit patterns.
int64_t max_ulp_distance(const torch::Tensor& a, const torch::Tensor& b) {
  const bool f64 = a.scalar_type() == torch::kFloat64 && b.scalar_type() == torch::kFloat64;
  auto key = [f64](const torch::Tensor& t) {
    if (f64) {
      auto bits = t.to(torch::kFloat64).contiguous().view(torch::kInt64);
      // Saturating form for doubles: negative patterns map below zero, -0.0 to 0.
      return torch::where(bits < 0, std::numeric_limits<int64_t>::min() - bits, bits);
    }
    auto bits = t.to(torch::kFloat32).contiguous().view(torch::kInt32).to(torch::kInt64);
    return torch::where(bits < 0, int64_t{std::numeric_limits<int32_t>::min()} - bits, bits);
  };
  const auto finite = torch::isfinite(a) & torch::isfinite(b);
  if (!finite.any().item<bool>()) return 0;
  auto d = (key(a) - key(b)).abs().masked_select(finite);
  return d.max().item<int64_t>();
}

std::vector<std::pair<std::string, torch::Tensor>> collect_taps(Model& model, const torch::Tensor& input) {
  std::vector<std::pair<std::string, torch::Tensor>> taps;
  torch::NoGradGuard no_grad;
  model.forward_with_taps(input, [&](const std::string& layer, const torch::Tensor& out) {
    taps.emplace_back(layer, out.detach().cpu().clone());
  });
  return taps;
}

torch::Tensor run_model(Model& model, const torch::Tensor& input) {
  torch::NoGradGuard no_grad;
  const auto params = model.named_parameters();
  const auto dtype = params.empty() ? input.scalar_type() : params.front().second.scalar_type();
  return model.forward(input.to(dtype)).detach().cpu();
}

// Parametrised depth of every layer of a model, in summary order.
std::map<std::string, int64_t> layer_depths(const Model& model) {
  std::map<std::string, int64_t> out;
  int64_t depth = 0;
  for (const auto& row : model.summary()) {
    if (row.parameters > 0) ++depth;
    out[row.name] = depth;
  }
  return out;
}

int64_t parametrised_depth(const Model& model) {
  int64_t depth = 0;
  for (const auto& row : model.summary())
    if (row.parameters > 0) ++depth;
  return std::max<int64_t>(depth, 1);
}

std::vector<LayerComparison> compare_tap_lists(const std::vector<std::pair<std::string, torch::Tensor>>& ref,
                                               const std::vector<std::pair<std::string, torch::Tensor>>& cur,
                                               const std::map<std::string, int64_t>& depths) {
  std::map<std::string, torch::Tensor> cur_by_name(cur.begin(), cur.end());
  std::vector<LayerComparison> rows;
  for (const auto& [name, r] : ref) {
    auto it = cur_by_name.find(name);
    if (it == cur_by_name.end() || !r.is_floating_point()) continue;
    LayerComparison row;
    row.layer = name;
    auto d = depths.find(name);
    row.depth = d == depths.end() ? 1 : std::max<int64_t>(1, d->second);
    row.comparison = compare_tensors(it->second, r);
    row.tolerance = derive_tolerance(r.scalar_type(), row.depth);
    row.within = row.comparison.within(row.tolerance);
    rows.push_back(std::move(row));
  }
  return rows;
}

bool has_layer_type(const Model& model, std::initializer_list<const char*> types) {
  for (const auto& row : model.summary())
    for (const char* t : types)
      if (row.type.find(t) != std::string::npos) return true;
  return false;
}

// Restores the intra-op thread count when it leaves scope.
struct ThreadScope {
  explicit ThreadScope(int64_t threads) : saved(at::get_num_threads()) {
    if (threads > 0) at::set_num_threads(static_cast<int>(threads));
  }
  ~ThreadScope() { at::set_num_threads(saved); }
  int saved;
};

std::shared_ptr<Model> build_for(const Config& config, const Json& data_info) {
  const ModelOptions mo = ModelOptions::from_config(config);
  std::shared_ptr<Model> model;
  if (!mo.torchscript.empty()) {
    model = load_torchscript_model(mo.torchscript);
    model->to(torch::kCPU, mo.dtype == "float64" ? torch::kFloat64 : torch::kFloat32);
  } else {
    const auto shape = data_info.at("input_shape").get<std::vector<int64_t>>();
    const bool classify = data_info.value("task", "classification") == "classification";
    const int64_t outputs = classify ? data_info.value("num_classes", int64_t{1}) : 1;
    model = build_model(mo, shape, outputs);
  }
  model->train(false);
  return model;
}

std::vector<NamedTensor> read_weights(const std::string& path) {
  const bool safetensors = path.size() >= 12 && path.compare(path.size() - 12, 12, ".safetensors") == 0;
  if (safetensors) return read_safetensors(path).tensors;
  return read_torch_state_dict(path);
}

Json json_diff(const Json& a, const Json& b, const std::string& prefix = "") {
  Json out = Json::object();
  if (a.is_object() && b.is_object()) {
    for (auto it = a.begin(); it != a.end(); ++it) {
      const std::string k = prefix.empty() ? it.key() : prefix + "." + it.key();
      if (!b.contains(it.key())) {
        out[k] = {{"saved", it.value()}, {"current", nullptr}};
      } else {
        auto sub = json_diff(it.value(), b[it.key()], k);
        for (auto s = sub.begin(); s != sub.end(); ++s) out[s.key()] = s.value();
      }
    }
    for (auto it = b.begin(); it != b.end(); ++it)
      if (!a.contains(it.key())) out[prefix.empty() ? it.key() : prefix + "." + it.key()] = {{"saved", nullptr}, {"current", it.value()}};
    return out;
  }
  if (a != b) {
    auto shorten = [](const Json& v) {
      std::string s = v.dump();
      return s.size() > 120 ? Json(s.substr(0, 117) + "...") : v;
    };
    out[prefix.empty() ? "value" : prefix] = {{"saved", shorten(a)}, {"current", shorten(b)}};
  }
  return out;
}

}  // namespace

Json Tolerance::to_json() const { return {{"value", value}, {"derivation", derivation}}; }

Tolerance derive_tolerance(torch::ScalarType dtype, int64_t depth) {
  Tolerance t;
  const double eps = eps_of(dtype);
  t.value = 64.0 * eps * static_cast<double>(1 + std::max<int64_t>(0, depth));
  t.derivation = fmt::format("|a-b| <= tol (1 + |b|), tol = 64 * eps({}) * (1 + depth {}) = {:.3g}",
                             c10::toString(dtype), depth, t.value);
  return t;
}

bool TensorComparison::within(const Tolerance& tol) const {
  if (!same_shape || nonfinite_mismatch > 0) return false;
  return bitwise_equal || max_scaled <= tol.value;
}

Json TensorComparison::to_json() const {
  auto num = [](double v) { return std::isfinite(v) ? Json(v) : Json(std::to_string(v)); };
  return {{"same_shape", same_shape}, {"bitwise_equal", bitwise_equal}, {"numel", numel},
          {"differing", differing},   {"max_abs", num(max_abs)},      {"mean_abs", num(mean_abs)},
          {"max_rel", num(max_rel)},  {"max_scaled", num(max_scaled)}, {"cosine", num(cosine)},
          {"max_ulps", max_ulps},
          {"nonfinite_mismatch", nonfinite_mismatch}};
}

TensorComparison compare_tensors(const torch::Tensor& current, const torch::Tensor& reference) {
  TensorComparison c;
  auto a = current.detach().cpu();
  auto b = reference.detach().cpu();
  c.numel = b.numel();
  if (a.sizes() != b.sizes()) {
    c.same_shape = false;
    c.differing = std::max(a.numel(), b.numel());
    c.max_abs = c.max_rel = std::numeric_limits<double>::infinity();
    c.cosine = 0.0;
    return c;
  }
  // Shapes agree and no statistic below depends on them; flat, a 0-dim tensor can be viewed as bytes too.
  a = a.reshape({-1});
  b = b.reshape({-1});
  if (a.scalar_type() == b.scalar_type()) {
    c.bitwise_equal = a.numel() == 0 || torch::equal(a.contiguous().view(torch::kByte), b.contiguous().view(torch::kByte));
  }
  if (c.bitwise_equal) return c;
  if (!a.is_floating_point() || !b.is_floating_point()) {
    c.differing = (a != b).sum().item<int64_t>();
    c.max_abs = (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
    c.max_rel = c.max_scaled = c.max_abs;
    return c;
  }
  const auto a64 = a.to(torch::kFloat64), b64 = b.to(torch::kFloat64);
  const auto fa = torch::isfinite(a64), fb = torch::isfinite(b64);
  c.nonfinite_mismatch = (fa != fb).sum().item<int64_t>();
  const auto both = fa & fb;
  const auto diff = (a64 - b64).abs().masked_select(both);
  const auto bref = b64.abs().masked_select(both);
  c.differing = (a.to(b.scalar_type()) != b).sum().item<int64_t>();
  if (diff.numel() > 0) {
    c.max_abs = diff.max().item<double>();
    c.mean_abs = diff.mean().item<double>();
    c.max_rel = (diff / bref.clamp_min(1e-30)).max().item<double>();
    c.max_scaled = (diff / (1.0 + bref)).max().item<double>();
  }
  const auto an = a64.masked_select(both), bn = b64.masked_select(both);
  const double na = an.norm().item<double>(), nb = bn.norm().item<double>();
  c.cosine = (na > 0 && nb > 0) ? (an * bn).sum().item<double>() / (na * nb) : (na == nb ? 1.0 : 0.0);
  c.max_ulps = max_ulp_distance(a, b);
  return c;
}

Json LayerComparison::to_json() const {
  Json j = comparison.to_json();
  j["layer"] = layer;
  j["depth"] = depth;
  j["tolerance"] = tolerance.value;
  j["within"] = within;
  return j;
}

std::vector<LayerComparison> compare_layers(Model& reference, const torch::Tensor& reference_input, Model& current,
                                            const torch::Tensor& current_input) {
  const auto ref = collect_taps(reference, reference_input);
  const auto cur = collect_taps(current, current_input);
  return compare_tap_lists(ref, cur, layer_depths(reference));
}

const LayerComparison* first_divergence(const std::vector<LayerComparison>& rows) {
  for (const auto& r : rows)
    if (!r.within) return &r;
  return nullptr;
}

Json Hypothesis::to_json() const {
  return {{"id", id}, {"holds", holds}, {"message", message}, {"evidence", evidence}, {"fix", fix}};
}

Json VerifyReport::to_json() const {
  Json hyps = Json::array();
  for (const auto& h : hypotheses) hyps.push_back(h.to_json());
  Json rows = Json::array();
  for (const auto& r : layers) rows.push_back(r.to_json());
  return {{"checkpoint", checkpoint},
          {"verdict", verdict},
          {"outputs", outputs.to_json()},
          {"tolerance", tolerance.to_json()},
          {"keys", keys.to_json()},
          {"hypotheses", hyps},
          {"layers", rows},
          {"first_divergent_layer", first_divergent_layer},
          {"environment_diff", environment_diff},
          {"seconds", seconds}};
}

VerifyReport verify_checkpoint(const std::string& path, const VerifyOptions& options) {
  const auto t0 = std::chrono::steady_clock::now();
  VerifyReport report;
  // A large model is built while the checkpoint's tensors are read and hash-checked: LibTorch's module
  // constructors draw every initial weight (~37 ms for the 11.6M-parameter MLP, three times its load). Small
  // models are built in turn: for the 421k-parameter CNN a second thread made verify slower (12.7 -> 16.5 ms).
  constexpr int64_t kBuildAlongsideFrom = 2'000'000;  // parameters
  std::future<std::shared_ptr<Model>> early_model;
  const Checkpoint ck = load_checkpoint(path, [&](const Checkpoint& partial) {
    if (partial.manifest["model"]["parameters"].get<int64_t>() < kBuildAlongsideFrom) return;
    Config config;
    try {
      config = partial.config();
      for (const auto& s : options.sets) config.set(s);
    } catch (const Error&) {
      return;  // reported below, where the current config is made
    }
    early_model = std::async(std::launch::async,
                             [config, info = partial.manifest["data_info"]] { return build_for(config, info); });
  });
  report.checkpoint = ck.dir;
  const Config saved = ck.config();
  Config current_config = saved;
  for (const auto& s : options.sets) current_config.set(s);
  const Json& data_info = ck.manifest.at("data_info");
  const Json saved_env = ck.manifest.value("environment", Json::object());
  const int64_t saved_threads = saved_env.value("threads", int64_t{1});
  const int64_t current_threads = options.threads.value_or(saved_threads);

  // The reference is the checkpoint replayed exactly as saved; the current model is what the user's situation gives.
  // The reference is built only when needed (a mismatch to localise, or an architecture the current model does not
  // share): building a model initialises every weight before the checkpoint's overwrite them, and for an 11.6M-
  // parameter MLP that was most of a verify's time.
  std::shared_ptr<Model> reference_model;
  auto reference = [&]() -> Model& {
    if (!reference_model) {
      reference_model = build_for(saved, data_info);
      load_model_tensors(*reference_model, ck.model, /*strict=*/true);
      reference_model->train(false);
    }
    return *reference_model;
  };
  const bool same_architecture = current_config.to_json()["model"] == saved.to_json()["model"];
  auto current = early_model.valid() ? early_model.get() : build_for(current_config, data_info);
  report.keys = load_model_tensors(*current, options.weights.empty() ? ck.model : read_weights(options.weights),
                                   /*strict=*/false);
  current->train(options.train_mode);

  const torch::Tensor golden = ck.probe_tensor("outputs");
  const torch::Tensor golden_inputs = ck.probe_tensor("inputs");
  TRAINDX_CHECK(golden.defined() && golden_inputs.defined(), CheckpointError,
                "{}: probe.safetensors lacks inputs or outputs", ck.dir);
  RawData raw;
  if (auto images = ck.probe_tensor("raw_images"); images.defined()) {
    raw.images = images;
  } else {
    TRAINDX_CHECK(ck.manifest.at("probe").contains("raw_table"), CheckpointError,
                  "{}: the probe holds neither raw images nor a raw table", ck.dir);
    raw.table = table_from_json(ck.manifest["probe"]["raw_table"]);
  }
  const Pipeline stored_pipeline = ck.pipeline();
  const torch::Tensor reference_inputs = stored_pipeline.transform(raw);

  // A changed data section means the user's preprocessing differs: refit it the way their config says.
  torch::Tensor current_inputs = reference_inputs;
  Pipeline current_pipeline = stored_pipeline;
  if (current_config.to_json()["data"] != saved.to_json()["data"]) {
    const DataOptions data_options = DataOptions::from_config(current_config);
    const RawSplits splits = load_raw_splits(data_options);
    current_pipeline = Pipeline::fit(splits.train, data_options);
    current_inputs = current_pipeline.transform(raw);
  }

  torch::Tensor current_out;
  {
    ThreadScope threads(current_threads);
    current_out = run_model(*current, current_inputs);
  }
  report.outputs = compare_tensors(current_out, golden);
  report.tolerance = derive_tolerance(golden.scalar_type(), parametrised_depth(same_architecture ? *current : reference()));
  report.verdict = report.outputs.bitwise_equal ? "identical"
                   : report.outputs.within(report.tolerance) ? "within_tolerance"
                                                            : "mismatch";
  Json current_env = environment_fingerprint();
  current_env["threads"] = current_threads;
  report.environment_diff = diff_fingerprints(saved_env, current_env);
  for (const char* volatile_key : {"traindx_commit", "deterministic_algorithms"}) report.environment_diff.erase(volatile_key);

  if (report.verdict != "identical") {
    std::vector<Hypothesis> hyps;

    {  // The model in train mode: dropout active, BatchNorm using batch statistics.
      Hypothesis h;
      h.id = "train_mode";
      const bool stochastic = has_layer_type(*current, {"dropout", "batchnorm"});
      if (current->is_training()) {
        current->train(false);
        torch::Tensor eval_out;
        {
          ThreadScope threads(current_threads);
          eval_out = run_model(*current, current_inputs);
        }
        current->train(true);
        const auto eval_cmp = compare_tensors(eval_out, golden);
        h.holds = stochastic && eval_cmp.max_abs < report.outputs.max_abs;
        h.evidence = {{"train_mode_max_abs", report.outputs.max_abs}, {"eval_mode_max_abs", eval_cmp.max_abs},
                      {"has_dropout_or_batchnorm", stochastic}};
        h.message = fmt::format("the model runs in train mode: max |diff| {:.3g} in train mode vs {:.3g} in eval mode{}",
                                report.outputs.max_abs, eval_cmp.max_abs,
                                stochastic ? " (dropout / BatchNorm batch statistics are active)" : "");
      } else {
        h.message = "the model runs in eval mode, as the golden outputs were made";
      }
      h.fix = "call model->eval() (model.train(false)) before inference";
      hyps.push_back(h);
    }
    {  // BatchNorm statistics missing from the weights, or reset to their initial values.
      Hypothesis h;
      h.id = "batchnorm_statistics";
      std::vector<std::string> missing, reset;
      for (const auto& k : report.keys.missing)
        if (k.find("running_mean") != std::string::npos || k.find("running_var") != std::string::npos ||
            k.find("num_batches_tracked") != std::string::npos)
          missing.push_back(k);
      for (const auto& [name, t] : current->named_buffers()) {
        if (name.find("running_mean") != std::string::npos && t.abs().max().item<double>() == 0.0) reset.push_back(name);
        if (name.find("running_var") != std::string::npos && (t - 1).abs().max().item<double>() == 0.0)
          reset.push_back(name);
      }
      h.holds = !missing.empty() || !reset.empty();
      h.evidence = {{"missing", missing}, {"at_initial_values", reset}};
      h.message = h.holds ? fmt::format("BatchNorm running statistics are missing ({}) or at their initial values ({})",
                                        fmt::join(missing, ", "), fmt::join(reset, ", "))
                          : "BatchNorm running statistics are present and trained";
      h.fix = "save and load buffers too (state_dict includes running_mean/running_var), not only parameters";
      hyps.push_back(h);
    }
    {  // Keys missing, unexpected, reshaped.
      Hypothesis h;
      h.id = "keys";
      // Retyped tensors are the dtype hypothesis' evidence; here only names and shapes count.
      h.holds = !report.keys.missing.empty() || !report.keys.unexpected.empty() || !report.keys.reshaped.empty();
      h.evidence = report.keys.to_json();
      h.message = h.holds ? fmt::format("weights do not match the model: {} missing, {} unexpected, {} reshaped, {} retyped",
                                        report.keys.missing.size(), report.keys.unexpected.size(),
                                        report.keys.reshaped.size(), report.keys.retyped.size())
                          : "every weight matched by name, shape and dtype";
      if (!report.keys.missing.empty() && !report.keys.unexpected.empty())
        h.message += fmt::format(" (renamed? '{}' is missing and '{}' unexpected)", report.keys.missing.front(),
                                 report.keys.unexpected.front());
      h.fix = "load with strict key matching and map renamed keys; traindx ckpt diff shows which tensors differ";
      hyps.push_back(h);
    }
    {  // dtype changed.
      Hypothesis h;
      h.id = "dtype";
      const auto cur_params = current->named_parameters();
      const std::string cur_dtype = cur_params.empty() ? "" : torch_dtype_name(cur_params.front().second.scalar_type());
      std::string saved_dtype = ck.manifest.at("model").value("dtype", "");
      // The first checkpoints stored LibTorch's names.
      if (saved_dtype == "Float") saved_dtype = "float32";
      if (saved_dtype == "Double") saved_dtype = "float64";
      h.holds = (!cur_dtype.empty() && cur_dtype != saved_dtype) || !report.keys.retyped.empty();
      h.evidence = {{"saved", saved_dtype}, {"current", cur_dtype}, {"retyped", report.keys.retyped}};
      h.message = h.holds ? fmt::format("the model computes in {} but was trained and probed in {}", cur_dtype, saved_dtype)
                          : fmt::format("the model computes in {} as saved", cur_dtype);
      h.fix = fmt::format("run inference in {0} (model.dtype = \"{0}\") or accept differences of that precision",
                          saved_dtype);
      hyps.push_back(h);
    }
    {  // Preprocessing differs from the stored pipeline.
      Hypothesis h;
      h.id = "preprocessing";
      const auto replay = compare_tensors(reference_inputs, golden_inputs);
      const auto cur_in = compare_tensors(current_inputs, golden_inputs);
      h.holds = !cur_in.bitwise_equal;
      h.evidence = {{"current_vs_stored_inputs", cur_in.to_json()}, {"stored_pipeline_replay", replay.to_json()},
                    {"pipeline_diff", json_diff(stored_pipeline.to_json(), current_pipeline.to_json())}};
      h.message = h.holds ? fmt::format("inputs differ from the ones the model saw in training: max |diff| {:.3g} over {} "
                                        "of {} values; the pipeline differs in {}",
                                        cur_in.max_abs, cur_in.differing, cur_in.numel,
                                        h.evidence["pipeline_diff"].empty() ? std::string("its replay")
                                                                            : h.evidence["pipeline_diff"].begin().key())
                          : "inputs replayed through the stored pipeline are bitwise the training inputs";
      h.fix = "apply the pipeline stored in the checkpoint (manifest.json \"pipeline\") at inference, unchanged";
      hyps.push_back(h);
    }
    {  // Environment differs.
      Hypothesis h;
      h.id = "environment";
      h.holds = !report.environment_diff.empty();
      h.evidence = report.environment_diff;
      std::string keys;
      for (auto it = report.environment_diff.begin(); it != report.environment_diff.end(); ++it)
        keys += (keys.empty() ? "" : ", ") + it.key();
      h.message = h.holds ? "the environment differs from training in: " + keys
                          : "the environment fingerprint matches the one saved with the checkpoint";
      h.fix = "run with the saved LibTorch version, thread count and BLAS, or accept last-bit differences";
      hyps.push_back(h);
    }
    {  // Nondeterminism: the same inputs twice.
      Hypothesis h;
      h.id = "nondeterminism";
      torch::Tensor again;
      {
        ThreadScope threads(current_threads);
        again = run_model(*current, current_inputs);
      }
      const auto cmp = compare_tensors(again, current_out);
      h.holds = !cmp.bitwise_equal;
      h.evidence = cmp.to_json();
      h.message = h.holds ? fmt::format("two runs on the same inputs differ by up to {:.3g}", cmp.max_abs)
                          : "two runs on the same inputs are bitwise identical";
      h.fix = current->is_training() ? "switch to eval mode: dropout draws new masks on every call"
                                     : "set run.deterministic = true";
      hyps.push_back(h);
    }
    {  // Thread-count sensitivity.
      Hypothesis h;
      h.id = "thread_count";
      if (current_threads != saved_threads) {
        torch::Tensor at_saved;
        {
          ThreadScope threads(saved_threads);
          at_saved = run_model(*current, current_inputs);
        }
        const auto cmp = compare_tensors(current_out, at_saved);
        h.holds = !cmp.bitwise_equal;
        h.evidence = {{"saved_threads", saved_threads}, {"current_threads", current_threads}, {"comparison", cmp.to_json()}};
        h.message = h.holds ? fmt::format("{} threads give results {:.3g} away from {} threads (ULPs {})", current_threads,
                                          cmp.max_abs, saved_threads, cmp.max_ulps)
                            : fmt::format("{} and {} threads give bitwise equal outputs", current_threads, saved_threads);
      } else {
        h.message = fmt::format("same thread count as in training ({})", saved_threads);
        h.evidence = {{"saved_threads", saved_threads}, {"current_threads", current_threads}};
      }
      h.fix = fmt::format("run with run.threads = {} as in training", saved_threads);
      hyps.push_back(h);
    }
    std::stable_sort(hyps.begin(), hyps.end(), [](const Hypothesis& a, const Hypothesis& b) { return a.holds > b.holds; });
    report.hypotheses = std::move(hyps);

    if (options.localise) {
      std::vector<std::pair<std::string, torch::Tensor>> ref_taps, cur_taps;
      {
        ThreadScope threads(saved_threads);
        ref_taps = collect_taps(reference(), reference_inputs);
      }
      {
        ThreadScope threads(current_threads);
        cur_taps = collect_taps(*current, current_inputs.to(current->named_parameters().empty()
                                                                ? current_inputs.scalar_type()
                                                                : current->named_parameters().front().second.scalar_type()));
      }
      report.layers = compare_tap_lists(ref_taps, cur_taps, layer_depths(reference()));
      const auto in_cmp = compare_tensors(current_inputs, reference_inputs);
      if (!in_cmp.within(derive_tolerance(reference_inputs.scalar_type(), 0))) {
        report.first_divergent_layer = "input";
      } else if (const LayerComparison* first = first_divergence(report.layers)) {
        report.first_divergent_layer = first->layer;
      }
    }
  }
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return report;
}

}  // namespace traindx
