// libFuzzer target: parse_torch_state_dict on arbitrary bytes must either return well-formed tensors or throw
// CheckpointError; anything else (crash, sanitizer report, hang, other exception) is a bug. The fuzz build skips
// CRC checks (FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION) so mutated pickles inside valid archives get parsed.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "traindx/checkpoint/tensor_io.h"
#include "traindx/core/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  // Tight output limit: stride-0 views may legally describe more bytes than libFuzzer's 2 GB RSS limit.
  const auto limits = traindx::TorchLoadLimits().output_bytes(64u << 20);
  try {
    const traindx::TorchStateDict state = traindx::parse_torch_state_dict(bytes, "fuzz.pt", limits);
    for (const auto& [name, tensor] : state.tensors) traindx::validate_raw_tensor(tensor, name);
  } catch (const traindx::CheckpointError&) {
  }
  return 0;
}
