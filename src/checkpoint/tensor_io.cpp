// The LibTorch side of the tensor formats: RawTensor <-> torch::Tensor, files on disk, tensor hashes.
// Parsing and validation live in the torch-free safetensors_*.cpp and torch_zip_*.cpp.
#include <torch/torch.h>

#include <cstring>

#include "traindx/checkpoint/tensor_convert.h"
#include "traindx/core/error.h"
#include "traindx/store/run_store.h"

namespace traindx {
namespace {

struct DtypeName {
  torch::ScalarType type;
  const char* name;
};
constexpr DtypeName kDtypes[] = {
    {torch::kFloat64, "F64"}, {torch::kFloat32, "F32"}, {torch::kFloat16, "F16"}, {torch::kBFloat16, "BF16"},
    {torch::kInt64, "I64"},   {torch::kInt32, "I32"},   {torch::kInt16, "I16"},   {torch::kInt8, "I8"},
    {torch::kUInt8, "U8"},    {torch::kBool, "BOOL"},
};

torch::ScalarType scalar_type_of(const std::string& dtype) {
  for (const auto& d : kDtypes) {
    if (dtype == d.name) return d.type;
  }
  TRAINDX_FAIL(CheckpointError, "unsupported dtype '{}'", dtype);
}

/// A contiguous CPU tensor with the same values, or `tensor` itself when it already is one.
torch::Tensor contiguous_cpu(const torch::Tensor& tensor, const char* doing) {
  TRAINDX_CHECK(tensor.defined(), CheckpointError, "cannot {} an undefined tensor", doing);
  TRAINDX_CHECK(tensor.layout() == torch::kStrided && !tensor.is_quantized(), CheckpointError,
                "cannot {} a {} tensor: only dense (strided, non-quantized) tensors are supported", doing,
                tensor.is_quantized() ? std::string("quantized") : fmt::format("{}", c10::str(tensor.layout())));
  TRAINDX_CHECK(safetensors_dtype(tensor.scalar_type()).has_value(), CheckpointError,
                "cannot {} a tensor of dtype {}: traindx supports float64/32/16, bfloat16, int64/32/16/8, uint8 "
                "and bool",
                doing, c10::toString(tensor.scalar_type()));
  return tensor.to(torch::kCPU).contiguous();
}

std::vector<int64_t> shape_of(const torch::Tensor& tensor) {
  const auto sizes = tensor.sizes();
  return std::vector<int64_t>(sizes.begin(), sizes.end());
}

}  // namespace

std::string torch_dtype_name(torch::ScalarType type) {
  switch (type) {
    case torch::kFloat32: return "float32";
    case torch::kFloat64: return "float64";
    case torch::kFloat16: return "float16";
    case torch::kBFloat16: return "bfloat16";
    case torch::kInt64: return "int64";
    case torch::kInt32: return "int32";
    case torch::kInt16: return "int16";
    case torch::kInt8: return "int8";
    case torch::kUInt8: return "uint8";
    case torch::kBool: return "bool";
    default: return c10::toString(type);
  }
}

std::optional<std::string> safetensors_dtype(torch::ScalarType type) {
  for (const auto& d : kDtypes) {
    if (d.type == type) return std::string(d.name);
  }
  return std::nullopt;
}

torch::Tensor to_torch(const RawTensor& raw) {
  validate_raw_tensor(raw, "cannot convert tensor");
  torch::Tensor out = torch::empty(raw.shape, torch::TensorOptions().dtype(scalar_type_of(raw.dtype)));
  if (!raw.bytes.empty()) std::memcpy(out.data_ptr(), raw.bytes.data(), raw.bytes.size());
  return out;
}

RawTensor from_torch(const torch::Tensor& tensor) {
  const torch::Tensor dense = contiguous_cpu(tensor, "store");
  RawTensor raw{*safetensors_dtype(dense.scalar_type()), shape_of(dense), std::string()};
  raw.bytes.assign(static_cast<const char*>(dense.data_ptr()), dense.numel() * dense.element_size());
  return raw;
}

LoadedTensors read_safetensors(const std::string& path) {
  const std::string bytes = read_file(path);
  SafetensorsIndex index = parse_safetensors_index(bytes, path);
  LoadedTensors loaded;
  loaded.metadata = std::move(index.metadata);
  loaded.tensors.reserve(index.entries.size());
  // Straight from the file image into each tensor: one copy, no intermediate RawTensor.
  for (auto& entry : index.entries) {
    torch::Tensor t = torch::empty(entry.shape, torch::TensorOptions().dtype(scalar_type_of(entry.dtype)));
    if (entry.size > 0) std::memcpy(t.data_ptr(), bytes.data() + entry.offset, entry.size);
    loaded.tensors.emplace_back(std::move(entry.name), std::move(t));
  }
  return loaded;
}

std::vector<std::string_view> SafetensorsPieces::views() const {
  std::vector<std::string_view> out;
  out.reserve(1 + data.size());
  out.emplace_back(header);
  for (const auto& t : data)
    out.emplace_back(static_cast<const char*>(t.data_ptr()), static_cast<size_t>(t.numel()) * t.element_size());
  return out;
}

SafetensorsPieces safetensors_pieces(const NamedTensors& tensors, const TensorMetadata& metadata,
                                     const std::string& path) {
  std::vector<torch::Tensor> dense;
  std::vector<TensorLayout> layouts;
  dense.reserve(tensors.size());
  layouts.reserve(tensors.size());
  for (const auto& [name, tensor] : tensors) {
    try {
      dense.push_back(contiguous_cpu(tensor, "store"));
    } catch (const CheckpointError& e) {
      TRAINDX_FAIL(CheckpointError, "{}: tensor '{}': {}", path, name, e.what());
    }
    const auto& t = dense.back();
    layouts.push_back({name, *safetensors_dtype(t.scalar_type()), shape_of(t),
                       static_cast<uint64_t>(t.numel()) * t.element_size()});
  }
  SafetensorsPieces out;
  try {
    SafetensorsHeader header = safetensors_header(layouts, metadata);
    out.header = std::move(header.bytes);
    out.data.reserve(dense.size());
    for (const size_t i : header.order) out.data.push_back(std::move(dense[i]));
  } catch (const CheckpointError& e) {
    TRAINDX_FAIL(CheckpointError, "{}: {}", path, e.what());
  }
  return out;
}

void write_safetensors(const std::string& path, const NamedTensors& tensors, const TensorMetadata& metadata) {
  // Streamed from the tensors' memory: no file image, so peak memory stays at the tensors themselves.
  const SafetensorsPieces pieces = safetensors_pieces(tensors, metadata, path);
  write_file_atomic(path, pieces.views());
}

NamedTensors read_torch_state_dict(const std::string& path, const TorchLoadLimits& limits,
                                   std::vector<std::string>* skipped) {
  TorchStateDict state = [&] {
    const std::string bytes = read_file(path);
    return parse_torch_state_dict(bytes, path, limits);
  }();  // the file image is freed here, before the tensors are built
  NamedTensors out;
  out.reserve(state.tensors.size());
  for (auto& [name, raw] : state.tensors) {
    out.emplace_back(name, to_torch(raw));
    raw.bytes = std::string();  // release as we go: peak memory stays near one copy of the tensors
  }
  if (skipped != nullptr) *skipped = std::move(state.skipped);
  return out;
}

bool same_bits(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
  const torch::Tensor ca = a.detach().cpu().contiguous();
  const torch::Tensor cb = b.detach().cpu().contiguous();
  return std::memcmp(ca.data_ptr(), cb.data_ptr(), static_cast<size_t>(ca.numel()) * ca.element_size()) == 0;
}

std::string hash_tensor(const torch::Tensor& tensor) {
  const torch::Tensor dense = contiguous_cpu(tensor, "hash");
  TensorHasher hasher(*safetensors_dtype(dense.scalar_type()), shape_of(dense));
  hasher.update(dense.data_ptr(), static_cast<size_t>(dense.numel()) * dense.element_size());
  return hasher.hex_digest();
}

}  // namespace traindx
