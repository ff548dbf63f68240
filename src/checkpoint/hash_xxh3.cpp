// Content hashes: XXH3 128-bit (xxhash >= 0.8), fast enough to hash every checkpoint tensor on each save.
// Torch-free: compiled into the fuzz targets too.
#include <xxhash.h>
#if defined(__x86_64__) || defined(_M_X64)
// Debian's libxxhash also exports XXH3 variants that pick AVX2 or AVX-512 at run time; this header maps the XXH3
// calls below to them. The plain entry points are built for baseline x86-64 (SSE2): the 5 MB CNN state hashed in
// 0.27 ms, dispatched (AVX-512 on the development VM) in 0.08-0.10 ms. Same hashes either way.
#include <xxh_x86dispatch.h>
#endif

#include "traindx/checkpoint/tensor_io.h"
#include "traindx/core/error.h"

namespace traindx {
namespace {

std::string to_hex(XXH128_hash_t hash) {
  XXH128_canonical_t canonical;
  XXH128_canonicalFromHash(&canonical, hash);
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * sizeof canonical.digest);
  for (const unsigned char byte : canonical.digest) {
    out.push_back(kDigits[byte >> 4]);
    out.push_back(kDigits[byte & 0xf]);
  }
  return out;
}

void append_u64_le(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

}  // namespace

std::string hash_bytes(std::string_view bytes) { return to_hex(XXH3_128bits(bytes.data(), bytes.size())); }

void TensorHasher::StateDeleter::operator()(XXH3_state_s* state) const { XXH3_freeState(state); }

TensorHasher::TensorHasher(std::string_view dtype, const std::vector<int64_t>& shape) : state_(XXH3_createState()) {
  TRAINDX_ASSERT(state_ != nullptr, "XXH3_createState failed (out of memory)");
  XXH3_128bits_reset(state_.get());
  // A versioned domain tag, then dtype and shape: the same bytes as another dtype or shape hash differently.
  std::string header("traindx.tensor.v1", sizeof "traindx.tensor.v1");  // includes the terminating NUL
  header.append(dtype);
  header.push_back('\0');
  append_u64_le(header, shape.size());
  for (const int64_t dim : shape) append_u64_le(header, static_cast<uint64_t>(dim));
  update(header.data(), header.size());
}

void TensorHasher::update(const void* data, size_t size) { XXH3_128bits_update(state_.get(), data, size); }

std::string TensorHasher::hex_digest() const { return to_hex(XXH3_128bits_digest(state_.get())); }

std::string hash_raw_tensor(const RawTensor& tensor) {
  TensorHasher hasher(tensor.dtype, tensor.shape);
  hasher.update(tensor.bytes.data(), tensor.bytes.size());
  return hasher.hex_digest();
}

}  // namespace traindx
