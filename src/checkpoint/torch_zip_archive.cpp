// A minimal reader for the zip archives torch.save writes: stored members only, ZIP64 aware, every offset
// bounds-checked. Record layouts: PKWARE APPNOTE.TXT sections 4.3.7 (local header), 4.3.12 (central directory),
// 4.3.14-4.3.16 (ZIP64 and classic end records), 4.5.3 (ZIP64 extra field).
// Torch-free: compiled into the fuzz targets.
#include <array>
#include <limits>
#include <set>

#include "traindx/checkpoint/tensor_io.h"
#include "traindx/core/error.h"

namespace traindx {
namespace {

constexpr uint32_t kLocalHeaderSig = 0x04034b50;
constexpr uint32_t kCentralHeaderSig = 0x02014b50;
constexpr uint32_t kEndSig = 0x06054b50;
constexpr uint32_t kZip64EndSig = 0x06064b50;
constexpr uint32_t kZip64LocatorSig = 0x07064b50;
constexpr size_t kLocalHeaderSize = 30;
constexpr size_t kCentralHeaderSize = 46;
constexpr size_t kEndSize = 22;
constexpr size_t kZip64EndSize = 56;
constexpr size_t kZip64LocatorSize = 20;
constexpr uint16_t kZip64ExtraId = 0x0001;

/// Little-endian reads at bounds the caller has already checked.
uint64_t le(std::string_view bytes, size_t at, int width) {
  uint64_t v = 0;
  for (int i = width - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(bytes[at + static_cast<size_t>(i)]);
  return v;
}
uint16_t u16(std::string_view b, size_t at) { return static_cast<uint16_t>(le(b, at, 2)); }
uint32_t u32(std::string_view b, size_t at) { return static_cast<uint32_t>(le(b, at, 4)); }
uint64_t u64(std::string_view b, size_t at) { return le(b, at, 8); }

/// True when [offset, offset + length) lies inside a buffer of `size` bytes (overflow-safe).
bool fits(uint64_t offset, uint64_t length, size_t size) { return offset <= size && length <= size - offset; }

/// CRC-32 (IEEE, reflected 0xEDB88320) with slice-by-8 tables: checkpoints are large and this runs on every byte.
class Crc32 {
 public:
  Crc32() {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      table_[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; ++i) {
      for (size_t t = 1; t < 8; ++t) table_[t][i] = (table_[t - 1][i] >> 8) ^ table_[0][table_[t - 1][i] & 0xff];
    }
  }

  uint32_t operator()(std::string_view data) const {
    uint32_t crc = 0xFFFFFFFFu;
    const auto* p = reinterpret_cast<const unsigned char*>(data.data());
    size_t n = data.size();
    for (; n >= 8; p += 8, n -= 8) {
      const uint32_t lo = crc ^ (uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24);
      crc = table_[7][lo & 0xff] ^ table_[6][(lo >> 8) & 0xff] ^ table_[5][(lo >> 16) & 0xff] ^ table_[4][lo >> 24] ^
            table_[3][p[4]] ^ table_[2][p[5]] ^ table_[1][p[6]] ^ table_[0][p[7]];
    }
    for (; n > 0; ++p, --n) crc = table_[0][(crc ^ *p) & 0xff] ^ (crc >> 8);
    return crc ^ 0xFFFFFFFFu;
  }

 private:
  std::array<std::array<uint32_t, 256>, 8> table_{};
};

/// Refuses names that could escape a directory if anyone ever extracted the archive, and names that different
/// tools would read differently. torch.save never writes such names. ".." is refused as a path component, not as
/// a substring: the archive folder is the file's stem, and "model..v2.pt" is a legitimate file name.
void check_member_name(const std::string& name, const std::string& source) {
  TRAINDX_CHECK(!name.empty(), CheckpointError, "{}: zip member with an empty name", source);
  TRAINDX_CHECK(name.find('\0') == std::string::npos, CheckpointError, "{}: zip member name '{}' contains a NUL byte",
                source, name);
  TRAINDX_CHECK(name.front() != '/', CheckpointError,
                "{}: zip member '{}' has an absolute path (path traversal); refusing the archive", source, name);
  TRAINDX_CHECK(name.find('\\') == std::string::npos, CheckpointError,
                "{}: zip member '{}' contains a backslash (a Windows path separator; possible path traversal); "
                "refusing the archive",
                source, name);
  size_t start = 0;
  while (start <= name.size()) {
    const size_t slash = std::min(name.find('/', start), name.size());
    TRAINDX_CHECK(name.compare(start, slash - start, "..") != 0, CheckpointError,
                  "{}: zip member '{}' has a '..' path component (path traversal); refusing the archive", source, name);
    start = slash + 1;
  }
}

struct EndRecord {
  uint64_t entries = 0;
  uint64_t cd_size = 0;
  uint64_t cd_offset = 0;
  size_t end_of_central = 0;  ///< where the central directory must end: the first end record
};

EndRecord read_end_record(std::string_view zip, const std::string& source) {
  TRAINDX_CHECK(zip.size() >= kEndSize, CheckpointError,
                "{}: not a zip archive ({} bytes, too short for an end-of-central-directory record); truncated?",
                source, zip.size());
  // The classic end record sits at the very end, followed only by its comment (at most 65535 bytes). Requiring
  // the comment to end exactly at end of file stops a signature inside a comment from being taken for a record.
  size_t pos = zip.size() - kEndSize;
  const size_t lowest = zip.size() - kEndSize > 0xFFFF ? zip.size() - kEndSize - 0xFFFF : 0;
  for (;; --pos) {
    if (u32(zip, pos) == kEndSig && pos + kEndSize + u16(zip, pos + 20) == zip.size()) break;
    TRAINDX_CHECK(pos > lowest, CheckpointError, "{}: {}", source,
                  zip.substr(0, 4) == "PK\x03\x04"
                      ? "truncated zip archive: it starts like one but its end-of-central-directory record is missing"
                      : "not a zip archive (no end-of-central-directory record); truncated, or not a torch.save file");
  }
  TRAINDX_CHECK(u16(zip, pos + 4) == 0 && u16(zip, pos + 6) == 0 && u16(zip, pos + 8) == u16(zip, pos + 10),
                CheckpointError, "{}: multi-disk (split) zip archives are not supported", source);
  EndRecord end;
  end.entries = u16(zip, pos + 10);
  end.cd_size = u32(zip, pos + 12);
  end.cd_offset = u32(zip, pos + 16);
  end.end_of_central = pos;

  // PyTorch's writer always adds ZIP64 end records (even for small files); they carry the real values when the
  // classic fields overflow (0xFFFF / 0xFFFFFFFF).
  if (pos >= kZip64LocatorSize && u32(zip, pos - kZip64LocatorSize) == kZip64LocatorSig) {
    const size_t locator = pos - kZip64LocatorSize;
    TRAINDX_CHECK(u32(zip, locator + 4) == 0 && u32(zip, locator + 16) <= 1, CheckpointError,
                  "{}: multi-disk (split) zip archives are not supported", source);
    const uint64_t at = u64(zip, locator + 8);
    TRAINDX_CHECK(at <= locator && locator - at >= kZip64EndSize && u32(zip, static_cast<size_t>(at)) == kZip64EndSig,
                  CheckpointError, "{}: the ZIP64 end-of-central-directory locator points to offset {}, where there "
                  "is no ZIP64 end record; truncated or corrupt",
                  source, at);
    const auto rec = static_cast<size_t>(at);
    TRAINDX_CHECK(u32(zip, rec + 16) == 0 && u32(zip, rec + 20) == 0 && u64(zip, rec + 24) == u64(zip, rec + 32),
                  CheckpointError, "{}: multi-disk (split) zip archives are not supported", source);
    end.entries = u64(zip, rec + 32);
    end.cd_size = u64(zip, rec + 40);
    end.cd_offset = u64(zip, rec + 48);
    end.end_of_central = rec;
  } else {
    TRAINDX_CHECK(end.entries != 0xFFFF && end.cd_size != 0xFFFFFFFF && end.cd_offset != 0xFFFFFFFF,
                  CheckpointError,
                  "{}: the zip end record says its values are in a ZIP64 record, but there is no ZIP64 locator", source);
  }
  TRAINDX_CHECK(end.cd_offset <= end.end_of_central && end.cd_size == end.end_of_central - end.cd_offset,
                CheckpointError,
                "{}: the zip central directory (offset {}, {} bytes) does not end where the end record starts ({}); "
                "truncated or corrupt",
                source, end.cd_offset, end.cd_size, end.end_of_central);
  TRAINDX_CHECK(end.entries <= end.cd_size / kCentralHeaderSize, CheckpointError,
                "{}: the zip end record claims {} members, more than its {}-byte central directory can hold", source,
                end.entries, end.cd_size);
  return end;
}

/// Applies a ZIP64 extended-information extra field: each 0xFFFFFFFF field of the central header is replaced, in
/// the fixed order size, compressed size, local header offset.
void apply_zip64_extra(std::string_view extra, uint64_t& size, uint64_t& compressed, uint64_t& local_offset,
                       const std::string& what) {
  size_t p = 0;
  while (p + 4 <= extra.size()) {
    const uint16_t id = u16(extra, p);
    const uint16_t length = u16(extra, p + 2);
    TRAINDX_CHECK(fits(p + 4, length, extra.size()), CheckpointError, "{}: extra field runs past its header", what);
    if (id == kZip64ExtraId) {
      const std::string_view field = extra.substr(p + 4, length);
      size_t q = 0;
      for (uint64_t* value : {&size, &compressed, &local_offset}) {
        if (*value != 0xFFFFFFFF) continue;
        TRAINDX_CHECK(q + 8 <= field.size(), CheckpointError, "{}: ZIP64 extra field is too short", what);
        *value = u64(field, q);
        q += 8;
      }
    }
    p += 4 + length;
  }
}

[[maybe_unused]] const Crc32& crc32_table() {
  static const Crc32 crc;
  return crc;
}

}  // namespace

std::vector<ZipMember> read_zip_directory(std::string_view zip, const std::string& source) {
  const EndRecord end = read_end_record(zip, source);
  std::vector<ZipMember> members;
  members.reserve(static_cast<size_t>(end.entries));
  std::set<std::string> names;
  size_t p = static_cast<size_t>(end.cd_offset);
  const size_t cd_end = end.end_of_central;
  for (uint64_t i = 0; i < end.entries; ++i) {
    TRAINDX_CHECK(fits(p, kCentralHeaderSize, cd_end) && u32(zip, p) == kCentralHeaderSig, CheckpointError,
                  "{}: zip central directory entry {} at offset {} is missing or corrupt", source, i, p);
    const uint16_t flags = u16(zip, p + 8);
    const uint16_t method = u16(zip, p + 10);
    const uint32_t crc = u32(zip, p + 16);
    uint64_t compressed = u32(zip, p + 20);
    uint64_t size = u32(zip, p + 24);
    const uint16_t name_length = u16(zip, p + 28);
    const uint16_t extra_length = u16(zip, p + 30);
    const uint16_t comment_length = u16(zip, p + 32);
    const uint16_t disk = u16(zip, p + 34);
    uint64_t local_offset = u32(zip, p + 42);
    const size_t variable = size_t{name_length} + extra_length + comment_length;
    TRAINDX_CHECK(fits(p + kCentralHeaderSize, variable, cd_end), CheckpointError,
                  "{}: zip central directory entry {} runs past the directory's end", source, i);
    std::string name(zip.substr(p + kCentralHeaderSize, name_length));
    const std::string what = fmt::format("{}: zip member '{}'", source, name);
    check_member_name(name, source);
    TRAINDX_CHECK(names.insert(name).second, CheckpointError,
                  "{}: is listed twice; refusing an archive whose readers could disagree on its contents", what);
    apply_zip64_extra(zip.substr(p + kCentralHeaderSize + name_length, extra_length), size, compressed,
                      local_offset, what);
    TRAINDX_CHECK(disk == 0 || disk == 0xFFFF, CheckpointError, "{}: lies on another disk of a split archive", what);
    TRAINDX_CHECK((flags & 0x41) == 0, CheckpointError, "{}: is encrypted; traindx reads plain torch.save archives",
                  what);
    TRAINDX_CHECK(method == 0, CheckpointError,
                  "{}: is compressed (zip method {}{}); torch.save stores members uncompressed, so this archive was "
                  "re-packed: re-save it with torch.save, or re-zip with `zip -0`",
                  what, method, method == 8 ? ", deflate" : "");
    TRAINDX_CHECK(compressed == size, CheckpointError,
                  "{}: stored member with compressed size {} != size {}; corrupt archive", what, compressed, size);

    // The local header repeats the name and may carry its own extra field (PyTorch pads with one so data starts
    // 64-byte aligned); sizes come from the central directory because torch.save writes them in a trailing data
    // descriptor, leaving the local header's sizes zero.
    TRAINDX_CHECK(fits(local_offset, kLocalHeaderSize, end.cd_offset) &&
                      u32(zip, static_cast<size_t>(local_offset)) == kLocalHeaderSig,
                  CheckpointError, "{}: local header at offset {} is missing or corrupt; truncated archive?", what,
                  local_offset);
    const auto local = static_cast<size_t>(local_offset);
    TRAINDX_CHECK(u16(zip, local + 8) == method && (u16(zip, local + 6) & 0x41) == 0, CheckpointError,
                  "{}: local header disagrees with the central directory on compression or encryption", what);
    const size_t local_name_length = u16(zip, local + 26);
    const size_t local_extra_length = u16(zip, local + 28);
    TRAINDX_CHECK(fits(local + kLocalHeaderSize, local_name_length + local_extra_length, end.cd_offset) &&
                      zip.substr(local + kLocalHeaderSize, local_name_length) == name,
                  CheckpointError, "{}: local header names another member or runs into the central directory", what);
    const size_t data = local + kLocalHeaderSize + local_name_length + local_extra_length;
    TRAINDX_CHECK(fits(data, size, end.cd_offset), CheckpointError,
                  "{}: its {} bytes at offset {} run past the start of the central directory; truncated archive?",
                  what, size, data);
    members.push_back(ZipMember{std::move(name), data, static_cast<size_t>(size), crc});
    p += kCentralHeaderSize + variable;
  }
  TRAINDX_CHECK(p == cd_end, CheckpointError,
                "{}: the zip central directory holds {} bytes after its {} entries; corrupt archive", source,
                cd_end - p, end.entries);
  return members;
}

std::string_view zip_member_data(std::string_view zip, const ZipMember& member, const std::string& source) {
  TRAINDX_CHECK(fits(member.offset, member.size, zip.size()), CheckpointError,
                "{}: zip member '{}' lies outside the archive", source, member.name);
  const std::string_view data = zip.substr(member.offset, member.size);
#ifndef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
  // Fuzz builds skip the check (the standard libFuzzer convention), or mutations would never get past it.
  const uint32_t actual = crc32_table()(data);
  TRAINDX_CHECK(actual == member.crc32, CheckpointError,
                "{}: zip member '{}' is corrupt: CRC-32 {:08x} but the archive records {:08x}", source, member.name,
                actual, member.crc32);
#endif
  return data;
}

}  // namespace traindx
