#pragma once
/// Checkpoint tools behind `traindx ckpt inspect | diff | import | export` (docs/checkpoints.md). Each returns
/// data (one JSON model, or a struct with to_json()); the console renderers below and `--json` are two views of
/// the same data, so the CLI stays a thin shell.
#include <torch/types.h>

#include <optional>
#include <string>
#include <vector>

#include "traindx/checkpoint/checkpoint.h"
#include "traindx/checkpoint/investigate.h"
#include "traindx/checkpoint/tensor_convert.h"

namespace traindx {

// ---- inspect ---------------------------------------------------------------------------------------------------

/// Describes a checkpoint after load_checkpoint has verified the manifest hash and every tensor hash.
/// The document ({"kind": "traindx.ckpt.inspect", "version": 1, ...}) holds: the checkpoint directory, step,
/// created_at, traindx and LibTorch versions, model (layers, parameter count, dtype), optimizer (name, slots with
/// their tensor counts, per-parameter step counts), schedule position (name, base and current learning rate, step
/// of total), batcher position, early stopping, data info, probe (split, examples, tensors), metrics, an
/// environment summary and, per tensor file, a table of tensors (name, dtype, shape, numel, bytes, hash).
/// Throws CheckpointError / IoError as load_checkpoint does (corrupt, truncated, hash mismatch, not a checkpoint).
Json inspect_checkpoint(const std::string& path);

/// The console view of inspect_checkpoint()'s document. Tensor tables list every model tensor and every optimizer
/// tensor; rng and probe tensors are summarised.
std::string render_inspection(const Json& inspection);

// ---- diff ------------------------------------------------------------------------------------------------------

/// How one tensor of checkpoint B differs from the tensor of the same name and file in checkpoint A.
struct TensorDifference {
  std::string file;    ///< "model", "optimizer", "rng", "probe"
  std::string name;
  /// "identical" (same dtype, shape and bits), "different" (same dtype and shape, other bits), "dtype" (same shape,
  /// other dtype: compared as values), "shape" (not comparable), "only_a", "only_b".
  std::string status;
  std::string dtype_a, dtype_b;
  std::vector<int64_t> shape_a, shape_b;
  /// B against A as reference (relative errors divide by |A|) when the shapes agree. Integer and bool tensors are
  /// compared as float64 values.
  std::optional<TensorComparison> comparison;
  Json to_json() const;
};

/// Everything that differs between two checkpoints.
struct CheckpointDiff {
  std::string a, b;                       ///< resolved checkpoint directories
  std::vector<TensorDifference> tensors;  ///< every tensor of both, file by file (model, optimizer, rng, probe)
  /// Differing config keys after defaults: {"train.lr": {"a": 0.1, "b": 0.2}} (arrays such as model.layers
  /// compare as one value).
  Json config = Json::object();
  /// Differing manifest state outside config, tensors and environment, as dotted paths: {"step": {"a","b"},
  /// "trainer.batcher.position": ..., "optimizer.scalars.fc1.weight.step": ...}. created_at is not compared.
  Json manifest = Json::object();
  Json environment = Json::object();      ///< diff_fingerprints(A's, B's)
  /// True when every tensor is bit-identical and neither config nor manifest state differs. Environment
  /// differences are reported but do not count: they say where the state was computed, not what it is.
  bool identical() const;
  /// `ckpt diff`'s exit code: 0 identical, 1 different.
  int exit_code() const { return identical() ? 0 : 1; }
  /// Per-file counts of each status, for summaries.
  Json file_summary() const;
  Json to_json() const;
};

/// Loads both checkpoints (verifying their hashes) and compares them. Throws as load_checkpoint.
CheckpointDiff diff_checkpoints(const std::string& a, const std::string& b);

/// The console view of a diff. Model and optimizer tensors get one row each (identical ones collapsed into a count
/// unless `all_tensors`); rng and probe get a summary; then config, manifest and environment differences.
std::string render_diff(const CheckpointDiff& diff, bool all_tensors = false);

// ---- import / export -------------------------------------------------------------------------------------------

/// Tensors read from a weights file.
struct WeightsFile {
  std::string path;
  std::string format;                ///< "torch.save" or "safetensors"
  NamedTensors tensors;              ///< in file order
  std::vector<std::string> skipped;  ///< torch.save: keys whose values are not tensors
  TensorMetadata metadata;           ///< safetensors: its __metadata__
};

/// Reads model weights from a PyTorch `torch.save(model.state_dict())` zip archive (restricted reader: never
/// executes code) or a safetensors file, told apart by their first bytes, not by the file name.
/// Throws IoError if unreadable, CheckpointError for a legacy (pre-1.6, non-zip) torch.save file, a TorchScript
/// archive, or anything the readers refuse.
WeightsFile read_weights_file(const std::string& path);

/// What import_state_dict did.
struct ImportReport {
  std::string source;      ///< the weights file
  std::string format;      ///< as WeightsFile::format
  std::string checkpoint;  ///< the checkpoint directory written
  int64_t tensors = 0;     ///< tensors loaded into the model
  std::vector<std::string> skipped;
  KeyReport keys;          ///< missing, unexpected and reshaped are empty; retyped lists converted dtypes
  Json to_json() const;
};

/// Imports foreign weights as a full traindx checkpoint that `ckpt verify` and `train --resume` accept: builds a
/// Trainer from `config` (prepares the data, so the pipeline is fitted and a golden probe can be made; builds the
/// model from model.layers or model.torchscript), loads every tensor strictly by name (dtypes are converted), and
/// saves a step-0 checkpoint under `out` (a checkpoint root; empty: <run.out_root>/<file stem>-import) recording
/// the source file and its hash in the manifest's extra.import. Throws CheckpointError listing missing,
/// unexpected and reshaped keys with a suggested name mapping when the file does not fit the model; IoError when
/// `out` exists and is not an empty directory; ConfigError/DataError/ModelError from building the trainer.
ImportReport import_state_dict(const std::string& path, const Config& config, const std::string& out = "");

/// The message import_state_dict throws for a key mismatch: the lists, and the renames that would fit when a
/// missing model key and an unexpected file key have the same attribute (weight, bias, running_mean...) and shape,
/// paired in order (PyTorch nn.Sequential names like "features.0.weight" versus traindx's "conv1.weight").
/// `model_tensors` are the model's parameters and buffers in model order, `file_tensors` the file's tensors in
/// module order (import_state_dict keeps a torch.save dict's order and sorts a safetensors file's names
/// numerically, "net.2" before "net.10").
std::string key_mismatch_message(const KeyReport& keys, const NamedTensors& model_tensors,
                                 const NamedTensors& file_tensors);

/// What export_safetensors wrote.
struct ExportReport {
  std::string checkpoint;   ///< the resolved checkpoint directory
  std::string path;         ///< the file written
  int64_t tensors = 0;
  int64_t bytes = 0;        ///< file size
  TensorMetadata metadata;
  Json to_json() const;
};

/// Writes the model tensors (parameters and buffers, under their model names) of a verified checkpoint as one
/// plain safetensors file, atomically. Metadata: "format" = "pt" (what Hugging Face loaders expect of a PyTorch
/// state dict), "traindx.version", "traindx.step", "traindx.config_hash" (hash_bytes of the effective config
/// TOML), "traindx.manifest_hash", "traindx.dtype". Throws as load_checkpoint, IoError if `out` cannot be written.
ExportReport export_safetensors(const std::string& checkpoint, const std::string& out);

}  // namespace traindx
