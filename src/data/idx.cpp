// IDX reader (the format of MNIST and Fashion-MNIST): a 4-byte magic 0x00 0x00 <type> <ndims>, ndims big-endian
// uint32 sizes, then the big-endian payload. Read through zlib's gz* functions, which pass plain files through
// unchanged, so "x-idx3-ubyte" and "x-idx3-ubyte.gz" go through the same code. Every length comes from an untrusted
// header, so nothing is allocated from a declared size before the bytes have actually arrived.
#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <memory>

#include "traindx/core/error.h"
#include "traindx/data/data.h"

namespace traindx {
namespace {

// Largest payload accepted: 4 GiB is ~50x ImageNet-1k's validation set at 64x64; anything larger is far more
// likely a corrupt header than real data, and a header must not be able to make us chew through memory.
constexpr uint64_t kMaxPayloadBytes = uint64_t{1} << 32;
// IDX stores ndims in one byte; real files use 1 to 4. Eight leaves room without inviting absurd headers.
constexpr int kMaxDims = 8;
constexpr unsigned kChunkBytes = 1u << 20;

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};
using GzHandle = std::unique_ptr<gzFile_s, GzCloser>;

struct TypeCode {
  unsigned char code;
  const char* name;
  size_t bytes;
  torch::ScalarType dtype;
};

constexpr TypeCode kTypes[] = {
    {0x08, "unsigned byte", 1, torch::kUInt8}, {0x09, "signed byte", 1, torch::kInt8},
    {0x0B, "short", 2, torch::kInt16},         {0x0C, "int", 4, torch::kInt32},
    {0x0D, "float", 4, torch::kFloat32},       {0x0E, "double", 8, torch::kFloat64},
};

// Reads up to `len` bytes; returns how many arrived (fewer only at end of input). Throws on a gzip error.
size_t read_some(gzFile file, unsigned char* out, size_t len, const std::string& path) {
  size_t got = 0;
  while (got < len) {
    const unsigned ask = static_cast<unsigned>(std::min<size_t>(len - got, kChunkBytes));
    const int n = gzread(file, out + got, ask);
    if (n < 0) {
      int code = 0;
      const char* msg = gzerror(file, &code);
      TRAINDX_FAIL(DataError, "IDX file {} cannot be read: {}{}", path, code == Z_ERRNO ? std::strerror(errno) : msg,
                   code == Z_BUF_ERROR ? " (the gzip stream is truncated)" : "");
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  // A truncated gzip stream can end a read early without a negative return; report it as corruption.
  int code = 0;
  const char* msg = gzerror(file, &code);
  TRAINDX_CHECK(code == Z_OK, DataError, "IDX file {} cannot be read: {}{}", path, msg,
                code == Z_BUF_ERROR ? " (the gzip stream is truncated)" : "");
  return got;
}

uint64_t big_endian(const unsigned char* p, size_t bytes) {
  uint64_t v = 0;
  for (size_t i = 0; i < bytes; ++i) v = (v << 8) | p[i];
  return v;
}

// Converts the big-endian payload into the tensor's native representation.
void decode_payload(const std::vector<unsigned char>& raw, const TypeCode& type, torch::Tensor& out) {
  const size_t n = raw.size() / type.bytes;
  const unsigned char* src = raw.data();
  switch (type.code) {
    case 0x08:
    case 0x09:
      if (n > 0) std::memcpy(out.data_ptr(), src, n);
      break;
    case 0x0B: {
      auto* dst = out.data_ptr<int16_t>();
      for (size_t i = 0; i < n; ++i) {
        const auto u = static_cast<uint16_t>(big_endian(src + 2 * i, 2));
        std::memcpy(dst + i, &u, 2);
      }
      break;
    }
    case 0x0C: {
      auto* dst = out.data_ptr<int32_t>();
      for (size_t i = 0; i < n; ++i) {
        const auto u = static_cast<uint32_t>(big_endian(src + 4 * i, 4));
        std::memcpy(dst + i, &u, 4);
      }
      break;
    }
    case 0x0D: {
      auto* dst = out.data_ptr<float>();
      for (size_t i = 0; i < n; ++i) {
        const auto u = static_cast<uint32_t>(big_endian(src + 4 * i, 4));
        std::memcpy(dst + i, &u, 4);
      }
      break;
    }
    case 0x0E: {
      auto* dst = out.data_ptr<double>();
      for (size_t i = 0; i < n; ++i) {
        const uint64_t u = big_endian(src + 8 * i, 8);
        std::memcpy(dst + i, &u, 8);
      }
      break;
    }
    default:
      TRAINDX_ASSERT(false, "unhandled IDX type code {}", type.code);
  }
}

}  // namespace

torch::Tensor read_idx(const std::string& path) {
  errno = 0;
  GzHandle file(gzopen(path.c_str(), "rb"));
  TRAINDX_CHECK(file != nullptr, DataError, "cannot open IDX file {}: {}", path,
                errno != 0 ? std::strerror(errno) : "out of memory");

  unsigned char magic[4];
  const size_t got_magic = read_some(file.get(), magic, 4, path);
  TRAINDX_CHECK(got_magic == 4, DataError, "IDX file {} is too short: {} bytes, an IDX header needs at least 4", path,
                got_magic);
  TRAINDX_CHECK(magic[0] == 0 && magic[1] == 0, DataError,
                "IDX file {} has a bad magic number {:02x} {:02x} {:02x} {:02x}: an IDX file starts with 00 00 "
                "<type> <dims>; is it an IDX file (or a differently compressed one)?",
                path, magic[0], magic[1], magic[2], magic[3]);
  const TypeCode* type = nullptr;
  for (const auto& t : kTypes) {
    if (t.code == magic[2]) type = &t;
  }
  TRAINDX_CHECK(type != nullptr, DataError,
                "IDX file {} has unknown type code 0x{:02x}; known: 0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, 0x0D f32, "
                "0x0E f64",
                path, magic[2]);
  const int ndims = magic[3];
  TRAINDX_CHECK(ndims >= 1 && ndims <= kMaxDims, DataError, "IDX file {} declares {} dimensions; expected 1 to {}",
                path, ndims, kMaxDims);

  unsigned char dim_bytes[4 * kMaxDims];
  const size_t want_dims = 4 * static_cast<size_t>(ndims);
  const size_t got_dims = read_some(file.get(), dim_bytes, want_dims, path);
  TRAINDX_CHECK(got_dims == want_dims, DataError,
                "IDX file {} is truncated: expected {} bytes of dimension sizes, got {}", path, want_dims, got_dims);

  std::vector<int64_t> sizes;
  uint64_t elements = 1;
  for (int d = 0; d < ndims; ++d) {
    const uint64_t size = big_endian(dim_bytes + 4 * d, 4);
    sizes.push_back(static_cast<int64_t>(size));
    // Each factor is < 2^32, so the product only overflows past the cap if we test before multiplying.
    if (size != 0 && elements > kMaxPayloadBytes / type->bytes / size) {
      TRAINDX_FAIL(DataError, "IDX file {} declares dimensions {} whose payload exceeds the {}-byte limit; the header "
                   "is probably corrupt", path, fmt::join(sizes, "x"), kMaxPayloadBytes);
    }
    elements *= size;
  }
  const uint64_t expected = elements * type->bytes;

  // Grow with the bytes that actually arrive, so a lying header over a short file costs nothing.
  std::vector<unsigned char> payload;
  payload.reserve(static_cast<size_t>(std::min<uint64_t>(expected, 16u * kChunkBytes)));
  uint64_t got = 0;
  while (got < expected) {
    const size_t ask = static_cast<size_t>(std::min<uint64_t>(expected - got, kChunkBytes));
    payload.resize(static_cast<size_t>(got) + ask);
    const size_t n = read_some(file.get(), payload.data() + got, ask, path);
    got += n;
    if (n < ask) break;
  }
  TRAINDX_CHECK(got == expected, DataError, "IDX file {} is truncated: expected {} bytes of payload, got {}", path,
                expected, got);

  uint64_t trailing = 0;
  std::vector<unsigned char> scratch(1u << 16);
  for (;;) {
    const size_t n = read_some(file.get(), scratch.data(), scratch.size(), path);
    trailing += n;
    if (n < scratch.size()) break;
  }
  TRAINDX_CHECK(trailing == 0, DataError,
                "IDX file {} has {} trailing bytes after the {}-byte payload its header ({} {}) declares; the file is "
                "corrupt or its header is wrong",
                path, trailing, expected, fmt::join(sizes, "x"), type->name);

  torch::Tensor out = torch::empty(sizes, torch::TensorOptions().dtype(type->dtype));
  decode_payload(payload, *type, out);
  return out;
}

}  // namespace traindx
