// Reproducibility checks that train (resume-check, determinism). Jobs are ordinary `traindx train` runs, started
// in this process through run_training or as fresh processes of the traindx executable; everything compared is
// read back from what the jobs wrote (checkpoints, run stores), so a fresh process and this one are judged alike.
#include "traindx/run/repro.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <tuple>

#include "traindx/core/environment.h"
#include "traindx/core/error.h"
#include "traindx/core/text.h"
#include "traindx/run/run.h"
#include "traindx/store/run_store.h"

extern char** environ;

namespace traindx {
namespace fs = std::filesystem;
namespace {

using Clock = std::chrono::steady_clock;

// ---- work directory and jobs ----------------------------------------------------------------------------------

// The directory the checks' runs go to: the caller's (kept), or a temporary one removed with this object.
class WorkDir {
 public:
  WorkDir(const std::string& requested, const char* prefix) {
    std::error_code ec;
    if (requested.empty()) {
      std::string pattern = (fs::temp_directory_path(ec) / (std::string(prefix) + "-XXXXXX")).string();
      TRAINDX_CHECK(::mkdtemp(pattern.data()) != nullptr, IoError, "cannot create a temporary directory '{}': {}",
                    pattern, std::strerror(errno));
      path_ = pattern;
      temporary_ = true;
      return;
    }
    path_ = requested;
    if (fs::exists(path_, ec)) {
      TRAINDX_CHECK(fs::is_directory(path_, ec) && fs::is_empty(path_, ec), IoError,
                    "'{}' exists and is not an empty directory; give a new or empty directory for the check's runs",
                    path_);
    } else {
      fs::create_directories(path_, ec);
      TRAINDX_CHECK(!ec, IoError, "cannot create '{}': {}", path_, ec.message());
    }
  }
  ~WorkDir() {
    if (!temporary_) return;
    std::error_code ec;
    fs::remove_all(path_, ec);  // best effort: a leftover temporary directory is not worth an exception
  }
  WorkDir(const WorkDir&) = delete;
  WorkDir& operator=(const WorkDir&) = delete;
  const std::string& path() const { return path_; }
  bool temporary() const { return temporary_; }

 private:
  std::string path_;
  bool temporary_ = false;
};

// One `traindx train` job of a check.
struct Job {
  std::string label;  // names the run directory, the config file and the logs
  Config config;
  std::string out;
  std::string resume;
  int64_t stop_after = 0;
  RestoreOptions restore;
  bool fresh = false;  // in a fresh process (needs the executable) rather than in this one
};

std::string job_command(const std::string& exe, const Job& job, const std::string& config_path,
                        std::vector<std::string>& argv) {
  argv = {exe, "train", config_path, "--out", job.out, "--quiet"};
  if (!job.resume.empty()) argv.insert(argv.end(), {"--resume", job.resume});
  if (job.stop_after > 0) argv.insert(argv.end(), {"--stop-after", std::to_string(job.stop_after)});
  for (const auto& c : job.restore.skipped()) argv.insert(argv.end(), {"--resume-skip", c});
  std::string text;
  for (const auto& a : argv) text += (text.empty() ? "" : " ") + a;
  return text;
}

// A job's error comes back as its CLI's one line, "traindx: <kind name>: <message>"; it is rethrown with the same
// kind so that, e.g., a missing data file is still a data error (exit 2) for the caller.
[[noreturn]] void raise_job_error(const Job& job, const std::string& how, const std::string& stderr_text,
                                  const std::string& command) {
  std::string line;
  for (const auto& l : split(stderr_text, '\n'))
    if (l.rfind("traindx: ", 0) == 0) line = l;
  for (ErrorKind kind :
       {ErrorKind::Config, ErrorKind::Data, ErrorKind::Model, ErrorKind::Io, ErrorKind::Checkpoint, ErrorKind::Usage}) {
    const std::string prefix = std::string("traindx: ") + error_kind_name(kind) + ": ";
    if (line.rfind(prefix, 0) == 0)
      throw Error(kind, fmt::format("the {} run: {}", job.label, line.substr(prefix.size())));
  }
  std::string tail = stderr_text.size() > 600 ? stderr_text.substr(stderr_text.size() - 600) : stderr_text;
  TRAINDX_FAIL(InternalError, "the {} run `{}` {}: {}", job.label, command, how,
               tail.empty() ? "(nothing on stderr)" : std::string(trim(tail)));
}

// A job running as a fresh traindx process, stdout and stderr going to files next to its run directory. A child
// still running when this object dies (an exception elsewhere) is killed and reaped: no orphans keep training.
class ChildProcess {
 public:
  ChildProcess(const std::string& exe, Job job, const std::string& work_dir) : job_(std::move(job)) {
    const std::string config_path = work_dir + "/" + job_.label + ".toml";
    write_file_atomic(config_path, job_.config.to_toml());
    stdout_path_ = work_dir + "/" + job_.label + ".stdout";
    stderr_path_ = work_dir + "/" + job_.label + ".stderr";
    std::vector<std::string> args;
    command_ = job_command(exe, job_, config_path, args);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, stdout_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, stderr_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int rc = ::posix_spawn(&pid_, exe.c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    TRAINDX_CHECK(rc == 0, IoError, "cannot start the {} run `{}`: {}", job_.label, command_, std::strerror(rc));
  }
  ~ChildProcess() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  /// True once the process has ended (then check() says how).
  bool poll() {
    if (pid_ > 0) reap(WNOHANG);
    return pid_ <= 0;
  }
  void wait() {
    while (pid_ > 0) reap(0);
    check();
  }

 private:
  void reap(int flags) {
    const pid_t r = ::waitpid(pid_, &status_, flags);
    if (r == pid_) {
      pid_ = -1;
    } else if (r < 0 && errno != EINTR) {
      lost_ = std::strerror(errno);
      pid_ = -1;
    }
  }

  // Exit 0 and 1 mean the job ran (1: it failed or the monitor found something critical; the summary says which).
  void check() const {
    std::string err;
    try {
      err = read_file(stderr_path_);
    } catch (const Error&) {
      // No stderr file: the message below says what is known.
    }
    if (!lost_.empty()) raise_job_error(job_, "could not be waited for (" + lost_ + ")", err, command_);
    if (WIFEXITED(status_)) {
      const int code = WEXITSTATUS(status_);
      if (code == 0 || code == 1) return;
      raise_job_error(job_, fmt::format("exited with code {}", code), err, command_);
    }
    if (WIFSIGNALED(status_))
      raise_job_error(job_,
                      fmt::format("was killed by signal {} ({})", WTERMSIG(status_), strsignal(WTERMSIG(status_))), err,
                      command_);
    raise_job_error(job_, "ended abnormally", err, command_);
  }

  Job job_;
  pid_t pid_ = -1;
  int status_ = 0;
  std::string lost_;  // why waitpid failed, if it did
  std::string command_, stdout_path_, stderr_path_;
};

void run_in_process(const Job& job) {
  RunRequest request;
  request.out = job.out;
  request.resume = job.resume;
  request.stop_after = job.stop_after;
  request.restore = job.restore;
  request.quiet = true;
  try {
    run_training(job.config, request);
  } catch (const Error& e) {
    throw Error(e.kind(), fmt::format("the {} run: {}", job.label, e.what()));
  }
}

// Runs jobs: fresh processes two at a time (the machines we target have two cores) while the in-process ones run
// here. Returns once every job has finished; throws the first failure.
void run_jobs(const std::vector<Job>& jobs, const std::string& exe, const std::string& work_dir) {
  constexpr size_t kMaxChildren = 2;
  std::deque<const Job*> pending;
  for (const auto& j : jobs) {
    TRAINDX_ASSERT(!j.fresh || !exe.empty(), "job {} needs the traindx executable", j.label);
    if (j.fresh) pending.push_back(&j);
  }
  std::vector<std::unique_ptr<ChildProcess>> running;
  auto refill = [&] {
    for (auto it = running.begin(); it != running.end();) {
      if ((*it)->poll()) {
        (*it)->wait();  // reaped already; reports how it ended
        it = running.erase(it);
      } else {
        ++it;
      }
    }
    while (running.size() < kMaxChildren && !pending.empty()) {
      running.push_back(std::make_unique<ChildProcess>(exe, *pending.front(), work_dir));
      pending.pop_front();
    }
  };
  refill();
  for (const auto& j : jobs) {
    if (j.fresh) continue;
    run_in_process(j);
    refill();
  }
  while (!running.empty()) {
    running.front()->wait();
    running.erase(running.begin());
    refill();
  }
}

Json read_summary(const Job& job) {
  const std::string path = job.out + "/summary.json";
  Json s = Json::parse(read_file(path), nullptr, false);
  TRAINDX_CHECK(s.is_object(), IoError, "{}: not valid JSON", path);
  return s;
}

// Every check needs each job to reach a known step; a config that trains fewer steps cannot be checked there.
void expect_steps(const Job& job, int64_t steps, const std::string& what) {
  const Json s = read_summary(job);
  const int64_t done = s.value("steps", int64_t{-1});
  TRAINDX_CHECK(done == steps, UsageError,
                "the {} run ended at step {} ({}{}) but {} needs step {}; the config must train at least that many "
                "steps (raise train.epochs) and not stop early",
                job.label, done, s.value("status", "?"),
                s.value("stop_reason", "").empty() ? "" : ": " + s.value("stop_reason", ""), what, steps);
}

std::string checkpoint_path(const std::string& run_dir, int64_t step) {
  return run_dir + "/checkpoints/" + checkpoint_dir_name(step);
}

Checkpoint load_at(const std::string& run_dir, int64_t step) {
  const std::string path = checkpoint_path(run_dir, step);
  TRAINDX_CHECK(fs::exists(path + "/manifest.json"), InternalError, "expected a checkpoint at {}", path);
  return load_checkpoint(path);
}

// ---- comparisons ----------------------------------------------------------------------------------------------

bool same_bytes(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
  const auto ac = a.contiguous().cpu(), bc = b.contiguous().cpu();
  return std::memcmp(ac.data_ptr(), bc.data_ptr(), ac.nbytes()) == 0;
}

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

std::string shape_of(const torch::Tensor& t) { return fmt::format("[{}]", fmt::join(t.sizes().vec(), ", ")); }

// How two tensors with different bytes differ, in words, plus a size for picking the largest difference.
std::pair<std::string, double> describe_difference(const std::string& name, const torch::Tensor& ref,
                                                   const torch::Tensor& cur) {
  if (ref.sizes() != cur.sizes())
    return {fmt::format("{}: shape {} vs {}", name, shape_of(ref), shape_of(cur)), INFINITY};
  if (ref.is_floating_point() && cur.is_floating_point()) {
    const TensorComparison c = compare_tensors(cur, ref);
    return {fmt::format("{}: {} of {} elements differ, max abs {:.3g}, max rel {:.3g}, max {} ulps", name, c.differing,
                        c.numel, c.max_abs, c.max_rel, c.max_ulps),
            c.max_abs};
  }
  if (ref.scalar_type() != cur.scalar_type())
    return {fmt::format("{}: dtype {} vs {}", name, c10::toString(ref.scalar_type()), c10::toString(cur.scalar_type())),
            INFINITY};
  const int64_t differing = ref.ne(cur).sum().item<int64_t>();
  return {fmt::format("{}: {} of {} elements differ", name, differing, ref.numel()), 0.0};
}

void compare_tensor_sets(ComponentComparison& out, const std::vector<NamedTensor>& ref,
                         const std::vector<NamedTensor>& cur) {
  std::map<std::string, torch::Tensor> cur_by_name(cur.begin(), cur.end());
  std::set<std::string> seen;
  double worst = -1.0;
  for (const auto& [name, r] : ref) {
    seen.insert(name);
    ++out.compared;
    ++out.tensors;
    auto it = cur_by_name.find(name);
    if (it == cur_by_name.end()) {
      out.differing.push_back(name);
      if (worst < INFINITY) out.detail = name + ": only in the reference";
      worst = INFINITY;
      continue;
    }
    if (same_bytes(r, it->second)) continue;
    out.differing.push_back(name);
    auto [text, size] = describe_difference(name, r, it->second);
    if (size > worst) {
      worst = size;
      out.detail = text;
    }
  }
  for (const auto& [name, c] : cur) {
    if (seen.count(name)) continue;
    ++out.compared;
    ++out.tensors;
    out.differing.push_back(name);
    if (worst < INFINITY) out.detail = name + ": only in the current run";
    worst = INFINITY;
  }
}

std::string short_dump(const Json& j) {
  std::string s = j.dump();
  return s.size() > 80 ? s.substr(0, 77) + "..." : s;
}

// Paths where two JSON documents differ (recursing into objects and equal-length arrays), at most `limit`.
void json_differences(const Json& a, const Json& b, const std::string& path, std::vector<std::string>& paths,
                      std::string& first_detail) {
  constexpr size_t kLimit = 8;
  if (a == b || paths.size() >= kLimit) return;
  if (a.is_object() && b.is_object()) {
    std::set<std::string> keys;
    for (auto it = a.begin(); it != a.end(); ++it) keys.insert(it.key());
    for (auto it = b.begin(); it != b.end(); ++it) keys.insert(it.key());
    for (const auto& k : keys)
      json_differences(a.contains(k) ? a[k] : Json(), b.contains(k) ? b[k] : Json(), path.empty() ? k : path + "." + k,
                       paths, first_detail);
    return;
  }
  if (a.is_array() && b.is_array() && a.size() == b.size()) {
    for (size_t i = 0; i < a.size(); ++i)
      json_differences(a[i], b[i], fmt::format("{}[{}]", path, i), paths, first_detail);
    return;
  }
  const std::string p = path.empty() ? "(value)" : path;
  paths.push_back(p);
  if (first_detail.empty()) first_detail = fmt::format("{}: {} vs {}", p, short_dump(a), short_dump(b));
}

void compare_json(ComponentComparison& out, const Json& ref, const Json& cur, const std::string& prefix = "") {
  ++out.compared;
  std::vector<std::string> paths;
  std::string detail;
  json_differences(ref, cur, prefix, paths, detail);
  out.differing.insert(out.differing.end(), paths.begin(), paths.end());
  if (out.detail.empty()) out.detail = detail;
}

const Json& json_at(const Json& doc, std::initializer_list<const char*> path) {
  static const Json null_json;
  const Json* j = &doc;
  for (const char* k : path) {
    if (!j->is_object() || !j->contains(k)) return null_json;
    j = &(*j)[k];
  }
  return *j;
}

std::map<std::string, std::map<int64_t, double>> read_scalar_series(const std::string& run_dir) {
  auto store = open_sqlite_store_readonly(run_dir + "/" + kRunStoreFile);
  const auto runs = store->list_runs();
  TRAINDX_CHECK(!runs.empty(), IoError, "{}/{}: the run store holds no run", run_dir, kRunStoreFile);
  std::string id = runs.front().run_id;
  const std::string dir_name = fs::path(run_dir).lexically_normal().filename().string();
  for (const auto& r : runs)
    if (r.run_id == dir_name) id = r.run_id;
  std::map<std::string, std::map<int64_t, double>> out;
  for (const auto& name : store->scalar_names(id))
    for (const auto& p : store->scalar_series(id, name)) out[name][p.step] = p.value;
  return out;
}

std::string fmt_value(std::optional<double> v) { return v ? fmt::format("{:.9g}", *v) : "(not logged)"; }

std::string join_names(const std::vector<std::string>& names) { return fmt::format("{}", fmt::join(names, ", ")); }

std::vector<std::string> unequal(const std::vector<ComponentComparison>& cs) {
  std::vector<std::string> out;
  for (const auto& c : cs)
    if (!c.equal) out.push_back(c.component);
  return out;
}

// ---- replaying a step ---------------------------------------------------------------------------------------

// The settings one run trained with, applied around a replayed computation.
struct RunSettings {
  int64_t threads = 1;
  bool deterministic = false;
  torch::Tensor rng;  // CPU generator state at the start of the step: dropout draws the masks training drew
};

// Applies a run's threads, deterministic flag and RNG state for a scope, then restores this process's settings.
class ScopedSettings {
 public:
  explicit ScopedSettings(const RunSettings& s)
      : threads_(at::get_num_threads()), deterministic_(at::globalContext().deterministicAlgorithms()) {
    apply_runtime_settings(s.threads, s.deterministic);
    set_cpu_rng_state(s.rng);
  }
  ~ScopedSettings() { apply_runtime_settings(threads_, deterministic_); }
  ScopedSettings(const ScopedSettings&) = delete;
  ScopedSettings& operator=(const ScopedSettings&) = delete;

 private:
  int64_t threads_;
  bool deterministic_;
};

// A model that runs every forward pass under one run's settings, so compare_layers() can run the reference and
// the current model each as its own run did (e.g. with 1 and 2 threads) in one call.
class ReplayModel : public Model {
 public:
  ReplayModel(Model& inner, RunSettings settings) : inner_(inner), settings_(std::move(settings)) {}
  torch::Tensor forward(const torch::Tensor& input) override {
    ScopedSettings s(settings_);
    return inner_.forward(input);
  }
  torch::Tensor forward_with_taps(const torch::Tensor& input, const LayerTap& tap) override {
    ScopedSettings s(settings_);
    return inner_.forward_with_taps(input, tap);
  }
  std::vector<NamedTensor> named_parameters() const override { return inner_.named_parameters(); }
  std::vector<NamedTensor> named_buffers() const override { return inner_.named_buffers(); }
  void train(bool on) override { inner_.train(on); }
  bool is_training() const override { return inner_.is_training(); }
  void to(torch::Device device, torch::Dtype dtype) override { inner_.to(device, dtype); }
  std::vector<LayerSummary> summary() const override { return inner_.summary(); }

 private:
  Model& inner_;
  RunSettings settings_;
};

// One run's trainer put back at the start of step `step`, with that step's batch.
struct ReplaySide {
  std::unique_ptr<Trainer> trainer;
  RunSettings settings;
  torch::Tensor x, y;
};

ReplaySide make_replay_side(const Config& config, const std::string& run_dir, int64_t step) {
  ReplaySide side;
  side.trainer = std::make_unique<Trainer>(config);
  // Step 0 starts from what the constructor built (seeded init); later steps from the run's own checkpoint.
  if (step > 0) restore_trainer(*side.trainer, load_at(run_dir, step));
  Trainer& t = *side.trainer;
  const Batch batch = t.batcher().next();
  const auto params = t.model().named_parameters();
  const auto dtype = params.empty() ? torch::kFloat32 : params.front().second.scalar_type();
  const auto device = params.empty() ? torch::Device(torch::kCPU) : params.front().second.device();
  side.x = t.data().train_x.index_select(0, batch.indices).to(device, dtype);
  side.y = t.data().train_y.index_select(0, batch.indices).to(device);
  side.settings.threads = config.get_int("run.threads");
  side.settings.deterministic = config.get_bool("run.deterministic");
  side.settings.rng = cpu_rng_state();
  return side;
}

std::vector<torch::Tensor> snapshot_buffers(Model& m) {
  std::vector<torch::Tensor> out;
  for (const auto& [n, b] : m.named_buffers()) out.push_back(b.detach().clone());
  return out;
}

void restore_buffers(Model& m, const std::vector<torch::Tensor>& saved) {
  torch::NoGradGuard no_grad;
  const auto buffers = m.named_buffers();
  for (size_t i = 0; i < buffers.size() && i < saved.size(); ++i) {
    torch::Tensor b = buffers[i].second;
    b.copy_(saved[i]);
  }
}

std::map<std::string, std::string> layer_types(const Model& m) {
  std::map<std::string, std::string> out;
  for (const auto& row : m.summary()) out[row.name] = row.type;
  return out;
}

// "block1.conv2.weight" -> "block1.conv2".
std::string layer_of(const std::string& parameter) {
  const auto dot = parameter.rfind('.');
  return dot == std::string::npos ? parameter : parameter.substr(0, dot);
}

struct ReplayResult {
  std::string pass, first_layer, op, detail;
  std::vector<LayerComparison> layers;
};

// Replays step `step` of two runs whose state at its start is bitwise equal: the forward pass layer by layer with
// compare_layers() (train mode and the step's dropout masks, as in training), then the whole step (loss, backward,
// optimizer) each under its run's settings, and reports the first of these that differs.
ReplayResult replay_step(const Config& config_a, const std::string& dir_a, const Config& config_b,
                         const std::string& dir_b, int64_t step) {
  ReplayResult r;
  ReplaySide a = make_replay_side(config_a, dir_a, step);
  ReplaySide b = make_replay_side(config_b, dir_b, step);
  Model& ma = a.trainer->model();
  Model& mb = b.trainer->model();
  ma.train(true);
  mb.train(true);
  const auto types = layer_types(ma);
  auto type_of = [&](const std::string& layer) {
    auto it = types.find(layer);
    return it == types.end() ? std::string("?") : it->second;
  };

  // Train-mode forwards update BatchNorm running statistics; put them back so the step below starts as training did.
  const auto buffers_a = snapshot_buffers(ma), buffers_b = snapshot_buffers(mb);
  {
    ReplayModel ra(ma, a.settings), rb(mb, b.settings);
    r.layers = compare_layers(ra, a.x, rb, b.x);
  }
  restore_buffers(ma, buffers_a);
  restore_buffers(mb, buffers_b);
  for (const auto& row : r.layers) {
    if (row.comparison.bitwise_equal) continue;
    r.pass = "forward";
    r.first_layer = row.layer;
    r.op = type_of(row.layer);
    r.detail = fmt::format("{} of {} elements differ, max abs {:.3g}, max {} ulps{}", row.comparison.differing,
                           row.comparison.numel, row.comparison.max_abs, row.comparison.max_ulps,
                           row.within ? ", within tolerance" : ", beyond tolerance");
    return r;
  }

  StepContext ca, cb;
  {
    ScopedSettings s(a.settings);
    ca = a.trainer->train_step(a.x, a.y);
  }
  {
    ScopedSettings s(b.settings);
    cb = b.trainer->train_step(b.x, b.y);
  }
  if (!same_bits(ca.loss, cb.loss)) {
    r.pass = "loss";
    r.op = loss_name(a.trainer->loss_kind());
    r.detail = fmt::format("every layer output is bitwise equal, the loss is not: {:.9g} vs {:.9g}", ca.loss, cb.loss);
    return r;
  }
  // Backward runs from the output: the first differing gradient in that order is where the difference enters.
  const auto pa = ma.named_parameters(), pb = mb.named_parameters();
  for (size_t i = pa.size(); i-- > 0;) {
    const torch::Tensor ga = pa[i].second.grad(), gb = pb[i].second.grad();
    if (!ga.defined() || !gb.defined() || same_bytes(ga, gb)) continue;
    r.pass = "backward";
    r.first_layer = layer_of(pa[i].first);
    r.op = type_of(r.first_layer);
    r.detail = "gradient of " + describe_difference(pa[i].first, ga, gb).first;
    return r;
  }
  for (size_t i = 0; i < pa.size(); ++i) {
    if (same_bytes(pa[i].second, pb[i].second)) continue;
    r.pass = "optimizer";
    r.first_layer = layer_of(pa[i].first);
    r.op = a.trainer->options().optimizer.name;
    r.detail = "gradients equal, updated " + describe_difference(pa[i].first, pa[i].second, pb[i].second).first;
    return r;
  }
  r.pass = "not_reproduced";
  r.detail = "replaying the step in this process gives bitwise-equal layer outputs, loss, gradients and update";
  return r;
}

// ---- determinism pairs -------------------------------------------------------------------------------------

struct PairSpec {
  std::string name, description;
  const Job* a = nullptr;
  const Job* b = nullptr;
  std::string skipped;
};

RunPairResult compare_pair(const PairSpec& spec, int64_t steps) {
  RunPairResult r;
  r.pair = spec.name;
  r.description = spec.description;
  r.skipped = spec.skipped;
  if (!r.skipped.empty()) {
    r.loss_equal = r.weights_equal = false;
    r.message = "not run: " + r.skipped;
    return r;
  }
  const std::string& dir_a = spec.a->out;
  const std::string& dir_b = spec.b->out;
  auto loss_a = read_scalar_series(dir_a)["loss"], loss_b = read_scalar_series(dir_b)["loss"];
  std::optional<int64_t> loss_step;
  for (int64_t s = 0; s < steps && !loss_step; ++s) {
    auto ia = loss_a.find(s), ib = loss_b.find(s);
    if (ia == loss_a.end() || ib == loss_b.end() || !same_bits(ia->second, ib->second)) loss_step = s;
  }
  r.loss_equal = !loss_step;

  ComponentComparison final_model;
  const Checkpoint final_a = load_at(dir_a, steps), final_b = load_at(dir_b, steps);
  compare_tensor_sets(final_model, final_a.model, final_b.model);
  r.weights_equal = final_model.differing.empty();
  if (!r.weights_equal) {
    std::map<std::string, torch::Tensor> b_by_name(final_b.model.begin(), final_b.model.end());
    double worst = -1.0;
    for (const auto& [name, ta] : final_a.model) {
      auto it = b_by_name.find(name);
      if (it == b_by_name.end() || !ta.is_floating_point() || ta.sizes() != it->second.sizes()) continue;
      const TensorComparison c = compare_tensors(it->second, ta);
      if (!c.bitwise_equal && c.max_abs > worst) {
        worst = c.max_abs;
        r.worst_tensor = name;
        r.final_weights = c;
      }
    }
  }
  if (r.equal()) {
    r.message = fmt::format("bitwise equal: all {} losses and every final parameter and buffer", steps);
    return r;
  }

  // The step whose computation first differed: its starting state is equal in both runs and its loss, or the
  // state after it, is not.
  const int64_t last = std::min(steps, loss_step ? *loss_step : steps);
  int64_t parting = loss_step.value_or(steps - 1);
  for (int64_t k = 1; k <= last; ++k) {
    const Checkpoint ca = load_at(dir_a, k), cb = load_at(dir_b, k);
    ComponentComparison state;
    compare_tensor_sets(state, ca.model, cb.model);
    compare_tensor_sets(state, ca.optimizer, cb.optimizer);
    if (!state.differing.empty()) {
      parting = k - 1;
      break;
    }
  }
  r.first_step = parting;
  if (loss_a.count(parting)) r.loss_a = loss_a[parting];
  if (loss_b.count(parting)) r.loss_b = loss_b[parting];

  const ReplayResult replay = replay_step(spec.a->config, dir_a, spec.b->config, dir_b, parting);
  r.pass = replay.pass;
  r.first_layer = replay.first_layer;
  r.op = replay.op;
  r.layers = replay.layers;
  std::string where;
  if (replay.pass == "forward")
    where = fmt::format("the forward pass parts first at layer {} ({}): {}", r.first_layer, r.op, replay.detail);
  else if (replay.pass == "loss")
    where = fmt::format("the loss ({}) parts: {}", r.op, replay.detail);
  else if (replay.pass == "backward")
    where = fmt::format("the forward pass and loss are equal; backward parts first at layer {} ({}): {}", r.first_layer,
                        r.op, replay.detail);
  else if (replay.pass == "optimizer")
    where = fmt::format("the {} update parts: {}", r.op, replay.detail);
  else
    where = replay.detail + ": the runs differ from run to run (nondeterminism), not by their settings";
  r.message = fmt::format("part at step {} ({}); replaying it, {}", parting,
                          r.loss_a && r.loss_b && !same_bits(*r.loss_a, *r.loss_b)
                              ? fmt::format("loss {:.9g} vs {:.9g}", *r.loss_a, *r.loss_b)
                              : std::string("losses equal, the state after the step differs"),
                          where);
  return r;
}

Config with_value(Config c, const std::string& key, const Json& value, const std::string& origin) {
  c.set_value(key, value, origin);
  return c;
}

std::vector<RunPairResult> run_pairs(const Config& config, const DeterminismOptions& o, const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  TRAINDX_CHECK(!ec, IoError, "cannot create '{}': {}", dir, ec.message());
  const std::string origin = "determinism";
  Config base = config;
  base.set_value("train.max_steps", o.steps, origin);
  // A checkpoint after every step, all kept: the state at the step where two runs part is then on disk.
  base.set_value("checkpoint.every_steps", int64_t{1}, origin);
  base.set_value("checkpoint.keep_last", o.steps + 1, origin);
  base.set_value("checkpoint.at_end", true, origin);
  const int64_t threads = base.get_int("run.threads");
  const bool fresh = !o.exe.empty();

  std::vector<Job> jobs;
  jobs.reserve(6);
  auto add = [&](const std::string& label, const Config& c, bool in_fresh) -> size_t {
    Job j;
    j.label = label;
    j.config = c;
    j.out = dir + "/" + label;
    j.fresh = in_fresh;
    jobs.push_back(std::move(j));
    return jobs.size() - 1;
  };
  const size_t p1 = add("same-process-1", base, false), p2 = add("same-process-2", base, false);
  size_t f1 = 0, f2 = 0;
  if (fresh) {
    f1 = add("fresh-process-1", base, true);
    f2 = add("fresh-process-2", base, true);
  }
  // Thread pair: reuse a run already made with 1 or 2 threads where there is one.
  const size_t reuse = fresh ? f1 : p1;
  const size_t t1 = threads == 1 ? reuse : add("threads-1", with_value(base, "run.threads", 1, origin), fresh);
  const size_t t2 = threads == 2 ? reuse : add("threads-2", with_value(base, "run.threads", 2, origin), fresh);
  run_jobs(jobs, o.exe, dir);
  for (const auto& j : jobs) expect_steps(j, o.steps, "the comparison");

  std::vector<PairSpec> specs;
  specs.push_back({"same_process", "two runs in this process", &jobs[p1], &jobs[p2], ""});
  if (fresh)
    specs.push_back({"fresh_process", "two runs in fresh processes", &jobs[f1], &jobs[f2], ""});
  else
    specs.push_back({"fresh_process", "two runs in fresh processes", nullptr, nullptr,
                     "no traindx executable to start fresh processes with"});
  specs.push_back({"threads", fmt::format("run.threads 1 vs 2 ({})", fresh ? "fresh processes" : "this process"),
                   &jobs[t1], &jobs[t2], ""});
  std::vector<RunPairResult> out;
  for (const auto& s : specs) out.push_back(compare_pair(s, o.steps));
  return out;
}

}  // namespace

// ---- public -------------------------------------------------------------------------------------------------

Json ComponentComparison::to_json() const {
  return {{"component", component}, {"equal", equal},         {"compared", compared},
          {"tensors", tensors},     {"differing", differing}, {"detail", detail}};
}

const std::vector<std::string>& training_state_components() {
  static const std::vector<std::string> names = {"model",    "optimizer",      "rng",    "batcher",
                                                 "schedule", "early_stopping", "monitor"};
  return names;
}

std::vector<ComponentComparison> compare_training_state(const Checkpoint& ref, const Checkpoint& cur) {
  std::vector<ComponentComparison> out;
  for (const auto& name : training_state_components()) {
    ComponentComparison c;
    c.component = name;
    if (name == "model") {
      compare_tensor_sets(c, ref.model, cur.model);
    } else if (name == "optimizer") {
      compare_tensor_sets(c, ref.optimizer, cur.optimizer);
      compare_json(c, json_at(ref.manifest, {"optimizer", "scalars"}), json_at(cur.manifest, {"optimizer", "scalars"}),
                   "scalars");
    } else if (name == "rng") {
      compare_tensor_sets(c, ref.rng, cur.rng);
    } else if (name == "batcher") {
      compare_json(c, json_at(ref.manifest, {"trainer", "batcher"}), json_at(cur.manifest, {"trainer", "batcher"}));
    } else if (name == "schedule") {
      compare_json(c, json_at(ref.manifest, {"trainer", "step"}), json_at(cur.manifest, {"trainer", "step"}), "step");
      compare_json(c, json_at(ref.manifest, {"trainer", "schedule"}), json_at(cur.manifest, {"trainer", "schedule"}),
                   "schedule");
    } else if (name == "early_stopping") {
      compare_json(c, json_at(ref.manifest, {"trainer", "early_stopping"}),
                   json_at(cur.manifest, {"trainer", "early_stopping"}));
    } else {
      compare_json(c, json_at(ref.manifest, {"extra", "monitor"}), json_at(cur.manifest, {"extra", "monitor"}));
    }
    c.equal = c.differing.empty();
    out.push_back(std::move(c));
  }
  return out;
}

Json SeriesDifference::to_json() const {
  return {{"series", series},
          {"step", step},
          {"reference", reference ? Json(*reference) : Json()},
          {"current", current ? Json(*current) : Json()}};
}

std::optional<SeriesDifference> first_series_difference(const std::string& reference_run_dir,
                                                        const std::string& current_run_dir, int64_t from_step,
                                                        int64_t to_step, std::vector<std::string>* compared) {
  const auto ref = read_scalar_series(reference_run_dir), cur = read_scalar_series(current_run_dir);
  std::set<std::string> names;
  for (const auto& [n, s] : ref) names.insert(n);
  for (const auto& [n, s] : cur) names.insert(n);
  if (compared) compared->assign(names.begin(), names.end());
  static const std::map<int64_t, double> kEmpty;
  // At one step the loss is named first: it is what users compare.
  auto before = [](const SeriesDifference& x, const SeriesDifference& y) {
    return std::make_tuple(x.step, x.series != "loss", x.series) <
           std::make_tuple(y.step, y.series != "loss", y.series);
  };
  std::optional<SeriesDifference> first;
  for (const auto& name : names) {
    const auto ri = ref.find(name), ci = cur.find(name);
    const auto& rs = ri == ref.end() ? kEmpty : ri->second;
    const auto& cs = ci == cur.end() ? kEmpty : ci->second;
    std::set<int64_t> steps;
    for (auto it = rs.lower_bound(from_step); it != rs.end() && it->first <= to_step; ++it) steps.insert(it->first);
    for (auto it = cs.lower_bound(from_step); it != cs.end() && it->first <= to_step; ++it) steps.insert(it->first);
    for (int64_t s : steps) {
      const auto rv = rs.find(s), cv = cs.find(s);
      if (rv != rs.end() && cv != cs.end() && same_bits(rv->second, cv->second)) continue;
      SeriesDifference d;
      d.series = name;
      d.step = s;
      if (rv != rs.end()) d.reference = rv->second;
      if (cv != cs.end()) d.current = cv->second;
      if (!first || before(d, *first)) first = d;
      break;
    }
  }
  return first;
}

Json ResumeCulprit::to_json() const { return {{"component", component}, {"cause", cause}, {"detail", detail}}; }

Json ResumeCheckReport::to_json() const {
  auto list = [](const std::vector<ComponentComparison>& cs) {
    Json a = Json::array();
    for (const auto& c : cs) a.push_back(c.to_json());
    return a;
  };
  return {{"check", "resume"},
          {"at", at},
          {"steps", steps},
          {"deterministic", deterministic},
          {"threads", threads},
          {"fresh_process", fresh_process},
          {"planted", planted},
          {"exact", exact},
          {"training_exact", training_exact},
          {"verdict", exact ? "bit_exact" : "not_exact"},
          {"final_state", list(final_state)},
          {"series",
           {{"compared", series_compared},
            {"from_step", at},
            {"to_step", at + steps},
            {"first_difference", series_difference ? series_difference->to_json() : Json()}}},
          {"before_save", list(before_save)},
          {"round_trip", list(round_trip)},
          {"culprits",
           [&] {
             Json a = Json::array();
             for (const auto& c : culprits) a.push_back(c.to_json());
             return a;
           }()},
          {"diagnosis", diagnosis},
          {"work_dir", work_dir.empty() ? Json() : Json(work_dir)},
          {"seconds", seconds}};
}

ResumeCheckReport resume_check(const Config& config, const ResumeCheckOptions& o) {
  TRAINDX_CHECK(o.at >= 1, UsageError, "--at must be at least 1 (the step to interrupt at), got {}", o.at);
  TRAINDX_CHECK(o.steps >= 1, UsageError, "--steps must be at least 1 (steps after the resume), got {}", o.steps);
  const auto t0 = Clock::now();
  WorkDir work(o.work_dir, "traindx-resume-check");
  const int64_t total = o.at + o.steps;
  const std::string origin = "resume-check";
  // One schedule for all jobs (max_steps = N + M); a checkpoint every N steps gives the uninterrupted run one at N
  // too, and keeping them all keeps it.
  Config base = config;
  base.set_value("train.max_steps", total, origin);
  base.set_value("checkpoint.every_steps", o.at, origin);
  base.set_value("checkpoint.keep_last", total / o.at + 2, origin);
  base.set_value("checkpoint.at_end", true, origin);

  ResumeCheckReport report;
  report.at = o.at;
  report.steps = o.steps;
  report.deterministic = base.get_bool("run.deterministic");
  report.threads = base.get_int("run.threads");
  report.fresh_process = !o.exe.empty();
  report.planted = o.restore.skipped();

  const std::string& w = work.path();
  auto job = [&](const std::string& label) {
    Job j;
    j.label = label;
    j.config = base;
    j.out = w + "/" + label;
    j.fresh = report.fresh_process;
    return j;
  };
  Job a = job("uninterrupted"), b = job("interrupted");
  b.stop_after = o.at;
  run_jobs({a, b}, o.exe, w);
  expect_steps(a, total, "--at + --steps");
  expect_steps(b, o.at, "--at");

  const std::string saved = checkpoint_path(b.out, o.at);
  Job c = job("resumed");
  c.resume = saved;
  c.restore = o.restore;
  run_jobs({c}, o.exe, w);
  expect_steps(c, total, "--at + --steps");

  report.final_state = compare_training_state(load_at(a.out, total), load_at(c.out, total));
  report.series_difference = first_series_difference(a.out, c.out, o.at, total, &report.series_compared);
  const auto final_diff = unequal(report.final_state);
  report.exact = final_diff.empty() && !report.series_difference;
  report.training_exact = !report.series_difference;
  for (const auto& cc : report.final_state)
    if (cc.component != "monitor" && !cc.equal) report.training_exact = false;

  if (report.exact) {
    report.diagnosis = fmt::format(
        "bit-exact: resuming at step {}{} reproduces the uninterrupted run (final state and {} series over steps "
        "{}..{})",
        o.at, report.fresh_process ? " in a fresh process" : "", report.series_compared.size(), o.at, total);
  } else {
    // Which component breaks it: the state at N from a run that never stopped vs the saved one (equal unless
    // training itself is nondeterministic), then the saved state loaded and saved again by a fresh process.
    report.before_save = compare_training_state(load_at(a.out, o.at), load_at(b.out, o.at));
    Job d = job("round-trip");
    d.resume = saved;
    d.stop_after = o.at;
    d.restore = o.restore;
    run_jobs({d}, o.exe, w);
    report.round_trip = compare_training_state(load_at(b.out, o.at), load_at(d.out, o.at));
    const auto pre = unequal(report.before_save);
    for (const auto& cc : report.round_trip)
      if (!cc.equal) report.culprits.push_back({cc.component, "not_restored", cc.detail});
    // Training exact and everything round-trips, but the monitor ends differently: its checkpointed state is
    // incomplete (it keeps state that save_state() does not write).
    if (report.culprits.empty() && pre.empty() && report.training_exact)
      for (const auto& cc : report.final_state)
        if (!cc.equal) report.culprits.push_back({cc.component, "not_saved", cc.detail});

    std::vector<std::string> parts;
    if (const auto& d1 = report.series_difference) {
      parts.push_back(fmt::format("the runs part at step {} ({}: {} uninterrupted vs {} resumed)", d1->step, d1->series,
                                  fmt_value(d1->reference), fmt_value(d1->current)));
    } else {
      parts.push_back(report.training_exact ? "training is bit-exact (weights, optimizer, RNG, batcher, schedule, "
                                              "early stopping and every series)"
                                            : "every series is equal");
    }
    if (!final_diff.empty()) parts.push_back("the final state differs in " + join_names(final_diff));
    for (const auto& culprit : report.culprits) {
      if (culprit.cause == "not_restored")
        parts.push_back(
            fmt::format("resuming does not restore {} (the step-{} checkpoint loaded and saved again "
                        "differs: {})",
                        culprit.component, o.at, culprit.detail));
      else
        parts.push_back(
            fmt::format("{} state is not fully saved: it round-trips through the checkpoint, yet ends "
                        "differently after the resume ({})",
                        culprit.component, culprit.detail));
    }
    if (!pre.empty()) {
      parts.push_back(fmt::format(
          "two runs from scratch already differ at step {} before any save ({}): training is not deterministic with "
          "these settings{}; see `traindx determinism`",
          o.at, join_names(pre), report.deterministic ? "" : " (run.deterministic = false)"));
    }
    if (report.culprits.empty() && pre.empty()) {
      parts.push_back(fmt::format(
          "the checkpoint round-trips exactly and training is deterministic up to step {}, so the difference comes "
          "from state the checkpoint does not hold",
          o.at));
    }
    report.diagnosis = "not bit-exact: " + parts.front();
    for (size_t i = 1; i < parts.size(); ++i) report.diagnosis += "; " + parts[i];
  }
  report.work_dir = work.temporary() ? "" : w;
  report.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return report;
}

Json RunPairResult::to_json() const {
  Json rows = Json::array();
  for (const auto& l : layers) rows.push_back(l.to_json());
  return {{"pair", pair},
          {"description", description},
          {"ran", skipped.empty()},
          {"skipped", skipped.empty() ? Json() : Json(skipped)},
          {"equal", equal()},
          {"loss_equal", loss_equal},
          {"weights_equal", weights_equal},
          {"first_step", first_step ? Json(*first_step) : Json()},
          {"loss_a", loss_a ? Json(*loss_a) : Json()},
          {"loss_b", loss_b ? Json(*loss_b) : Json()},
          {"pass", pass.empty() ? Json() : Json(pass)},
          {"first_layer", first_layer.empty() ? Json() : Json(first_layer)},
          {"op", op.empty() ? Json() : Json(op)},
          {"layers", rows},
          {"final_weights",
           worst_tensor.empty() ? Json() : Json{{"tensor", worst_tensor}, {"comparison", final_weights.to_json()}}},
          {"message", message}};
}

bool DeterminismReport::reproducible() const {
  for (const auto& p : pairs)
    if ((p.pair == "same_process" || p.pair == "fresh_process") && p.skipped.empty() && !p.equal()) return false;
  return true;
}

Json DeterminismReport::to_json() const {
  auto list = [](const std::vector<RunPairResult>& ps) {
    Json a = Json::array();
    for (const auto& p : ps) a.push_back(p.to_json());
    return a;
  };
  return {{"check", "determinism"},
          {"steps", steps},
          {"deterministic", deterministic},
          {"threads", threads},
          {"reproducible", reproducible()},
          {"pairs", list(pairs)},
          {"deterministic_mode",
           deterministic_fixes ? Json{{"pairs", list(deterministic_pairs)}, {"fixes", *deterministic_fixes}} : Json()},
          {"work_dir", work_dir.empty() ? Json() : Json(work_dir)},
          {"seconds", seconds}};
}

DeterminismReport determinism_check(const Config& config, const DeterminismOptions& o) {
  TRAINDX_CHECK(o.steps >= 1, UsageError, "--steps must be at least 1, got {}", o.steps);
  const auto t0 = Clock::now();
  WorkDir work(o.work_dir, "traindx-determinism");
  DeterminismReport report;
  report.steps = o.steps;
  report.deterministic = config.get_bool("run.deterministic");
  report.threads = config.get_int("run.threads");
  report.pairs = run_pairs(config, o, work.path() + "/as-configured");
  bool differed = false;
  for (const auto& p : report.pairs) differed = differed || (p.skipped.empty() && !p.equal());
  if (differed && !report.deterministic && o.try_deterministic) {
    const Config det = with_value(config, "run.deterministic", true, "determinism");
    report.deterministic_pairs = run_pairs(det, o, work.path() + "/deterministic");
    bool fixes = true;
    for (size_t i = 0; i < report.pairs.size(); ++i)
      if (report.pairs[i].skipped.empty() && !report.pairs[i].equal() && !report.deterministic_pairs[i].equal())
        fixes = false;
    report.deterministic_fixes = fixes;
  }
  report.work_dir = work.temporary() ? "" : work.path();
  report.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return report;
}

}  // namespace traindx
