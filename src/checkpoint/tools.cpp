// `ckpt inspect | diff | import | export` as library functions: the CLI only parses flags and prints.
#include "traindx/checkpoint/tools.h"

#include <torch/torch.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <tuple>

#include "traindx/core/environment.h"
#include "traindx/core/error.h"
#include "traindx/store/run_store.h"

namespace traindx {
namespace fs = std::filesystem;
namespace {

constexpr int kDocumentVersion = 1;
const char* const kFiles[] = {"model", "optimizer", "rng", "probe"};

std::string dtype_name(const torch::Tensor& t) {
  const auto name = safetensors_dtype(t.scalar_type());
  return name ? *name : std::string(c10::toString(t.scalar_type()));
}

std::string shape_text(const std::vector<int64_t>& shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

std::string human_bytes(double bytes) {
  const char* units[] = {"B", "KB", "MB", "GB", "TB"};
  int u = 0;
  while (bytes >= 1000.0 && u < 4) {
    bytes /= 1000.0;
    ++u;
  }
  return u == 0 ? fmt::format("{:.0f} {}", bytes, units[u]) : fmt::format("{:.1f} {}", bytes, units[u]);
}

int64_t tensor_bytes(const torch::Tensor& t) { return t.numel() * static_cast<int64_t>(t.element_size()); }

const std::vector<NamedTensor>& file_tensors(const Checkpoint& c, const std::string& file) {
  if (file == "model") return c.model;
  if (file == "optimizer") return c.optimizer;
  if (file == "rng") return c.rng;
  return c.probe;
}

// A JSON value short enough for a report line; long values (pipeline statistics, layer lists, probe tables) are
// replaced by their size and a hash prefix, which still tells two of them apart.
Json shown_value(const Json& v) {
  const std::string text = v.dump();
  if (text.size() <= 120) return v;
  const std::string kind = v.is_array() ? fmt::format("array of {}", v.size())
                           : v.is_object() ? fmt::format("object of {} keys", v.size())
                                           : fmt::format("{} characters", text.size());
  return fmt::format("<{}, hash {}>", kind, hash_bytes(text).substr(0, 12));
}

// Leaves of a JSON document as dotted paths; arrays are leaves (a reordered layer list is one difference).
void flatten(const Json& j, const std::string& prefix, std::map<std::string, Json>& out) {
  if (j.is_object() && !j.empty()) {
    for (auto it = j.begin(); it != j.end(); ++it)
      flatten(it.value(), prefix.empty() ? it.key() : prefix + "." + it.key(), out);
  } else {
    out[prefix] = j;
  }
}

Json diff_flat(const Json& a, const Json& b) {
  std::map<std::string, Json> fa, fb;
  flatten(a, "", fa);
  flatten(b, "", fb);
  Json out = Json::object();
  for (const auto& [key, va] : fa) {
    auto it = fb.find(key);
    const Json vb = it == fb.end() ? Json() : it->second;
    if (va != vb) out[key] = {{"a", shown_value(va)}, {"b", shown_value(vb)}};
  }
  for (const auto& [key, vb] : fb)
    if (!fa.count(key)) out[key] = {{"a", Json()}, {"b", shown_value(vb)}};
  return out;
}

// Config keys that only say where and how often to write things: a difference in them leaves the state alone.
bool is_bookkeeping_key(const std::string& key) {
  static const std::set<std::string> keys = {"run.name",
                                             "run.out_root",
                                             "train.log_every",
                                             "checkpoint.every_steps",
                                             "checkpoint.keep_last",
                                             "checkpoint.at_end",
                                             "checkpoint.keep_best"};
  return keys.count(key) > 0;
}

TensorDifference compare_named(const std::string& file, const std::string& name, const torch::Tensor& a,
                               const torch::Tensor& b) {
  TensorDifference d;
  d.file = file;
  d.name = name;
  d.dtype_a = dtype_name(a);
  d.dtype_b = dtype_name(b);
  d.shape_a = a.sizes().vec();
  d.shape_b = b.sizes().vec();
  if (d.shape_a != d.shape_b) {
    d.status = "shape";
    return d;
  }
  const bool bitwise = same_bits(a, b);
  if (a.numel() == 0) {
    TensorComparison empty;
    empty.bitwise_equal = bitwise;
    d.comparison = empty;
  } else {
    // Integer and bool state (BatchNorm counters, RNG bytes) is compared as values: the numbers still say how far
    // apart two counters or generator states are.
    // Flattened, since the shapes agree and statistics do not depend on them (and 0-dim tensors such as
    // num_batches_tracked cannot be reinterpreted as bytes by compare_tensors).
    const bool floating = a.is_floating_point() && b.is_floating_point();
    const torch::Tensor fa = floating ? a.reshape({-1}) : a.reshape({-1}).to(torch::kFloat64);
    const torch::Tensor fb = floating ? b.reshape({-1}) : b.reshape({-1}).to(torch::kFloat64);
    d.comparison = compare_tensors(fb, fa);
    d.comparison->bitwise_equal = bitwise;
    if (bitwise) d.comparison->differing = 0;
  }
  d.status = d.dtype_a != d.dtype_b ? "dtype" : bitwise ? "identical" : "different";
  return d;
}

std::string environment_line(const Json& env) {
  if (!env.is_object()) return "unknown";
  std::string isa;
  if (env.contains("cpu_isa") && env["cpu_isa"].is_array()) isa = fmt::format("{}", fmt::join(env["cpu_isa"], " "));
  auto text = [&](const char* key) -> std::string {
    if (!env.contains(key)) return "?";
    return env[key].is_string() ? env[key].get<std::string>() : env[key].dump();
  };
  return fmt::format("{}; ISA {} (ATen {}); BLAS {}; {} thread(s); deterministic {}; {} {}", text("cpu_model"),
                     isa.empty() ? "?" : isa, text("aten_cpu_capability"), text("blas"), text("threads"),
                     text("deterministic_algorithms"), text("os"), text("machine"));
}

// Tensors in the order of the model's layers (files hold them in alignment order), each layer's weight before its
// bias and parameters before buffers; optimizer slots "<parameter>/<slot>" follow their parameter.
std::vector<NamedTensor> in_layer_order(std::vector<NamedTensor> tensors, const Json& layers) {
  std::map<std::string, size_t> layer_index;
  if (layers.is_array())
    for (size_t i = 0; i < layers.size(); ++i) layer_index[layers[i].value("name", "")] = i;
  static const std::vector<std::string> attributes = {"weight", "bias", "running_mean", "running_var",
                                                      "num_batches_tracked"};
  auto key = [&](const std::string& full) {
    const std::string name = full.substr(0, full.find('/'));
    const auto dot = name.rfind('.');
    const std::string layer = dot == std::string::npos ? name : name.substr(0, dot);
    const std::string attribute = dot == std::string::npos ? "" : name.substr(dot + 1);
    const auto li = layer_index.find(layer);
    const auto ai = std::find(attributes.begin(), attributes.end(), attribute);
    return std::make_tuple(li == layer_index.end() ? layer_index.size() : li->second,
                           static_cast<size_t>(ai - attributes.begin()), full);
  };
  std::stable_sort(tensors.begin(), tensors.end(),
                   [&](const NamedTensor& x, const NamedTensor& y) { return key(x.first) < key(y.first); });
  return tensors;
}

Json tensor_table(const std::vector<NamedTensor>& tensors, const Json& hashes) {
  Json rows = Json::array();
  for (const auto& [name, t] : tensors) {
    rows.push_back({{"name", name},
                    {"dtype", dtype_name(t)},
                    {"shape", t.sizes().vec()},
                    {"numel", t.numel()},
                    {"bytes", tensor_bytes(t)},
                    {"hash", hashes.value(name, "")}});
  }
  return rows;
}

std::string value_text(const Json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_float()) return fmt::format("{:.6g}", v.get<double>());
  return v.dump();
}

// Orders names as people number things: digit runs compare as numbers ("layer.2" < "layer.10").
bool natural_less(const std::string& a, const std::string& b) {
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (std::isdigit(static_cast<unsigned char>(a[i])) && std::isdigit(static_cast<unsigned char>(b[j]))) {
      size_t ie = i, je = j;
      while (ie < a.size() && std::isdigit(static_cast<unsigned char>(a[ie]))) ++ie;
      while (je < b.size() && std::isdigit(static_cast<unsigned char>(b[je]))) ++je;
      const std::string na = a.substr(i, ie - i), nb = b.substr(j, je - j);
      const auto ta = na.find_first_not_of('0'), tb = nb.find_first_not_of('0');
      const std::string sa = ta == std::string::npos ? "" : na.substr(ta);
      const std::string sb = tb == std::string::npos ? "" : nb.substr(tb);
      if (sa.size() != sb.size()) return sa.size() < sb.size();
      if (sa != sb) return sa < sb;
      i = ie;
      j = je;
    } else {
      if (a[i] != b[j]) return a[i] < b[j];
      ++i;
      ++j;
    }
  }
  return a.size() - i < b.size() - j;
}

}  // namespace

// ---- inspect}  // namespace

// ---- inspect ---------------------------------------------------------------------------------------------------

Json inspect_checkpoint(const std::string& path) {
  const Checkpoint c = load_checkpoint(path);
  const Json& m = c.manifest;
  const Json env = m.value("environment", Json::object());
  Json doc;
  doc["kind"] = "traindx.ckpt.inspect";
  doc["version"] = kDocumentVersion;
  doc["checkpoint"] = c.dir;
  doc["hashes_verified"] = true;
  doc["step"] = c.step();
  doc["created_at"] = m.value("created_at", "");
  doc["format_version"] = m.value("version", 0);
  doc["manifest_hash"] = m.value("manifest_hash", "");
  doc["versions"] = {{"traindx", env.value("traindx_version", "")},
                     {"traindx_commit", env.value("traindx_commit", "")},
                     {"libtorch", env.value("libtorch_version", "")}};

  Json model = m.value("model", Json::object());
  int64_t model_bytes = 0;
  for (const auto& [n, t] : c.model) model_bytes += tensor_bytes(t);
  model["tensors"] = c.model.size();
  model["bytes"] = model_bytes;
  doc["model"] = model;

  // Optimizer slots come from the tensor names "<parameter>/<slot>"; step counts from the scalars.
  const Json& opt = m.value("optimizer", Json::object());
  std::map<std::string, int64_t> slots;
  int64_t opt_bytes = 0;
  for (const auto& [n, t] : c.optimizer) {
    const auto slash = n.rfind('/');
    ++slots[slash == std::string::npos ? n : n.substr(slash + 1)];
    opt_bytes += tensor_bytes(t);
  }
  Json steps = Json::object();
  const Json scalars = opt.value("scalars", Json::object());
  if (scalars.is_object() && !scalars.empty()) {
    int64_t lo = std::numeric_limits<int64_t>::max(), hi = std::numeric_limits<int64_t>::min();
    for (auto it = scalars.begin(); it != scalars.end(); ++it) {
      const int64_t s = it.value().value("step", int64_t{0});
      lo = std::min(lo, s);
      hi = std::max(hi, s);
    }
    steps = {{"min", lo}, {"max", hi}, {"parameters", scalars.size()}};
  }
  doc["optimizer"] = {{"name", opt.value("name", "")},
                      {"slots", slots},
                      {"tensors", c.optimizer.size()},
                      {"bytes", opt_bytes},
                      {"steps", steps}};

  const Json trainer = m.value("trainer", Json::object());
  Json schedule = trainer.value("schedule", Json::object());
  schedule["step"] = c.step();
  // The schedule is a pure function of the step, so its position is the step; the next learning rate follows
  // from the stored config. A config that no longer builds a schedule leaves the rate out, nothing more.
  try {
    const LrSchedule lr(ScheduleOptions::from_config(c.config()), schedule.value("base_lr", 0.0),
                        schedule.value("total_steps", int64_t{0}));
    schedule["next_lr"] = lr.lr_at(c.step());
  } catch (const Error&) {
    schedule["next_lr"] = Json();
  }
  doc["schedule"] = schedule;
  doc["batcher"] = trainer.value("batcher", Json::object());
  doc["early_stopping"] = trainer.value("early_stopping", Json::object());
  doc["data"] = m.value("data_info", Json::object());
  Json pipeline = m.value("pipeline", Json::object());
  doc["pipeline_hash"] = hash_bytes(pipeline.dump());

  Json probe = m.value("probe", Json::object());
  probe.erase("raw_table");
  doc["probe"] = probe;
  doc["metrics"] = m.value("metrics", Json::object());
  Json extra_keys = Json::array();
  const Json extra = m.value("extra", Json::object());
  for (auto it = extra.begin(); it != extra.end(); ++it) extra_keys.push_back(it.key());
  doc["extra"] = extra_keys;
  if (extra.contains("import")) doc["import"] = extra["import"];
  doc["environment"] = env;
  doc["environment_summary"] = environment_line(env);

  const Json& hashes = m.at("tensors");
  Json tables = Json::object();
  const Json layers = m.value("model", Json::object()).value("layers", Json::array());
  for (const char* f : kFiles)
    tables[f] = tensor_table(in_layer_order(file_tensors(c, f), layers),
                             hashes.value(std::string(f) + ".safetensors", Json::object()));
  doc["tensors"] = tables;
  return doc;
}

std::string render_inspection(const Json& d) {
  std::string out;
  auto line = [&](const char* label, const std::string& text) { out += fmt::format("{:<12}{}\n", label, text); };
  line("checkpoint", d.value("checkpoint", "") + " (manifest and tensor hashes verified)");
  line("step", fmt::format("{}, saved {}", d.value("step", int64_t{0}), d.value("created_at", "")));
  const Json& v = d.at("versions");
  line("versions", fmt::format("traindx {} ({}), LibTorch {}", v.value("traindx", "?"), v.value("traindx_commit", "?"),
                               v.value("libtorch", "?")));

  const Json& model = d.at("model");
  const Json layers = model.value("layers", Json::array());
  line("model", fmt::format("{} layers, {} parameters, {}, {} tensors ({})", layers.size(),
                            model.value("parameters", int64_t{0}), model.value("dtype", "?"),
                            model.value("tensors", int64_t{0}), human_bytes(model.value("bytes", 0.0))));
  for (const auto& l : layers) {
    const auto shape = l.value("output_shape", std::vector<int64_t>{});
    out += fmt::format("  {:<18} {:<20} {}\n", l.value("name", ""), l.value("type", ""),
                       shape.empty() ? "?" : shape_text(shape));
  }

  const Json& opt = d.at("optimizer");
  std::vector<std::string> slots;
  for (auto it = opt["slots"].begin(); it != opt["slots"].end(); ++it)
    slots.push_back(fmt::format("{} x{}", it.key(), it.value().get<int64_t>()));
  std::string steps;
  if (!opt["steps"].empty())
    steps = opt["steps"]["min"] == opt["steps"]["max"]
                ? fmt::format("; step count {}", opt["steps"]["min"].get<int64_t>())
                : fmt::format("; step counts {}..{}", opt["steps"]["min"].get<int64_t>(),
                              opt["steps"]["max"].get<int64_t>());
  line("optimizer", fmt::format("{}: {}{} ({})", opt.value("name", "?"),
                                slots.empty() ? "no state yet" : fmt::format("{}", fmt::join(slots, ", ")), steps,
                                human_bytes(opt.value("bytes", 0.0))));

  const Json& s = d.at("schedule");
  line("schedule", fmt::format("{}, base lr {}, next lr {}, step {} of {}", s.value("name", "?"),
                               value_text(s.value("base_lr", Json())), value_text(s.value("next_lr", Json())),
                               s.value("step", int64_t{0}), s.value("total_steps", int64_t{0})));
  const Json& b = d.at("batcher");
  line("batcher", fmt::format("epoch {}, position {}, seed {}", value_text(b.value("epoch", Json())),
                              value_text(b.value("position", Json())), value_text(b.value("seed", Json()))));
  const Json& es = d.at("early_stopping");
  if (es.value("metric", "").empty()) {
    line("early stop", "off");
  } else {
    line("early stop", fmt::format("on {}, patience {}, best {} at step {}, {} bad evaluation(s)",
                                   es.value("metric", ""), value_text(es.value("patience", Json())),
                                   value_text(es.value("best", Json())), value_text(es.value("best_step", Json())),
                                   value_text(es.value("bad_evaluations", Json()))));
  }
  const Json& data = d.at("data");
  line("data", fmt::format("{} ({}{}), input {}, pipeline {}", data.value("source", "?"), data.value("task", "?"),
                           data.value("num_classes", int64_t{0}) > 0
                               ? fmt::format(", {} classes", data.value("num_classes", int64_t{0}))
                               : std::string(),
                           shape_text(data.value("input_shape", std::vector<int64_t>{})),
                           d.value("pipeline_hash", "").substr(0, 12)));
  const Json& p = d.at("probe");
  line("probe", fmt::format("{} examples from {}, outputs in {} mode", value_text(p.value("examples", Json())),
                            p.value("split", "?"), p.value("mode", "?")));
  std::vector<std::string> metrics;
  const Json& mj = d.at("metrics");
  for (auto it = mj.begin(); it != mj.end(); ++it)
    if (it.value().is_number()) metrics.push_back(fmt::format("{} {}", it.key(), value_text(it.value())));
  line("metrics", metrics.empty() ? "none" : fmt::format("{}", fmt::join(metrics, ", ")));
  if (d.contains("import")) {
    const Json& im = d["import"];
    line("imported", fmt::format("from {} ({}), file hash {}", im.value("source", "?"), im.value("format", "?"),
                                 im.value("file_hash", "?")));
  }
  if (!d.at("extra").empty()) line("state of", fmt::format("{}", fmt::join(d.at("extra"), ", ")));
  line("environment", d.value("environment_summary", ""));

  out += "tensors\n";
  for (const char* f : kFiles) {
    const Json& rows = d.at("tensors").at(f);
    int64_t bytes = 0;
    for (const auto& r : rows) bytes += r.value("bytes", int64_t{0});
    out += fmt::format("  {}.safetensors: {} tensors, {}\n", f, rows.size(), human_bytes(static_cast<double>(bytes)));
    const bool full = std::string(f) == "model" || std::string(f) == "optimizer";
    if (!full) {
      for (const auto& r : rows)
        out += fmt::format("    {} {} {}\n", r.value("name", ""), r.value("dtype", ""),
                           shape_text(r.value("shape", std::vector<int64_t>{})));
      continue;
    }
    size_t width = 4;
    for (const auto& r : rows) width = std::max(width, r.value("name", "").size());
    if (!rows.empty())
      out += fmt::format("    {:<{}}  {:<5} {:<20} {}\n", "name", width, "dtype", "shape", "hash (xxh3-128)");
    for (const auto& r : rows)
      out += fmt::format("    {:<{}}  {:<5} {:<20} {}\n", r.value("name", ""), width, r.value("dtype", ""),
                         shape_text(r.value("shape", std::vector<int64_t>{})), r.value("hash", ""));
  }
  return out;
}

// ---- diff ------------------------------------------------------------------------------------------------------

Json TensorDifference::to_json() const {
  Json j = {{"file", file},       {"name", name},       {"status", status}, {"dtype_a", dtype_a},
            {"dtype_b", dtype_b}, {"shape_a", shape_a}, {"shape_b", shape_b}};
  // A tensor present on one side only has no dtype or shape on the other.
  if (status == "only_a") {
    j.erase("dtype_b");
    j.erase("shape_b");
  } else if (status == "only_b") {
    j.erase("dtype_a");
    j.erase("shape_a");
  }
  j["comparison"] = comparison ? comparison->to_json() : Json();
  return j;
}

bool CheckpointDiff::identical() const {
  for (const auto& t : tensors)
    if (t.status != "identical") return false;
  for (auto it = config.begin(); it != config.end(); ++it)
    if (it.value().value("affects_state", true)) return false;
  return manifest.empty();
}

Json CheckpointDiff::file_summary() const {
  Json out = Json::object();
  for (const char* f : kFiles)
    out[f] = {{"tensors", 0}, {"identical", 0}, {"different", 0}, {"dtype", 0},
              {"shape", 0},   {"only_a", 0},    {"only_b", 0}};
  for (const auto& t : tensors) {
    Json& s = out[t.file];
    s["tensors"] = s["tensors"].get<int64_t>() + 1;
    s[t.status] = s[t.status].get<int64_t>() + 1;
  }
  return out;
}

Json CheckpointDiff::to_json() const {
  Json rows = Json::array();
  for (const auto& t : tensors) rows.push_back(t.to_json());
  return {{"kind", "traindx.ckpt.diff"},
          {"version", kDocumentVersion},
          {"a", a},
          {"b", b},
          {"identical", identical()},
          {"exit_code", exit_code()},
          {"files", file_summary()},
          {"tensors", rows},
          {"config", config},
          {"manifest", manifest},
          {"environment", environment}};
}

CheckpointDiff diff_checkpoints(const std::string& path_a, const std::string& path_b) {
  const Checkpoint a = load_checkpoint(path_a);
  const Checkpoint b = load_checkpoint(path_b);
  CheckpointDiff d;
  d.a = a.dir;
  d.b = b.dir;
  const Json layers_a = a.manifest.value("model", Json::object()).value("layers", Json::array());
  const Json layers_b = b.manifest.value("model", Json::object()).value("layers", Json::array());
  for (const char* f : kFiles) {
    const auto ta = in_layer_order(file_tensors(a, f), layers_a);
    const auto tb = in_layer_order(file_tensors(b, f), layers_b);
    std::map<std::string, const torch::Tensor*> in_b;
    for (const auto& [n, t] : tb) in_b[n] = &t;
    std::set<std::string> in_a;
    for (const auto& [n, t] : ta) {
      in_a.insert(n);
      auto it = in_b.find(n);
      if (it == in_b.end()) {
        TensorDifference only;
        only.file = f;
        only.name = n;
        only.status = "only_a";
        only.dtype_a = dtype_name(t);
        only.shape_a = t.sizes().vec();
        d.tensors.push_back(std::move(only));
      } else {
        d.tensors.push_back(compare_named(f, n, t, *it->second));
      }
    }
    for (const auto& [n, t] : tb) {
      if (in_a.count(n)) continue;
      TensorDifference only;
      only.file = f;
      only.name = n;
      only.status = "only_b";
      only.dtype_b = dtype_name(t);
      only.shape_b = t.sizes().vec();
      d.tensors.push_back(std::move(only));
    }
  }

  const Json config = diff_flat(a.config().to_json(), b.config().to_json());
  for (auto it = config.begin(); it != config.end(); ++it) {
    Json entry = it.value();
    entry["affects_state"] = !is_bookkeeping_key(it.key());
    d.config[it.key()] = entry;
  }
  // Everything else the manifest holds is state, except what is compared elsewhere (tensors by value, config by
  // key, environment by fingerprint) and the save time, which differs between any two saves.
  auto state_of = [](Json m) {
    for (const char* k : {"created_at", "environment", "manifest_hash", "tensors", "config_toml"}) m.erase(k);
    return m;
  };
  d.manifest = diff_flat(state_of(a.manifest), state_of(b.manifest));
  d.environment = diff_fingerprints(a.manifest.value("environment", Json::object()),
                                    b.manifest.value("environment", Json::object()));
  return d;
}

std::string render_diff(const CheckpointDiff& d, bool all_tensors) {
  std::string out = fmt::format("A {}\nB {}\n", d.a, d.b);
  const Json summary = d.file_summary();
  for (const char* f : kFiles) {
    const Json& s = summary[f];
    std::vector<std::string> parts;
    for (const char* k : {"identical", "different", "dtype", "shape", "only_a", "only_b"})
      if (s[k].get<int64_t>() > 0) parts.push_back(fmt::format("{} {}", s[k].get<int64_t>(), k));
    out += fmt::format("{}.safetensors: {} tensors{}{}\n", f, s["tensors"].get<int64_t>(), parts.empty() ? "" : ": ",
                       fmt::join(parts, ", "));
    const bool detailed = std::string(f) == "model" || std::string(f) == "optimizer";
    std::vector<const TensorDifference*> rows;
    for (const auto& t : d.tensors)
      if (t.file == f && (all_tensors || t.status != "identical")) rows.push_back(&t);
    if (rows.empty()) continue;
    size_t width = 4;
    for (const auto* t : rows) width = std::max(width, t->name.size());
    if (detailed)
      out += fmt::format("  {:<{}}  {:<9} {:>10} {:>10} {:>10} {:>10} {:>10}\n", "name", width, "status", "max_abs",
                         "mean_abs", "max_rel", "cosine", "differing");
    for (const auto* t : rows) {
      if (t->status == "only_a" || t->status == "only_b") {
        out += fmt::format("  {:<{}}  {:<9} {} {}\n", t->name, width, t->status,
                           t->status == "only_a" ? t->dtype_a : t->dtype_b,
                           shape_text(t->status == "only_a" ? t->shape_a : t->shape_b));
      } else if (t->status == "shape") {
        out += fmt::format("  {:<{}}  {:<9} {} vs {}\n", t->name, width, t->status, shape_text(t->shape_a),
                           shape_text(t->shape_b));
      } else if (detailed || !t->comparison) {
        const TensorComparison& c = *t->comparison;
        out += fmt::format("  {:<{}}  {:<9} {:>10.3g} {:>10.3g} {:>10.3g} {:>10.6f} {:>10}{}\n", t->name, width,
                           t->status, c.max_abs, c.mean_abs, c.max_rel, c.cosine,
                           fmt::format("{}/{}", c.differing, c.numel),
                           t->status == "dtype" ? fmt::format("  {} vs {}", t->dtype_a, t->dtype_b) : "");
      } else {
        const TensorComparison& c = *t->comparison;
        out += fmt::format("  {}: {}, {} of {} elements differ, max abs {:.3g}\n", t->name, t->status, c.differing,
                           c.numel, c.max_abs);
      }
    }
  }
  auto section = [&](const char* title, const Json& diffs, bool mark_bookkeeping) {
    if (diffs.empty()) {
      out += fmt::format("{}: no differences\n", title);
      return;
    }
    out += fmt::format("{}: {} difference(s)\n", title, diffs.size());
    for (auto it = diffs.begin(); it != diffs.end(); ++it)
      out += fmt::format("  {}: {} -> {}{}\n", it.key(), value_text(it.value()["a"]), value_text(it.value()["b"]),
                         mark_bookkeeping && !it.value().value("affects_state", true) ? " (bookkeeping)" : "");
  };
  section("config", d.config, true);
  section("manifest", d.manifest, false);
  section("environment", d.environment, false);
  out += d.identical() ? "identical: every tensor is bit-identical and the state agrees\n"
                       : "different\n";
  return out;
}

// ---- import / export -------------------------------------------------------------------------------------------

WeightsFile read_weights_file(const std::string& path) {
  WeightsFile w;
  w.path = path;
  std::string head;
  {
    std::ifstream in(path, std::ios::binary);
    TRAINDX_CHECK(in.good(), IoError, "cannot open weights file '{}': {}", path, std::strerror(errno));
    head.resize(8);
    in.read(head.data(), 8);
    head.resize(static_cast<size_t>(in.gcount()));
  }
  // torch.save has written zip archives since PyTorch 1.6; before, a bare pickle stream (protocol 2: 0x80 0x02).
  if (head.rfind("PK\x03\x04", 0) == 0) {
    w.format = "torch.save";
    w.tensors = read_torch_state_dict(path, {}, &w.skipped);
    return w;
  }
  TRAINDX_CHECK(!(head.size() >= 2 && static_cast<unsigned char>(head[0]) == 0x80), CheckpointError,
                "{}: a legacy (pre-1.6, non-zip) torch.save file; traindx reads the zip format only: load it in "
                "Python and save it again with torch.save(state_dict, path) (the default since PyTorch 1.6)",
                path);
  w.format = "safetensors";
  LoadedTensors loaded = read_safetensors(path);
  w.tensors = std::move(loaded.tensors);
  w.metadata = std::move(loaded.metadata);
  return w;
}

std::string key_mismatch_message(const KeyReport& keys, const NamedTensors& model_tensors,
                                 const NamedTensors& file_tensors) {
  std::map<std::string, std::vector<int64_t>> model_shape, file_shape;
  for (const auto& [n, t] : model_tensors) model_shape[n] = t.sizes().vec();
  for (const auto& [n, t] : file_tensors) file_shape[n] = t.sizes().vec();
  auto listed = [](const std::vector<std::string>& names, const std::map<std::string, std::vector<int64_t>>& shapes) {
    std::vector<std::string> parts;
    for (const auto& n : names) {
      auto it = shapes.find(n);
      parts.push_back(it == shapes.end() ? n : n + " " + shape_text(it->second));
    }
    return parts.empty() ? std::string("none") : fmt::format("{}", fmt::join(parts, ", "));
  };
  std::string msg = fmt::format(
      "the weights do not fit the model built from the config:\n  missing (in the model, not in the file): {}\n"
      "  unexpected (in the file, not in the model): {}\n  reshaped: {}",
      listed(keys.missing, model_shape), listed(keys.unexpected, file_shape),
      keys.reshaped.empty() ? std::string("none") : fmt::format("{}", fmt::join(keys.reshaped, "; ")));

  // Pair missing and unexpected keys in order when the attribute (last name component) and the shape agree:
  // state_dicts of nn.Sequential models ("features.0.weight") list the same tensors in the same order as
  // traindx's named layers ("conv1.weight").
  auto attribute = [](const std::string& name) {
    const auto dot = name.rfind('.');
    return dot == std::string::npos ? name : name.substr(dot + 1);
  };
  // Candidates in the file's order (which the caller chose), not in the report's.
  const std::set<std::string> unexpected(keys.unexpected.begin(), keys.unexpected.end());
  std::vector<std::string> candidates;
  for (const auto& [n, t] : file_tensors)
    if (unexpected.count(n)) candidates.push_back(n);
  std::vector<std::string> renames;
  std::vector<bool> taken(candidates.size(), false);
  for (const auto& want : keys.missing) {
    for (size_t i = 0; i < candidates.size(); ++i) {
      const auto& have = candidates[i];
      if (taken[i] || attribute(have) != attribute(want) || file_shape[have] != model_shape[want]) continue;
      taken[i] = true;
      renames.push_back(fmt::format("'{}': '{}'", have, want));
      break;
    }
  }
  if (!renames.empty()) {
    msg += fmt::format(
        "\nthe names look different but the shapes fit; rename the file's keys in Python before saving, e.g.\n"
        "  mapping = {{{}}}\n  torch.save({{mapping.get(k, k): v for k, v in model.state_dict().items()}}, path)\n"
        "or give the layers these names in model.layers (name = \"...\"; docs/model.md, Layer names)",
        fmt::join(renames, ", "));
  } else {
    msg += "\nparameter names come from the layer names (docs/model.md, Layer names): build the Python model with "
           "the same layers and attribute names, or rename the keys before saving";
  }
  return msg;
}

Json ImportReport::to_json() const {
  return {{"source", source},   {"format", format},   {"checkpoint", checkpoint},
          {"tensors", tensors}, {"skipped", skipped}, {"keys", keys.to_json()}};
}

ImportReport import_state_dict(const std::string& path, const Config& config, const std::string& out_arg) {
  const std::string out = out_arg.empty() ? (fs::path(config.get_string("run.out_root")) /
                                             (fs::path(path).stem().string() + "-import"))
                                                .string()
                                          : out_arg;
  std::error_code ec;
  if (fs::exists(out, ec)) {
    TRAINDX_CHECK(fs::is_directory(out, ec) && fs::is_empty(out, ec), IoError,
                  "--out {} exists and is not an empty directory; choose another --out (an import never replaces "
                  "checkpoints)",
                  out);
  }
  WeightsFile weights = read_weights_file(path);
  TRAINDX_CHECK(!weights.tensors.empty(), CheckpointError, "{}: holds no tensors", path);

  Trainer trainer(config);
  Model& model = trainer.model();
  NamedTensors targets = model.named_parameters();
  for (const auto& b : model.named_buffers()) targets.push_back(b);
  // Non-strict first, so the error can show every mismatch with shapes and a suggested mapping; the model is
  // discarded when anything does not fit.
  ImportReport report;
  report.keys = load_model_tensors(model, weights.tensors, /*strict=*/false);
  if (!(report.keys.missing.empty() && report.keys.unexpected.empty() && report.keys.reshaped.empty())) {
    // A torch.save dict lists tensors in module order; safetensors files sort them (by dtype, then name), so
    // restore the module order of numbered submodules ("features.2" before "features.10") before pairing names.
    NamedTensors in_order = weights.tensors;
    if (weights.format == "safetensors")
      std::stable_sort(in_order.begin(), in_order.end(),
                       [](const NamedTensor& x, const NamedTensor& y) { return natural_less(x.first, y.first); });
    TRAINDX_FAIL(CheckpointError, "{}: {}", path, key_mismatch_message(report.keys, targets, in_order));
  }
  report.source = path;
  report.format = weights.format;
  report.tensors = static_cast<int64_t>(weights.tensors.size());
  report.skipped = weights.skipped;

  const Json import_info = {{"source", fs::absolute(path).lexically_normal().string()},
                            {"format", weights.format},
                            {"file_hash", hash_bytes(read_file(path))},
                            {"tensors", report.tensors},
                            {"skipped", weights.skipped},
                            {"retyped", report.keys.retyped}};
  CheckpointOptions options = CheckpointOptions::from_config(config);
  report.checkpoint = save_checkpoint(out, trainer, config, {{"import", import_info}}, Json::object(), options);
  return report;
}

Json ExportReport::to_json() const {
  return {{"checkpoint", checkpoint}, {"path", path}, {"tensors", tensors}, {"bytes", bytes}, {"metadata", metadata}};
}

ExportReport export_safetensors(const std::string& checkpoint, const std::string& out) {
  const Checkpoint c = load_checkpoint(checkpoint);
  ExportReport r;
  r.checkpoint = c.dir;
  r.path = out;
  r.tensors = static_cast<int64_t>(c.model.size());
  r.metadata = {{"format", "pt"},
                {"traindx.version", traindx_version()},
                {"traindx.step", std::to_string(c.step())},
                {"traindx.config_hash", hash_bytes(c.manifest.at("config_toml").get<std::string>())},
                {"traindx.manifest_hash", c.manifest.value("manifest_hash", "")},
                {"traindx.dtype", c.manifest.value("model", Json::object()).value("dtype", "")}};
  const fs::path parent = fs::path(out).parent_path();
  std::error_code ec;
  if (!parent.empty()) fs::create_directories(parent, ec);
  TRAINDX_CHECK(!ec, IoError, "cannot create directory '{}' for {}: {}", parent.string(), out, ec.message());
  write_safetensors(out, c.model, r.metadata);
  r.bytes = static_cast<int64_t>(fs::file_size(out));
  return r;
}

}  // namespace traindx
