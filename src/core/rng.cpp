#include "traindx/core/rng.h"

#include <ATen/CPUGeneratorImpl.h>

#include <mutex>
#include <string>

#include "traindx/core/error.h"

namespace traindx {

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

}  // namespace traindx
