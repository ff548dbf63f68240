#include "traindx/checkpoint/checkpoint.h"

#include <ATen/Parallel.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <future>
#include <memory>
#include <numeric>
#include <optional>
#include <string_view>
#include <thread>

#include "traindx/checkpoint/manifest.h"
#include "traindx/checkpoint/tensor_convert.h"
#include "traindx/core/environment.h"
#include "traindx/core/error.h"
#include "traindx/core/text.h"
#include "traindx/store/run_store.h"

namespace traindx {
namespace fs = std::filesystem;
namespace {


void fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  TRAINDX_CHECK(fd >= 0, IoError, "cannot open '{}' to sync it: {}", path, std::strerror(errno));
  const int rc = ::fsync(fd);
  ::close(fd);
  TRAINDX_CHECK(rc == 0, IoError, "cannot sync '{}': {}", path, std::strerror(errno));
}

// Syncs files and directories concurrently. Each is still synced, but concurrent syncs share the journal commit
// and the device cache flush that dominate their cost: one by one, the five files of a small checkpoint paid five
// flushes (~4 ms each on a busy virtual disk), together about one. Rethrows the first IoError once all are done.
void fsync_paths(const std::vector<std::pair<std::string, bool>>& paths) {
  std::vector<std::future<void>> pending;
  pending.reserve(paths.size());
  for (const auto& [path, directory] : paths)
    pending.push_back(std::async(std::launch::async, [&path = path, directory = directory] {
      fsync_path(path, directory);
    }));
  for (auto& f : pending) f.get();
}

// Writes a new file without syncing it and without a temporary name: inside a checkpoint's temporary directory a
// half-written file is harmless, and save_checkpoint syncs all files together before the directory is renamed into
// place. write_file_atomic would add a rename and a directory sync per file, which dominate small checkpoints.
// Writeback starts right away (sync_file_range), so the disk works while the caller computes the next file.
void write_unsynced(const std::string& path, const std::vector<std::string_view>& pieces) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  TRAINDX_CHECK(fd >= 0, IoError, "cannot create '{}': {}", path, std::strerror(errno));
  if (const int err = write_pieces(fd, pieces); err != 0) {
    ::close(fd);
    TRAINDX_FAIL(IoError, "cannot write '{}': {}", path, std::strerror(err));
  }
#ifdef __linux__
  // Start writeback now without waiting for it; the fsync later then mostly finds the data on its way.
  ::sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
#endif
  TRAINDX_CHECK(::close(fd) == 0, IoError, "cannot write '{}': {}", path, std::strerror(errno));
}

// The LibTorch type of a safetensors dtype name, from tensor_convert's table (safetensors_dtype).
torch::ScalarType scalar_type_named(const std::string& dtype, const std::string& path) {
  for (const auto type : {torch::kFloat64, torch::kFloat32, torch::kFloat16, torch::kBFloat16, torch::kInt64,
                          torch::kInt32, torch::kInt16, torch::kInt8, torch::kUInt8, torch::kBool})
    if (safetensors_dtype(type) == dtype) return type;
  TRAINDX_FAIL(CheckpointError, "{}: unsupported dtype '{}'", path, dtype);
}

// An uninitialised buffer for a file image. Large ones are anonymous mappings that the kernel may back with
// transparent huge pages (Debian's default THP mode is "madvise"): reading 140 MB into small pages costs ~35k page
// faults, a third of the whole load; huge pages make that ~70. The deleter unmaps.
std::shared_ptr<char> file_buffer(size_t size) {
  constexpr size_t kHugePage = size_t{2} << 20;
  // Below a few huge pages, zeroing whole 2 MB pages and unmapping cost more than the small page faults they save.
  if (size >= 8 * kHugePage) {
    const size_t length = size + kHugePage;  // room to start at a huge-page boundary
    void* base = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base != MAP_FAILED) {
      const auto address = reinterpret_cast<uintptr_t>(base);
      char* aligned = reinterpret_cast<char*>((address + kHugePage - 1) / kHugePage * kHugePage);
      ::madvise(aligned, size, MADV_HUGEPAGE);  // a refusal only costs speed
      return std::shared_ptr<char>(aligned, [base, length](char*) { ::munmap(base, length); });
    }
  }
  return std::shared_ptr<char>(new char[std::max<size_t>(size, 1)], std::default_delete<char[]>());
}

// Reads a checkpoint's tensor file with one copy (kernel to user space, into an uninitialised buffer): the tensors
// are views of the file image, which they keep alive together. read_safetensors would copy each tensor out of the
// image once more; for large checkpoints that copy and the page faults of a second buffer cost as much as the read.
// The header is read and checked first; the data section then arrives in chunks, each hashed right after it is
// read, while it is still in cache (one pass over memory instead of two). `hashes` gets every tensor's
// hash_tensor() value. A tensor whose offset is not a multiple of its element size (legal, but never written by
// traindx or the reference writer) is copied instead, so no kernel sees a misaligned pointer.
std::vector<NamedTensor> read_tensor_file(const std::string& path, std::map<std::string, std::string>& hashes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  TRAINDX_CHECK(fd >= 0, IoError, "cannot open '{}': {}", path, std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  TRAINDX_CHECK(::fstat(fd, &st) == 0, IoError, "cannot read '{}': {}", path, std::strerror(errno));
  const auto size = static_cast<size_t>(st.st_size);
  const std::shared_ptr<char> image = file_buffer(size);
  size_t done = 0;
  auto read_to = [&](size_t end) {
    while (done < end) {
      const ssize_t n = ::read(fd, image.get() + done, end - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;  // truncated under us: reported below
      done += static_cast<size_t>(n);
    }
    return done == end;
  };
  // A file that ends early (or shrank after fstat) is reported by the parser, from the bytes that were there.
  auto fail_short = [&]() -> std::vector<NamedTensor> {
    (void)parse_safetensors_index(std::string_view(image.get(), done), path);
    TRAINDX_FAIL(CheckpointError, "{}: the file shrank to {} bytes while it was read", path, done);
  };
  if (!read_to(std::min<size_t>(size, 8)) || size < 8) return fail_short();
  const uint64_t header_size = safetensors_header_length(std::string_view(image.get(), 8));
  if (header_size <= size - 8 && !read_to(8 + static_cast<size_t>(header_size))) return fail_short();
  const SafetensorsIndex index = parse_safetensors_layout(std::string_view(image.get(), size), path);
  std::vector<std::unique_ptr<TensorHasher>> hashers;
  hashers.reserve(index.entries.size());
  for (const auto& e : index.entries) hashers.push_back(std::make_unique<TensorHasher>(e.dtype, e.shape));
  constexpr size_t kChunk = size_t{256} << 10;
  size_t next = 0;  // entries are in data order and cover the data section contiguously
  for (size_t pos = done; pos < size;) {
    const size_t end = std::min(size, pos + kChunk);
    if (!read_to(end)) return fail_short();
    while (next < index.entries.size() && pos < end) {
      const auto& e = index.entries[next];
      const size_t stop = std::min(end, e.offset + e.size);
      hashers[next]->update(image.get() + pos, stop - pos);
      pos = stop;
      if (pos == e.offset + e.size) ++next;
    }
  }
  const std::string_view bytes(image.get(), size);
  check_safetensors_values(index, bytes, path);
  std::vector<NamedTensor> out;
  out.reserve(index.entries.size());
  for (size_t i = 0; i < index.entries.size(); ++i) {
    const auto& e = index.entries[i];
    hashes[e.name] = hashers[i]->hex_digest();
    const auto options = torch::TensorOptions().dtype(scalar_type_named(e.dtype, path));
    const size_t element = *dtype_element_size(e.dtype);
    torch::Tensor t;
    if (e.size > 0 && e.offset % element == 0) {
      t = torch::from_blob(image.get() + e.offset, e.shape, [image](void*) {}, options);
    } else {
      t = torch::empty(e.shape, options);
      if (e.size > 0) std::memcpy(t.data_ptr(), image.get() + e.offset, e.size);
    }
    out.emplace_back(e.name, std::move(t));
  }
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
    // Out of sight first: a kill during remove_all would otherwise leave a visible, half-deleted step directory
    // that looks like a checkpoint. A leftover hidden one is removed by a later save (remove_stale_temporaries).
    std::error_code ec;
    const fs::path doomed = fs::path(root) / fmt::format(".{}.del-{}", dirs[i].second, ::getpid());
    fs::rename(fs::path(root) / dirs[i].second, doomed, ec);
    fs::remove_all(ec ? fs::path(root) / dirs[i].second : doomed, ec);
  }
}

// The name `latest` holds, or "" when there is none yet.
std::string current_latest(const std::string& root) {
  std::error_code ec;
  if (!fs::exists(root + "/latest", ec)) return "";
  return trim(read_file(root + "/latest"));
}

// Removes what writers killed mid-save left in `root`: checkpoint directories being written
// (".step-N.tmp-PID"), set aside (".step-N.old-PID") or being deleted by retention (".step-N.del-PID"), and
// write_file_atomic's temporary files
// (".latest.tmp-PID-K", ".best.json.tmp-PID-K"). Only entries of processes that no longer exist are removed, and
// never the one `latest` names (a crash during a re-save leaves `latest` naming a complete ".step-N.*" directory).
// PIDs are only meaningful on this host: two hosts writing one shared root is not supported anyway.
void remove_stale_temporaries(const std::string& root) {
  const std::string keep = current_latest(root);
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name[0] != '.' || name == keep) continue;
    size_t at = std::string::npos;
    for (const char* marker : {".tmp-", ".old-", ".del-"}) {
      const auto m = name.rfind(marker);
      if (m != std::string::npos && (at == std::string::npos || m > at)) at = m;
    }
    const bool ours = name.rfind(".step-", 0) == 0 || name.rfind(".latest.tmp-", 0) == 0 ||
                      name.rfind(".best.json.tmp-", 0) == 0;
    if (!ours || at == std::string::npos) continue;
    const std::string digits = name.substr(at + 5, name.find('-', at + 5) - (at + 5));
    if (digits.empty() || digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) continue;
    const auto pid = static_cast<pid_t>(std::stol(digits));
    // ESRCH: no such process. EPERM means it exists under another user: leave its files alone.
    if (pid == ::getpid() || ::kill(pid, 0) == 0 || errno != ESRCH) continue;
    std::error_code rm;
    fs::remove_all(e.path(), rm);
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
  o.background = c.get_bool("checkpoint.background");
  return o;
}

std::string checkpoint_dir_name(int64_t step) { return fmt::format("step-{:08d}", step); }

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

namespace {

// One checkpoint's content, taken at one moment of training: the tensors (views of the live state for a save in
// the training thread, copies for a background save), the hashes already known (a background snapshot hashes
// while it copies), and the manifest fields that describe the trainer at that moment (metrics among them).
struct Snapshot {
  int64_t step = 0;
  std::vector<NamedTensor> model;  // parameters, then buffers
  std::vector<NamedTensor> optimizer;
  std::vector<NamedTensor> rng;
  std::map<std::string, std::string> known_hashes;  // "<file>/<tensor>"
  Json manifest;                                    // all but environment, tensors and manifest_hash
};

// Parameters, then buffers: the tensors of model.safetensors, in the model's order.
std::vector<NamedTensor> model_tensors(const Model& model) {
  std::vector<NamedTensor> out = model.named_parameters();
  for (const auto& b : model.named_buffers()) out.push_back(b);
  return out;
}

// The live state as views (no copy) and its description.
Snapshot take_snapshot(Trainer& trainer, const Config& config, const std::map<std::string, Json>& extra,
                       const Json& metrics, const Probe& probe) {
  Snapshot s;
  s.step = trainer.step();
  Model& model = trainer.model();
  const auto params = model.named_parameters();
  s.model = model_tensors(model);
  for (auto& [n, t] : s.model) t = t.detach();  // write_snapshot brings them to the CPU, if they are not there
  Json optimizer_scalars;
  s.optimizer = optimizer_state_tensors(trainer.optimizer(), params, optimizer_scalars);
  s.rng = {{"cpu", cpu_rng_state()}};

  Json& m = s.manifest;
  m["format"] = kCheckpointFormat;
  m["version"] = kCheckpointFormatVersion;
  m["step"] = s.step;
  m["created_at"] = utc_now_iso();
  m["config_toml"] = config.to_toml();
  Json layers = Json::array();
  for (const auto& row : model.summary())
    layers.push_back({{"name", row.name}, {"type", row.type}, {"output_shape", row.output_shape}});
  m["model"] = {{"layers", layers},
                {"parameters", model.parameter_count()},
                {"dtype", params.empty() ? "float32" : torch_dtype_name(params.front().second.scalar_type())},
                {"training_mode_at_save", model.is_training()}};
  m["optimizer"] = {{"name", trainer.options().optimizer.name}, {"scalars", optimizer_scalars}};
  m["trainer"] = trainer_scalars(trainer);
  m["pipeline"] = trainer.data().pipeline.to_json();
  const auto& info = trainer.data().info;
  m["data_info"] = {{"source", info.source},
                    {"task", task_name(info.task)},
                    {"num_classes", info.num_classes},
                    {"class_names", info.class_names},
                    {"input_shape", info.input_shape},
                    {"feature_names", info.feature_names}};
  m["probe"] = {{"split", probe.split}, {"examples", probe.inputs.size(0)}, {"mode", "eval"}};
  if (!probe.raw.is_image()) m["probe"]["raw_table"] = table_to_json(probe.raw.table);
  m["metrics"] = metrics;
  m["extra"] = extra;
  return s;
}

// Copies `from` into `to` (same shape and dtype) and returns the tensor's hash (hash_tensor's), hashing each chunk
// right after copying it, while it is still in cache: one pass over memory instead of two. Tensors that are not
// contiguous CPU memory are copied by LibTorch and hashed later, when they are written (nullopt).
std::optional<std::string> copy_and_hash(const torch::Tensor& from, const torch::Tensor& to) {
  torch::NoGradGuard no_grad;
  if (!from.device().is_cpu() || !to.device().is_cpu() || !from.is_contiguous() || !to.is_contiguous()) {
    to.copy_(from);
    return std::nullopt;
  }
  const auto* source = static_cast<const char*>(from.data_ptr());
  auto* target = static_cast<char*>(to.data_ptr());
  const size_t bytes = static_cast<size_t>(from.numel()) * from.element_size();
  TensorHasher hasher(*safetensors_dtype(from.scalar_type()), from.sizes().vec());
  constexpr size_t kChunk = size_t{128} << 10;  // well inside L2
  for (size_t offset = 0; offset < bytes; offset += kChunk) {
    const size_t n = std::min(kChunk, bytes - offset);
    std::memcpy(target + offset, source + offset, n);
    hasher.update(target + offset, n);
  }
  return hasher.hex_digest();
}

// Runs the golden probe through `probe_model` in eval mode, writes the snapshot into a temporary directory, syncs
// it, renames it into place and points `latest` at it; then keep-best bookkeeping and retention. With
// `write_while_probing`, the state files are written and hashed on a second thread while this one runs the probe
// (both only read the parameters). Returns the checkpoint directory.
std::string write_snapshot(const std::string& root, Snapshot& s, Model& probe_model, const Probe& probe,
                           const CheckpointOptions& options, bool write_while_probing) {
  std::error_code ec;
  fs::create_directories(root, ec);
  TRAINDX_CHECK(!ec, IoError, "cannot create checkpoint directory '{}': {}", root, ec.message());
  const std::string name = checkpoint_dir_name(s.step);
  const std::string final_dir = root + "/" + name;
  const std::string tmp_name = fmt::format(".{}.tmp-{}", name, ::getpid());
  const std::string tmp_dir = root + "/" + tmp_name;
  remove_stale_temporaries(root);
  fs::remove_all(tmp_dir, ec);
  fs::create_directories(tmp_dir, ec);
  TRAINDX_CHECK(!ec, IoError, "cannot create '{}': {}", tmp_dir, ec.message());
  for (auto& [n, t] : s.model) t = t.detach().cpu().contiguous();  // a no-op for CPU tensors

  auto write_tensor_file = [&](const char* file, const std::vector<NamedTensor>& tensors) {
    const std::string path = tmp_dir + "/" + file;
    // Streamed from the tensors' memory: a joined file image cost two fresh buffers the size of the state
    // (their page faults were most of a large save).
    write_unsynced(path, safetensors_pieces(tensors, {}, path).views());
    Json hashes = Json::object();
    for (const auto& [tensor, t] : tensors) {
      const auto known = s.known_hashes.find(std::string(file) + "/" + tensor);
      hashes[tensor] = known != s.known_hashes.end() ? known->second : hash_tensor(t);
    }
    return hashes;
  };
  std::future<Json> state_hashes =
      std::async(write_while_probing ? std::launch::async : std::launch::deferred, [&] {
        return Json{{"model.safetensors", write_tensor_file("model.safetensors", s.model)},
                    {"optimizer.safetensors", write_tensor_file("optimizer.safetensors", s.optimizer)},
                    {"rng.safetensors", write_tensor_file("rng.safetensors", s.rng)}};
      });

  torch::Tensor outputs;
  {
    const bool was_training = probe_model.is_training();
    probe_model.train(false);
    torch::NoGradGuard no_grad;
    const auto& params = probe_model.named_parameters();
    const auto dtype = params.empty() ? torch::kFloat32 : params.front().second.scalar_type();
    const auto device = params.empty() ? torch::Device(torch::kCPU) : params.front().second.device();
    outputs = probe_model.forward(probe.inputs.to(device, dtype)).cpu().contiguous();
    probe_model.train(was_training);
  }
  std::vector<NamedTensor> probe_tensors = {{"inputs", probe.inputs.contiguous()}, {"outputs", outputs}};
  if (probe.raw.is_image()) probe_tensors.emplace_back("raw_images", probe.raw.images.contiguous());
  if (probe.raw.targets.defined()) probe_tensors.emplace_back("targets", probe.raw.targets.contiguous());
  Json tensor_hashes = state_hashes.get();
  tensor_hashes["probe.safetensors"] = write_tensor_file("probe.safetensors", probe_tensors);

  Json manifest = std::move(s.manifest);
  manifest["environment"] = environment_fingerprint();
  manifest["tensors"] = tensor_hashes;
  manifest["manifest_hash"] = checkpoint_manifest_hash(manifest);
  const std::string manifest_text = manifest.dump(2) + "\n";
  write_unsynced(tmp_dir + "/manifest.json", {manifest_text});
  // Every file's data and the directory's entries reach the disk before the directory is renamed into place.
  std::vector<std::pair<std::string, bool>> to_sync = {{tmp_dir + "/manifest.json", false}, {tmp_dir, true}};
  for (const char* file : kCheckpointTensorFiles) to_sync.emplace_back(tmp_dir + "/" + file, false);
  fsync_paths(to_sync);

  // Replace an older checkpoint of the same step (a resumed run re-saving) only after the new one is complete.
  // rename(2) cannot replace a non-empty directory, so the old one is moved aside first. When `latest` names it,
  // `latest` must not name the gap between the two renames: meanwhile it names a complete copy (the new
  // directory, then the old one).
  std::string old_dir;
  if (fs::exists(final_dir)) {
    const std::string old_name = fmt::format(".{}.old-{}", name, ::getpid());
    old_dir = root + "/" + old_name;
    fs::remove_all(old_dir, ec);
    const bool latest_names_it = current_latest(root) == name;
    if (latest_names_it) write_file_atomic(root + "/latest", tmp_name + "\n");
    fs::rename(final_dir, old_dir, ec);
    TRAINDX_CHECK(!ec, IoError, "cannot move aside '{}': {}", final_dir, ec.message());
    if (latest_names_it) write_file_atomic(root + "/latest", old_name + "\n");
  }
  fs::rename(tmp_dir, final_dir, ec);
  TRAINDX_CHECK(!ec, IoError, "cannot rename '{}' to '{}': {}", tmp_dir, final_dir, ec.message());
  // `latest` replaced atomically, and only once the rename above is durable: the root's sync (which makes the
  // rename durable) and the new `latest` content's sync happen together, then `latest` is renamed into place.
  const std::string latest_tmp = fmt::format("{}/.latest.tmp-{}", root, ::getpid());
  const std::string latest_text = name + "\n";
  write_unsynced(latest_tmp, {latest_text});
  fsync_paths({{root, true}, {latest_tmp, false}});
  fs::rename(latest_tmp, root + "/latest", ec);
  TRAINDX_CHECK(!ec, IoError, "cannot rename '{}' to '{}/latest': {}", latest_tmp, root, ec.message());
  fsync_path(root, true);
  if (!old_dir.empty()) fs::remove_all(old_dir, ec);

  // Keep-best bookkeeping: best.json names the best checkpoint by the chosen metric.
  const Json& metrics = manifest["metrics"];
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

// From this many bytes of state, the files are written on a second thread while the probe runs; below, a thread
// costs more than it saves.
constexpr int64_t kLargeState = int64_t{32} << 20;

int64_t tensor_bytes(const std::vector<NamedTensor>& tensors) {
  int64_t bytes = 0;
  for (const auto& [n, t] : tensors) bytes += t.numel() * static_cast<int64_t>(t.element_size());
  return bytes;
}

bool same_layout(const std::vector<NamedTensor>& a, const std::vector<NamedTensor>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].first != b[i].first || a[i].second.sizes() != b[i].second.sizes() ||
        a[i].second.scalar_type() != b[i].second.scalar_type() || a[i].second.device() != b[i].second.device())
      return false;
  return true;
}

}  // namespace

std::string save_checkpoint(const std::string& root, Trainer& trainer, const Config& config,
                            const std::map<std::string, Json>& extra, const Json& metrics,
                            const CheckpointOptions& options) {
  const Probe probe = make_probe(trainer.data(), options.probe_size);
  Snapshot s = take_snapshot(trainer, config, extra, metrics, probe);
  const bool large = tensor_bytes(s.model) + tensor_bytes(s.optimizer) >= kLargeState;
  return write_snapshot(root, s, trainer.model(), probe, options, large);
}

struct CheckpointWriter::State {
  std::string root;
  CheckpointOptions options;
  std::optional<Probe> probe;                        // the same examples every save
  std::shared_ptr<Model> shadow;                     // the model copy the background probe runs through
  bool cannot_clone = false;
  std::map<std::string, torch::Tensor> optimizer_copies;  // kept between saves: no fresh pages each time
  std::future<std::string> in_flight;
  std::string last_written;
};

CheckpointWriter::CheckpointWriter(std::string root, CheckpointOptions options) : state_(std::make_unique<State>()) {
  state_->root = std::move(root);
  state_->options = std::move(options);
}

CheckpointWriter::~CheckpointWriter() {
  try {
    wait();
  } catch (const std::exception& e) {
    fmt::print(stderr, "traindx: a background checkpoint save failed: {}\n", e.what());
  }
}

std::string CheckpointWriter::wait() {
  State& st = *state_;
  if (st.in_flight.valid()) st.last_written = st.in_flight.get();  // get() leaves the future invalid, also on throw
  return st.last_written;
}

std::string CheckpointWriter::save(Trainer& trainer, const Config& config, const std::map<std::string, Json>& extra,
                                   const Json& metrics) {
  wait();
  State& st = *state_;
  if (!st.probe) st.probe = make_probe(trainer.data(), st.options.probe_size);
  Snapshot s = take_snapshot(trainer, config, extra, metrics, *st.probe);
  if (!st.cannot_clone && (!st.shadow || !same_layout(model_tensors(*st.shadow), s.model))) {
    st.shadow = trainer.model().clone();
    st.cannot_clone = st.shadow == nullptr;
    if (st.shadow) st.shadow->train(false);  // it only ever runs the probe
  }
  const bool large = tensor_bytes(s.model) + tensor_bytes(s.optimizer) >= kLargeState;
  if (!st.shadow) {
    st.last_written = write_snapshot(st.root, s, trainer.model(), *st.probe, st.options, large);
    return st.last_written;
  }

  // The model's values go into the shadow model, which the probe then runs through; optimizer slots into kept
  // buffers. Training may change the live tensors as soon as this returns.
  std::vector<NamedTensor> copies = model_tensors(*st.shadow);
  for (size_t i = 0; i < copies.size(); ++i) {
    const auto& [name, live] = s.model[i];
    if (auto h = copy_and_hash(live, copies[i].second)) s.known_hashes["model.safetensors/" + name] = std::move(*h);
    s.model[i].second = copies[i].second.detach();
  }
  for (auto& [name, t] : s.optimizer) {
    torch::Tensor& copy = st.optimizer_copies[name];
    if (!copy.defined() || copy.sizes() != t.sizes() || copy.scalar_type() != t.scalar_type())
      copy = torch::empty(t.sizes(), t.options().device(torch::kCPU));
    if (auto h = copy_and_hash(t, copy)) s.known_hashes["optimizer.safetensors/" + name] = std::move(*h);
    t = copy;
  }
  const std::string dir = st.root + "/" + checkpoint_dir_name(s.step);
  st.in_flight = std::async(std::launch::async, [&st, large, s = std::move(s)]() mutable {
    // A new thread starts with OpenMP's default thread count; the probe must run as training does.
    at::init_num_threads();
    return write_snapshot(st.root, s, *st.shadow, *st.probe, st.options, large);
  });
  return dir;
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
// Jobs on LibTorch's inter-op thread pool, whose threads outlive them: for a small checkpoint, creating a thread
// per file cost more than reading it (the 5 MB CNN: ~0.6 ms with a thread per file, ~0.3 ms with two lanes on
// pooled threads). join() runs here every job no pool thread has started, so a busy pool, or a caller that is itself
// a pool thread, cannot deadlock; a job started after join() finds itself taken and touches nothing else.
class PooledJobs {
 public:
  explicit PooledJobs(std::vector<std::function<void()>> jobs) : shared_(std::make_shared<Shared>(std::move(jobs))) {
    for (size_t i = 0; i < shared_->jobs.size(); ++i) {
      futures_.push_back(shared_->done[i].get_future());
      at::launch([shared = shared_, i] {
        if (shared->taken[i].exchange(true)) return;
        try {
          shared->jobs[i]();
          shared->done[i].set_value();
        } catch (...) {
          shared->done[i].set_exception(std::current_exception());
        }
      });
    }
  }
  PooledJobs(const PooledJobs&) = delete;
  PooledJobs& operator=(const PooledJobs&) = delete;
  // The jobs reference the caller's locals: never leave one running.
  ~PooledJobs() {
    try {
      join();
    } catch (...) {
    }
  }
  /// Runs the jobs not started yet, waits for the others, rethrows the first failure.
  void join() {
    std::exception_ptr first;
    for (size_t i = 0; i < futures_.size(); ++i) {
      if (!futures_[i].valid()) continue;
      try {
        if (!shared_->taken[i].exchange(true)) {
          futures_[i] = {};
          shared_->jobs[i]();
        } else {
          futures_[i].get();
        }
      } catch (...) {
        if (!first) first = std::current_exception();
      }
    }
    if (first) std::rethrow_exception(first);
  }

 private:
  struct Shared {
    explicit Shared(std::vector<std::function<void()>> j) : jobs(std::move(j)), taken(jobs.size()), done(jobs.size()) {}
    std::vector<std::function<void()>> jobs;
    std::vector<std::atomic<bool>> taken;
    std::vector<std::promise<void>> done;
  };
  std::shared_ptr<Shared> shared_;
  std::vector<std::future<void>> futures_;
};

// A tensor file as read, with the hashes of what it holds (to compare with the manifest's).
struct TensorFile {
  std::vector<NamedTensor> tensors;
  std::map<std::string, std::string> hashes;
};

// `hashes` is the manifest's table for `file`, an object of hash strings (parse_checkpoint_manifest checked it).
std::vector<NamedTensor> checked(const std::string& dir, const char* file, TensorFile read, const Json& hashes) {
  const std::string path = dir + "/" + file;
  std::set<std::string> seen;
  for (const auto& [name, t] : read.tensors) {
    TRAINDX_CHECK(hashes.contains(name), CheckpointError,
                  "{}: tensor '{}' is not listed in manifest.json (the file was changed after saving)", path, name);
    const std::string& h = read.hashes.at(name);
    const std::string& expected = hashes[name].get_ref<const std::string&>();
    TRAINDX_CHECK(h == expected, CheckpointError,
                  "{}: tensor '{}' does not match its hash in manifest.json ({} vs {}): the file is corrupt or was "
                  "modified",
                  path, name, h, expected);
    seen.insert(name);
  }
  for (auto it = hashes.begin(); it != hashes.end(); ++it)
    TRAINDX_CHECK(seen.count(it.key()), CheckpointError, "{}: tensor '{}' listed in manifest.json is missing", path,
                  it.key());
  return std::move(read.tensors);
}
}  // namespace

Checkpoint load_checkpoint(const std::string& path, const std::function<void(const Checkpoint&)>& on_manifest) {
  Checkpoint c;
  c.dir = resolve_checkpoint(path);
  // The tensor files are read and hashed while the manifest is parsed and checked; their hashes are compared with
  // the manifest's once both are done. From 1 MB of state the files are spread over the cores, largest first to
  // the least loaded: helper threads take theirs at once, this thread reads its share after the manifest (the 5 MB
  // CNN: 0.40 ms in one thread, ~0.6 ms with a new thread per file, 0.25-0.3 ms with two lanes on pooled threads).
  // Below 1 MB, threads would cost more than they save. A bad manifest is reported first; join() rethrows a file's
  // error.
  constexpr size_t kFiles = std::size(kCheckpointTensorFiles);
  std::array<uintmax_t, kFiles> sizes{};
  uintmax_t total_bytes = 0;
  for (size_t i = 0; i < kFiles; ++i) {
    std::error_code size_ec;
    const uintmax_t size = fs::file_size(c.dir + "/" + kCheckpointTensorFiles[i], size_ec);
    sizes[i] = size_ec ? 0 : size;
    total_bytes += sizes[i];
  }
  // Large states are read in this thread alone: with two threads reading into fresh huge-page buffers at once, the
  // 140 MB MLP's load took 9.5-57 ms from process to process on the development VM (a helper thread's reads slowed
  // 4-10x now and then), in one thread 12.4 ms every time.
  const bool parallel = total_bytes >= (uintmax_t{1} << 20) && total_bytes < static_cast<uintmax_t>(kLargeState);
  const size_t lanes = parallel ? std::clamp<size_t>(std::thread::hardware_concurrency(), 1, kFiles) : 1;
  std::array<size_t, kFiles> order{};
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return sizes[a] > sizes[b]; });
  std::vector<std::vector<size_t>> lane_files(lanes);
  std::vector<uintmax_t> lane_bytes(lanes, 0);
  for (const size_t file : order) {
    const size_t lane = std::min_element(lane_bytes.begin(), lane_bytes.end()) - lane_bytes.begin();
    lane_files[lane].push_back(file);
    lane_bytes[lane] += sizes[file];
  }
  std::array<TensorFile, kFiles> read{};
  auto read_lane = [&c, &read, &lane_files](size_t lane) {
    for (const size_t file : lane_files[lane])
      read[file].tensors = read_tensor_file(c.dir + "/" + kCheckpointTensorFiles[file], read[file].hashes);
  };
  // Lane 0 is this thread's (the least loaded at the end, as the manifest is its work too).
  std::reverse(lane_files.begin(), lane_files.end());
  std::vector<std::function<void()>> helper_lanes;
  for (size_t lane = 1; lane < lanes; ++lane) helper_lanes.push_back([&read_lane, lane] { read_lane(lane); });
  PooledJobs helpers(std::move(helper_lanes));

  const std::string manifest_path = c.dir + "/manifest.json";
  c.manifest = parse_checkpoint_manifest(read_file(manifest_path), manifest_path);
  const Json& t = c.manifest["tensors"];
  if (on_manifest) on_manifest(c);
  read_lane(0);
  helpers.join();
  std::vector<NamedTensor>* targets[] = {&c.model, &c.optimizer, &c.rng, &c.probe};
  for (size_t i = 0; i < kFiles; ++i) *targets[i] = checked(c.dir, kCheckpointTensorFiles[i], std::move(read[i]), t[kCheckpointTensorFiles[i]]);
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

const std::vector<std::string>& RestoreOptions::component_names() {
  static const std::vector<std::string> names = {"model", "optimizer", "rng", "batcher", "early_stopping"};
  return names;
}

RestoreOptions& RestoreOptions::skip(const std::string& component) {
  if (component == "model") {
    model = false;
  } else if (component == "optimizer") {
    optimizer = false;
  } else if (component == "rng") {
    rng = false;
  } else if (component == "batcher") {
    batcher = false;
  } else if (component == "early_stopping") {
    early_stopping = false;
  } else {
    TRAINDX_FAIL(UsageError, "'{}' is not a restorable component; use one of {}", component,
                 fmt::join(component_names(), ", "));
  }
  return *this;
}

std::vector<std::string> RestoreOptions::skipped() const {
  std::vector<std::string> out;
  const bool on[] = {model, optimizer, rng, batcher, early_stopping};
  for (size_t i = 0; i < component_names().size(); ++i)
    if (!on[i]) out.push_back(component_names()[i]);
  return out;
}

std::map<std::string, Json> restore_trainer(Trainer& trainer, const Checkpoint& c, const RestoreOptions& options) {
  if (options.model) load_model_tensors(trainer.model(), c.model, /*strict=*/true);
  const Json& opt = c.manifest.at("optimizer");
  TRAINDX_CHECK(opt.value("name", "") == trainer.options().optimizer.name, CheckpointError,
                "{}: saved with optimizer '{}' but the trainer uses '{}'", c.dir, opt.value("name", ""),
                trainer.options().optimizer.name);
  if (options.optimizer)
    load_optimizer_state(trainer.optimizer(), trainer.model().named_parameters(), c.optimizer,
                         opt.value("scalars", Json::object()));
  if (options.rng)
    for (const auto& [name, t] : c.rng)
      if (name == "cpu") set_cpu_rng_state(t);
  const Json& tr = c.manifest.at("trainer");
  trainer.set_step(tr.at("step").get<int64_t>());
  if (options.batcher) trainer.batcher().restore(BatcherState::from_json(tr.at("batcher")));
  if (options.early_stopping) {
    try {
      trainer.early_stopping().load_json(tr.at("early_stopping"));
    } catch (const Json::exception& e) {
      TRAINDX_FAIL(CheckpointError, "{}/manifest.json: trainer.early_stopping is malformed: {}", c.dir, e.what());
    }
  }
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
      extra_state_(std::move(extra_state)) {
  if (options_.background) writer_ = std::make_unique<CheckpointWriter>(root_, options_);
}

CheckpointCallback::~CheckpointCallback() = default;

void CheckpointCallback::on_step_end(const StepContext&) {}

void CheckpointCallback::on_evaluation(int64_t, const Json& metrics) { last_metrics_ = metrics; }

void CheckpointCallback::on_iteration_end(int64_t steps_done) {
  if (options_.every_steps > 0 && steps_done % options_.every_steps == 0) save_in_background();
}

void CheckpointCallback::on_train_end(int64_t, const std::string&) {
  if (options_.at_end && last_saved_step_ != trainer_.step()) save_in_background();
  if (writer_) last_saved_ = writer_->wait();
}

void CheckpointCallback::save_in_background() {
  if (!writer_) {
    save_now();
    return;
  }
  writer_->save(trainer_, config_, extra_state_ ? extra_state_() : std::map<std::string, Json>{}, last_metrics_);
  last_saved_step_ = trainer_.step();
}

std::string CheckpointCallback::save_now() {
  if (writer_) {
    save_in_background();
    last_saved_ = writer_->wait();
    return last_saved_;
  }
  last_saved_ = save_checkpoint(root_, trainer_, config_, extra_state_ ? extra_state_() : std::map<std::string, Json>{},
                                last_metrics_, options_);
  last_saved_step_ = trainer_.step();
  return last_saved_;
}

}  // namespace traindx
