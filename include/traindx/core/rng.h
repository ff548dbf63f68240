#pragma once
/// LibTorch's default CPU generator: its state read and restored under the generator's mutex, and a scope that
/// puts it back, for work that draws random numbers only as a side effect (building a model copy, a gradient check)
/// and must not change what training draws next.
#include <torch/types.h>

namespace traindx {

/// The CPU generator state (5056 bytes in LibTorch 1.13).
torch::Tensor cpu_rng_state();

/// Restores a state cpu_rng_state() returned. Throws CheckpointError when it does not fit this LibTorch.
void set_cpu_rng_state(const torch::Tensor& state);

/// Puts the CPU generator's state back when the scope ends.
class CpuRngScope {
 public:
  CpuRngScope() : state_(cpu_rng_state()) {}
  CpuRngScope(const CpuRngScope&) = delete;
  CpuRngScope& operator=(const CpuRngScope&) = delete;
  ~CpuRngScope() { set_cpu_rng_state(state_); }  // a state read from this LibTorch always fits it

 private:
  torch::Tensor state_;
};

}  // namespace traindx
