#pragma once
/// Tensor file formats, torch-free half: safetensors read/write, a restricted reader for the zip archives that
/// PyTorch's torch.save writes, and content hashes. Everything here works on bytes in memory and plain structs,
/// so the parsers compile without LibTorch (the libFuzzer targets in fuzz/ build exactly these with clang).
/// LibTorch conversions and file I/O live in tensor_convert.h. Formats, limits and rejections: docs/formats.md.
///
/// Readers treat every file as hostile: each offset and size is bounds-checked, nothing from a file is ever
/// executed, and every malformed input throws CheckpointError naming the source and what is wrong.
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

struct XXH3_state_s;  // xxhash.h's state, forward-declared so xxhash.h stays out of this header

namespace traindx {

/// A dense tensor as stored on disk: row-major (C order), contiguous, little-endian.
/// dtype is a safetensors name: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL (what LibTorch 1.13 can represent;
/// safetensors' U16/U32/U64/F8_* have no LibTorch 1.13 type and are rejected). An empty shape is a scalar
/// (one element). bytes.size() == product(shape) * element size; BOOL bytes are 0 or 1.
struct RawTensor {
  std::string dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};

/// Tensors with their names, in a meaningful order (file order for readers).
using NamedRawTensors = std::vector<std::pair<std::string, RawTensor>>;

/// safetensors' string-to-string `__metadata__` map.
using TensorMetadata = std::map<std::string, std::string>;

/// Size in bytes of one element of `dtype` (a safetensors name listed at RawTensor), or nullopt if traindx
/// does not support it.
std::optional<size_t> dtype_element_size(std::string_view dtype);

/// Number of elements of a tensor of this shape (1 for a scalar), or nullopt if a dim is negative or the product
/// overflows int64 (every tensor's element count must fit LibTorch's int64 numel).
std::optional<uint64_t> element_count(const std::vector<int64_t>& shape);

/// Checks what a header can say of a tensor: a known dtype, non-negative dims whose product does not overflow, and
/// `size` bytes of exactly product * element size. Throws CheckpointError starting with `what`.
void validate_tensor_layout(const std::string& dtype, const std::vector<int64_t>& shape, uint64_t size,
                            const std::string& what);

/// Checks that `tensor` is well formed (known dtype, non-negative dims whose product does not overflow, bytes of
/// exactly product * element size, BOOL bytes 0 or 1). Throws CheckpointError starting with `what`
/// (e.g. "model.safetensors: tensor 'fc.weight'").
void validate_raw_tensor(const RawTensor& tensor, const std::string& what);

// ---- safetensors -------------------------------------------------------------------------------------------------

/// Hard limit on the JSON header, as in the reference implementation (huggingface/safetensors MAX_HEADER_SIZE).
inline constexpr uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;

/// Where one tensor lives in a safetensors file.
struct SafetensorsEntry {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  size_t offset = 0;  ///< absolute offset of the tensor's first byte in the file
  size_t size = 0;    ///< byte length
};

/// A validated safetensors header: what parse_safetensors checks, without copying tensor bytes.
struct SafetensorsIndex {
  std::vector<SafetensorsEntry> entries;  ///< in data order (ascending offset; ties by name)
  TensorMetadata metadata;
};

/// A parsed safetensors file.
struct SafetensorsFile {
  NamedRawTensors tensors;  ///< in data order (ascending offset; ties by name)
  TensorMetadata metadata;
};

/// Parses and validates a whole safetensors file held in `bytes`; `source` names it in errors.
/// Layout: u64 little-endian header length N, N bytes of UTF-8 JSON object, then the data section.
/// Throws CheckpointError when: the file is shorter than 8 bytes; N exceeds the file or
/// kSafetensorsMaxHeaderBytes; the header is not valid UTF-8 JSON, not an object, nested deeper than the format
/// allows, or repeats a key; `__metadata__` is not an object of strings; an entry is not an object or lacks
/// dtype, shape or data_offsets; a dtype is unknown; a dimension is negative, not an integer, or the element count
/// or byte count overflows; data_offsets is not two ordered integers; a byte length differs from
/// product(shape) * element size; tensors overlap, leave gaps, or do not cover the data section exactly (as the
/// reference implementation requires); a BOOL tensor holds a byte other than 0 or 1.
SafetensorsIndex parse_safetensors_index(std::string_view bytes, const std::string& source);

/// The header length a safetensors file announces in its first 8 bytes (`first8.size()` must be at least 8), for
/// a reader that fetches the header before the rest; unchecked: parse_safetensors_layout checks it.
uint64_t safetensors_header_length(std::string_view first8);

/// The two halves of parse_safetensors_index, for a reader that parses the header before the data section is in
/// memory: parse_safetensors_layout reads only the header (bytes.size() must be the whole file's size; the data
/// section may still be unfilled) and checks everything but the values; check_safetensors_values then checks the
/// values (BOOL bytes) once the data is there.
SafetensorsIndex parse_safetensors_layout(std::string_view bytes, const std::string& source);
void check_safetensors_values(const SafetensorsIndex& index, std::string_view bytes, const std::string& source);

/// parse_safetensors_index plus a copy of each tensor's bytes. Throws as parse_safetensors_index.
SafetensorsFile parse_safetensors(std::string_view bytes, const std::string& source);

/// What a safetensors header says of one tensor, before or without its bytes in memory.
struct TensorLayout {
  std::string name;
  std::string dtype;  ///< a safetensors name listed at RawTensor
  std::vector<int64_t> shape;
  uint64_t size = 0;  ///< byte length: product(shape) * element size
};

/// The start of a safetensors file: the 8-byte length and the JSON header, then where each tensor goes.
struct SafetensorsHeader {
  std::string bytes;          ///< length prefix + padded header; the data section follows
  std::vector<size_t> order;  ///< indices into the layouts, in data order
  uint64_t data_size = 0;     ///< bytes of the data section
};

/// The header serialize_safetensors writes for tensors of these layouts, so that a writer can stream each tensor's
/// bytes from wherever they are (in `order`) instead of copying them into one image first. Throws CheckpointError
/// as serialize_safetensors, and for a size that does not match dtype and shape.
SafetensorsHeader safetensors_header(const std::vector<TensorLayout>& tensors, const TensorMetadata& metadata = {});

/// Serialises tensors and metadata to a safetensors file image laid out as the reference implementation lays it
/// out, deterministically (equal inputs give equal bytes, whatever their order): tensors ordered by descending
/// dtype alignment (the reference's I64 F64 F32 I32 BF16 F16 I16 I8 U8 BOOL) then by name, which keeps every
/// tensor aligned to its element size within the data section; compact JSON with `__metadata__` first (omitted
/// when empty; keys sorted, where the reference's order is a hash map's) and entries as
/// {"dtype","shape","data_offsets"} in data order; header padded with spaces to a multiple of 8.
/// Throws CheckpointError for an invalid tensor (see validate_raw_tensor), a duplicate name, the
/// reserved name `__metadata__`, names or metadata that are not valid UTF-8, or a header over the size limit.
std::string serialize_safetensors(const NamedRawTensors& tensors, const TensorMetadata& metadata = {});

// ---- PyTorch torch.save zip archives --------------------------------------------------------------------------

/// Bounds on what a hostile torch.save archive may make the reader allocate. Every limit is checked before the
/// allocation it guards; exceeding one throws CheckpointError naming the limit.
struct TorchLoadLimits {
  size_t max_memo_entries = 1u << 20;        ///< pickle memo (BINPUT/MEMOIZE) entries
  size_t max_stack_depth = 1u << 20;         ///< values plus marks on the unpickler stack
  /// Strings, tuples, lists and dicts created plus the items put in them, together (a state_dict needs ~20 per
  /// tensor); bounds the machine's memory to roughly 100 bytes per unit.
  size_t max_container_items = 1u << 22;
  size_t max_tensor_rank = 64;               ///< dimensions of one tensor
  /// Bytes of all materialised tensors together. 0 means 4 x the archive size + 1 GiB: a few bytes of pickle can
  /// describe a huge stride-0 view of a one-element storage; ordinary state_dicts stay far below this.
  uint64_t max_output_bytes = 0;

  TorchLoadLimits& memo_entries(size_t v) { max_memo_entries = v; return *this; }
  TorchLoadLimits& stack_depth(size_t v) { max_stack_depth = v; return *this; }
  TorchLoadLimits& container_items(size_t v) { max_container_items = v; return *this; }
  TorchLoadLimits& tensor_rank(size_t v) { max_tensor_rank = v; return *this; }
  TorchLoadLimits& output_bytes(uint64_t v) { max_output_bytes = v; return *this; }
};

/// One member of a zip archive.
struct ZipMember {
  std::string name;
  size_t offset = 0;  ///< absolute offset of the member's (stored, uncompressed) bytes in the archive
  size_t size = 0;
  uint32_t crc32 = 0;  ///< as recorded in the central directory
};

/// Lists the members of a zip archive whose members are all stored uncompressed, as torch.save writes them.
/// Reads the end-of-central-directory record (ZIP64 too), the central directory and each local header.
/// Throws CheckpointError naming `source` if the archive is truncated or inconsistent (every offset and length
/// is bounds-checked), spans several disks, or has a member that is compressed, encrypted, listed twice, or
/// named with a leading '/', a backslash, a NUL or a ".." path component (path traversal).
std::vector<ZipMember> read_zip_directory(std::string_view zip_bytes, const std::string& source);

/// The bytes of `member` inside `zip_bytes` (a view, no copy), after checking its CRC-32.
/// Throws CheckpointError naming `source` and the member on a CRC mismatch.
std::string_view zip_member_data(std::string_view zip_bytes, const ZipMember& member, const std::string& source);

/// The tensors of a torch.save'd dict.
struct TorchStateDict {
  NamedRawTensors tensors;           ///< string-keyed tensor values, in the dict's order
  std::vector<std::string> skipped;  ///< keys whose values were not tensors (ints, strings, nested dicts...)
};

/// Reads a dict of tensors (typically model.state_dict()) from the bytes of a torch.save zip archive (PyTorch >=
/// 1.6 format): <archive>/data.pkl, <archive>/data/<key> storages, <archive>/version, maybe <archive>/byteorder.
/// Each tensor is materialised contiguous, honouring its storage offset and strides (views, transposes and
/// tensors sharing a storage each come back as their own copy); requires_grad and hooks are dropped.
/// Never executes anything: the pickle is interpreted by a restricted machine whose only callables are
/// collections.OrderedDict, torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter and the typed
/// storage classes (torch.FloatStorage, DoubleStorage, HalfStorage, BFloat16Storage, LongStorage, IntStorage,
/// ShortStorage, CharStorage, ByteStorage, BoolStorage).
/// Throws CheckpointError naming `source` when: the zip is truncated or malformed (every offset is checked;
/// ZIP64 is supported); an entry is compressed or encrypted, has a name with a ".." component, a leading '/',
/// a backslash or a NUL, or appears twice; a CRC-32 does not match; data.pkl is missing; the pickle uses an
/// opcode outside the protocol-2..5 data subset torch.save emits, references any other global ("refusing to load
/// 'posix.system': ..."), is truncated or inconsistent; a storage is missing or its size disagrees with the
/// pickle; a tensor view reaches outside its storage; a limit in `limits` is exceeded; the top-level object is
/// not a dict; a tensor's key is not a string; the dict holds no tensors at the top level but nests them (e.g. a
/// {"model": ..., "optimizer": ...} checkpoint: load the inner dict in Python and save it on its own).
TorchStateDict parse_torch_state_dict(std::string_view zip_bytes, const std::string& source,
                                      const TorchLoadLimits& limits = {});

// ---- hashing -----------------------------------------------------------------------------------------------------

/// XXH3 128-bit hash of `bytes`, as 32 lower-case hex digits in XXH128's canonical (big-endian) byte order,
/// as `xxhsum -H2` prints it.
std::string hash_bytes(std::string_view bytes);

/// XXH3 128-bit hash of a tensor's dtype, shape and bytes, so a reshaped or re-typed tensor with the same bytes
/// hashes differently. Hashed stream: "traindx.tensor.v1\0", dtype name, '\0', rank as u64 LE, each dim as
/// i64 LE, then the bytes. Equals hash_tensor() of the same tensor in LibTorch. Does not validate `tensor`.
std::string hash_raw_tensor(const RawTensor& tensor);

/// Incremental form of hash_raw_tensor for callers that hold the bytes elsewhere (e.g. in a torch::Tensor):
/// construct with the dtype and shape, then feed the bytes in any number of pieces.
class TensorHasher {
 public:
  TensorHasher(std::string_view dtype, const std::vector<int64_t>& shape);
  /// Appends tensor bytes.
  void update(const void* data, size_t size);
  /// The hash of everything fed so far, as hash_raw_tensor formats it.
  std::string hex_digest() const;

 private:
  struct StateDeleter {
    void operator()(XXH3_state_s* state) const;
  };
  std::unique_ptr<XXH3_state_s, StateDeleter> state_;
};

}  // namespace traindx
