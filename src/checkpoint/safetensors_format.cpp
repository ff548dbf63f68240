// safetensors reader and writer (https://github.com/huggingface/safetensors, format as of 0.3/0.4).
// Torch-free: compiled into the fuzz targets, so nothing here may include LibTorch.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <limits>
#include <set>

#include "traindx/checkpoint/tensor_io.h"
#include "traindx/core/error.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "traindx copies little-endian file bytes straight into tensors; big-endian hosts are unsupported");

namespace traindx {
namespace {

constexpr const char* kMetadataKey = "__metadata__";

/// The reference implementation's Dtype enum order ("increasing alignment order"); serialisation sorts by it,
/// descending, so every tensor starts at a multiple of its element size within the data section.
int dtype_alignment_rank(std::string_view dtype) {
  static constexpr std::string_view kOrder[] = {"BOOL", "U8",  "I8",  "F8_E5M2", "F8_E4M3", "I16", "U16",
                                                "F16",  "BF16", "I32", "U32",     "F32",     "F64", "I64"};
  for (size_t i = 0; i < std::size(kOrder); ++i) {
    if (kOrder[i] == dtype) return static_cast<int>(i);
  }
  return -1;
}

uint64_t read_u64_le(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

void append_u64_le(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

/// Parses the header, refusing duplicate keys (nlohmann would silently keep the last one, and two readers that
/// disagree on which duplicate wins is how tampered files slip past review) and nesting deeper than the format's
/// object -> entry -> array (which also bounds the parser's work on hostile input).
nlohmann::json parse_header_json(std::string_view header, const std::string& source) {
  std::vector<std::set<std::string>> keys_per_object;
  auto callback = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    using Event = nlohmann::json::parse_event_t;
    switch (event) {
      case Event::object_start:
      case Event::array_start:
        TRAINDX_CHECK(depth < 3, CheckpointError,
                      "{}: safetensors header nests objects or arrays deeper than the format allows", source);
        if (event == Event::object_start) keys_per_object.emplace_back();
        break;
      case Event::object_end:
        if (!keys_per_object.empty()) keys_per_object.pop_back();
        break;
      case Event::key: {
        const auto& key = parsed.get_ref<const std::string&>();
        TRAINDX_CHECK(keys_per_object.empty() || keys_per_object.back().insert(key).second, CheckpointError,
                      "{}: safetensors header repeats the key '{}'{}", source, key,
                      depth == 1 ? " (duplicate tensor name)" : "");
        break;
      }
      default:
        break;
    }
    return true;
  };
  try {
    return nlohmann::json::parse(header.begin(), header.end(), callback);
  } catch (const nlohmann::json::exception& e) {
    TRAINDX_FAIL(CheckpointError, "{}: safetensors header is not valid UTF-8 JSON: {}", source, e.what());
  }
}

uint64_t json_u64(const nlohmann::json& value, const std::string& what) {
  TRAINDX_CHECK(value.is_number_integer(), CheckpointError, "{} is {}, not an integer", what, value.dump());
  TRAINDX_CHECK(value.is_number_unsigned(), CheckpointError, "{} is negative ({})", what, value.dump());
  return value.get<uint64_t>();
}

SafetensorsEntry parse_entry(const std::string& name, const nlohmann::json& info, size_t data_start,
                             size_t data_size, const std::string& source) {
  const std::string what = fmt::format("{}: tensor '{}'", source, name);
  TRAINDX_CHECK(info.is_object(), CheckpointError, "{}: entry is {}, not an object with dtype, shape and data_offsets",
                what, info.type_name());
  for (const char* field : {"dtype", "shape", "data_offsets"}) {
    TRAINDX_CHECK(info.contains(field), CheckpointError, "{}: entry has no '{}'", what, field);
  }
  const auto& dtype = info["dtype"];
  TRAINDX_CHECK(dtype.is_string(), CheckpointError, "{}: dtype is {}, not a string", what, dtype.dump());
  SafetensorsEntry entry;
  entry.name = name;
  entry.dtype = dtype.get<std::string>();
  const auto element_size = dtype_element_size(entry.dtype);
  TRAINDX_CHECK(element_size.has_value(), CheckpointError,
                "{}: unsupported dtype '{}' (traindx reads F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL; LibTorch 1.13 "
                "has no type for the others)",
                what, entry.dtype);

  const auto& shape = info["shape"];
  TRAINDX_CHECK(shape.is_array(), CheckpointError, "{}: shape is {}, not an array", what, shape.dump());
  for (size_t i = 0; i < shape.size(); ++i) {
    const uint64_t dim = json_u64(shape[i], fmt::format("{}: dimension {}", what, i));
    TRAINDX_CHECK(dim <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), CheckpointError,
                  "{}: dimension {} is {}, beyond int64", what, i, dim);
    entry.shape.push_back(static_cast<int64_t>(dim));
  }
  const auto count = element_count(entry.shape);
  TRAINDX_CHECK(count.has_value() && *count <= std::numeric_limits<uint64_t>::max() / *element_size,
                CheckpointError, "{}: shape [{}] has more elements than fit in int64", what,
                fmt::join(entry.shape, ", "));
  const uint64_t nbytes = *count * *element_size;

  const auto& offsets = info["data_offsets"];
  TRAINDX_CHECK(offsets.is_array() && offsets.size() == 2, CheckpointError,
                "{}: data_offsets is {}, not [begin, end]", what, offsets.dump());
  const uint64_t begin = json_u64(offsets[0], what + ": data_offsets[0]");
  const uint64_t end = json_u64(offsets[1], what + ": data_offsets[1]");
  TRAINDX_CHECK(begin <= end, CheckpointError, "{}: data_offsets [{}, {}] end before they begin", what, begin, end);
  TRAINDX_CHECK(end <= data_size, CheckpointError,
                "{}: data_offsets [{}, {}] run past the end of the {}-byte data section (truncated file?)", what,
                begin, end, data_size);
  TRAINDX_CHECK(end - begin == nbytes, CheckpointError,
                "{}: data_offsets [{}, {}] span {} bytes but {} [{}] needs {} elements x {} bytes = {}", what, begin,
                end, end - begin, entry.dtype, fmt::join(entry.shape, ", "), *count, *element_size, nbytes);
  entry.offset = data_start + static_cast<size_t>(begin);
  entry.size = static_cast<size_t>(nbytes);
  return entry;
}

}  // namespace

SafetensorsIndex parse_safetensors_index(std::string_view bytes, const std::string& source) {
  SafetensorsIndex index = parse_safetensors_layout(bytes, source);
  check_safetensors_values(index, bytes, source);
  return index;
}

uint64_t safetensors_header_length(std::string_view first8) { return read_u64_le(first8.data()); }

SafetensorsIndex parse_safetensors_layout(std::string_view bytes, const std::string& source) {
  TRAINDX_CHECK(bytes.size() >= 8, CheckpointError,
                "{}: not a safetensors file: {} bytes, shorter than the 8-byte header length", source, bytes.size());
  const uint64_t header_size = read_u64_le(bytes.data());
  TRAINDX_CHECK(header_size <= kSafetensorsMaxHeaderBytes, CheckpointError,
                "{}: safetensors header length {} exceeds the {}-byte limit (corrupt file, or not safetensors)",
                source, header_size, kSafetensorsMaxHeaderBytes);
  TRAINDX_CHECK(header_size <= bytes.size() - 8, CheckpointError,
                "{}: safetensors header length {} runs past the end of the {}-byte file (truncated?)", source,
                header_size, bytes.size());
  const size_t data_start = 8 + static_cast<size_t>(header_size);
  const size_t data_size = bytes.size() - data_start;

  const nlohmann::json header = parse_header_json(bytes.substr(8, static_cast<size_t>(header_size)), source);
  TRAINDX_CHECK(header.is_object(), CheckpointError, "{}: safetensors header is a JSON {}, not an object", source,
                header.type_name());

  SafetensorsIndex index;
  for (const auto& [name, info] : header.items()) {
    if (name == kMetadataKey) {
      TRAINDX_CHECK(info.is_object(), CheckpointError, "{}: {} is {}, not an object of strings", source,
                    kMetadataKey, info.type_name());
      for (const auto& [key, value] : info.items()) {
        TRAINDX_CHECK(value.is_string(), CheckpointError, "{}: {} value of '{}' is {}, not a string", source,
                      kMetadataKey, key, value.dump());
        index.metadata.emplace(key, value.get<std::string>());
      }
      continue;
    }
    index.entries.push_back(parse_entry(name, info, data_start, data_size, source));
  }

  // Full, contiguous coverage of the data section, as the reference requires: no bytes a reader would ignore
  // (where a tampered file could hide data) and no two tensors sharing bytes.
  std::sort(index.entries.begin(), index.entries.end(), [](const auto& a, const auto& b) {
    return std::tie(a.offset, a.size, a.name) < std::tie(b.offset, b.size, b.name);
  });
  size_t expected = data_start;
  const SafetensorsEntry* previous = nullptr;
  for (const auto& entry : index.entries) {
    TRAINDX_CHECK(entry.offset >= expected, CheckpointError,
                  "{}: tensor '{}' (data_offsets from {}) overlaps tensor '{}' (ending at {})", source, entry.name,
                  entry.offset - data_start, previous ? previous->name : "", expected - data_start);
    TRAINDX_CHECK(entry.offset == expected, CheckpointError,
                  "{}: tensor '{}' starts at data offset {}, leaving {} unused bytes after {} (offsets must cover "
                  "the data section contiguously)",
                  source, entry.name, entry.offset - data_start, entry.offset - expected,
                  previous ? fmt::format("tensor '{}'", previous->name) : std::string("the header"));
    expected = entry.offset + entry.size;
    previous = &entry;
  }
  TRAINDX_CHECK(expected == bytes.size(), CheckpointError,
                "{}: the data section holds {} bytes but its tensors cover only {} (trailing bytes; offsets must "
                "cover the data section exactly)",
                source, data_size, expected - data_start);
  return index;
}

void check_safetensors_values(const SafetensorsIndex& index, std::string_view bytes, const std::string& source) {
  for (const auto& entry : index.entries) {
    if (entry.dtype != "BOOL") continue;
    const std::string_view data = bytes.substr(entry.offset, entry.size);
    const auto bad = std::find_if(data.begin(), data.end(), [](char c) { return static_cast<unsigned char>(c) > 1; });
    TRAINDX_CHECK(bad == data.end(), CheckpointError,
                  "{}: tensor '{}': BOOL element {} holds byte 0x{:02x}; only 0 and 1 are valid booleans", source,
                  entry.name, bad - data.begin(), static_cast<unsigned char>(*bad));
  }
}

SafetensorsFile parse_safetensors(std::string_view bytes, const std::string& source) {
  SafetensorsIndex index = parse_safetensors_index(bytes, source);
  SafetensorsFile file;
  file.metadata = std::move(index.metadata);
  file.tensors.reserve(index.entries.size());
  for (auto& entry : index.entries) {
    RawTensor raw{std::move(entry.dtype), std::move(entry.shape), std::string(bytes.substr(entry.offset, entry.size))};
    file.tensors.emplace_back(std::move(entry.name), std::move(raw));
  }
  return file;
}

SafetensorsHeader safetensors_header(const std::vector<TensorLayout>& tensors, const TensorMetadata& metadata) {
  std::set<std::string_view> names;
  for (const auto& t : tensors) {
    TRAINDX_CHECK(t.name != kMetadataKey, CheckpointError,
                  "cannot write safetensors: '{}' is reserved for the metadata map, not a tensor name", t.name);
    TRAINDX_CHECK(names.insert(t.name).second, CheckpointError, "cannot write safetensors: two tensors are named '{}'",
                  t.name);
    validate_tensor_layout(t.dtype, t.shape, t.size, fmt::format("cannot write safetensors tensor '{}'", t.name));
  }

  SafetensorsHeader out;
  out.order.resize(tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) out.order[i] = i;
  std::sort(out.order.begin(), out.order.end(), [&](size_t a, size_t b) {
    const int ra = dtype_alignment_rank(tensors[a].dtype);
    const int rb = dtype_alignment_rank(tensors[b].dtype);
    return ra != rb ? ra > rb : tensors[a].name < tensors[b].name;
  });

  // ordered_json keeps insertion order: __metadata__ first, then entries in data order, as the reference writes.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [key, value] : metadata) meta[key] = value;
    header[kMetadataKey] = std::move(meta);
  }
  uint64_t offset = 0;
  for (const size_t i : out.order) {
    const TensorLayout& tensor = tensors[i];
    nlohmann::ordered_json entry = nlohmann::ordered_json::object();
    entry["dtype"] = tensor.dtype;
    entry["shape"] = tensor.shape;
    entry["data_offsets"] = {offset, offset + tensor.size};
    offset += tensor.size;
    header[tensor.name] = std::move(entry);
  }
  out.data_size = offset;
  std::string header_text;
  try {
    header_text = header.dump();
  } catch (const nlohmann::json::exception& e) {
    TRAINDX_FAIL(CheckpointError, "cannot write safetensors: a tensor name or metadata string is not valid UTF-8 ({})",
                 e.what());
  }
  header_text.append((8 - header_text.size() % 8) % 8, ' ');
  TRAINDX_CHECK(header_text.size() <= kSafetensorsMaxHeaderBytes, CheckpointError,
                "cannot write safetensors: the header would be {} bytes, over the format's {}-byte limit",
                header_text.size(), kSafetensorsMaxHeaderBytes);
  out.bytes.reserve(8 + header_text.size());
  append_u64_le(out.bytes, header_text.size());
  out.bytes += header_text;
  return out;
}

std::string serialize_safetensors(const NamedRawTensors& tensors, const TensorMetadata& metadata) {
  std::vector<TensorLayout> layouts;
  layouts.reserve(tensors.size());
  for (const auto& [name, tensor] : tensors) {
    validate_raw_tensor(tensor, fmt::format("cannot write safetensors tensor '{}'", name));
    layouts.push_back({name, tensor.dtype, tensor.shape, tensor.bytes.size()});
  }
  const SafetensorsHeader header = safetensors_header(layouts, metadata);
  std::string out;
  out.reserve(header.bytes.size() + static_cast<size_t>(header.data_size));
  out += header.bytes;
  for (const size_t i : header.order) out += tensors[i].second.bytes;
  return out;
}

}  // namespace traindx
