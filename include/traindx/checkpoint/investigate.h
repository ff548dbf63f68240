#pragma once
/// The investigator: when a reloaded model does not reproduce what it computed in training, test each hypothesis
/// (train mode, BatchNorm statistics, keys, dtype, preprocessing, environment, nondeterminism, thread count), report
/// the ones that hold with their evidence, and localise the first layer whose output leaves tolerance.
///
/// Tolerances come from the dtype and the depth, not from guesses (docs/checkpoints.md): a layer at depth d (the
/// number of parametrised layers up to and including it) is within tolerance when |a - b| <= tol * (1 + |b|)
/// elementwise (numpy's allclose with atol = rtol = tol) with tol = 64 * eps(dtype) * (1 + d): 64 eps covers the
/// reordering of one reduction of up to ~4k terms (error ~ sqrt(n) eps), and each parametrised layer may add that
/// much again.
#include <torch/types.h>

#include <optional>
#include <string>
#include <vector>

#include "traindx/checkpoint/checkpoint.h"
#include "traindx/model/model.h"

namespace traindx {

/// Elementwise tolerance |a - b| <= value * (1 + |b|).
struct Tolerance {
  double value = 0.0;
  std::string derivation;  ///< how it was derived, for reports
  Json to_json() const;
};

/// Tolerance for outputs of `dtype` after `depth` parametrised layers (formula above).
Tolerance derive_tolerance(torch::ScalarType dtype, int64_t depth);

/// How two tensors differ. ULPs are measured in the coarser of the two dtypes.
struct TensorComparison {
  bool same_shape = true;
  bool bitwise_equal = false;
  int64_t numel = 0;
  int64_t differing = 0;     ///< elements not bitwise equal
  double max_abs = 0.0, mean_abs = 0.0;
  double max_rel = 0.0;      ///< max |a - b| / max(|b|, tiny)
  double max_scaled = 0.0;   ///< max |a - b| / (1 + |b|): what Tolerance::value bounds
  double cosine = 1.0;
  int64_t max_ulps = 0;
  int64_t nonfinite_mismatch = 0;  ///< elements finite in one and not in the other
  bool within(const Tolerance& tol) const;
  Json to_json() const;
};

/// Compares `current` against `reference` (any floating dtypes; both moved to CPU).
TensorComparison compare_tensors(const torch::Tensor& current, const torch::Tensor& reference);

/// One row of a layer-by-layer comparison.
struct LayerComparison {
  std::string layer;
  int64_t depth = 0;
  TensorComparison comparison;
  Tolerance tolerance;
  bool within = true;
  Json to_json() const;
};

/// Runs `reference` on `reference_input` and `current` on `current_input` with taps and compares the outputs of
/// layers with the same name, in the reference's order. Modes are whatever the models are set to.
std::vector<LayerComparison> compare_layers(Model& reference, const torch::Tensor& reference_input, Model& current,
                                            const torch::Tensor& current_input);

/// The first row outside tolerance, or nullptr.
const LayerComparison* first_divergence(const std::vector<LayerComparison>& rows);

/// A tested explanation.
struct Hypothesis {
  std::string id;       ///< train_mode, batchnorm_statistics, keys, dtype, preprocessing, environment,
                        ///< nondeterminism, thread_count
  bool holds = false;
  std::string message;  ///< what was seen, with numbers
  Json evidence = Json::object();
  std::string fix;      ///< what to do
  Json to_json() const;
};

/// What `ckpt verify` may change about the current process to reproduce a user's situation.
struct VerifyOptions {
  std::optional<int64_t> threads;     ///< intra-op threads for the current run (default: as saved)
  bool train_mode = false;            ///< run the current model in train mode (a forgotten model.eval())
  std::vector<std::string> sets;      ///< config overrides for the current run (e.g. data.scaler=minmax)
  std::string weights;                ///< alternative weights for the current model (.safetensors or torch.save)
  bool localise = true;               ///< run the layer-by-layer comparison on a mismatch
};

/// The result of verify_checkpoint.
struct VerifyReport {
  std::string checkpoint;
  std::string verdict;                ///< "identical", "within_tolerance", "mismatch"
  TensorComparison outputs;           ///< current vs golden outputs
  Tolerance tolerance;
  KeyReport keys;
  std::vector<Hypothesis> hypotheses; ///< every hypothesis tested, holding ones first
  std::vector<LayerComparison> layers;
  std::string first_divergent_layer;  ///< empty when none
  Json environment_diff = Json::object();
  double seconds = 0.0;
  int exit_code() const { return verdict == "mismatch" ? 1 : 0; }
  Json to_json() const;
};

/// Rebuilds the model of a checkpoint in this process, replays the golden probe through the stored preprocessing
/// in eval mode (or under `options`) and compares with the golden outputs; on any difference tests the hypotheses
/// and localises. Throws CheckpointError for a corrupt checkpoint, ConfigError for bad overrides.
VerifyReport verify_checkpoint(const std::string& path, const VerifyOptions& options = {});

}  // namespace traindx
