#include "traindx/checkpoint/checkpoint.h"

#include <ATen/CPUGeneratorImpl.h>
#include <fcntl.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <mutex>

#include "traindx/checkpoint/tensor_convert.h"
#include "traindx/core/environment.h"
#include "traindx/core/error.h"
#include "traindx/core/text.h"
#include "traindx/store/run_store.h"

namespace traindx {
namespace fs = std::filesystem;
namespace {

constexpr const char* kFormat = "traindx-checkpoint";
constexpr int kFormatVersion = 1;
const char* const kTensorFiles[] = {"model.safetensors", "optimizer.safetensors", "rng.safetensors",
                                    "probe.safetensors"};

void fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  TRAINDX_CHECK(fd >= 0, IoError, "cannot open '{}' to sync it: {}", path, std::strerror(errno));
  const int rc = ::fsync(fd);
  ::close(fd);
  TRAINDX_CHECK(rc == 0, IoError, "cannot sync '{}': {}", path, std::strerror(errno));
}

// The manifest hash covers the canonical dump of the manifest without its own hash field.
std::string manifest_hash(Json manifest) {
  manifest.erase("manifest_hash");
  return hash_bytes(manifest.dump());
}

Json hashes_of(const std::vector<NamedTensor>& tensors) {
  Json out = Json::object();
  for (const auto& [name, t] : tensors) out[name] = hash_tensor(t);
  return out;
}

// The golden probe: the first examples of the validation split (test when there is none), raw and preprocessed.
struct Probe {
  RawData raw;
  torch::Tensor inputs;
  std::string split;
};

Probe make_probe(const PreparedData& data, int64_t size) {
  Probe p;
  const RawData* raw = &data.raw.val;
  p.split = "val";
  if (raw->size() == 0) {
    raw = &data.raw.test;
    p.split = "test";
  }
  if (raw->size() == 0) {
    raw = &data.raw.train;
    p.split = "train";
  }
  std::vector<int64_t> idx;
  for (int64_t i = 0; i < std::min(size, raw->size()); ++i) idx.push_back(i);
  p.raw = raw->select(idx);
  p.inputs = data.pipeline.transform(p.raw);
  return p;
}

Json trainer_scalars(Trainer& t) {
  return {{"step", t.step()},
          {"batcher", t.batcher().state().to_json()},
          {"early_stopping", t.early_stopping().to_json()},
          {"schedule",
           {{"name", t.schedule().options().name},
            {"base_lr", t.schedule().base_lr()},
            {"total_steps", t.schedule().total_steps()}}}};
}

void retain(const std::string& root, int64_t keep_last, const std::string& keep_best) {
  std::vector<std::pair<int64_t, std::string>> dirs;
  for (const auto& e : fs::directory_iterator(root)) {
    const std::string name = e.path().filename().string();
    if (e.is_directory() && name.rfind("step-", 0) == 0 && name.find(".tmp") == std::string::npos)
      dirs.emplace_back(std::stoll(name.substr(5)), name);
  }
  std::sort(dirs.begin(), dirs.end());
  if (static_cast<int64_t>(dirs.size()) <= keep_last) return;
  for (size_t i = 0; i + static_cast<size_t>(keep_last) < dirs.size(); ++i) {
    if (dirs[i].second == keep_best) continue;
    std::error_code ec;
    fs::remove_all(fs::path(root) / dirs[i].second, ec);
  }
}

std::string shape_text(const torch::Tensor& t) { return fmt::format("[{}]", fmt::join(t.sizes().vec(), ", ")); }

}  // namespace

Json table_to_json(const Table& t) {
  Json cols = Json::array();
  for (const auto& c : t.columns) {
    Json col = {{"name", c.name}, {"categorical", c.categorical}};
    if (c.categorical) {
      col["text"] = c.text;
    } else {
      Json nums = Json::array();
      for (double v : c.numbers) nums.push_back(std::isnan(v) ? Json() : Json(v));
      col["numbers"] = nums;
    }
    cols.push_back(col);
  }
  return {{"rows", t.rows}, {"columns", cols}};
}

Table table_from_json(const Json& j) {
  Table t;
  t.rows = j.at("rows").get<int64_t>();
  for (const auto& c : j.at("columns")) {
    Column col;
    col.name = c.at("name").get<std::string>();
    col.categorical = c.at("categorical").get<bool>();
    if (col.categorical) {
      col.text = c.at("text").get<std::vector<std::string>>();
    } else {
      for (const auto& v : c.at("numbers")) col.numbers.push_back(v.is_null() ? NAN : v.get<double>());
    }
    t.columns.push_back(std::move(col));
  }
  return t;
}

CheckpointOptions CheckpointOptions::from_config(const Config& c) {
  CheckpointOptions o;
  o.every_steps = c.get_int("checkpoint.every_steps");
  o.keep_last = c.get_int("checkpoint.keep_last");
  o.at_end = c.get_bool("checkpoint.at_end");
  o.keep_best_metric = c.get_string("checkpoint.keep_best");
  o.probe_size = c.get_int("checkpoint.probe_size");
  return o;
}

std::string checkpoint_dir_name(int64_t step) { return fmt::format("step-{:08d}", step); }

torch::Tensor cpu_rng_state() {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
}

void set_cpu_rng_state(const torch::Tensor& state) {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  try {
    gen.set_state(state);
  } catch (const c10::Error& e) {
    TRAINDX_FAIL(CheckpointError, "the stored CPU RNG state does not fit this LibTorch: {}",
                 std::string(e.what_without_backtrace()).substr(0, 200));
  }
}

std::vector<NamedTensor> optimizer_state_tensors(torch::optim::Optimizer& optimizer,
                                                 const std::vector<NamedTensor>& named_parameters, Json& scalars) {
  using namespace torch::optim;
  std::vector<NamedTensor> out;
  scalars = Json::object();
  auto& state = optimizer.state();
  for (const auto& [name, p] : named_parameters) {
    auto it = state.find(c10::guts::to_string(p.unsafeGetTensorImpl()));
    if (it == state.end()) continue;  // no step taken for this parameter yet
    OptimizerParamState* s = it->second.get();
    auto add = [&](const char* slot, const torch::Tensor& t) {
      if (t.defined()) out.emplace_back(name + "/" + slot, t.detach().cpu().contiguous());
    };
    if (auto* sgd = dynamic_cast<SGDParamState*>(s)) {
      add("momentum_buffer", sgd->momentum_buffer());
    } else if (auto* adam = dynamic_cast<AdamParamState*>(s)) {
      scalars[name] = {{"step", adam->step()}};
      add("exp_avg", adam->exp_avg());
      add("exp_avg_sq", adam->exp_avg_sq());
      add("max_exp_avg_sq", adam->max_exp_avg_sq());
    } else if (auto* adamw = dynamic_cast<AdamWParamState*>(s)) {
      scalars[name] = {{"step", adamw->step()}};
      add("exp_avg", adamw->exp_avg());
      add("exp_avg_sq", adamw->exp_avg_sq());
      add("max_exp_avg_sq", adamw->max_exp_avg_sq());
    } else if (auto* rms = dynamic_cast<RMSpropParamState*>(s)) {
      scalars[name] = {{"step", rms->step()}};
      add("square_avg", rms->square_avg());
      add("momentum_buffer", rms->momentum_buffer());
      add("grad_avg", rms->grad_avg());
    } else if (auto* ada = dynamic_cast<AdagradParamState*>(s)) {
      scalars[name] = {{"step", ada->step()}};
      add("sum", ada->sum());
    } else {
      TRAINDX_FAIL(CheckpointError, "optimizer state of parameter {} has a type traindx cannot save", name);
    }
  }
  return out;
}

void load_optimizer_state(torch::optim::Optimizer& optimizer, const std::vector<NamedTensor>& named_parameters,
                          const std::vector<NamedTensor>& tensors, const Json& scalars) {
  using namespace torch::optim;
  std::map<std::string, std::map<std::string, torch::Tensor>> slots;
  for (const auto& [key, t] : tensors) {
    const auto slash = key.rfind('/');
    TRAINDX_CHECK(slash != std::string::npos, CheckpointError,
                  "optimizer.safetensors: tensor '{}' is not named <parameter>/<slot>", key);
    slots[key.substr(0, slash)][key.substr(slash + 1)] = t;
  }
  std::set<std::string> known;
  for (const auto& [name, p] : named_parameters) known.insert(name);
  for (const auto& [name, s] : slots)
    TRAINDX_CHECK(known.count(name), CheckpointError,
                  "optimizer.safetensors has state for parameter '{}', which the model does not have", name);

  auto& state = optimizer.state();
  state.clear();
  const bool is_sgd = dynamic_cast<SGD*>(&optimizer) != nullptr;
  const bool is_adam = dynamic_cast<Adam*>(&optimizer) != nullptr;
  const bool is_adamw = dynamic_cast<AdamW*>(&optimizer) != nullptr;
  const bool is_rms = dynamic_cast<RMSprop*>(&optimizer) != nullptr;
  const bool is_adagrad = dynamic_cast<Adagrad*>(&optimizer) != nullptr;
  for (const auto& [name, p] : named_parameters) {
    const std::string key = c10::guts::to_string(p.unsafeGetTensorImpl());
    auto sit = slots.find(name);
    const bool has_scalars = scalars.contains(name);
    auto get = [&](const char* slot) -> torch::Tensor {
      if (sit == slots.end()) return {};
      auto t = sit->second.find(slot);
      if (t == sit->second.end()) return {};
      TRAINDX_CHECK(t->second.sizes() == p.sizes(), CheckpointError,
                    "optimizer slot {}/{} has shape {} but the parameter has {}", name, slot, shape_text(t->second),
                    shape_text(p));
      return t->second.to(p.device(), p.scalar_type()).clone();
    };
    const int64_t step = has_scalars ? scalars[name].value("step", int64_t{0}) : 0;
    if (sit == slots.end() && !has_scalars) continue;
    if (is_sgd) {
      auto s = std::make_unique<SGDParamState>();
      s->momentum_buffer(get("momentum_buffer"));
      state[key] = std::move(s);
    } else if (is_adam) {
      auto s = std::make_unique<AdamParamState>();
      s->step(step);
      s->exp_avg(get("exp_avg"));
      s->exp_avg_sq(get("exp_avg_sq"));
      s->max_exp_avg_sq(get("max_exp_avg_sq"));
      state[key] = std::move(s);
    } else if (is_adamw) {
      auto s = std::make_unique<AdamWParamState>();
      s->step(step);
      s->exp_avg(get("exp_avg"));
      s->exp_avg_sq(get("exp_avg_sq"));
      s->max_exp_avg_sq(get("max_exp_avg_sq"));
      state[key] = std::move(s);
    } else if (is_rms) {
      auto s = std::make_unique<RMSpropParamState>();
      s->step(step);
      s->square_avg(get("square_avg"));
      s->momentum_buffer(get("momentum_buffer"));
      s->grad_avg(get("grad_avg"));
      state[key] = std::move(s);
    } else if (is_adagrad) {
      auto s = std::make_unique<AdagradParamState>();
      s->step(step);
      s->sum(get("sum"));
      state[key] = std::move(s);
    } else {
      TRAINDX_FAIL(CheckpointError, "traindx cannot restore the state of this optimizer type");
    }
  }
}

std::string save_checkpoint(const std::string& root, Trainer& trainer, const Config& config,
                            const std::map<std::string, Json>& extra, const Json& metrics,
                            const CheckpointOptions& options) {
  std::error_code ec;
  fs::create_directories(root, ec);
  TRAINDX_CHECK(!ec, IoError, "cannot create checkpoint directory '{}': {}", root, ec.message());
  const int64_t step = trainer.step();
  const std::string name = checkpoint_dir_name(step);
  const std::string final_dir = root + "/" + name;
  const std::string tmp_dir = fmt::format("{}/.{}.tmp-{}", root, name, ::getpid());
  fs::remove_all(tmp_dir, ec);
  fs::create_directories(tmp_dir, ec);
  TRAINDX_CHECK(!ec, IoError, "cannot create '{}': {}", tmp_dir, ec.message());

  Model& model = trainer.model();
  const auto params = model.named_parameters();
  std::vector<NamedTensor> model_tensors = params;
  for (const auto& b : model.named_buffers()) model_tensors.push_back(b);
  for (auto& [n, t] : model_tensors) t = t.detach().cpu().contiguous();

  Json optimizer_scalars;
  const auto optimizer_tensors = optimizer_state_tensors(trainer.optimizer(), params, optimizer_scalars);
  const std::vector<NamedTensor> rng = {{"cpu", cpu_rng_state()}};

  const Probe probe = make_probe(trainer.data(), options.probe_size);
  torch::Tensor outputs;
  {
    const bool was_training = model.is_training();
    model.train(false);
    torch::NoGradGuard no_grad;
    const auto& params0 = model.named_parameters();
    const auto dtype = params0.empty() ? torch::kFloat32 : params0.front().second.scalar_type();
    const auto device = params0.empty() ? torch::Device(torch::kCPU) : params0.front().second.device();
    outputs = model.forward(probe.inputs.to(device, dtype)).cpu().contiguous();
    model.train(was_training);
  }
  std::vector<NamedTensor> probe_tensors = {{"inputs", probe.inputs.contiguous()}, {"outputs", outputs}};
  if (probe.raw.is_image()) probe_tensors.emplace_back("raw_images", probe.raw.images.contiguous());
  if (probe.raw.targets.defined()) probe_tensors.emplace_back("targets", probe.raw.targets.contiguous());

  write_safetensors(tmp_dir + "/model.safetensors", model_tensors);
  write_safetensors(tmp_dir + "/optimizer.safetensors", optimizer_tensors);
  write_safetensors(tmp_dir + "/rng.safetensors", rng);
  write_safetensors(tmp_dir + "/probe.safetensors", probe_tensors);

  Json manifest;
  manifest["format"] = kFormat;
  manifest["version"] = kFormatVersion;
  manifest["step"] = step;
  manifest["created_at"] = utc_now_iso();
  manifest["config_toml"] = config.to_toml();
  manifest["environment"] = environment_fingerprint();
  Json layers = Json::array();
  for (const auto& row : model.summary())
    layers.push_back({{"name", row.name}, {"type", row.type}, {"output_shape", row.output_shape}});
  manifest["model"] = {{"layers", layers},
                       {"parameters", model.parameter_count()},
                       {"dtype", params.empty() ? "float32" : std::string(c10::toString(params.front().second.scalar_type()))},
                       {"training_mode_at_save", model.is_training()}};
  manifest["optimizer"] = {{"name", trainer.options().optimizer.name}, {"scalars", optimizer_scalars}};
  manifest["trainer"] = trainer_scalars(trainer);
  manifest["pipeline"] = trainer.data().pipeline.to_json();
  const auto& info = trainer.data().info;
  manifest["data_info"] = {{"source", info.source},
                           {"task", task_name(info.task)},
                           {"num_classes", info.num_classes},
                           {"class_names", info.class_names},
                           {"input_shape", info.input_shape},
                           {"feature_names", info.feature_names}};
  manifest["probe"] = {{"split", probe.split}, {"examples", probe.inputs.size(0)}, {"mode", "eval"}};
  if (!probe.raw.is_image()) manifest["probe"]["raw_table"] = table_to_json(probe.raw.table);
  manifest["metrics"] = metrics;
  manifest["extra"] = extra;
  manifest["tensors"] = {{"model.safetensors", hashes_of(model_tensors)},
                         {"optimizer.safetensors", hashes_of(optimizer_tensors)},
                         {"rng.safetensors", hashes_of(rng)},
                         {"probe.safetensors", hashes_of(probe_tensors)}};
  manifest["manifest_hash"] = manifest_hash(manifest);
  write_file_atomic(tmp_dir + "/manifest.json", manifest.dump(2) + "\n");
  fsync_path(tmp_dir, true);

  // Replace an older checkpoint of the same step (a resumed run re-saving) only after the new one is complete.
  if (fs::exists(final_dir)) {
    const std::string old = final_dir + ".old";
    fs::remove_all(old, ec);
    fs::rename(final_dir, old, ec);
    TRAINDX_CHECK(!ec, IoError, "cannot move aside '{}': {}", final_dir, ec.message());
    fs::rename(tmp_dir, final_dir, ec);
    fs::remove_all(old);
  } else {
    fs::rename(tmp_dir, final_dir, ec);
  }
  TRAINDX_CHECK(!ec, IoError, "cannot rename '{}' to '{}': {}", tmp_dir, final_dir, ec.message());
  fsync_path(root, true);
  write_file_atomic(root + "/latest", name + "\n");

  // Keep-best bookkeeping: best.json names the best checkpoint by the chosen metric.
  std::string best_name;
  if (!options.keep_best_metric.empty() && metrics.contains(options.keep_best_metric) &&
      metrics[options.keep_best_metric].is_number()) {
    const double value = metrics[options.keep_best_metric].get<double>();
    const bool lower = options.keep_best_metric.find("loss") != std::string::npos ||
                       options.keep_best_metric.find("mse") != std::string::npos ||
                       options.keep_best_metric.find("mae") != std::string::npos;
    Json best;
    const std::string best_path = root + "/best.json";
    if (fs::exists(best_path)) best = Json::parse(read_file(best_path), nullptr, false);
    const bool better = best.is_discarded() || !best.is_object() || !best.contains("value") ||
                        (lower ? value < best["value"].get<double>() : value > best["value"].get<double>());
    if (better) {
      best = {{"metric", options.keep_best_metric}, {"value", value}, {"checkpoint", name}};
      write_file_atomic(best_path, best.dump(2) + "\n");
    }
    best_name = best.value("checkpoint", "");
  } else if (fs::exists(root + "/best.json")) {
    const Json best = Json::parse(read_file(root + "/best.json"), nullptr, false);
    if (best.is_object()) best_name = best.value("checkpoint", "");
  }
  retain(root, options.keep_last, best_name);
  return final_dir;
}

std::string resolve_checkpoint(const std::string& path) {
  fs::path p(path);
  if (fs::exists(p / "manifest.json")) return p.string();
  for (const fs::path& root : {p, p / "checkpoints"}) {
    if (fs::exists(root / "latest")) {
      const std::string name = std::string(trim(read_file((root / "latest").string())));
      TRAINDX_CHECK(!name.empty() && name.find('/') == std::string::npos && name.find("..") == std::string::npos,
                    CheckpointError, "{}: `latest` holds '{}', which is not a checkpoint name", root.string(), name);
      TRAINDX_CHECK(fs::exists(root / name / "manifest.json"), CheckpointError,
                    "{}: `latest` names '{}', which has no manifest.json", root.string(), name);
      return (root / name).string();
    }
  }
  TRAINDX_FAIL(CheckpointError,
               "'{}' is not a checkpoint: expected a directory with manifest.json, a checkpoint root with `latest`, or "
               "a run directory with checkpoints/latest",
               path);
}

namespace {
std::vector<NamedTensor> read_checked(const std::string& dir, const char* file, const Json& hashes) {
  const std::string path = dir + "/" + file;
  LoadedTensors loaded = read_safetensors(path);
  TRAINDX_CHECK(hashes.is_object(), CheckpointError, "{}/manifest.json: no tensor hashes for {}", dir, file);
  std::set<std::string> seen;
  for (const auto& [name, t] : loaded.tensors) {
    TRAINDX_CHECK(hashes.contains(name), CheckpointError,
                  "{}: tensor '{}' is not listed in manifest.json (the file was changed after saving)", path, name);
    const std::string h = hash_tensor(t);
    TRAINDX_CHECK(h == hashes[name].get<std::string>(), CheckpointError,
                  "{}: tensor '{}' does not match its hash in manifest.json ({} vs {}): the file is corrupt or was "
                  "modified",
                  path, name, h, hashes[name].get<std::string>());
    seen.insert(name);
  }
  for (auto it = hashes.begin(); it != hashes.end(); ++it)
    TRAINDX_CHECK(seen.count(it.key()), CheckpointError, "{}: tensor '{}' listed in manifest.json is missing", path,
                  it.key());
  return loaded.tensors;
}
}  // namespace

Checkpoint load_checkpoint(const std::string& path) {
  Checkpoint c;
  c.dir = resolve_checkpoint(path);
  const std::string manifest_path = c.dir + "/manifest.json";
  const std::string text = read_file(manifest_path);
  c.manifest = Json::parse(text, nullptr, false);
  TRAINDX_CHECK(!c.manifest.is_discarded() && c.manifest.is_object(), CheckpointError,
                "{}: not valid JSON (truncated or corrupt)", manifest_path);
  TRAINDX_CHECK(c.manifest.value("format", "") == kFormat, CheckpointError, "{}: not a traindx checkpoint manifest",
                manifest_path);
  TRAINDX_CHECK(c.manifest.value("version", 0) <= kFormatVersion, CheckpointError,
                "{}: checkpoint format version {} is newer than this traindx reads ({}); upgrade traindx",
                manifest_path, c.manifest.value("version", 0), kFormatVersion);
  TRAINDX_CHECK(c.manifest.contains("manifest_hash") && c.manifest["manifest_hash"].is_string(), CheckpointError,
                "{}: manifest_hash missing", manifest_path);
  TRAINDX_CHECK(manifest_hash(c.manifest) == c.manifest["manifest_hash"].get<std::string>(), CheckpointError,
                "{}: manifest_hash does not match the manifest: the file is corrupt or was edited", manifest_path);
  TRAINDX_CHECK(c.manifest.contains("tensors") && c.manifest["tensors"].is_object(), CheckpointError,
                "{}: no tensor table", manifest_path);
  const Json& t = c.manifest["tensors"];
  for (const char* f : kTensorFiles)
    TRAINDX_CHECK(t.contains(f), CheckpointError, "{}: manifest lists no {}", manifest_path, f);
  c.model = read_checked(c.dir, "model.safetensors", t["model.safetensors"]);
  c.optimizer = read_checked(c.dir, "optimizer.safetensors", t["optimizer.safetensors"]);
  c.rng = read_checked(c.dir, "rng.safetensors", t["rng.safetensors"]);
  c.probe = read_checked(c.dir, "probe.safetensors", t["probe.safetensors"]);
  return c;
}

Config Checkpoint::config() const {
  return Config::from_string(manifest.at("config_toml").get<std::string>(), dir + "/manifest.json:config_toml");
}

Pipeline Checkpoint::pipeline() const { return Pipeline::from_json(manifest.at("pipeline")); }

int64_t Checkpoint::step() const { return manifest.value("step", int64_t{0}); }

torch::Tensor Checkpoint::probe_tensor(const std::string& name) const {
  for (const auto& [n, t] : probe)
    if (n == name) return t;
  return {};
}

Json KeyReport::to_json() const {
  return {{"missing", missing}, {"unexpected", unexpected}, {"reshaped", reshaped}, {"retyped", retyped}};
}

KeyReport load_model_tensors(Model& model, const std::vector<NamedTensor>& tensors, bool strict) {
  KeyReport report;
  std::map<std::string, torch::Tensor> by_name(tensors.begin(), tensors.end());
  std::vector<NamedTensor> targets = model.named_parameters();
  for (const auto& b : model.named_buffers()) targets.push_back(b);
  std::set<std::string> used;
  std::vector<std::pair<torch::Tensor, torch::Tensor>> copies;
  for (auto& [name, target] : targets) {
    auto it = by_name.find(name);
    if (it == by_name.end()) {
      report.missing.push_back(name);
      continue;
    }
    used.insert(name);
    if (it->second.sizes() != target.sizes()) {
      report.reshaped.push_back(
          fmt::format("{}: checkpoint {} vs model {}", name, shape_text(it->second), shape_text(target)));
      continue;
    }
    if (it->second.scalar_type() != target.scalar_type())
      report.retyped.push_back(fmt::format("{}: checkpoint {} vs model {}", name, c10::toString(it->second.scalar_type()),
                                           c10::toString(target.scalar_type())));
    copies.emplace_back(target, it->second);
  }
  for (const auto& [name, t] : tensors)
    if (!used.count(name)) report.unexpected.push_back(name);
  if (strict) {
    TRAINDX_CHECK(report.missing.empty() && report.unexpected.empty() && report.reshaped.empty(), CheckpointError,
                  "checkpoint tensors do not match the model: missing {}, unexpected {}, reshaped {}",
                  fmt::join(report.missing, ", "), fmt::join(report.unexpected, ", "),
                  fmt::join(report.reshaped, "; "));
  }
  torch::NoGradGuard no_grad;
  for (auto& [target, source] : copies) target.copy_(source.to(target.device(), target.scalar_type()));
  return report;
}

std::map<std::string, Json> restore_trainer(Trainer& trainer, const Checkpoint& c) {
  load_model_tensors(trainer.model(), c.model, /*strict=*/true);
  const Json& opt = c.manifest.at("optimizer");
  TRAINDX_CHECK(opt.value("name", "") == trainer.options().optimizer.name, CheckpointError,
                "{}: saved with optimizer '{}' but the trainer uses '{}'", c.dir, opt.value("name", ""),
                trainer.options().optimizer.name);
  load_optimizer_state(trainer.optimizer(), trainer.model().named_parameters(), c.optimizer,
                       opt.value("scalars", Json::object()));
  for (const auto& [name, t] : c.rng)
    if (name == "cpu") set_cpu_rng_state(t);
  const Json& tr = c.manifest.at("trainer");
  trainer.set_step(tr.at("step").get<int64_t>());
  trainer.batcher().restore(BatcherState::from_json(tr.at("batcher")));
  trainer.early_stopping().load_json(tr.at("early_stopping"));
  TRAINDX_CHECK(tr.at("schedule").value("total_steps", int64_t{0}) == trainer.schedule().total_steps(), CheckpointError,
                "{}: the schedule was planned for {} steps but this config gives {}; resume with the same "
                "train.epochs / train.max_steps",
                c.dir, tr.at("schedule").value("total_steps", int64_t{0}), trainer.schedule().total_steps());
  std::map<std::string, Json> extra;
  if (c.manifest.contains("extra") && c.manifest["extra"].is_object())
    for (auto it = c.manifest["extra"].begin(); it != c.manifest["extra"].end(); ++it) extra[it.key()] = it.value();
  return extra;
}

CheckpointCallback::CheckpointCallback(std::string root, Trainer& trainer, Config config, CheckpointOptions options,
                                       std::function<std::map<std::string, Json>()> extra_state)
    : root_(std::move(root)),
      trainer_(trainer),
      config_(std::move(config)),
      options_(std::move(options)),
      extra_state_(std::move(extra_state)) {}

void CheckpointCallback::on_step_end(const StepContext&) {}

void CheckpointCallback::on_evaluation(int64_t, const Json& metrics) { last_metrics_ = metrics; }

void CheckpointCallback::on_iteration_end(int64_t steps_done) {
  if (options_.every_steps > 0 && steps_done % options_.every_steps == 0) save_now();
}

void CheckpointCallback::on_train_end(int64_t steps, const std::string& status) {
  if (options_.at_end && last_saved_step_ != trainer_.step()) save_now();
}

std::string CheckpointCallback::save_now() {
  last_saved_ = save_checkpoint(root_, trainer_, config_, extra_state_ ? extra_state_() : std::map<std::string, Json>{},
                                last_metrics_, options_);
  last_saved_step_ = trainer_.step();
  return last_saved_;
}

}  // namespace traindx
