// Dtype table and RawTensor validation shared by both formats. Torch-free: compiled into the fuzz targets.
#include <limits>

#include "traindx/checkpoint/tensor_io.h"
#include "traindx/core/error.h"

namespace traindx {

std::optional<size_t> dtype_element_size(std::string_view dtype) {
  if (dtype == "F64" || dtype == "I64") return 8;
  if (dtype == "F32" || dtype == "I32") return 4;
  if (dtype == "F16" || dtype == "BF16" || dtype == "I16") return 2;
  if (dtype == "I8" || dtype == "U8" || dtype == "BOOL") return 1;
  return std::nullopt;
}

std::optional<uint64_t> element_count(const std::vector<int64_t>& shape) {
  constexpr auto kMax = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  uint64_t count = 1;
  for (const int64_t dim : shape) {
    if (dim < 0) return std::nullopt;
    const auto d = static_cast<uint64_t>(dim);
    if (d != 0 && count > kMax / d) return std::nullopt;
    count *= d;
  }
  return count;
}

void validate_tensor_layout(const std::string& dtype, const std::vector<int64_t>& shape, uint64_t size,
                            const std::string& what) {
  const auto element_size = dtype_element_size(dtype);
  TRAINDX_CHECK(element_size.has_value(), CheckpointError,
                "{}: unsupported dtype '{}' (traindx supports F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL)", what, dtype);
  const auto count = element_count(shape);
  TRAINDX_CHECK(count.has_value(), CheckpointError,
                "{}: shape [{}] has a negative dimension or more elements than fit in int64", what,
                fmt::join(shape, ", "));
  TRAINDX_CHECK(*count <= std::numeric_limits<uint64_t>::max() / *element_size && size == *count * *element_size,
                CheckpointError, "{}: holds {} bytes but {} [{}] needs {} elements x {} bytes", what, size, dtype,
                fmt::join(shape, ", "), *count, *element_size);
}

void validate_raw_tensor(const RawTensor& tensor, const std::string& what) {
  validate_tensor_layout(tensor.dtype, tensor.shape, tensor.bytes.size(), what);
  if (tensor.dtype == "BOOL") {
    for (size_t i = 0; i < tensor.bytes.size(); ++i) {
      const auto byte = static_cast<unsigned char>(tensor.bytes[i]);
      TRAINDX_CHECK(byte <= 1, CheckpointError,
                    "{}: BOOL element {} holds byte 0x{:02x}; only 0 and 1 are valid booleans", what, i, byte);
    }
  }
}

}  // namespace traindx
