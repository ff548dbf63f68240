#pragma once
/// Tensor file formats, LibTorch half: conversions between RawTensor and torch::Tensor, safetensors and
/// torch.save files on disk, tensor hashes. The parsing itself is torch-free (tensor_io.h).
#include <torch/types.h>

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "traindx/checkpoint/tensor_io.h"

namespace traindx {

/// Tensors with their names, in a meaningful order (file order for readers).
using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

/// What read_safetensors returns.
struct LoadedTensors {
  NamedTensors tensors;     ///< in data order, as parse_safetensors_index
  TensorMetadata metadata;  ///< the `__metadata__` map (empty when absent)
};

/// A new contiguous CPU tensor holding a copy of `raw` (on-disk little-endian bytes; traindx builds only on
/// little-endian hosts). Throws CheckpointError if `raw` is invalid (see validate_raw_tensor).
torch::Tensor to_torch(const RawTensor& raw);

/// A contiguous CPU copy of `tensor` as a RawTensor. Throws CheckpointError for an undefined, sparse or
/// quantized tensor, or a dtype outside F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL (e.g. complex).
RawTensor from_torch(const torch::Tensor& tensor);

/// The safetensors dtype name of a torch dtype, or nullopt if traindx cannot store it.
std::optional<std::string> safetensors_dtype(torch::ScalarType type);

/// The name traindx's configs and manifests use for a dtype: "float32", "float64", "float16", "bfloat16",
/// "int64", "int32", "int16", "int8", "uint8", "bool" (LibTorch's own name for others).
std::string torch_dtype_name(torch::ScalarType type);

/// Reads and validates a safetensors file. Throws IoError if `path` cannot be read, CheckpointError naming the
/// path if it is malformed (see parse_safetensors_index).
LoadedTensors read_safetensors(const std::string& path);

/// A safetensors file ready to be written piece by piece: the header, then each tensor's bytes in data order,
/// viewed in place. Contiguous CPU tensors are not copied; others are copied once, into `data`.
struct SafetensorsPieces {
  std::string header;              ///< length prefix and header (safetensors_header)
  std::vector<torch::Tensor> data; ///< contiguous CPU tensors in data order; views() points into them
  /// The file as byte ranges to write in order (valid while this object lives and the tensors are unchanged).
  std::vector<std::string_view> views() const;
};

/// The pieces of the file serialize_safetensors would lay out for `tensors` and `metadata`, byte for byte.
/// Throws CheckpointError naming `path` (used only in messages) and the tensor, as write_safetensors.
SafetensorsPieces safetensors_pieces(const NamedTensors& tensors, const TensorMetadata& metadata = {},
                                     const std::string& path = "safetensors");

/// Writes tensors (any device, layout strided, any memory layout) and metadata as a safetensors file, exactly as
/// serialize_safetensors lays it out, streamed from the tensors' memory (no file image), atomically: a temporary file in the same directory, fsync, rename, fsync of
/// the directory, so `path` holds either the old or the complete new file after a crash.
/// Throws CheckpointError for tensors from_torch refuses or names serialize_safetensors refuses, IoError if the
/// file cannot be written.
void write_safetensors(const std::string& path, const NamedTensors& tensors, const TensorMetadata& metadata = {});

/// Reads the string-keyed tensors of a dict saved by torch.save (e.g. model.state_dict()) as contiguous CPU
/// tensors in the dict's order; other values are skipped (their keys go to *skipped when given).
/// Throws IoError if `path` cannot be read, CheckpointError naming the path for anything
/// parse_torch_state_dict refuses. Never executes code from the file.
NamedTensors read_torch_state_dict(const std::string& path, const TorchLoadLimits& limits = {},
                                   std::vector<std::string>* skipped = nullptr);

/// True when both tensors have the same dtype, shape and bytes (NaN equals the same NaN; 0.0 differs from -0.0).
bool same_bits(const torch::Tensor& a, const torch::Tensor& b);

/// XXH3 128-bit hash (32 hex digits) of the tensor's dtype, shape and bytes in row-major order; equals
/// hash_raw_tensor(from_torch(tensor)) without the copy when the tensor is already contiguous on the CPU.
/// Bitwise: 0.0 and -0.0, or two NaN payloads, hash differently. Throws as from_torch.
std::string hash_tensor(const torch::Tensor& tensor);

}  // namespace traindx
