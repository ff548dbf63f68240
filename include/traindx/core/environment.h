#pragma once
/// The environment: the facts that can change numerical results (versions, CPU, BLAS, threads, deterministic
/// flags), and the switches that make a run reproducible.
#include <cstdint>
#include <string>

#include "traindx/core/config.h"

namespace traindx {

/// traindx version, e.g. "0.1.0".
const char* traindx_version();
/// Git commit traindx was built from ("unknown" outside a checkout).
const char* traindx_git_commit();

/// A fingerprint of everything that can change results: traindx and LibTorch versions, compiler, CPU model and
/// ISA flags, ATen CPU capability, the BLAS library actually loaded and its thread count, oneDNN, intra/inter-op thread counts,
/// deterministic-algorithm flags, OS and kernel. Stable key names; stored in every report and checkpoint.
Json environment_fingerprint();

/// Differences between two fingerprints as {"key": {"a": .., "b": ..}} (empty object when equal).
Json diff_fingerprints(const Json& a, const Json& b);

/// Applies run.threads and run.deterministic to this process: LibTorch intra-op threads and OpenBLAS's own
/// threads (when OpenBLAS is the loaded BLAS), deterministic algorithms (ops without a deterministic
/// implementation then throw, naming the op).
void apply_runtime_settings(int64_t threads, bool deterministic);

/// Makes glibc's malloc keep freed large buffers for reuse instead of returning them to the kernel at every free:
/// a training step frees and reallocates the same activation and gradient buffers, and with glibc's defaults each
/// one is page-faulted in again (15% of a small CNN's step time here). Process-wide, so the CLI calls it at start-up
/// and a user's own program may; the library never does it behind a caller's back. Returns false where the
/// allocator is not glibc's (nothing changed).
bool keep_freed_memory_for_reuse();

/// OpenBLAS's thread count, or 0 when the loaded BLAS is not OpenBLAS.
int blas_threads();

/// Seeds LibTorch's default generators (CPU and, if present, CUDA) from the run seed.
void seed_everything(uint64_t seed);

}  // namespace traindx
