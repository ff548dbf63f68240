#pragma once
/// The manifest.json of a traindx checkpoint, torch-free (the libFuzzer target in fuzz/ builds it with clang):
/// everything a checkpoint holds that is not a tensor, each tensor's hash, and a hash of the manifest itself.
/// Layout and fields: docs/checkpoints.md. A manifest is hostile input like any file: its hash is not a signature
/// (anyone can recompute it), so every field a reader uses is checked for presence and type here, once, and the
/// readers then rely on it.
#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

namespace traindx {

/// The "format" value of every traindx checkpoint manifest.
inline constexpr const char* kCheckpointFormat = "traindx-checkpoint";
/// The newest manifest version this build writes and reads.
inline constexpr int kCheckpointFormatVersion = 1;

/// The tensor files of a checkpoint directory, in the order the manifest's "tensors" table and Checkpoint list them.
inline constexpr const char* kCheckpointTensorFiles[] = {"model.safetensors", "optimizer.safetensors",
                                                         "rng.safetensors", "probe.safetensors"};

/// XXH3-128 of the manifest's canonical dump without its "manifest_hash" field.
std::string checkpoint_manifest_hash(nlohmann::json manifest);

/// Parses and checks a manifest; `source` names it in errors. Throws CheckpointError naming the source and the key
/// when: the text is not a JSON object (or nests deeper than 64 levels); "format" is not kCheckpointFormat;
/// "version" is not an integer from 1 to kCheckpointFormatVersion; "manifest_hash" is missing or does not match;
/// "tensors" is not an object holding, for each of model, optimizer, rng and probe .safetensors, an object of tensor
/// name to 32 hex digits; or a field the readers use is missing or of another type (step, config_toml, environment,
/// model, optimizer, trainer, pipeline, data_info, probe, metrics, extra, with the members docs/checkpoints.md
/// lists).
nlohmann::json parse_checkpoint_manifest(std::string_view text, const std::string& source);

}  // namespace traindx
