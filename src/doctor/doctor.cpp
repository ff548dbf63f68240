#include "traindx/doctor/doctor.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <optional>
#include <set>
#include <unordered_set>

#include "traindx/checkpoint/checkpoint.h"
#include "traindx/checkpoint/investigate.h"
#include "traindx/checkpoint/tensor_convert.h"
#include "traindx/checkpoint/tensor_io.h"
#include "traindx/core/environment.h"
#include "traindx/core/error.h"
#include "traindx/doctor/gradcheck.h"
#include "traindx/doctor/lr_finder.h"
#include "traindx/monitor/monitor.h"
#include "traindx/report/report.h"
#include "traindx/run/run.h"
#include "traindx/store/run_store.h"

namespace traindx {
namespace {

using Clock = std::chrono::steady_clock;

struct Budget {
  int64_t overfit_steps, overfit_batch, lr_steps, train_steps, determinism_steps, ladder_steps, gradcheck_batch,
      gradcheck_elements;
};

Budget budget_for(bool quick) {
  if (quick) return {60, 16, 40, 100, 3, 60, 2, 8};
  return {150, 32, 100, 500, 5, 200, 4, 32};
}

// A finding with the index of the check that produced it, for ranking.
struct Ranked {
  size_t check;
  Finding finding;
};

std::shared_ptr<Model> fresh_model(const Config& config, const DataInfo& info) {
  const ModelOptions mo = ModelOptions::from_config(config);
  seed_everything(static_cast<uint64_t>(config.get_int("run.seed")));
  std::shared_ptr<Model> model;
  if (!mo.torchscript.empty()) {
    model = load_torchscript_model(mo.torchscript);
  } else {
    TRAINDX_CHECK(!mo.layers.empty(), ConfigError,
                  "{}: model.layers is empty; describe the network (docs/model.md) or set model.torchscript",
                  config.origin("model.layers"));
    model = build_model(mo, info.input_shape, info.task == Task::Classification ? info.num_classes : 1);
  }
  model->to(torch::kCPU, mo.dtype == "float64" ? torch::kFloat64 : torch::kFloat32);
  return model;
}

// A Trainer over already prepared data with a fresh model: the checks below need many short trainings and must not
// reload the data each time.
std::unique_ptr<Trainer> fresh_trainer(const Config& config, const PreparedData& data) {
  auto model = fresh_model(config, data.info);
  return std::make_unique<Trainer>(TrainOptions::from_config(config), data, model);
}

// ---- data ------------------------------------------------------------------------------------------------------

std::string example_key(const RawData& raw, int64_t i) {
  if (raw.is_image()) {
    const auto ex = raw.images[i].contiguous();
    return hash_bytes(std::string_view(static_cast<const char*>(ex.data_ptr()), ex.nbytes()));
  }
  std::string row;
  for (const auto& c : raw.table.columns) {
    row += c.categorical ? c.text[static_cast<size_t>(i)] : fmt::format("{:.17g}", c.numbers[static_cast<size_t>(i)]);
    row += '\x1f';
  }
  return hash_bytes(row);
}

// ---- overfit one batch -------------------------------------------------------------------------------------------

struct OverfitAttempt {
  std::string label, optimizer;
  double lr = 0, initial_loss = NAN, final_loss = NAN, final_accuracy = NAN;
  bool success = false, diverged = false;
  std::vector<double> losses;
  Json to_json() const {
    auto num = [](double v) { return std::isfinite(v) ? Json(v) : Json(); };
    return {{"label", label},   {"optimizer", optimizer}, {"lr", lr},
            {"initial_loss", num(initial_loss)}, {"final_loss", num(final_loss)},
            {"final_accuracy", num(final_accuracy)}, {"success", success}, {"diverged", diverged}};
  }
};

OverfitAttempt overfit_attempt(const Config& base, const PreparedData& data, const torch::Tensor& x,
                               const torch::Tensor& y, const std::string& label, const std::string& optimizer,
                               double lr, int64_t steps) {
  Config c = base;
  c.set_value("train.optimizer", optimizer, "doctor");
  c.set_value("train.lr", lr, "doctor");
  c.set_value("train.schedule", "constant", "doctor");
  c.set_value("train.warmup_steps", 0, "doctor");
  if (optimizer != "sgd") c.set_value("train.nesterov", false, "doctor");
  auto trainer = fresh_trainer(c, data);
  OverfitAttempt a;
  a.label = label;
  a.optimizer = optimizer;
  a.lr = lr;
  const Task task = data.info.task;
  for (int64_t s = 0; s < steps; ++s) {
    const double loss = trainer->train_step(x, y).loss;
    a.losses.push_back(loss);
    if (!std::isfinite(loss)) {
      a.diverged = true;
      break;
    }
  }
  const Json m = trainer->evaluate(x, y);
  a.initial_loss = a.losses.empty() ? NAN : a.losses.front();
  a.final_loss = m.value("loss", NAN);
  if (m.contains("accuracy") && m["accuracy"].is_number()) a.final_accuracy = m["accuracy"].get<double>();
  if (!std::isfinite(a.final_loss) || a.final_loss > a.initial_loss) a.diverged = true;
  // "Near zero": every example of the batch right with a small loss, or a regression loss down by 100x.
  a.success = !a.diverged && (task == Task::Classification ? (a.final_accuracy >= 1.0 && a.final_loss < 0.1)
                                                           : a.final_loss < 0.01 * a.initial_loss);
  return a;
}

// ---- width ladder ------------------------------------------------------------------------------------------------

// The index of a top-level layer list's output layer, its last linear layer (-1 when it has none).
int64_t output_layer(const Json& layers) {
  int64_t last_linear = -1;
  for (size_t i = 0; i < layers.size(); ++i)
    if (layers[i].value("type", "") == "linear") last_linear = static_cast<int64_t>(i);
  return last_linear;
}

Json scaled_layers(const Json& layers, double factor, bool is_top) {
  Json out = Json::array();
  // The output layer keeps its size; every other width scales.
  const int64_t last_linear = output_layer(layers);
  for (size_t i = 0; i < layers.size(); ++i) {
    Json l = layers[i];
    const std::string type = l.value("type", "");
    if (type == "residual" && l.contains("layers")) l["layers"] = scaled_layers(l["layers"], factor, false);
    const bool is_output = is_top && static_cast<int64_t>(i) == last_linear;
    if ((type == "linear" || type == "conv2d") && l.contains("out") && !is_output)
      l["out"] = std::max<int64_t>(1, static_cast<int64_t>(std::llround(l["out"].get<double>() * factor)));
    out.push_back(l);
  }
  return out;
}

// ---- depth ladder ------------------------------------------------------------------------------------------------
// A hidden block of a top-level layer list: a linear, conv2d or residual layer that is not the output layer,
// with the layers that follow it (normalisation, activation, dropout) up to the next weight, pooling or flatten
// layer. The depth ladder removes or repeats the last one.
std::pair<size_t, size_t> last_hidden_block(const Json& layers) {
  static const std::set<std::string> starts = {"linear", "conv2d", "residual"};
  static const std::set<std::string> stops = {"linear",    "conv2d",    "residual",           "flatten",
                                              "maxpool2d", "avgpool2d", "adaptive_avgpool2d"};
  const int64_t output = output_layer(layers);
  std::pair<size_t, size_t> block{0, 0};
  for (size_t i = 0; i < layers.size(); ++i) {
    if (!starts.count(layers[i].value("type", "")) || static_cast<int64_t>(i) == output) continue;
    size_t end = i + 1;
    while (end < layers.size() && !stops.count(layers[end].value("type", ""))) ++end;
    block = {i, end};
  }
  return block;
}

// The layers with their last hidden block removed (delta -1) or repeated (delta +1); empty when there is none.
// Repeated layers lose their `name` (two layers cannot share one) and keep everything else.
Json layers_with_depth(const Json& layers, int delta) {
  const auto [begin, end] = last_hidden_block(layers);
  if (begin == end) return Json();
  Json out = Json::array();
  for (size_t i = 0; i < layers.size(); ++i) {
    if (delta < 0 && i >= begin && i < end) continue;
    out.push_back(layers[i]);
    if (delta > 0 && i + 1 == end)
      for (size_t j = begin; j < end; ++j) {
        Json copy = layers[j];
        copy.erase("name");
        out.push_back(copy);
      }
  }
  return out;
}

// A weight layer's gain at initialisation: rms(W) * sqrt(fan_in), the factor by which it scales unit-variance
// inputs (about 0.58 for LibTorch's default init, 1 for xavier, 1.41 for kaiming). The usual schemes stay within a
// few x of each other; a layer 100x off the others was initialised on another scale.
struct LayerGain {
  std::string layer;
  double rms = 0;
  int64_t fan_in = 0;
  double gain = 0;
};

std::vector<LayerGain> layer_gains(const Model& model) {
  std::vector<LayerGain> out;
  const std::string suffix = ".weight";
  for (const auto& [name, p] : model.named_parameters()) {
    if (p.dim() < 2 || p.size(0) == 0 || name.size() <= suffix.size() ||
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
      continue;
    LayerGain g;
    g.layer = name.substr(0, name.size() - suffix.size());
    g.fan_in = p.numel() / p.size(0);
    g.rms = p.detach().to(torch::kDouble).pow(2).mean().sqrt().item<double>();
    g.gain = g.rms * std::sqrt(static_cast<double>(g.fan_in));
    out.push_back(g);
  }
  return out;
}

// How far off the others a layer's gain may be before it is reported (either way).
constexpr double kLayerGainRatio = 100.0;

}  // namespace

bool DoctorResult::has_critical() const {
  return std::any_of(findings.begin(), findings.end(), [](const Finding& f) { return f.severity == Severity::Critical; });
}

Config default_doctor_config() {
  return Config::from_string(R"(
[run]
name = "doctor-fashion-cnn"
seed = 1
[data]
source = "fashion-mnist"
val_fraction = 0.1
[model]
layers = [
  { type = "conv2d", out = 32, kernel = 3, padding = 1 },
  { type = "batchnorm" },
  { type = "relu" },
  { type = "maxpool2d", kernel = 2 },
  { type = "conv2d", out = 64, kernel = 3, padding = 1 },
  { type = "batchnorm" },
  { type = "relu" },
  { type = "maxpool2d", kernel = 2 },
  { type = "flatten" },
  { type = "linear", out = 128 },
  { type = "relu" },
  { type = "dropout", p = 0.3 },
  { type = "linear" },
]
[train]
optimizer = "adam"
lr = 0.002
batch_size = 128
epochs = 3
schedule = "one_cycle"
pct_start = 0.25
)",
                             "<built-in doctor config>");
}

DoctorResult run_doctor(const Config& input_config, const DoctorOptions& options) {
  const auto t_start = Clock::now();
  const Budget budget = budget_for(options.quick);
  Config config = input_config;
  DoctorResult result;
  result.dir = options.out.empty()
                   ? create_run_dir(config.get_string("run.out_root"), "doctor-" + config.get_string("run.name"))
                   : create_run_dir("", "", options.out);
  write_file_atomic(result.dir + "/config.toml", config.to_toml());
  apply_runtime_settings(config.get_int("run.threads"), config.get_bool("run.deterministic"));
  const MonitorOptions monitor_options = MonitorOptions::from_config(config);

  std::vector<Ranked> findings;
  Json checks = Json::array();
  Json charts = Json::object();
  bool stop = false;
  std::string stop_reason;

  // Runs one check: times it, records its status and summary, and reports progress.
  auto run_check = [&](const std::string& id, const std::string& title, const std::function<Json(Json&)>& body) {
    const size_t index = checks.size();
    if (options.on_check) options.on_check(id, title, "running", "");
    Json entry = {{"id", id}, {"title", title}, {"status", "skipped"}, {"summary", ""}, {"details", Json::object()}};
    if (stop) {
      entry["summary"] = "skipped: " + stop_reason;
    } else {
      const auto t0 = Clock::now();
      const size_t before = findings.size();
      Json details = Json::object();
      entry["summary"] = body(details).get<std::string>();
      entry["details"] = details;
      entry["seconds"] = std::chrono::duration<double>(Clock::now() - t0).count();
      Severity worst = Severity::Info;
      bool any = false;
      for (size_t i = before; i < findings.size(); ++i) {
        findings[i].check = index;
        if (findings[i].finding.severity > worst || !any) worst = findings[i].finding.severity;
        any = true;
      }
      entry["status"] = !any || worst == Severity::Info ? "pass" : worst == Severity::Warning ? "warn" : "fail";
    }
    if (options.on_check)
      options.on_check(id, title, entry["status"].get<std::string>(), entry["summary"].get<std::string>());
    checks.push_back(entry);
  };
  // Weight layers initialised far off the others' scale (the initialisation check), layer -> how far, and the
  // model's layers in order. A layer with weights far too small explains what later checks see: the dead ReLUs it
  // feeds, and a range test in which no rate moves the loss.
  std::map<std::string, double> off_scale;
  std::set<std::string> weight_layers;
  std::vector<std::string> layer_order;
  // The layer initialised furthest below the others, if any is.
  auto smallest_layer = [&]() -> const std::pair<const std::string, double>* {
    const auto it = std::min_element(off_scale.begin(), off_scale.end(),
                                     [](const auto& a, const auto& b) { return a.second < b.second; });
    return it != off_scale.end() && it->second < 1 ? &*it : nullptr;
  };
  auto link_to_cause = [&](Finding& f) {
    if (f.rule == "lr_range_no_descent") {
      const auto* small = smallest_layer();
      if (!small) return;
      // Such a layer passes almost nothing on: the output hardly depends on the input until the layer has grown,
      // which takes more steps than the sweep spends near any one rate.
      f.message += fmt::format("; {} starts {:.0f}x below the other layers' scale (layer_init_scale), so the output "
                               "hardly depends on the input until it grows",
                               small->first, 1 / small->second);
      f.causes.insert(f.causes.begin(),
                      fmt::format("{} initialised far too small: the sweep's few steps per rate cannot grow it",
                                  small->first));
      f.fixes.insert(f.fixes.begin(),
                     fmt::format("fix {}'s initialisation first (see layer_init_scale), then rerun the range test",
                                 small->first));
      return;
    }
    if (f.rule != "dead_relu") return;
    const auto at = std::find(layer_order.begin(), layer_order.end(), f.layer);
    if (at == layer_order.end()) return;
    // The nearest weight layer before the ReLU feeds it.
    const auto feeder = std::find_if(std::make_reverse_iterator(at), layer_order.rend(),
                                     [&](const std::string& name) { return weight_layers.count(name) > 0; });
    if (feeder == layer_order.rend()) return;
    const auto off = off_scale.find(*feeder);
    if (off == off_scale.end() || off->second >= 1) return;
    f.causes.insert(f.causes.begin(),
                    fmt::format("{} feeds it with weights {:.0f}x smaller than the other layers' for their fan-in "
                                "(layer_init_scale): its pre-activations are little more than its bias, negative "
                                "for these units",
                                *feeder, 1 / off->second));
    f.fixes.insert(f.fixes.begin(), fmt::format("fix {}'s initialisation first (see layer_init_scale)", *feeder));
  };
  // The same observation from two checks (the initialisation check's monitor and the training run's, both at
  // step 0) is reported once, by the earlier check.
  auto add = [&](Finding f) {
    link_to_cause(f);
    for (const auto& r : findings)
      if (r.finding.rule == f.rule && r.finding.layer == f.layer && r.finding.message == f.message) return;
    findings.push_back({checks.size(), std::move(f)});
  };

  // ---- 1. data -------------------------------------------------------------------------------------------------
  PreparedData data;
  run_check("data", "Data", [&](Json& d) -> Json {
    DataOptions data_options = DataOptions::from_config(config);
    data = prepare_data(data_options);
    const DataInfo& info = data.info;
    d["source"] = info.source;
    d["task"] = task_name(info.task);
    d["train_examples"] = data.train_x.size(0);
    d["val_examples"] = data.val_x.defined() ? data.val_x.size(0) : 0;
    d["test_examples"] = data.test_x.defined() ? data.test_x.size(0) : 0;
    d["input_shape"] = info.input_shape;
    std::vector<std::string> notes;

    // Non-finite values after preprocessing.
    for (const auto& [name, x] : {std::pair<const char*, torch::Tensor>{"train", data.train_x}, {"val", data.val_x},
                                  {"test", data.test_x}}) {
      if (!x.defined() || x.numel() == 0) continue;
      const int64_t bad = x.numel() - torch::isfinite(x).sum().item<int64_t>();
      if (bad > 0)
        add(make_finding("non_finite_data", Severity::Critical, -1, "input",
                         fmt::format("the {} split holds {} non-finite input values after preprocessing", name, bad),
                         {{"split", name}, {"non_finite", bad}},
                         {"missing values not imputed", "a division by zero in preprocessing", "corrupt input files"},
                         {"check the source data; missing CSV cells are imputed (data.impute)"}));
    }
    // Input range.
    const double abs_max = data.train_x.abs().max().item<double>();
    const double mean = data.train_x.mean().item<double>(), std_dev = data.train_x.std().item<double>();
    d["input"] = {{"abs_max", abs_max}, {"mean", mean}, {"std", std_dev}, {"normalize", config.get_bool("data.normalize")}};
    if (abs_max > monitor_options.input_abs_max) {
      add(make_finding("input_range", abs_max > 10 * monitor_options.input_abs_max ? Severity::Critical : Severity::Warning,
                       -1, "input",
                       fmt::format("inputs are not normalised: max |x| = {:.4g}, mean {:.4g}, std {:.4g}", abs_max, mean,
                                   std_dev),
                       {{"input_abs_max", abs_max}, {"mean", mean}, {"std", std_dev},
                        {"threshold", monitor_options.input_abs_max}},
                       {"raw values fed to the model (e.g. pixels 0..255)", "a feature with a much larger scale"},
                       {"set data.normalize = true", "standardise features with training-split statistics"}));
    }
    // Labels.
    if (info.task == Task::Classification) {
      const auto counts = torch::bincount(data.train_y, {}, info.num_classes);
      std::vector<int64_t> c(counts.data_ptr<int64_t>(), counts.data_ptr<int64_t>() + counts.numel());
      d["label_counts"] = c;
      d["class_names"] = info.class_names;
      const auto [mn, mx] = std::minmax_element(c.begin(), c.end());
      const double ratio = *mn > 0 ? static_cast<double>(*mx) / static_cast<double>(*mn) : INFINITY;
      d["imbalance_ratio"] = std::isfinite(ratio) ? Json(ratio) : Json("inf");
      if (ratio > monitor_options.imbalance_ratio)
        add(make_finding("class_imbalance", Severity::Warning, -1, "",
                         *mn == 0 ? fmt::format("class {} has no training example", std::distance(c.begin(), mn))
                                  : fmt::format("the largest class has {:.1f}x the examples of the smallest ({} vs {})",
                                                ratio, *mx, *mn),
                         {{"label_counts", c}, {"threshold", monitor_options.imbalance_ratio}},
                         {"the data set is imbalanced", "a split or filter dropped most of a class"},
                         {"report f1_macro rather than accuracy", "rebalance by oversampling or loss weights"}));
    }
    // Duplicates shared between training and test (leakage inflates test scores).
    if (data.raw.test.size() > 0 && data.raw.train.size() > 0) {
      std::unordered_set<std::string> train_keys;
      for (int64_t i = 0; i < data.raw.train.size(); ++i) train_keys.insert(example_key(data.raw.train, i));
      int64_t shared = 0;
      for (int64_t i = 0; i < data.raw.test.size(); ++i) shared += train_keys.count(example_key(data.raw.test, i));
      const double fraction = static_cast<double>(shared) / static_cast<double>(data.raw.test.size());
      d["test_examples_in_train"] = shared;
      if (shared > 0)
        add(make_finding("data_leakage", fraction >= 0.01 ? Severity::Warning : Severity::Info, -1, "",
                         fmt::format("{} test examples ({:.2f}%) also appear, byte for byte, in the training split",
                                     shared, 100 * fraction),
                         {{"shared", shared}, {"test_examples", data.raw.test.size()}, {"fraction", fraction}},
                         {"duplicates in the source data", "the test split overlaps the training split"},
                         {"deduplicate before splitting, or report test scores on the unique examples"}));
    }
    return fmt::format("{} train / {} val / {} test examples, {} ({} classes), inputs max |x| {:.3g}",
                       data.train_x.size(0), d["val_examples"].get<int64_t>(), d["test_examples"].get<int64_t>(),
                       task_name(info.task), info.num_classes, abs_max);
  });
  for (const auto& r : findings)
    if (r.finding.rule == "non_finite_data") {
      stop = true;
      stop_reason = "the data holds non-finite values; nothing downstream is meaningful";
    }

  // A small fixed batch from the training split used by several checks.
  auto batch_of = [&](int64_t n) {
    const int64_t k = std::min<int64_t>(n, data.train_x.size(0));
    return std::make_pair(data.train_x.slice(0, 0, k), data.train_y.slice(0, 0, k));
  };

  // ---- 2. initialisation ---------------------------------------------------------------------------------------
  run_check("init", "Initialisation", [&](Json& d) -> Json {
    auto trainer = fresh_trainer(config, data);
    for (const auto& row : trainer->model().summary()) layer_order.push_back(row.name);
    // Per-layer weight scale against the other layers' (before any step), reported before what it causes.
    const std::vector<LayerGain> gains = layer_gains(trainer->model());
    Json gain_rows = Json::array();
    for (const auto& g : gains) {
      weight_layers.insert(g.layer);
      gain_rows.push_back({{"layer", g.layer}, {"weight_rms", g.rms}, {"fan_in", g.fan_in}, {"gain", g.gain}});
    }
    d["layer_gains"] = gain_rows;
    // Adaptive optimizers step every weight by about lr whatever its scale: a tiny layer moves many times its size.
    const std::string optimizer = trainer->options().optimizer.name;
    const bool adaptive = optimizer != "sgd";
    for (size_t i = 0; gains.size() >= 3 && i < gains.size(); ++i) {
      std::vector<double> others;
      for (size_t j = 0; j < gains.size(); ++j)
        if (j != i) others.push_back(gains[j].gain);
      std::nth_element(others.begin(), others.begin() + others.size() / 2, others.end());
      const double median = others[others.size() / 2];
      const LayerGain& g = gains[i];
      if (!(median > 0) || !std::isfinite(g.gain)) continue;
      const double ratio = g.gain / median;
      if (ratio >= 1 / kLayerGainRatio && ratio <= kLayerGainRatio) continue;
      off_scale[g.layer] = ratio;
      const bool small = ratio < 1;
      add(make_finding(
          "layer_init_scale", Severity::Warning, 0, g.layer,
          fmt::format("{}'s weights are {:.0f}x {} than the other layers' for their fan-in at initialisation: rms "
                      "{:.3g} x sqrt({}) = {:.3g} against a median {:.3g}{}",
                      g.layer, small ? 1 / ratio : ratio, small ? "smaller" : "larger", g.rms, g.fan_in, g.gain,
                      median,
                      !small     ? std::string("; its outputs swamp the layers after it")
                      : adaptive ? fmt::format("; its outputs are little more than its bias, and {} will move it by "
                                               "many times its own size per step",
                                               optimizer)
                                 : std::string("; its outputs are little more than its bias")),
          {{"weight_rms", g.rms}, {"fan_in", g.fan_in}, {"gain", g.gain}, {"median_gain", median},
           {"ratio", ratio}, {"threshold", kLayerGainRatio}},
          {"an init override on this layer (init / init_std in model.layers)",
           "weights scaled or loaded wrongly for this layer"},
          {fmt::format("drop this layer's init override, or give it init_std = {:.3g} (the other layers' scale)",
                       median / std::sqrt(static_cast<double>(g.fan_in))),
           "use one init scheme for every layer (model.init = \"kaiming_uniform\" for ReLU networks)"}));
    }
    MonitorOptions mo = monitor_options;
    mo.every_step = true;
    mo.on_critical = "warn";
    auto monitor = make_monitor(mo, *trainer);
    trainer->add_callback(std::make_shared<MonitorCallback>(monitor));
    const auto [x, y] = batch_of(trainer->options().batch_size);
    const StepContext ctx = trainer->train_step(x, y);
    d["initial_loss"] = std::isfinite(ctx.loss) ? Json(ctx.loss) : Json();
    if (data.info.task == Task::Classification && data.info.num_classes >= 2)
      d["expected_loss"] = std::log(static_cast<double>(data.info.num_classes));
    Json layers = Json::array();
    for (const auto& name : monitor->state().layer_order) {
      auto it = monitor->state().first_layers.find(name);
      if (it == monitor->state().first_layers.end()) continue;
      const LayerStats& s = it->second;
      layers.push_back({{"layer", name}, {"type", s.type}, {"act_std", std::isfinite(s.act_std) ? Json(s.act_std) : Json()},
                        {"act_mean", std::isfinite(s.act_mean) ? Json(s.act_mean) : Json()}});
    }
    d["activation_scale"] = layers;
    // Rules that judge the start of training; later-run rules (loss trends, fitting) belong to the training check.
    static const std::set<std::string> init_rules = {"poor_initialization", "symmetric_weights", "nan_or_inf",
                                                     "vanishing_gradient", "exploding_gradient", "dead_relu",
                                                     "saturated_activation", "input_range"};
    for (const auto& f : monitor->findings().ranked())
      if (init_rules.count(f.rule) && !(f.rule == "input_range"))  // the data check already judged inputs
        add(f);
    // Parameters the loss does not reach, or that are frozen: visible after the very first backward.
    std::vector<std::string> no_grad;
    for (const auto& [name, p] : trainer->model().named_parameters())
      if (!p.grad().defined() || p.grad().abs().max().item<double>() == 0.0) no_grad.push_back(name);
    d["parameters_without_gradient"] = no_grad;
    for (const auto& name : no_grad) {
      const auto dot = name.rfind('.');
      add(make_finding("unchanged_parameter", Severity::Warning, 0, dot == std::string::npos ? name : name.substr(0, dot),
                       fmt::format("parameter {} gets no gradient from the loss at initialisation", name),
                       {{"parameter", name}},
                       {"frozen (trainable = false / requires_grad false)", "not connected to the loss",
                        "a dead activation upstream"},
                       {"check `trainable` on this layer and that its output reaches the loss"}));
    }
    return fmt::format("loss at init {:.4g}{}; {} layers measured", ctx.loss,
                       d.contains("expected_loss") ? fmt::format(" (ln C = {:.4g})", d["expected_loss"].get<double>()) : "",
                       layers.size());
  });

  // ---- 3. gradient check ---------------------------------------------------------------------------------------
  run_check("gradient_check", "Gradient check", [&](Json& d) -> Json {
    auto model = fresh_model(config, data.info);
    const auto [x, y] = batch_of(budget.gradcheck_batch);
    GradcheckOptions go;
    go.max_elements_per_tensor = budget.gradcheck_elements;
    go.batch_size = budget.gradcheck_batch;
    go.huber_delta = config.get_double("train.huber_delta");
    const GradcheckResult g =
        gradient_check(*model, x, y, resolve_loss(config.get_string("train.loss"), data.info.task), go);
    d = g.to_json();
    Json rows = Json::array();
    for (const auto& row : g.rows)
      rows.push_back({{"parameter", row.name},
                      {"max_abs_error", row.max_abs_error},
                      {"max_rel_error", row.max_rel_error},
                      {"passed", row.passed}});
    charts["gradient_check"] = {{"rows", rows}};
    for (const auto& f : g.findings) add(f);
    if (!g.skip_reason.empty()) return "skipped: " + g.skip_reason;
    int64_t failed = 0;
    for (const auto& row : g.rows) failed += row.passed ? 0 : 1;
    return fmt::format("{} parameter tensors checked by finite differences in double, {} failed", g.rows.size(), failed);
  });

  // ---- 4. overfit one batch ------------------------------------------------------------------------------------
  bool overfit_passed = false;
  run_check("overfit_one_batch", "Overfit one batch", [&](Json& d) -> Json {
    const auto [x, y] = batch_of(budget.overfit_batch);
    const std::string optimizer = config.get_string("train.optimizer");
    const double lr = config.get_double("train.lr");
    const int64_t steps = budget.overfit_steps;
    std::vector<OverfitAttempt> attempts;
    attempts.push_back(overfit_attempt(config, data, x, y, "as configured", optimizer, lr, steps));
    // A copy: the attempts below grow the vector, which would leave a reference dangling.
    const OverfitAttempt first = attempts.front();
    std::string verdict;
    if (!first.success) {
      // Which of learning rate, optimizer, architecture or data is at fault: change one thing at a time.
      if (first.diverged) {
        for (double f : {0.1, 0.01, 0.001}) {
          attempts.push_back(overfit_attempt(config, data, x, y, fmt::format("lr x{:g}", f), optimizer, lr * f, steps));
          if (attempts.back().success) break;
        }
      } else {
        // Too slow, or bouncing without diverging: higher rates first (stopping once one diverges), then lower.
        bool done = false;
        for (double f : {10.0, 100.0, 1e3, 1e4, 1e5}) {
          if (lr * f > 10.0) break;
          attempts.push_back(overfit_attempt(config, data, x, y, fmt::format("lr x{:g}", f), optimizer, lr * f, steps));
          done = attempts.back().success;
          if (done || attempts.back().diverged) break;
        }
        for (double f : {0.1, 0.01}) {
          if (done) break;
          attempts.push_back(overfit_attempt(config, data, x, y, fmt::format("lr x{:g}", f), optimizer, lr * f, steps));
          done = attempts.back().success;
        }
      }
      if (!attempts.back().success)
        attempts.push_back(overfit_attempt(config, data, x, y, "adam lr 1e-3", "adam", 1e-3, steps));
      const OverfitAttempt& fixed = attempts.back();
      // A structural problem the earlier checks measured (gradients vanishing or exploding, dead, saturated or
      // identical units, a broken initialisation) and a model that cannot fit one batch: the first is the likely
      // cause of the second, so it becomes critical and ranks first (critical findings rank by check order).
      static const std::set<std::string> kStructural = {"vanishing_gradient", "exploding_gradient", "dead_relu",
                                                        "saturated_activation", "symmetric_weights",
                                                        "poor_initialization", "nan_or_inf"};
      std::string structural_cause;
      for (auto& r : findings) {
        if (!kStructural.count(r.finding.rule) || r.finding.severity == Severity::Info) continue;
        if (structural_cause.empty())
          structural_cause = r.finding.layer.empty() ? r.finding.rule : r.finding.rule + " at " + r.finding.layer;
        if (r.finding.severity != Severity::Critical) {
          r.finding.severity = Severity::Critical;
          r.finding.message += " — and the model cannot overfit one batch, so this blocks learning";
          r.finding.evidence["escalated_by"] = "overfit_one_batch";
        }
      }
      Json evidence = {{"attempts", Json::array()}, {"batch_size", x.size(0)}, {"steps", steps}};
      if (!structural_cause.empty()) evidence["likely_cause"] = structural_cause;
      for (const auto& a : attempts) evidence["attempts"].push_back(a.to_json());
      if (fixed.success && fixed.optimizer == optimizer && fixed.lr < lr) {
        verdict = "learning rate too high";
        add(make_finding("lr_too_high", Severity::Critical, -1, "",
                         fmt::format("cannot overfit one batch of {} at train.lr = {:.3g} (loss {:.3g} -> {:.3g}), but "
                                     "can at {:.3g}",
                                     x.size(0), lr, first.initial_loss, first.final_loss, fixed.lr),
                         evidence, {"train.lr too high: updates overshoot"},
                         {fmt::format("set train.lr = {:.3g} (`traindx lr-find` refines it)", fixed.lr),
                          "add a warm-up (train.warmup_steps)"}));
      } else if (fixed.success && fixed.optimizer == optimizer && fixed.lr > lr) {
        verdict = "learning rate too low";
        add(make_finding("lr_too_low", Severity::Warning, -1, "",
                         fmt::format("cannot overfit one batch of {} in {} steps at train.lr = {:.3g} (loss {:.3g} -> "
                                     "{:.3g}), but can at {:.3g}",
                                     x.size(0), steps, lr, first.initial_loss, first.final_loss, fixed.lr),
                         evidence, {"train.lr too low: updates too small to learn"},
                         {fmt::format("set train.lr = {:.3g} (`traindx lr-find` refines it)", fixed.lr)}));
      } else if (fixed.success) {
        verdict = "optimizer settings";
        add(make_finding("optimizer", Severity::Warning, -1, "",
                         fmt::format("cannot overfit one batch with {} at lr {:.3g}, but adam at 1e-3 can", optimizer, lr),
                         evidence, {"optimizer hyper-parameters unsuited to the model (momentum, lr)"},
                         {"try train.optimizer = \"adam\" with train.lr = 0.001"}));
      } else {
        const double input_std = x.std().item<double>();
        const bool constant_labels = data.info.task == Task::Classification && (y == y[0]).all().item<bool>();
        if (input_std == 0.0 || constant_labels) {
          verdict = "data";
          add(make_finding("overfit_one_batch", Severity::Critical, -1, "input",
                           input_std == 0.0 ? "every input of the batch is identical: the model has nothing to learn from"
                                            : "every label of the batch is the same class",
                           evidence, {"inputs or labels are constant or wrongly loaded"},
                           {"check the data loading and preprocessing"}));
        } else {
          verdict = "architecture";
          add(make_finding("overfit_one_batch", Severity::Critical, -1, "",
                           fmt::format("the model cannot overfit one batch of {} examples in {} steps with any learning "
                                       "rate or optimizer tried (best loss {:.3g}): {}",
                                       x.size(0), steps, fixed.final_loss,
                                       structural_cause.empty()
                                           ? std::string("the architecture or its initialisation cannot represent "
                                                         "the batch")
                                           : "most likely because of " + structural_cause + " (ranked above)"),
                           evidence,
                           {"a bottleneck too narrow (e.g. a layer of 1-2 units)", "symmetric or zero initialisation",
                            "dead or saturated activations", "a wrong loss for the task"},
                           {"check the symmetric_weights / dead_relu findings", "widen the narrowest layer",
                            "use model.init = \"kaiming_uniform\""}));
        }
      }
      d["diagnosis"] = verdict;
    }
    d["attempts"] = Json::array();
    for (const auto& a : attempts) d["attempts"].push_back(a.to_json());
    d["losses"] = first.losses;
    overfit_passed = first.success;
    return first.success ? fmt::format("fits one batch of {}: loss {:.3g} -> {:.3g} in {} steps", x.size(0),
                                       first.initial_loss, first.final_loss, steps)
                         : fmt::format("cannot fit one batch of {} (loss {:.3g} -> {:.3g}); most likely: {}", x.size(0),
                                       first.initial_loss, first.final_loss, verdict);
  });

  // ---- 5. learning-rate range test -----------------------------------------------------------------------------
  run_check("lr_range_test", "Learning-rate range test", [&](Json& d) -> Json {
    auto trainer = fresh_trainer(config, data);
    LrFinderOptions lo;
    lo.num_steps = budget.lr_steps;
    const LrFinderResult r = find_learning_rate(*trainer, lo);
    d = r.to_json();
    auto finite_or_null = [](const std::vector<double>& v) {
      Json out = Json::array();
      for (double x : v) out.push_back(std::isfinite(x) ? Json(x) : Json());
      return out;
    };
    Json alternatives = Json::object();
    for (const auto& [rule, lr] : r.alternatives) alternatives[rule] = lr;
    charts["lr_sweep"] = {{"lrs", r.lrs},
                          {"losses", finite_or_null(r.losses)},
                          {"smoothed", finite_or_null(r.smoothed)},
                          {"suggestion", r.has_suggestion() ? Json(r.suggestion) : Json()},
                          {"rule", r.rule},
                          {"alternatives", alternatives}};
    for (Finding f : r.findings) {
      // With a layer initialised far too small, add() names that layer instead (link_to_cause).
      if (f.rule == "lr_range_no_descent" && overfit_passed && !smallest_layer()) {
        // The model can memorise a batch but no rate makes the loss fall on the data: the labels, not the model.
        f.message += "; yet the model can fit one batch, so the labels most likely do not follow from the inputs";
        f.causes = {"labels unrelated to the inputs (shuffled, misaligned or wrongly joined labels)",
                    "the model is already at a minimum (a trained checkpoint)"};
        f.fixes = {"check that each label belongs to its input (print a few examples with their labels)",
                   "check the join or ordering between input and label files"};
      }
      add(f);
    }
    if (!r.has_suggestion()) return std::string("no suggestion: the loss did not fall at any rate of the sweep");
    return fmt::format("suggested lr {:.3g} ({}); configured {:.3g}", r.suggestion, r.rule,
                       config.get_double("train.lr"));
  });

  // ---- 6. determinism audit and checkpoint round trip ---------------------------------------------------------
  run_check("determinism", "Determinism and checkpoint round trip", [&](Json& d) -> Json {
    auto run_k = [&](const Config& c) {
      auto t = fresh_trainer(c, data);
      ShuffleBatcher batcher(data.train_x.size(0), t->options().batch_size, 7);
      std::vector<double> losses;
      for (int64_t s = 0; s < budget.determinism_steps; ++s) {
        const Batch b = batcher.next();
        seed_everything(static_cast<uint64_t>(c.get_int("run.seed")) + static_cast<uint64_t>(s));
        losses.push_back(t->train_step(data.train_x.index_select(0, b.indices), data.train_y.index_select(0, b.indices)).loss);
      }
      return std::make_pair(std::move(t), losses);
    };
    auto [a, la] = run_k(config);
    auto [b, lb] = run_k(config);
    // Bitwise, not by value: a run that went NaN is still deterministic if it went NaN the same way.
    std::string first_param;
    const auto params_a = a->model().named_parameters();
    const auto params_b = b->model().named_parameters();
    for (size_t i = 0; i < params_a.size() && i < params_b.size(); ++i) {
      if (!same_bits(params_a[i].second, params_b[i].second)) {
        first_param = params_a[i].first;
        break;
      }
    }
    const bool same_losses =
        la.size() == lb.size() && (la.empty() || std::memcmp(la.data(), lb.data(), la.size() * sizeof(double)) == 0);
    const bool same = same_losses && first_param.empty();
    d["same_process_bitwise"] = same;
    d["steps"] = budget.determinism_steps;
    if (!same) {
      Config det = config;
      det.set_value("run.deterministic", true, "doctor");
      apply_runtime_settings(det.get_int("run.threads"), true);
      auto [c1, l1] = run_k(det);
      auto [c2, l2] = run_k(det);
      apply_runtime_settings(config.get_int("run.threads"), config.get_bool("run.deterministic"));
      const bool fixed = l1 == l2;
      d["deterministic_mode_fixes_it"] = fixed;
      add(make_finding("nondeterminism", Severity::Warning, -1, first_param,
                       fmt::format("two identical {}-step runs differ{}; deterministic mode {} it", budget.determinism_steps,
                                   first_param.empty() ? "" : " first in " + first_param, fixed ? "fixes" : "does not fix"),
                       d, {"nondeterministic kernels", "unseeded randomness"},
                       {fixed ? "set run.deterministic = true" : "run `traindx determinism CONFIG` to locate the op"}));
    }
    // Checkpoint round trip: save the audited model, replay its probe in this process, expect bitwise equality.
    CheckpointOptions co;
    co.probe_size = 32;
    const std::string ckpt = save_checkpoint(result.dir + "/checkpoint", *a, config, {}, Json::object(), co);
    VerifyOptions vo;
    const VerifyReport v = verify_checkpoint(ckpt, vo);
    d["checkpoint_verify"] = {{"verdict", v.verdict}, {"max_abs", v.outputs.max_abs}, {"seconds", v.seconds}};
    if (v.verdict == "mismatch") {
      Json ev = v.to_json();
      add(make_finding("checkpoint_round_trip", Severity::Critical, -1, v.first_divergent_layer,
                       fmt::format("a checkpoint saved and reloaded in the same process does not reproduce its outputs "
                                   "(max abs {:.3g}); first divergent layer {}",
                                   v.outputs.max_abs, v.first_divergent_layer),
                       ev, {"state not captured by the checkpoint (buffers, custom modules)"},
                       {"run `traindx ckpt verify` on the checkpoint for the full diagnosis"}));
    }
    return fmt::format("same-process runs {}; checkpoint round trip {}", same ? "bitwise identical" : "DIFFER", v.verdict);
  });

  // ---- 7. short monitored training and the fit diagnosis ---------------------------------------------------------
  run_check("training", "Short monitored training", [&](Json& d) -> Json {
    Config c = config;
    const int64_t steps = budget.train_steps;
    c.set_value("train.max_steps", steps, "doctor");
    c.set_value("train.eval_every", std::max<int64_t>(10, steps / (options.quick ? 4 : 8)), "doctor");
    // Curves for a diagnosis need a few thousand validation examples, not every one at every point.
    if (c.get_int("train.eval_examples") == 0 || c.get_int("train.eval_examples") > 2000)
      c.set_value("train.eval_examples", 2000, "doctor");
    // The final evaluation covers the test split: a sample of it is enough for a diagnosis.
    if (c.get_int("data.max_test") == 0 || c.get_int("data.max_test") > 2000) c.set_value("data.max_test", 2000, "doctor");
    c.set_value("checkpoint.at_end", false, "doctor");
    c.set_value("checkpoint.every_steps", 0, "doctor");
    c.set_value("monitor.on_critical", "stop", "doctor");
    RunRequest request;
    request.out = result.dir + "/training";
    request.quiet = true;
    const RunOutcome outcome = run_training(c, request);
    for (const auto& f : outcome.findings.ranked()) add(f);
    d["status"] = outcome.result.status;
    d["stop_reason"] = outcome.result.stop_reason;
    d["steps"] = outcome.result.steps;
    d["train"] = outcome.result.train_metrics;
    d["val"] = outcome.result.val_metrics;

    // Curves, heatmap, activations and confusion matrix from the run store.
    auto store = open_sqlite_store_readonly(outcome.run_dir + "/" + kRunStoreFile);
    Json curve = {{"steps", Json::array()}, {"train_loss", Json::array()}, {"val_steps", Json::array()},
                  {"val_loss", Json::array()}};
    for (const auto& p : store->scalar_series(outcome.run_id, "loss")) {
      curve["steps"].push_back(p.step);
      curve["train_loss"].push_back(std::isfinite(p.value) ? Json(p.value) : Json());
    }
    const auto val_loss = store->scalar_series(outcome.run_id, "val_loss");
    const auto val_acc = store->scalar_series(outcome.run_id, "val_accuracy");
    for (const auto& p : val_loss) {
      curve["val_steps"].push_back(p.step);
      curve["val_loss"].push_back(std::isfinite(p.value) ? Json(p.value) : Json());
    }
    if (!val_acc.empty() && val_acc.size() == val_loss.size()) {
      curve["val_accuracy"] = Json::array();
      for (const auto& p : val_acc) curve["val_accuracy"].push_back(std::isfinite(p.value) ? Json(p.value) : Json());
    }
    charts["loss_curve"] = curve;

    Json heat = {{"layers", Json::array()}, {"steps", Json::array()}, {"values", Json::array()}};
    Json acts = {{"layers", Json::array()}, {"mean", Json::array()}, {"std", Json::array()},
                 {"zero_fraction", Json::array()}, {"saturated_fraction", Json::array()}};
    std::vector<std::string> order;
    for (const auto& row : fresh_model(config, data.info)->summary()) order.push_back(row.name);
    // Rows share one step axis: the union of the steps any layer was captured at (null where a layer was not).
    std::map<std::string, std::map<int64_t, double>> grad_rows;
    std::set<int64_t> step_set;
    for (const auto& layer : order) {
      for (const auto& p : store->layer_series(outcome.run_id, layer, "grad_norm")) {
        grad_rows[layer][p.step] = p.value;
        step_set.insert(p.step);
      }
    }
    const std::vector<int64_t> steps_axis(step_set.begin(), step_set.end());
    for (const auto& layer : order) {
      auto g = grad_rows.find(layer);
      if (g != grad_rows.end()) {
        Json values = Json::array();
        for (int64_t st : steps_axis) {
          auto v = g->second.find(st);
          values.push_back(v != g->second.end() && v->second > 0 && std::isfinite(v->second)
                               ? Json(std::log10(v->second))
                               : Json());
        }
        heat["layers"].push_back(layer);
        heat["values"].push_back(values);
      }
      auto last = [&](const char* name) -> Json {
        const auto series = store->layer_series(outcome.run_id, layer, name);
        return series.empty() || !std::isfinite(series.back().value) ? Json() : Json(series.back().value);
      };
      const Json m = last("act_mean");
      if (!m.is_null()) {
        acts["layers"].push_back(layer);
        acts["mean"].push_back(m);
        acts["std"].push_back(last("act_std"));
        acts["zero_fraction"].push_back(last("act_zero_fraction"));
        acts["saturated_fraction"].push_back(last("act_saturated_fraction"));
      }
    }
    heat["steps"] = steps_axis;
    charts["grad_norm_heatmap"] = heat;
    charts["activation_stats"] = acts;
    const Json& val = outcome.result.val_metrics;
    if (val.is_object() && val.contains("confusion_matrix"))
      charts["confusion_matrix"] = {{"labels", data.info.class_names}, {"matrix", val["confusion_matrix"]}};

    // Train/validation diagnosis.
    const Json& tr = outcome.result.train_metrics;
    std::string diagnosis = "healthy";
    if (tr.contains("accuracy") && val.contains("accuracy")) {
      const double ta = tr["accuracy"].get<double>(), va = val["accuracy"].get<double>();
      const double chance = 1.0 / static_cast<double>(std::max<int64_t>(2, data.info.num_classes));
      const double underfit = monitor_options.underfit_accuracy > 0 ? monitor_options.underfit_accuracy
                                                                     : chance + 0.5 * (1.0 - chance);
      const double gap = ta - va;
      d["gap"] = gap;
      if (ta < underfit) {
        diagnosis = "underfitting";
      } else if (gap > monitor_options.overfit_gap) {
        diagnosis = "overfitting";
      }
      const bool already = std::any_of(findings.begin(), findings.end(), [&](const Ranked& r) {
        return r.finding.rule == diagnosis;
      });
      if (diagnosis != "healthy" && !already) {
        add(make_finding(diagnosis, Severity::Warning, outcome.result.steps, "",
                         fmt::format("after {} steps: train accuracy {:.3f}, validation {:.3f} (gap {:.3f})",
                                     outcome.result.steps, ta, va, gap),
                         {{"train_accuracy", ta}, {"val_accuracy", va}, {"gap", gap}},
                         diagnosis == "underfitting"
                             ? std::vector<std::string>{"model too small", "learning rate too low", "too few steps"}
                             : std::vector<std::string>{"too little data for the capacity", "no regularisation"},
                         diagnosis == "underfitting"
                             ? std::vector<std::string>{"widen the model (`traindx doctor --ladder`)", "raise train.lr"}
                             : std::vector<std::string>{"add weight decay or dropout", "use early stopping"}));
      }
    }
    d["diagnosis"] = diagnosis;
    return fmt::format("{} steps: train {} / val {} -> {}", outcome.result.steps,
                       tr.contains("accuracy") ? fmt::format("acc {:.3f}", tr["accuracy"].get<double>())
                                               : fmt::format("loss {:.4g}", tr.value("loss", NAN)),
                       val.contains("accuracy") ? fmt::format("acc {:.3f}", val["accuracy"].get<double>())
                                                : fmt::format("loss {:.4g}", val.value("loss", NAN)),
                       diagnosis);
  });

  // ---- 8. ladder -------------------------------------------------------------------------------------------------
  if (options.ladder) {
    run_check("ladder", "Gradual complexity (width and depth ladder)", [&](Json& d) -> Json {
      TRAINDX_CHECK(config.get_string("model.torchscript").empty(), ConfigError,
                    "--ladder needs model.layers (a TorchScript model cannot be resized)");
      const Json base_layers = config.get("model.layers");
      Json variants = Json::array();
      Json skipped = Json::array();
      // Trains one variant on the ladder's budget; a variant whose layers cannot be built is skipped with the reason.
      auto train_variant = [&](const std::string& name, const Json& layers) -> std::optional<double> {
        Config c = config;
        c.set_value("model.layers", layers, "doctor ladder");
        c.set_value("train.max_steps", budget.ladder_steps, "doctor");
        std::unique_ptr<Trainer> t;
        try {
          t = fresh_trainer(c, data);
        } catch (const ModelError& e) {
          skipped.push_back({{"name", name}, {"reason", e.what()}});
          return std::nullopt;
        }
        ShuffleBatcher batcher(data.train_x.size(0), t->options().batch_size, 11);
        for (int64_t s = 0; s < budget.ladder_steps; ++s) {
          const Batch b = batcher.next();
          t->train_step(data.train_x.index_select(0, b.indices), data.train_y.index_select(0, b.indices));
        }
        const int64_t n = std::min<int64_t>(5000, data.train_x.size(0));
        const Json tm = t->evaluate(data.train_x.slice(0, 0, n), data.train_y.slice(0, 0, n));
        const Json vm = data.val_x.defined() && data.val_x.size(0) > 0 ? t->evaluate(data.val_x, data.val_y) : tm;
        const double score = vm.contains("accuracy") ? vm["accuracy"].get<double>() : -vm.value("loss", INFINITY);
        variants.push_back({{"name", name}, {"parameters", t->model().parameter_count()},
                            {"train_accuracy", tm.value("accuracy", NAN)}, {"val_accuracy", vm.value("accuracy", NAN)},
                            {"val_loss", vm.value("loss", NAN)}, {"score", score}});
        return score;
      };
      // Along each axis, the step after which the score stops improving by more than half a point.
      auto climb = [](const std::vector<std::pair<std::string, std::optional<double>>>& rungs) {
        double best = -INFINITY;
        std::string best_name;
        for (const auto& [name, score] : rungs)
          if (score && *score > best + 0.005) {
            best = *score;
            best_name = name;
          }
        return best_name;
      };
      std::vector<std::pair<std::string, std::optional<double>>> widths, depths;
      for (double f : {0.25, 0.5, 1.0, 2.0}) {
        const std::string name = fmt::format("width x{}", f);
        widths.emplace_back(name, train_variant(name, scaled_layers(base_layers, f, true)));
      }
      const Json shallower = layers_with_depth(base_layers, -1);
      const Json deeper = layers_with_depth(base_layers, +1);
      if (!shallower.is_null()) depths.emplace_back("depth -1", train_variant("depth -1", shallower));
      depths.emplace_back("width x1", widths[2].second);  // the configured model, trained once
      if (!deeper.is_null()) depths.emplace_back("depth +1", train_variant("depth +1", deeper));
      const std::string best_width = climb(widths);
      const std::string climbed = climb(depths);
      const std::string best_depth = climbed == "width x1" ? "configured" : climbed;
      charts["ladder"] = {{"variants", variants}};
      d["variants"] = variants;
      d["best"] = best_width;
      d["best_width"] = best_width;
      d["best_depth"] = depths.size() > 1 ? Json(best_depth) : Json();
      if (!skipped.empty()) d["skipped"] = skipped;
      return fmt::format("the score stops improving at {} of the width ladder{} ({} steps each)", best_width,
                         depths.size() > 1 ? fmt::format(" and at {} of the depth ladder",
                                                         best_depth == "configured" ? "the configured depth" : best_depth)
                                           : std::string(" (no hidden block to remove or repeat)"),
                         budget.ladder_steps);
    });
  }

  // ---- report ------------------------------------------------------------------------------------------------
  std::stable_sort(findings.begin(), findings.end(), [](const Ranked& a, const Ranked& b) {
    if (a.finding.severity != b.finding.severity) return a.finding.severity > b.finding.severity;
    if (a.check != b.check) return a.check < b.check;
    return a.finding.step < b.finding.step;
  });
  Json findings_json = Json::array();
  for (const auto& r : findings) {
    result.findings.push_back(r.finding);
    findings_json.push_back(r.finding.to_json());
  }
  const bool critical = result.has_critical();
  const bool warnings = std::any_of(findings.begin(), findings.end(),
                                    [](const Ranked& r) { return r.finding.severity == Severity::Warning; });
  std::string summary;
  if (critical)
    summary = fmt::format("critical: {} — fix this first", result.findings.front().message);
  else if (warnings)
    summary = fmt::format("the model learns, with {} warning(s); the first: {}",
                          std::count_if(findings.begin(), findings.end(),
                                        [](const Ranked& r) { return r.finding.severity == Severity::Warning; }),
                          result.findings.front().message);
  else
    summary = "healthy: the model learns and nothing looks wrong";

  Json report;
  report["schema"] = "traindx-report";
  report["version"] = kReportVersion;
  report["traindx"] = {{"version", traindx_version()}, {"commit", traindx_git_commit()}};
  report["created_at"] = utc_now_iso();
  report["title"] = fmt::format("traindx doctor: {}", config.get_string("run.name"));
  report["config_toml"] = config.to_toml();
  report["environment"] = environment_fingerprint();
  report["verdict"] = {{"status", critical ? "critical" : warnings ? "problems" : "healthy"}, {"summary", summary}};
  report["findings"] = findings_json;
  report["checks"] = checks;
  report["charts"] = charts;
  report["seconds"] = std::chrono::duration<double>(Clock::now() - t_start).count();
  report["quick"] = options.quick;
  validate_report(report);
  write_report_files(report, result.dir);
  write_file_atomic(result.dir + "/findings.json", findings_json.dump(2) + "\n");
  result.report = std::move(report);
  return result;
}

}  // namespace traindx
