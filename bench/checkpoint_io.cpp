// Checkpoint save/load throughput, side by side in one run: traindx's saves (the training loop's CheckpointWriter,
// which copies and hashes the state and finishes in the background, timed both to its return and until durable;
// save_checkpoint in the calling thread: safetensors, a hash per tensor, fsync of every file and directory, the
// golden probe's forward pass, the manifest) and load_checkpoint versus torch::save/torch::load of the same tensors
// (model parameters and buffers, optimizer slots, RNG state) through LibTorch's serialize archives, for a small CNN
// (~0.5 MB of parameters) and an MLP with ~50 MB of parameters.
// Also: `ckpt verify` (verify_checkpoint) against its parts, the probe's forward pass and load_checkpoint.
//
//   bench_checkpoint_io [DIR] [--reps N] [--case cnn|mlp]
//
// DIR (default: a fresh directory under the system temp dir) should be on the disk checkpoints go to: fsync cost
// depends on it. Throughput counts the tensor bytes of the state (what both formats must move), and each figure is
// the median of the repetitions. Results: docs/benchmarks.md.
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "traindx/checkpoint/checkpoint.h"
#include "traindx/checkpoint/investigate.h"
#include "traindx/checkpoint/tensor_convert.h"
#include "traindx/core/config.h"
#include "traindx/core/environment.h"

namespace {

namespace fs = std::filesystem;
using traindx::Config;
using traindx::NamedTensor;

const char* const kCommon = R"(
[run]
seed = 1
threads = 1
[data]
source = "fashion-mnist"
max_train = 1024
max_test = 256
[train]
optimizer = "adam"
batch_size = 64
[checkpoint]
probe_size = 64
keep_last = 1000
)";

struct Case {
  const char* name;
  const char* layers;
};

const Case kCases[] = {
    {"cnn (examples/fashion_cnn.toml)",
     R"([{type="conv2d", out=32, kernel=3, padding=1}, {type="batchnorm"}, {type="relu"}, {type="maxpool2d", kernel=2},
         {type="conv2d", out=64, kernel=3, padding=1}, {type="batchnorm"}, {type="relu"}, {type="maxpool2d", kernel=2},
         {type="flatten"}, {type="linear", out=128}, {type="relu"}, {type="dropout", p=0.3}, {type="linear"}])"},
    {"mlp 784-4096-2048-10",
     R"([{type="flatten"}, {type="linear", out=4096}, {type="relu"}, {type="linear", out=2048}, {type="relu"},
         {type="linear"}])"},
};

double seconds_of(const std::function<void()>& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

/// Median seconds of `reps` runs of each function after one warm-up run of each. The functions take turns, so
/// that both sides of a comparison see the same machine (other processes, page cache). Between two timed runs
/// (untimed) the page cache is written back with sync(2): otherwise a write without fsync (torch::save) leaves its
/// writeback, and the discards of files it truncated, to whichever fsync comes next.
/// `untimed[k]`, when given, runs after each run of fs[k] without being timed (e.g. waiting for a background save
/// to finish before the next contender's turn).
std::vector<double> time_medians(int reps, const std::vector<std::function<void()>>& fs,
                                 const std::vector<std::function<void()>>& untimed = {}) {
  auto after = [&](size_t k) {
    if (k < untimed.size() && untimed[k]) untimed[k]();
    ::sync();
  };
  for (size_t k = 0; k < fs.size(); ++k) {
    fs[k]();
    after(k);
  }
  std::vector<std::vector<double>> t(fs.size());
  for (int i = 0; i < reps; ++i) {
    for (size_t k = 0; k < fs.size(); ++k) {
      t[k].push_back(seconds_of(fs[k]));
      after(k);
    }
  }
  std::vector<double> out;
  for (auto& v : t) out.push_back(median(v));
  return out;
}

double time_median(int reps, const std::function<void()>& f) { return time_medians(reps, {f})[0]; }

/// The same state traindx saves, as named tensors for torch's archive.
std::vector<NamedTensor> state_tensors(traindx::Trainer& trainer) {
  std::vector<NamedTensor> out = trainer.model().named_parameters();
  for (const auto& b : trainer.model().named_buffers()) out.push_back(b);
  traindx::Json scalars;
  for (auto& t : traindx::optimizer_state_tensors(trainer.optimizer(), trainer.model().named_parameters(), scalars))
    out.emplace_back("optimizer." + t.first, t.second);
  out.emplace_back("rng.cpu", traindx::cpu_rng_state());
  return out;
}

void torch_save(const std::vector<NamedTensor>& tensors, const std::string& path) {
  torch::serialize::OutputArchive archive;
  for (const auto& [name, t] : tensors) archive.write(name, t.detach());
  archive.save_to(path);
}

std::vector<torch::Tensor> torch_load(const std::vector<NamedTensor>& names, const std::string& path) {
  torch::serialize::InputArchive archive;
  archive.load_from(path);
  std::vector<torch::Tensor> out(names.size());
  for (size_t i = 0; i < names.size(); ++i) archive.read(names[i].first, out[i]);
  return out;
}

void fsync_file(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return;
  ::fsync(::fileno(f));
  std::fclose(f);
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir;
  std::string only;
  int reps = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--reps" && i + 1 < argc) {
      reps = std::stoi(argv[++i]);
    } else if (a == "--case" && i + 1 < argc) {
      only = argv[++i];
    } else {
      dir = a;
    }
  }
  if (dir.empty()) dir = (fs::temp_directory_path() / ("traindx-bench-" + std::to_string(::getpid()))).string();
  fs::create_directories(dir);
  const traindx::Json env = traindx::environment_fingerprint();
  std::printf("checkpoint I/O benchmark in %s\n%s, %s, LibTorch %s, %d thread(s)\n\n", dir.c_str(),
              env.value("cpu_model", "?").c_str(), env.value("blas", "?").c_str(),
              env.value("libtorch_version", "?").c_str(), env.value("threads", 1));
  std::printf("%-32s %9s | %11s %11s %6s | %11s %11s %6s\n", "state", "MB", "traindx save", "torch::save", "ratio",
              "traindx load", "torch::load", "ratio");

  struct Row {
    std::string name;
    double mb, bg, bg_done, ts, ts1, ps, tl, pl, ps_sync, verify, probe, load, fingerprint, hash, serialize, write,
        read;
  };
  std::vector<Row> rows;
  int index = 0;
  for (const auto& c : kCases) {
    if (!only.empty() && std::string(c.name).rfind(only, 0) != 0) continue;
    Config config = Config::from_string(kCommon, "bench");
    config.set(std::string("model.layers=") + c.layers);
    traindx::Trainer trainer(config);
    // One step, so Adam's moments exist and the optimizer state is as large as in any real checkpoint.
    const auto& data = trainer.data();
    trainer.train_step(data.train_x.slice(0, 0, 64), data.train_y.slice(0, 0, 64));
    const std::vector<NamedTensor> state = state_tensors(trainer);
    double bytes = 0;
    for (const auto& [n, t] : state) bytes += static_cast<double>(t.numel() * t.element_size());
    const double mb = bytes / 1e6;
    const int n = reps > 0 ? reps : (mb > 20 ? 5 : 20);

    const std::string root = dir + "/traindx-" + std::to_string(index);
    const std::string torch_file = dir + "/torch-" + std::to_string(index) + ".pt.";
    int torch_files = 0;
    std::string saved;
    Row r;
    r.name = c.name;
    r.mb = mb;
    // A new step per save, so every save takes the common path (a new directory), not the re-save of one step.
    // keep_last is large, so no save pays for deleting an older checkpoint (retention is a policy torch::save does
    // not have; deleting a 140 MB checkpoint cost ~200 ms on our disk, mounted with `discard`). The same save with a
    // one-example probe is the checkpoint's I/O without the golden probe's forward pass.
    const traindx::CheckpointOptions options = traindx::CheckpointOptions::from_config(config);
    traindx::CheckpointOptions small_probe = options;
    small_probe.probe_size = 1;
    // The training loop's save (CheckpointCallback): a CheckpointWriter's save() returns once the state is copied
    // and hashed; the probe, the files, the syncs and `latest` follow on a background thread, waited for untimed
    // (and timed separately below as "until durable").
    traindx::CheckpointWriter writer(root + "-background", options);
    const auto save = time_medians(n,
                                   {[&] {
                                      trainer.set_step(trainer.step() + 1);
                                      writer.save(trainer, config);
                                    },
                                    [&] {
                                      trainer.set_step(trainer.step() + 1);
                                      writer.save(trainer, config);
                                      writer.wait();
                                    },
                                    [&] {
                                         trainer.set_step(trainer.step() + 1);
                                         saved = traindx::save_checkpoint(root, trainer, config, {},
                                                                          traindx::Json::object(), options);
                                       },
                                       [&] {
                                         trainer.set_step(trainer.step() + 1);
                                         traindx::save_checkpoint(root + "-probe1", trainer, config, {},
                                                                  traindx::Json::object(), small_probe);
                                       },
                                       // A new file each time, as traindx writes a new directory each time.
                                       [&] { torch_save(state, torch_file + std::to_string(++torch_files)); },
                                       [&] {
                                         const std::string file = torch_file + std::to_string(++torch_files);
                                         torch_save(state, file);
                                         fsync_file(file);
                                       }},
                                   {[&] { writer.wait(); }});
    r.bg = save[0];
    r.bg_done = save[1];
    r.ts = save[2];
    r.ts1 = save[3];
    r.ps = save[4];
    r.ps_sync = save[5];
    const auto load = time_medians(n, {[&] { (void)traindx::load_checkpoint(saved); },
                                       [&] { (void)torch_load(state, torch_file + std::to_string(torch_files)); }});
    r.tl = load[0];
    r.pl = load[1];
    r.load = r.tl;
    r.verify = time_median(n, [&] { (void)traindx::verify_checkpoint(saved); });
    const traindx::Checkpoint ck = traindx::load_checkpoint(saved);
    const torch::Tensor inputs = ck.probe_tensor("inputs");
    r.probe = time_median(n, [&] {
      torch::NoGradGuard no_grad;
      trainer.model().train(false);
      (void)trainer.model().forward(inputs);
    });
    // Where the time of a save and a load goes (the parts save_checkpoint/load_checkpoint are made of).
    r.fingerprint = time_median(n, [] { (void)traindx::environment_fingerprint(); });
    r.hash = time_median(n, [&] {
      for (const auto& [name, t] : state) (void)traindx::hash_tensor(t);
    });
    // The header and the views the writer streams (no copy of tensor data since the streaming writer).
    r.serialize = time_median(n, [&] { (void)traindx::safetensors_pieces(state).views(); });
    // A new file each time: replacing one would add the old file's deletion (~200 ms for 140 MB on a disk mounted
    // with `discard`) to the write.
    int st_files = 0;
    const std::string st_file = dir + "/state.safetensors.";
    r.write = time_median(n, [&] { traindx::write_safetensors(st_file + std::to_string(++st_files), state); });
    r.read = time_median(n, [&] { (void)traindx::read_safetensors(st_file + std::to_string(st_files)); });
    for (int i = 1; i <= st_files; ++i) fs::remove(st_file + std::to_string(i));
    std::printf("%-32s %9.2f | %8.0f MB/s %6.0f MB/s %5.2fx | %8.0f MB/s %6.0f MB/s %5.2fx\n", c.name, mb, mb / r.bg,
                mb / r.ps, r.ps / r.bg, mb / r.tl, mb / r.pl, r.pl / r.tl);
    std::fflush(stdout);
    rows.push_back(r);
    fs::remove_all(root);
    fs::remove_all(root + "-probe1");
    fs::remove_all(root + "-background");
    for (int i = 1; i <= torch_files; ++i) fs::remove(torch_file + std::to_string(i));
    ++index;
  }
  std::printf("\nratio = torch time / traindx time (>= 1.0: traindx is at least as fast); traindx save = the\n"
              "training loop's save (CheckpointWriter::save, hashing included; written and synced in the background)\n");
  std::printf("\nsave in ms: background save (the training loop's stall), the same until durable, save_checkpoint\n"
              "in the calling thread (64-example probe), the same with a 1-example probe (the I/O), the probe's\n"
              "forward pass alone, torch::save, torch::save + fsync; ratios: torch::save / background save,\n"
              "torch::save + fsync / background save until durable\n");
  std::printf("%-32s %9s %9s %9s %9s %9s %9s %9s %8s %8s\n", "state", "bg save", "durable", "in-thread", "1-probe",
              "probe", "torch", "+fsync", "ratio", "durable");
  for (const auto& r : rows)
    std::printf("%-32s %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f %7.2fx %7.2fx\n", r.name.c_str(), r.bg * 1e3,
                r.bg_done * 1e3, r.ts * 1e3, r.ts1 * 1e3, r.probe * 1e3, r.ps * 1e3, r.ps_sync * 1e3, r.ps / r.bg,
                r.ps_sync / r.bg_done);
  std::printf("\nverify in ms: verify_checkpoint, its load_checkpoint, the probe's forward pass\n");
  for (const auto& r : rows)
    std::printf("%-32s %9.2f %9.2f %9.2f\n", r.name.c_str(), r.verify * 1e3, r.load * 1e3, r.probe * 1e3);
  std::printf("\n%-32s %12s %12s %12s %14s %12s\n", "state", "fingerprint", "hash all", "layout",
              "write+fsync", "read+parse");
  for (const auto& r : rows)
    std::printf("%-32s %9.2f ms %9.2f ms %9.2f ms %11.2f ms %9.2f ms\n", r.name.c_str(), r.fingerprint * 1e3,
                r.hash * 1e3, r.serialize * 1e3, r.write * 1e3, r.read * 1e3);
  std::printf("\nverify = load_checkpoint (hashes) + rebuilding the model + the probe's forward pass + comparison\n");
  fs::remove_all(dir);
  return 0;
}
