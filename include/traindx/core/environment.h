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
/// ISA flags, ATen CPU capability, the BLAS library actually loaded, oneDNN, intra/inter-op thread counts,
/// deterministic-algorithm flags, OS and kernel. Stable key names; stored in every report and checkpoint.
Json environment_fingerprint();

/// Differences between two fingerprints as {"key": {"a": .., "b": ..}} (empty object when equal).
Json diff_fingerprints(const Json& a, const Json& b);

/// Applies run.threads and run.deterministic to this process: LibTorch intra-op threads, deterministic
/// algorithms (ops without a deterministic implementation then throw, naming the op).
void apply_runtime_settings(int64_t threads, bool deterministic);

/// Seeds LibTorch's default generators (CPU and, if present, CUDA) from the run seed.
void seed_everything(uint64_t seed);

}  // namespace traindx
