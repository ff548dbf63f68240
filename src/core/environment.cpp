#include "traindx/core/environment.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <dlfcn.h>
#include <malloc.h>
#include <sys/utsname.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <fstream>
#include <set>
#include <sstream>

#include "traindx/core/build_info.h"
#include "traindx/core/text.h"

namespace traindx {
namespace {

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) return trim(line.substr(line.find(':') + 1));
  return "unknown";
}

// The ISA extensions that select different CPU kernels in ATen and BLAS.
std::vector<std::string> cpu_isa_flags() {
  static const std::set<std::string> relevant = {"sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw",
                                                 "avx512vl", "avx512_vnni", "avx512_bf16", "amx_tile"};
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  std::vector<std::string> out;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream words(line.substr(line.find(':') + 1));
    std::string w;
    while (words >> w)
      if (relevant.count(w)) out.push_back(w);
    break;
  }
  return out;
}

// The BLAS really mapped into this process (Debian's alternatives decide which libblas.so.3 it is).
std::string loaded_blas() {
  std::ifstream in("/proc/self/maps");
  std::string line;
  std::set<std::string> libs;
  while (std::getline(in, line)) {
    const auto slash = line.find('/');
    if (slash == std::string::npos) continue;
    const std::string path = line.substr(slash);
    const std::string lower = to_lower(path);
    if (lower.find("blas") != std::string::npos || lower.find("mkl") != std::string::npos) libs.insert(path);
  }
  std::string out;
  for (const auto& l : libs) out += (out.empty() ? "" : ";") + l;
  return out.empty() ? "none loaded" : out;
}

std::string cpu_capability() {
  // ATen reports the kernel set it dispatches to in its config string ("CPU capability usage: AVX2").
  std::istringstream config(at::show_config());
  std::string line;
  while (std::getline(config, line)) {
    const auto pos = line.find("CPU capability usage:");
    if (pos != std::string::npos) return trim(line.substr(pos + 21));
  }
  return "unknown";
}

// OpenBLAS's thread-count controls, looked up at run time: libblas.so.3 is whichever BLAS Debian's alternatives
// chose (OpenBLAS, BLIS, reference), so traindx cannot link against OpenBLAS's own symbols.
using SetBlasThreads = void (*)(int);
using GetBlasThreads = int (*)();

SetBlasThreads openblas_set_threads() {
  static const auto fn = reinterpret_cast<SetBlasThreads>(::dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  return fn;
}

GetBlasThreads openblas_get_threads() {
  static const auto fn = reinterpret_cast<GetBlasThreads>(::dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  return fn;
}

}  // namespace

int blas_threads() {
  const auto get = openblas_get_threads();
  return get ? get() : 0;
}

const char* traindx_version() { return TRAINDX_VERSION; }
const char* traindx_git_commit() { return TRAINDX_GIT_COMMIT; }

Json environment_fingerprint() {
  struct utsname u {};
  uname(&u);
  Json f;
  f["traindx_version"] = TRAINDX_VERSION;
  f["traindx_commit"] = TRAINDX_GIT_COMMIT;
  f["traindx_build_type"] = TRAINDX_BUILD_TYPE;
  f["compiler"] = TRAINDX_COMPILER;
  f["libtorch_version"] = TORCH_VERSION;
  f["cpu_model"] = cpu_model();
  f["cpu_isa"] = cpu_isa_flags();
  f["aten_cpu_capability"] = cpu_capability();
  f["blas"] = loaded_blas();
  f["blas_threads"] = blas_threads();
  f["mkldnn"] = at::hasMKLDNN();
  f["cuda_available"] = torch::cuda::is_available();
  f["threads"] = at::get_num_threads();
  f["interop_threads"] = at::get_num_interop_threads();
  f["deterministic_algorithms"] = at::globalContext().deterministicAlgorithms();
  f["os"] = std::string(u.sysname) + " " + u.release;
  f["machine"] = u.machine;
  return f;
}

Json diff_fingerprints(const Json& a, const Json& b) {
  Json out = Json::object();
  for (auto it = a.begin(); it != a.end(); ++it) {
    const Json other = b.contains(it.key()) ? b.at(it.key()) : Json();
    if (other != it.value()) out[it.key()] = {{"a", it.value()}, {"b", other}};
  }
  for (auto it = b.begin(); it != b.end(); ++it)
    if (!a.contains(it.key())) out[it.key()] = {{"a", Json()}, {"b", it.value()}};
  return out;
}

void apply_runtime_settings(int64_t threads, bool deterministic) {
  at::set_num_threads(static_cast<int>(threads));
  // Debian's libopenblas0-pthread starts one worker per core whatever at::set_num_threads says, and idle workers
  // spin in sched_yield between calls: with run.threads = 1 on 2 cores they took a core from everything else
  // (the golden probe, the monitor's statistics, other processes). Matching them keeps run.threads the only knob.
  if (const auto set = openblas_set_threads()) set(static_cast<int>(threads));
  at::globalContext().setDeterministicAlgorithms(deterministic, /*warn_only=*/false);
}

bool keep_freed_memory_for_reuse() {
#ifdef M_MMAP_THRESHOLD
  // glibc's dynamic thresholds hand a training step's large activation and gradient buffers back to the kernel
  // when they are freed and fault them in again at the next step: 2.5M page faults in 200 steps of the Fashion-MNIST
  // CNN, 15% of its step time (docs/benchmarks.md). Buffers up to 32 MB (glibc's maximum threshold) come from the
  // heap instead, and up to 512 MB of freed heap is kept for the next step, as a caching allocator would.
  const bool mmap_ok = ::mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1;
  const bool trim_ok = ::mallopt(M_TRIM_THRESHOLD, 512 << 20) == 1;
  return mmap_ok && trim_ok;
#else
  return false;  // not glibc: its allocator decides
#endif
}

void seed_everything(uint64_t seed) { torch::manual_seed(seed); }

}  // namespace traindx
