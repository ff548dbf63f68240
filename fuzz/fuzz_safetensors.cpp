// libFuzzer target: parse_safetensors on arbitrary bytes must either return a consistent result or throw
// CheckpointError; anything else (crash, sanitizer report, other exception) is a bug.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "traindx/checkpoint/tensor_io.h"
#include "traindx/core/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  traindx::SafetensorsFile file;
  try {
    file = traindx::parse_safetensors(bytes, "fuzz.safetensors");
  } catch (const traindx::CheckpointError&) {
    return 0;
  }
  // Whatever parses must be valid and survive a round trip through the writer and the reader unchanged.
  for (const auto& [name, tensor] : file.tensors) traindx::validate_raw_tensor(tensor, name);
  const std::string again = traindx::serialize_safetensors(file.tensors, file.metadata);
  const traindx::SafetensorsFile reread = traindx::parse_safetensors(again, "fuzz.reserialized");
  if (reread.tensors.size() != file.tensors.size() || reread.metadata != file.metadata) __builtin_trap();
  for (const auto& [name, tensor] : reread.tensors) {
    bool found = false;
    for (const auto& [original_name, original] : file.tensors) {
      if (original_name == name) {
        found = original.dtype == tensor.dtype && original.shape == tensor.shape && original.bytes == tensor.bytes;
      }
    }
    if (!found) __builtin_trap();
  }
  // Serialisation is canonical: writing what we read back gives the same bytes.
  if (traindx::serialize_safetensors(reread.tensors, reread.metadata) != again) __builtin_trap();
  return 0;
}
