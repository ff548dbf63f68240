// Tensor file formats: safetensors round trips and rejections, torch.save state_dicts written by Python's
// torch 1.13 (tests/reference/make_state_dict_fixtures.py, run at test time), hostile archives built here.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>

#include "test_support.h"
#include "traindx/checkpoint/tensor_convert.h"
#include "traindx/checkpoint/tensor_io.h"
#include "traindx/core/error.h"
#include "traindx/store/run_store.h"

namespace traindx {
namespace {

using testing::TempDir;

// ---- helpers -----------------------------------------------------------------------------------------------------

/// Runs `f`, expecting a CheckpointError whose message contains every one of `parts`.
void expect_checkpoint_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
  } catch (const CheckpointError& e) {
    const std::string message = e.what();
    for (const auto& part : parts) {
      EXPECT_NE(message.find(part), std::string::npos) << "message: " << message << "\nmissing: " << part;
    }
    return;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected CheckpointError, got another exception: " << e.what();
    return;
  }
  ADD_FAILURE() << "expected CheckpointError containing '" << (parts.empty() ? "" : parts[0]) << "', nothing thrown";
}

std::string u64_le(uint64_t v) {
  std::string out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  return out;
}

/// A safetensors image from a literal header and data section.
std::string safetensors_image(const std::string& header, const std::string& data) {
  return u64_le(header.size()) + header + data;
}

bool bitwise_equal(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
  const torch::Tensor ca = a.contiguous();
  const torch::Tensor cb = b.contiguous();
  return std::memcmp(ca.data_ptr(), cb.data_ptr(), static_cast<size_t>(ca.numel()) * ca.element_size()) == 0;
}

/// One tensor of every supported dtype, with edge values (NaN, -0.0, inf, integer extremes) and odd shapes.
NamedTensors every_dtype() {
  torch::manual_seed(7);
  NamedTensors t;
  auto floats = torch::randn({3, 4}, torch::kFloat64);
  floats[0][0] = std::numeric_limits<double>::quiet_NaN();
  floats[0][1] = -0.0;
  floats[0][2] = -std::numeric_limits<double>::infinity();
  t.emplace_back("f64", floats);
  t.emplace_back("f32", floats.to(torch::kFloat32).reshape({2, 2, 3}));
  t.emplace_back("f16", floats.to(torch::kFloat16));
  t.emplace_back("bf16", floats.to(torch::kBFloat16).t());  // non-contiguous input
  t.emplace_back("i64", torch::tensor({std::numeric_limits<int64_t>::min(), int64_t{-1}, int64_t{0},
                                       std::numeric_limits<int64_t>::max()}));
  t.emplace_back("i32", torch::tensor({std::numeric_limits<int32_t>::min(), 5, std::numeric_limits<int32_t>::max()},
                                      torch::kInt32));
  t.emplace_back("i16", torch::tensor({-32768, 1, 32767}, torch::kInt16));
  t.emplace_back("i8", torch::tensor({-128, 0, 127}, torch::kInt8).reshape({1, 3, 1}));
  t.emplace_back("u8", torch::arange(256, torch::kInt32).to(torch::kUInt8));
  t.emplace_back("bool", torch::tensor({true, false, true}));
  t.emplace_back("scalar", torch::tensor(2.5));
  t.emplace_back("empty", torch::zeros({0, 3}, torch::kInt16));
  return t;
}

// ---- safetensors: round trips and layout ---------------------------------------------------------------------------

TEST(CheckpointTensorIoTest, SafetensorsRoundTripsEveryDtypeBitwiseWithMetadata) {
  TempDir dir;
  const std::string path = dir.file("t.safetensors");
  const NamedTensors tensors = every_dtype();
  const TensorMetadata metadata{{"format", "pt"}, {"step", "120"}, {"note", "üñíçødé \"quoted\"\n"}};
  write_safetensors(path, tensors, metadata);

  const LoadedTensors loaded = read_safetensors(path);
  EXPECT_EQ(loaded.metadata, metadata);
  ASSERT_EQ(loaded.tensors.size(), tensors.size());
  for (const auto& [name, original] : tensors) {
    const auto it = std::find_if(loaded.tensors.begin(), loaded.tensors.end(),
                                 [&](const auto& named) { return named.first == name; });
    ASSERT_NE(it, loaded.tensors.end()) << name;
    EXPECT_TRUE(bitwise_equal(it->second, original)) << name;
    EXPECT_TRUE(it->second.is_contiguous()) << name;
    EXPECT_EQ(hash_tensor(it->second), hash_tensor(original)) << name;
  }
  // No temporary file left behind by the atomic write.
  size_t files = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator(dir.path())) ++files;
  EXPECT_EQ(files, 1u);
}

TEST(CheckpointTensorIoTest, StreamedPiecesAreTheSerializedImageByteForByte) {
  // What the checkpoint writer streams (header + tensors viewed in place) must be exactly serialize_safetensors'
  // image, including for a transposed (non-contiguous) tensor, which is copied once.
  NamedTensors tensors = every_dtype();
  tensors.emplace_back("transposed", torch::arange(12, torch::kFloat32).reshape({3, 4}).t());
  tensors.emplace_back("scalar_f64", torch::tensor(2.5, torch::kFloat64));
  const TensorMetadata metadata{{"k", "v"}};
  NamedRawTensors raw;
  for (const auto& [name, t] : tensors) raw.emplace_back(name, from_torch(t));
  const std::string image = serialize_safetensors(raw, metadata);

  const SafetensorsPieces pieces = safetensors_pieces(tensors, metadata);
  std::string joined;
  for (const auto& piece : pieces.views()) joined += piece;
  EXPECT_EQ(joined, image);

  TempDir dir;
  const std::string path = dir.file("t.safetensors");
  write_safetensors(path, tensors, metadata);
  EXPECT_EQ(read_file(path), image);
  expect_checkpoint_error([] { safetensors_pieces({{"a", torch::ones({1})}, {"a", torch::ones({1})}}, {}, "x.st"); },
                          {"x.st", "two tensors are named 'a'"});
}

TEST(CheckpointTensorIoTest, SafetensorsRawRoundTripAndOverwrite) {
  TempDir dir;
  const std::string path = dir.file("t.safetensors");
  write_safetensors(path, {{"a", torch::ones({2})}});
  write_safetensors(path, {{"b", torch::zeros({3}, torch::kInt64)}});  // replaces the file atomically
  const SafetensorsFile file = parse_safetensors(read_file(path), path);
  ASSERT_EQ(file.tensors.size(), 1u);
  EXPECT_EQ(file.tensors[0].first, "b");
  EXPECT_EQ(file.tensors[0].second.dtype, "I64");
  EXPECT_EQ(file.tensors[0].second.shape, std::vector<int64_t>{3});
  EXPECT_EQ(file.tensors[0].second.bytes, std::string(24, '\0'));
  EXPECT_TRUE(file.metadata.empty());
}

TEST(CheckpointTensorIoTest, SafetensorsBytesMatchTheReferenceImplementation) {
  // Expected images from huggingface/safetensors' own tests (safetensors/src/tensor.rs: test_serialization,
  // test_serialization_forced_alignement, test_empty).
  std::string floats;
  for (float v : {0.f, 1.f, 2.f, 3.f, 4.f, 5.f}) floats.append(reinterpret_cast<const char*>(&v), 4);
  EXPECT_EQ(serialize_safetensors({{"attn.0", RawTensor{"F32", {1, 2, 3}, floats}}}),
            safetensors_image(R"({"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}})", floats));
  EXPECT_EQ(serialize_safetensors({{"attn0", RawTensor{"F32", {1, 1, 2, 3}, floats}}}),
            safetensors_image(R"({"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}})" +
                                  std::string(7, ' '),
                              floats));
  EXPECT_EQ(serialize_safetensors({}), safetensors_image("{}      ", ""));
  EXPECT_EQ(serialize_safetensors({}, {{"framework", "pt"}}),
            safetensors_image(R"({"__metadata__":{"framework":"pt"}})" + std::string(5, ' '), ""));
}

TEST(CheckpointTensorIoTest, SafetensorsWriterIsDeterministicAndAligned) {
  const NamedRawTensors a{{"z_bool", RawTensor{"BOOL", {3}, std::string("\1\0\1", 3)}},
                          {"b_f64", RawTensor{"F64", {1}, std::string(8, '\1')}},
                          {"a_f16", RawTensor{"F16", {1}, std::string(2, '\2')}},
                          {"c_i64", RawTensor{"I64", {2}, std::string(16, '\3')}},
                          {"a_f64", RawTensor{"F64", {}, std::string(8, '\4')}},
                          {"m_u8", RawTensor{"U8", {5}, std::string(5, '\5')}},
                          {"k_f32", RawTensor{"F32", {1}, std::string(4, '\6')}}};
  const NamedRawTensors reversed(a.rbegin(), a.rend());
  const std::string image = serialize_safetensors(a, {{"k", "v"}});
  EXPECT_EQ(image, serialize_safetensors(reversed, {{"k", "v"}}));

  const SafetensorsIndex index = parse_safetensors_index(image, "mem");
  std::vector<std::string> order;
  for (const auto& e : index.entries) order.push_back(e.name);
  // The reference's order: descending dtype alignment (I64 F64 F32 ... F16 ... U8 BOOL), then name.
  EXPECT_EQ(order, (std::vector<std::string>{"c_i64", "a_f64", "b_f64", "k_f32", "a_f16", "m_u8", "z_bool"}));
  const uint64_t header = index.entries.front().offset - 8;
  EXPECT_EQ(header % 8, 0u);
  for (const auto& e : index.entries) {
    EXPECT_EQ((e.offset - 8 - header) % *dtype_element_size(e.dtype), 0u) << e.name;
  }
}

TEST(CheckpointTensorIoTest, SafetensorsWriterRejectsInvalidTensors) {
  expect_checkpoint_error([] { serialize_safetensors({{"x", RawTensor{"F32", {2}, std::string(7, '\0')}}}); },
                          {"'x'", "7 bytes", "needs 2 elements x 4 bytes"});
  expect_checkpoint_error([] { serialize_safetensors({{"x", RawTensor{"C64", {1}, std::string(8, '\0')}}}); },
                          {"unsupported dtype 'C64'"});
  expect_checkpoint_error([] { serialize_safetensors({{"x", RawTensor{"BOOL", {1}, std::string(1, '\2')}}}); },
                          {"BOOL element 0 holds byte 0x02"});
  expect_checkpoint_error(
      [] {
        serialize_safetensors({{"x", RawTensor{"U8", {1}, "a"}}, {"x", RawTensor{"U8", {1}, "b"}}});
      },
      {"two tensors are named 'x'"});
  expect_checkpoint_error([] { serialize_safetensors({{"__metadata__", RawTensor{"U8", {1}, "a"}}}); },
                          {"reserved"});
  expect_checkpoint_error([] { serialize_safetensors({{"bad\xff", RawTensor{"U8", {1}, "a"}}}); }, {"UTF-8"});
  expect_checkpoint_error([] { from_torch(torch::zeros({2}, torch::kComplexFloat)); }, {"ComplexFloat"});
  expect_checkpoint_error([] { to_torch(RawTensor{"F32", {-1}, ""}); }, {"negative dimension"});
}

TEST(CheckpointTensorIoTest, ReadSafetensorsOfMissingFileIsIoError) {
  TempDir dir;
  EXPECT_THROW(read_safetensors(dir.file("missing.safetensors")), IoError);
  EXPECT_THROW(read_torch_state_dict(dir.file("missing.pt")), IoError);
}

// ---- safetensors: every malformed case -----------------------------------------------------------------------------

TEST(CheckpointTensorIoTest, SafetensorsRejectsMalformedFiles) {
  const auto parse = [](const std::string& image) {
    return [image] { parse_safetensors(image, "bad.safetensors"); };
  };
  const auto one = [](const std::string& entry) { return std::string(R"({"t":)") + entry + "}"; };
  const std::string f32x2 = std::string(8, '\0');

  expect_checkpoint_error(parse("1234567"), {"bad.safetensors", "shorter than the 8-byte header length"});
  expect_checkpoint_error(parse(u64_le(100) + "{}"), {"bad.safetensors", "runs past the end"});
  expect_checkpoint_error(parse(u64_le(200'000'000) + "{}"), {"exceeds the 100000000-byte limit"});
  expect_checkpoint_error(parse(u64_le(~uint64_t{0}) + "{}"), {"exceeds"});
  expect_checkpoint_error(parse(safetensors_image("{\"t\":", "")), {"not valid UTF-8 JSON"});
  expect_checkpoint_error(parse(safetensors_image("{\"t\xff\":{}}", "")), {"not valid UTF-8 JSON"});
  expect_checkpoint_error(parse(safetensors_image("[1,2]", "")), {"is a JSON array, not an object"});
  expect_checkpoint_error(parse(safetensors_image(one("5"), "")), {"tensor 't'", "not an object"});
  expect_checkpoint_error(parse(safetensors_image(one(R"({"shape":[2],"data_offsets":[0,8]})"), f32x2)),
                          {"tensor 't'", "no 'dtype'"});
  expect_checkpoint_error(parse(safetensors_image(one(R"({"dtype":"F32","data_offsets":[0,8]})"), f32x2)),
                          {"tensor 't'", "no 'shape'"});
  expect_checkpoint_error(parse(safetensors_image(one(R"({"dtype":"F32","shape":[2]})"), f32x2)),
                          {"tensor 't'", "no 'data_offsets'"});
  expect_checkpoint_error(parse(safetensors_image(one(R"({"dtype":"F33","shape":[2],"data_offsets":[0,8]})"), f32x2)),
                          {"tensor 't'", "unsupported dtype 'F33'"});
  expect_checkpoint_error(parse(safetensors_image(one(R"({"dtype":"U16","shape":[4],"data_offsets":[0,8]})"), f32x2)),
                          {"unsupported dtype 'U16'"});
  expect_checkpoint_error(parse(safetensors_image(one(R"({"dtype":7,"shape":[2],"data_offsets":[0,8]})"), f32x2)),
                          {"dtype is 7, not a string"});
  expect_checkpoint_error(parse(safetensors_image(one(R"({"dtype":"F32","shape":[-2],"data_offsets":[0,8]})"), f32x2)),
                          {"tensor 't'", "dimension 0 is negative"});
  expect_checkpoint_error(parse(safetensors_image(one(R"({"dtype":"F32","shape":[1.5],"data_offsets":[0,8]})"), f32x2)),
                          {"dimension 0 is 1.5, not an integer"});
  expect_checkpoint_error(parse(safetensors_image(one(R"({"dtype":"F32","shape":2,"data_offsets":[0,8]})"), f32x2)),
                          {"shape is 2, not an array"});
  expect_checkpoint_error(
      parse(safetensors_image(
          one(R"({"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]})"), f32x2)),
      {"tensor 't'", "more elements than fit in int64"});
  expect_checkpoint_error(
      parse(safetensors_image(one(R"({"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,8]})"), f32x2)),
      {"more elements than fit"});
  expect_checkpoint_error(parse(safetensors_image(one(R"({"dtype":"F32","shape":[3],"data_offsets":[0,8]})"), f32x2)),
                          {"tensor 't'", "span 8 bytes but F32 [3] needs 3 elements x 4 bytes = 12"});
  expect_checkpoint_error(parse(safetensors_image(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,16]})"), f32x2)),
                          {"tensor 't'", "run past the end of the 8-byte data section"});
  expect_checkpoint_error(parse(safetensors_image(one(R"({"dtype":"F32","shape":[2],"data_offsets":[8,0]})"), f32x2)),
                          {"end before they begin"});
  expect_checkpoint_error(parse(safetensors_image(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0]})"), f32x2)),
                          {"not [begin, end]"});
  expect_checkpoint_error(parse(safetensors_image(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,-8]})"), f32x2)),
                          {"data_offsets[1] is negative"});
  // Two tensors sharing bytes, a gap between tensors, bytes no tensor covers.
  expect_checkpoint_error(
      parse(safetensors_image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                              R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                              std::string(12, '\0'))),
      {"tensor 'b'", "overlaps tensor 'a'"});
  expect_checkpoint_error(
      parse(safetensors_image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                              R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                              std::string(12, '\0'))),
      {"tensor 'b'", "leaving 4 unused bytes after tensor 'a'"});
  expect_checkpoint_error(
      parse(safetensors_image(R"({"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", f32x2)),
      {"tensor 'b'", "starts at data offset 4", "after the header"});
  expect_checkpoint_error(parse(safetensors_image(one(R"({"dtype":"F32","shape":[1],"data_offsets":[0,4]})"), f32x2)),
                          {"holds 8 bytes but its tensors cover only 4"});
  expect_checkpoint_error(
      parse(safetensors_image(R"({"t":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                              R"("t":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})",
                              "x")),
      {"repeats the key 't'", "duplicate tensor name"});
  expect_checkpoint_error(
      parse(safetensors_image(R"({"t":{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]}})", "x")),
      {"repeats the key 'dtype'"});
  expect_checkpoint_error(parse(safetensors_image(R"({"__metadata__":{"k":1}})", "")),
                          {"__metadata__ value of 'k' is 1, not a string"});
  expect_checkpoint_error(parse(safetensors_image(R"({"__metadata__":[]})", "")), {"not an object of strings"});
  expect_checkpoint_error(parse(safetensors_image(one(R"({"dtype":"BOOL","shape":[2],"data_offsets":[0,2]})"),
                                                  std::string("\1\7", 2))),
                          {"tensor 't'", "BOOL element 1 holds byte 0x07"});
  expect_checkpoint_error(parse(safetensors_image(one(R"({"dtype":"U8","shape":[[1]],"data_offsets":[0,1]})"), "x")),
                          {"nests objects or arrays deeper"});
  expect_checkpoint_error(parse(safetensors_image(std::string(1000, '[') + std::string(1000, ']'), "")),
                          {"nests objects or arrays deeper"});
}

TEST(CheckpointTensorIoTest, SafetensorsAcceptsWhatTheSpecAllows) {
  // Zero-size tensors, a scalar, extra fields (ignored, as the reference does), leading white space.
  const SafetensorsFile file = parse_safetensors(
      safetensors_image(R"( {"e":{"dtype":"F32","shape":[0,5],"data_offsets":[0,0]},)"
                        R"("s":{"dtype":"I16","shape":[],"data_offsets":[0,2],"extra":1}}  )",
                        "\x34\x12"),
      "ok.safetensors");
  ASSERT_EQ(file.tensors.size(), 2u);
  EXPECT_EQ(file.tensors[0].first, "e");
  EXPECT_EQ(file.tensors[1].second.bytes, "\x34\x12");
  const torch::Tensor s = to_torch(file.tensors[1].second);
  EXPECT_EQ(s.dim(), 0);
  EXPECT_EQ(s.item<int16_t>(), 0x1234);
}

// ---- hashing -------------------------------------------------------------------------------------------------------

TEST(CheckpointTensorIoTest, HashesCoverDtypeShapeAndBytes) {
  EXPECT_EQ(hash_bytes("").size(), 32u);
  EXPECT_EQ(hash_bytes("abc"), hash_bytes("abc"));
  EXPECT_NE(hash_bytes("abc"), hash_bytes("abd"));
  // XXH3-128 of the empty input (xxhash's published test vector), canonical big-endian hex.
  EXPECT_EQ(hash_bytes(""), "99aa06d3014798d86001c324468d497f");

  const torch::Tensor t = torch::arange(12, torch::kFloat32);
  const std::string h = hash_tensor(t);
  EXPECT_EQ(h.size(), 32u);
  EXPECT_EQ(h, hash_tensor(t.clone()));
  EXPECT_EQ(h, hash_raw_tensor(from_torch(t)));
  EXPECT_NE(h, hash_tensor(t.reshape({3, 4})));              // same bytes, other shape
  EXPECT_NE(h, hash_tensor(t.view(torch::kInt32)));          // same bytes, other dtype
  EXPECT_NE(hash_tensor(torch::zeros({1})), hash_tensor(torch::zeros(std::vector<int64_t>{})));
  const torch::Tensor m = torch::randn({5, 7});
  EXPECT_EQ(hash_tensor(m.t()), hash_tensor(m.t().contiguous()));  // row-major order of the values
  EXPECT_NE(hash_tensor(m.t()), hash_tensor(m));
  EXPECT_NE(hash_tensor(torch::tensor({0.0f})), hash_tensor(torch::tensor({-0.0f})));  // bitwise
}

// ---- torch.save archives built here (no Python needed) -------------------------------------------------------------

uint32_t reference_crc32(std::string_view data) {  // bitwise CRC-32, independent of the reader's table version
  uint32_t crc = 0xFFFFFFFFu;
  for (const char c : data) {
    crc ^= static_cast<unsigned char>(c);
    for (int k = 0; k < 8; ++k) crc = (crc & 1) ? 0xEDB88320u ^ (crc >> 1) : crc >> 1;
  }
  return ~crc;
}

void put16(std::string& s, uint64_t v) { for (int i = 0; i < 2; ++i) s.push_back(static_cast<char>(v >> (8 * i))); }
void put32(std::string& s, uint64_t v) { for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>(v >> (8 * i))); }
void put64(std::string& s, uint64_t v) { for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>(v >> (8 * i))); }

/// A zip writer for hostile test archives: stored members, optional ZIP64 records, knobs to break things.
struct ZipMemberSpec {
  std::string name;
  std::string data;
  uint16_t method = 0;
  bool bad_crc = false;
};

std::string build_zip(const std::vector<ZipMemberSpec>& members, bool zip64 = false) {
  std::string out;
  std::string central;
  for (const auto& m : members) {
    const uint64_t offset = out.size();
    const uint32_t crc = reference_crc32(m.data) ^ (m.bad_crc ? 1u : 0u);
    put32(out, 0x04034b50);
    put16(out, 20);
    put16(out, 0);
    put16(out, m.method);
    put32(out, 0);  // time, date
    put32(out, crc);
    put32(out, m.data.size());
    put32(out, m.data.size());
    put16(out, m.name.size());
    put16(out, 0);
    out += m.name;
    out += m.data;

    std::string extra;
    if (zip64) {
      put16(extra, 0x0001);
      put16(extra, 24);
      put64(extra, m.data.size());
      put64(extra, m.data.size());
      put64(extra, offset);
    }
    put32(central, 0x02014b50);
    put16(central, 45);
    put16(central, 45);
    put16(central, 0);
    put16(central, m.method);
    put32(central, 0);
    put32(central, crc);
    put32(central, zip64 ? 0xFFFFFFFF : m.data.size());
    put32(central, zip64 ? 0xFFFFFFFF : m.data.size());
    put16(central, m.name.size());
    put16(central, extra.size());
    put16(central, 0);  // comment
    put16(central, 0);  // disk
    put16(central, 0);  // internal attributes
    put32(central, 0);  // external attributes
    put32(central, zip64 ? 0xFFFFFFFF : offset);
    central += m.name;
    central += extra;
  }
  const uint64_t cd_offset = out.size();
  out += central;
  if (zip64) {
    const uint64_t record = out.size();
    put32(out, 0x06064b50);
    put64(out, 44);
    put16(out, 45);
    put16(out, 45);
    put32(out, 0);
    put32(out, 0);
    put64(out, members.size());
    put64(out, members.size());
    put64(out, central.size());
    put64(out, cd_offset);
    put32(out, 0x07064b50);
    put32(out, 0);
    put64(out, record);
    put32(out, 1);
  }
  put32(out, 0x06054b50);
  put16(out, 0);
  put16(out, 0);
  put16(out, zip64 ? 0xFFFF : members.size());
  put16(out, zip64 ? 0xFFFF : members.size());
  put32(out, zip64 ? 0xFFFFFFFF : central.size());
  put32(out, zip64 ? 0xFFFFFFFF : cd_offset);
  put16(out, 0);
  return out;
}

/// Pickle opcodes, protocol 2, as torch.save writes them.
struct Pickle {
  std::string s = "\x80\x02";
  Pickle& op(const std::string& o) { s += o; return *this; }
  Pickle& str(const std::string& v) { s += 'X'; put32(s, v.size()); s += v; return *this; }
  Pickle& integer(int64_t v) {
    if (v >= 0 && v < 256) {
      s += 'K';
      s.push_back(static_cast<char>(v));
    } else {
      s += "\x8a\x08";
      put64(s, static_cast<uint64_t>(v));
    }
    return *this;
  }
  Pickle& global(const std::string& module, const std::string& name) { s += "c" + module + "\n" + name + "\n"; return *this; }
  Pickle& ints(const std::vector<int64_t>& v) {
    s += '(';
    for (const int64_t x : v) integer(x);
    s += 't';
    return *this;
  }
  /// _rebuild_tensor_v2(persistent storage, offset, size, stride, False, {}) on the stack.
  Pickle& tensor(const std::string& storage_type, const std::string& key, int64_t numel, int64_t offset,
                 const std::vector<int64_t>& size, const std::vector<int64_t>& stride) {
    global("torch._utils", "_rebuild_tensor_v2").op("((").str("storage").global("torch", storage_type).str(key);
    str("cpu").integer(numel).op("tQ").integer(offset).ints(size).ints(stride).op("\x89}tR");
    return *this;
  }
  std::string done() const { return s + "."; }
};

std::string f32_bytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

/// An archive "archive/..." holding `pickle` and the given storages.
std::string torch_archive(const std::string& pickle, const std::vector<std::pair<std::string, std::string>>& storages,
                          bool zip64 = false, const std::string& byteorder = "") {
  std::vector<ZipMemberSpec> members{{"archive/data.pkl", pickle}};
  if (!byteorder.empty()) members.push_back({"archive/byteorder", byteorder});
  for (const auto& [key, bytes] : storages) members.push_back({"archive/data/" + key, bytes});
  members.push_back({"archive/version", "3\n"});
  return build_zip(members, zip64);
}

/// {"w": 2x3 float view (transposed 3x2 storage), "b": [4] at storage offset 2 of another storage}.
std::string small_state_dict_pickle() {
  return Pickle()
      .op("}(")
      .str("w")
      .tensor("FloatStorage", "0", 6, 0, {2, 3}, {1, 2})
      .str("b")
      .tensor("FloatStorage", "1", 6, 2, {4}, {1})
      .op("u")
      .done();
}
const std::vector<std::pair<std::string, std::string>> kSmallStorages{
    {"0", f32_bytes({0, 1, 2, 3, 4, 5})}, {"1", f32_bytes({10, 11, 12, 13, 14, 15})}};

void expect_small_state_dict(const TorchStateDict& state) {
  ASSERT_EQ(state.tensors.size(), 2u);
  EXPECT_EQ(state.tensors[0].first, "w");
  EXPECT_EQ(state.tensors[0].second.shape, (std::vector<int64_t>{2, 3}));
  // Storage [0..5] viewed with strides (1, 2): row 0 = 0 2 4, row 1 = 1 3 5.
  EXPECT_EQ(state.tensors[0].second.bytes, f32_bytes({0, 2, 4, 1, 3, 5}));
  EXPECT_EQ(state.tensors[1].first, "b");
  EXPECT_EQ(state.tensors[1].second.bytes, f32_bytes({12, 13, 14, 15}));
}

TEST(CheckpointTensorIoTest, TorchArchiveBuiltHereReadsViewsAndZip64) {
  expect_small_state_dict(parse_torch_state_dict(torch_archive(small_state_dict_pickle(), kSmallStorages), "a.pt"));
  expect_small_state_dict(
      parse_torch_state_dict(torch_archive(small_state_dict_pickle(), kSmallStorages, /*zip64=*/true), "z.pt"));
  // Written on a big-endian machine: every element's bytes reversed on disk.
  auto swapped = kSmallStorages;
  for (auto& [key, bytes] : swapped) {
    for (size_t i = 0; i < bytes.size(); i += 4) std::reverse(bytes.begin() + i, bytes.begin() + i + 4);
  }
  expect_small_state_dict(
      parse_torch_state_dict(torch_archive(small_state_dict_pickle(), swapped, false, "big"), "be.pt"));
  expect_small_state_dict(
      parse_torch_state_dict(torch_archive(small_state_dict_pickle(), kSmallStorages, false, "little"), "le.pt"));
}

TEST(CheckpointTensorIoTest, TorchArchiveRefusesForbiddenGlobalsAndOpcodes) {
  const auto load = [](const std::string& pickle) {
    return [pickle] { parse_torch_state_dict(torch_archive(pickle, kSmallStorages), "hostile.pt"); };
  };
  expect_checkpoint_error(load(Pickle().op("}").str("x").global("os", "system").str("echo pwned").op("\x85Rs").done()),
                          {"hostile.pt", "refusing to load 'os.system'", "never executes code"});
  expect_checkpoint_error(load(Pickle().global("builtins", "eval").done()), {"refusing to load 'builtins.eval'"});
  expect_checkpoint_error(load(Pickle().global("torch", "load").done()), {"refusing to load 'torch.load'"});
  // STACK_GLOBAL (protocol 4) goes through the same whitelist.
  expect_checkpoint_error(load(Pickle().op("\x8c\x05posix\x8c\x06system\x93").done()),
                          {"refusing to load 'posix.system'"});
  // INST and OBJ call classes without GLOBAL; they are not in the opcode subset at all.
  expect_checkpoint_error(load(Pickle().op("(ios\nsystem\n").done()), {"unsupported pickle opcode 0x69 ('i')"});
  expect_checkpoint_error(load(Pickle().op("(o").done()), {"unsupported pickle opcode 0x6f"});
  // A whitelisted storage class is data, not a callable.
  expect_checkpoint_error(load(Pickle().global("torch", "FloatStorage").op(")R").done()),
                          {"may only appear inside a storage's persistent id"});
}

TEST(CheckpointTensorIoTest, TorchArchiveRefusesInconsistentPickles) {
  const auto load = [](const std::string& pickle, const TorchLoadLimits& limits = {}) {
    return [pickle, limits] { parse_torch_state_dict(torch_archive(pickle, kSmallStorages), "bad.pt", limits); };
  };
  const auto dict_with = [](const std::function<void(Pickle&)>& value) {
    Pickle p;
    p.op("}").str("t");
    value(p);
    return p.op("s").done();
  };
  expect_checkpoint_error(
      load(dict_with([](Pickle& p) { p.tensor("FloatStorage", "0", 6, 4, {3}, {1}); })),
      {"bad.pt", "reaches outside its storage"});
  expect_checkpoint_error(
      load(dict_with([](Pickle& p) { p.tensor("FloatStorage", "0", 6, 0, {4, 2}, {2, 1}); })),
      {"reaches outside its storage"});
  expect_checkpoint_error(
      load(dict_with([](Pickle& p) { p.tensor("FloatStorage", "0", 6, 6, {1}, {1}); })),
      {"reaches outside its storage"});
  expect_checkpoint_error(
      load(dict_with([](Pickle& p) {
        p.tensor("FloatStorage", "0", 6, 0, {std::numeric_limits<int64_t>::max(), 2}, {0, 0});
      })),
      {"more elements than fit in int64"});
  expect_checkpoint_error(load(dict_with([](Pickle& p) { p.tensor("FloatStorage", "0", 6, 0, {2}, {-1}); })),
                          {"negative stride"});
  expect_checkpoint_error(load(dict_with([](Pickle& p) { p.tensor("FloatStorage", "0", 7, 0, {2}, {1}); })),
                          {"storage '0' should hold 7 F32 elements (28 bytes) but data/0 has 24 bytes"});
  expect_checkpoint_error(load(dict_with([](Pickle& p) { p.tensor("DoubleStorage", "0", 6, 0, {2}, {1}); })),
                          {"data/0 has 24 bytes"});
  expect_checkpoint_error(load(dict_with([](Pickle& p) { p.tensor("FloatStorage", "9", 6, 0, {2}, {1}); })),
                          {"storage '9' has no data/9 member"});
  expect_checkpoint_error(load(dict_with([](Pickle& p) { p.tensor("FloatStorage", "0", 6, 0, {2}, {1, 1}); })),
                          {"has 1 sizes but 2 strides"});
  // A stride-0 view describing far more data than the file: bounded by max_output_bytes.
  expect_checkpoint_error(
      load(dict_with([](Pickle& p) { p.tensor("FloatStorage", "0", 6, 0, {1 << 20, 1 << 10}, {0, 0}); }),
           TorchLoadLimits().output_bytes(1 << 20)),
      {"max_output_bytes"});
  expect_checkpoint_error(load(Pickle().op("]").done()), {"holds a list, not a dict of tensors"});
  expect_checkpoint_error(load(Pickle().op("}").done().substr(0, 3)), {"truncated data.pkl"});
  expect_checkpoint_error(load(Pickle().op("}h\x05").done()), {"memo entry 5 was never stored"});
  expect_checkpoint_error(load(Pickle().op("}(K\x01u").done()), {"odd number"});
  expect_checkpoint_error(load(Pickle().op("}K\x01").done()), {"STOP with 2 values"});
  expect_checkpoint_error(load(Pickle().op("K\x01s").done()), {"pops from an empty pickle stack"});
  expect_checkpoint_error(load("\x80\x06}."), {"pickle protocol 6"});
  {
    Pickle p;
    p.op("}").integer(3);
    p.tensor("FloatStorage", "0", 6, 0, {2}, {1});
    expect_checkpoint_error(load(p.op("s").done()), {"a tensor is stored under a int key"});
  }
  // Limits against hostile input.
  {
    Pickle p;
    p.op("}");
    for (int i = 0; i < 100; ++i) p.op("r").s += std::string("\x01\x02\x03", 3) + static_cast<char>(i);
    expect_checkpoint_error(load(p.done(), TorchLoadLimits().memo_entries(50)), {"max_memo_entries"});
  }
  expect_checkpoint_error(load(Pickle().op(std::string(1000, '(')).done(), TorchLoadLimits().stack_depth(100)),
                          {"max_stack_depth"});
  {
    Pickle p;
    p.op("}](");
    for (int i = 0; i < 100; ++i) p.integer(i);
    expect_checkpoint_error(load(p.op("e").done(), TorchLoadLimits().container_items(50)), {"max_container_items"});
  }
  expect_checkpoint_error(
      load(dict_with([](Pickle& p) { p.tensor("FloatStorage", "0", 6, 0, std::vector<int64_t>(70, 1),
                                              std::vector<int64_t>(70, 1)); })),
      {"70 dimensions", "max_tensor_rank"});
}

TEST(CheckpointTensorIoTest, TorchArchiveSharesObjectsThroughTheMemo) {
  // {"a": t, "b": t} with t memoised once (tied weights), plus a list and non-tensor values that are skipped.
  Pickle p;
  p.op("}(").str("a").tensor("FloatStorage", "1", 6, 0, {2, 3}, {3, 1}).op("q\x07");
  p.str("b").op("h\x07").str("lst").op("](K\x01K\x02" "e").str("f").op(std::string("G\x3f\xf0\0\0\0\0\0\0", 9));
  p.str("n").op("N");
  p.str("t").op("\x88");
  const TorchStateDict state = parse_torch_state_dict(torch_archive(p.op("u").done(), kSmallStorages), "m.pt");
  ASSERT_EQ(state.tensors.size(), 2u);
  EXPECT_EQ(state.tensors[0].second.bytes, state.tensors[1].second.bytes);
  EXPECT_EQ(state.tensors[1].second.bytes, f32_bytes({10, 11, 12, 13, 14, 15}));
  EXPECT_EQ(state.skipped, (std::vector<std::string>{"lst", "f", "n", "t"}));
}

TEST(CheckpointTensorIoTest, TorchArchiveRefusesMalformedZips) {
  const std::string pickle = small_state_dict_pickle();
  const auto load = [](const std::string& zip) { return [zip] { parse_torch_state_dict(zip, "z.pt"); }; };
  const auto with = [&](const std::string& name, const std::string& data, uint16_t method = 0) {
    std::vector<ZipMemberSpec> members{{"archive/data.pkl", pickle}};
    for (const auto& [key, bytes] : kSmallStorages) members.push_back({"archive/data/" + key, bytes});
    members.push_back({name, data, method});
    return build_zip(members);
  };
  for (const std::string name : {"../evil", "archive/../../evil", "archive/data/..", "/etc/cron.d/evil",
                                 "archive\\..\\evil"}) {
    expect_checkpoint_error(load(with(name, "x")), {"z.pt", name});
  }
  expect_checkpoint_error(load(with("archive/../x", "x")), {"'..' path component", "path traversal"});
  expect_checkpoint_error(load(with("/abs", "x")), {"absolute path", "path traversal"});
  // ".." inside a name (a file stem like "model..v2") is fine.
  EXPECT_NO_THROW(parse_torch_state_dict(with("archive/model..v2", "x"), "ok.pt"));
  expect_checkpoint_error(load(with("archive/extra", "x", 8)), {"'archive/extra'", "is compressed", "deflate"});
  expect_checkpoint_error(load(with("archive/data/0", "dup")), {"'archive/data/0'", "listed twice"});
  expect_checkpoint_error(load(build_zip({{"archive/data.pkl", pickle, 0, /*bad_crc=*/true}})),
                          {"'archive/data.pkl' is corrupt: CRC-32"});
  expect_checkpoint_error(load(build_zip({{"archive/other", "x"}})), {"without <archive>/data.pkl"});
  expect_checkpoint_error(load(build_zip({{"a/data.pkl", pickle}, {"b/data.pkl", pickle}})), {"several pickles"});
  expect_checkpoint_error(load("\x80\x02\x8a\x0a"), {"legacy"});
  expect_checkpoint_error(load(""), {"not a zip archive"});
  expect_checkpoint_error(load(std::string(100, 'x')), {"no end-of-central-directory record"});

  // Every truncation of a valid archive, plain and ZIP64, fails cleanly.
  for (const bool zip64 : {false, true}) {
    const std::string zip = torch_archive(pickle, kSmallStorages, zip64);
    for (size_t n = 0; n < zip.size(); ++n) {
      EXPECT_THROW(parse_torch_state_dict(zip.substr(0, n), "cut.pt"), CheckpointError) << n;
    }
  }
  // A byte flipped anywhere: the result may parse (e.g. a flipped timestamp) but must never crash or throw
  // anything but CheckpointError.
  const std::string zip = torch_archive(pickle, kSmallStorages);
  for (size_t i = 0; i < zip.size(); ++i) {
    std::string bad = zip;
    bad[i] = static_cast<char>(bad[i] ^ 0x5a);
    try {
      parse_torch_state_dict(bad, "flip.pt");
    } catch (const CheckpointError&) {
    }
  }
}

// ---- files written by Python's torch 1.13 --------------------------------------------------------------------------

class PythonFixtures : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0) return;
    dir_ = std::make_unique<TempDir>();
    const std::string command = "/usr/bin/python3 " + testing::source_dir() +
                                "/tests/reference/make_state_dict_fixtures.py fixtures " + dir_->path();
    available_ = std::system(command.c_str()) == 0;
  }
  static void TearDownTestSuite() {
    dir_.reset();
  }
  void SetUp() override {
    if (!available_) GTEST_SKIP() << "/usr/bin/python3 with torch is not available";
  }
  static std::string file(const std::string& name) { return dir_->file(name); }

  /// Compares a torch.save'd dict against the hand-written expected safetensors of the same tensors.
  static void expect_matches(const std::string& name, const NamedTensors& actual) {
    const LoadedTensors expected = read_safetensors(file(name + ".expected.safetensors"));
    const Json order = Json::parse(expected.metadata.at("order"));
    ASSERT_EQ(actual.size(), order.size()) << name;
    for (size_t i = 0; i < actual.size(); ++i) {
      const std::string key = order[i].get<std::string>();
      EXPECT_EQ(actual[i].first, key) << name << ": file order";
      const auto it = std::find_if(expected.tensors.begin(), expected.tensors.end(),
                                   [&](const auto& named) { return named.first == key; });
      ASSERT_NE(it, expected.tensors.end()) << key;
      EXPECT_EQ(actual[i].second.scalar_type(), it->second.scalar_type()) << key;
      EXPECT_EQ(actual[i].second.sizes(), it->second.sizes()) << key;
      EXPECT_TRUE(bitwise_equal(actual[i].second, it->second)) << key;
    }
  }

  static inline std::unique_ptr<TempDir> dir_;
  static inline bool available_ = false;
};

TEST_F(PythonFixtures, ReadsModelStateDict) {
  const NamedTensors state = read_torch_state_dict(file("model_state.pt"));
  expect_matches("model_state", state);
  std::vector<std::string> names;
  for (const auto& [name, t] : state) names.push_back(name);
  EXPECT_EQ(names, (std::vector<std::string>{"conv.weight", "conv.bias", "bn.weight", "bn.bias", "bn.running_mean",
                                              "bn.running_var", "bn.num_batches_tracked", "fc.weight", "fc.bias"}));
  const torch::Tensor& tracked = state[6].second;
  EXPECT_EQ(tracked.scalar_type(), torch::kInt64);
  EXPECT_EQ(tracked.dim(), 0);
  EXPECT_EQ(tracked.item<int64_t>(), 3);
  EXPECT_EQ(state[0].second.sizes(), (std::vector<int64_t>{3, 1, 3, 3}));
  expect_matches("model_state", read_torch_state_dict(file("model_state_p4.pt")));
}

TEST_F(PythonFixtures, ReadsViewsEveryDtypeAndSkipsNonTensors) {
  std::vector<std::string> skipped;
  const NamedTensors state = read_torch_state_dict(file("plain.pt"), {}, &skipped);
  expect_matches("plain", state);
  EXPECT_EQ(skipped, (std::vector<std::string>{"note", "step", "nested"}));
  for (const auto& [name, t] : state) EXPECT_TRUE(t.is_contiguous()) << name;
}

TEST_F(PythonFixtures, RefusesCodeInsteadOfData) {
  expect_checkpoint_error([] { read_torch_state_dict(file("evil.pt")); },
                          {"evil.pt", "refusing to load 'posix.system'", "never executes code"});
  EXPECT_FALSE(std::filesystem::exists(file("pwned")));
  expect_checkpoint_error([] { read_torch_state_dict(file("module.pt")); },
                          {"refusing to load '__main__.Net'", "save model.state_dict()"});
}

TEST_F(PythonFixtures, RefusesRepackedAndTraversingArchives) {
  expect_checkpoint_error([] { read_torch_state_dict(file("compressed.pt")); },
                          {"compressed.pt", "is compressed (zip method 8, deflate)"});
  expect_checkpoint_error([] { read_torch_state_dict(file("traversal_dotdot.pt")); },
                          {"'model_state/../../evil'", "path traversal"});
  expect_checkpoint_error([] { read_torch_state_dict(file("traversal_absolute.pt")); },
                          {"'/tmp/evil'", "absolute path"});
  expect_checkpoint_error([] { read_torch_state_dict(file("nested.pt")); },
                          {"no tensors at the top level", "9 inside nested dicts", "model, epoch"});
}

TEST_F(PythonFixtures, RefusesTruncatedAndCorruptedFiles) {
  const std::string bytes = read_file(file("model_state.pt"));
  for (size_t n = 0; n < bytes.size(); n += 7) {
    EXPECT_THROW(parse_torch_state_dict(bytes.substr(0, n), "cut.pt"), CheckpointError) << n;
  }
  expect_checkpoint_error([&] { parse_torch_state_dict(bytes.substr(0, bytes.size() - 1), "cut.pt"); },
                          {"cut.pt", "truncated zip archive"});
  // One bit flipped in a storage: the CRC catches what the structure cannot.
  EXPECT_EQ(parse_torch_state_dict(bytes, "good.pt").tensors.size(), 9u);
  const std::vector<ZipMember> members = read_zip_directory(bytes, "good.pt");
  const auto storage = std::find_if(members.begin(), members.end(),
                                    [](const ZipMember& m) { return m.name == "model_state/data/0"; });
  ASSERT_NE(storage, members.end());
  std::string bad = bytes;
  bad[storage->offset + 3] ^= 0x10;
  expect_checkpoint_error([&] { parse_torch_state_dict(bad, "bitflip.pt"); },
                          {"bitflip.pt", "'model_state/data/0' is corrupt: CRC-32"});
}

TEST_F(PythonFixtures, PythonReadsWhatTraindxWrites) {
  // traindx writes safetensors; Python parses it by hand against the spec and torch.save()s the tensors; traindx
  // reads that back: every value must survive the trip bitwise.
  TempDir dir;
  const NamedTensors tensors = every_dtype();
  write_safetensors(dir.file("w.safetensors"), tensors, {{"producer", "traindx"}});
  const std::string command = "/usr/bin/python3 " + testing::source_dir() +
                              "/tests/reference/make_state_dict_fixtures.py resave " + dir.file("w.safetensors") +
                              " " + dir.file("w.pt");
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
  const NamedTensors back = read_torch_state_dict(dir.file("w.pt"));
  ASSERT_EQ(back.size(), tensors.size());
  for (const auto& [name, original] : tensors) {
    const auto it =
        std::find_if(back.begin(), back.end(), [&](const auto& named) { return named.first == name; });
    ASSERT_NE(it, back.end()) << name;
    EXPECT_TRUE(bitwise_equal(it->second, original)) << name;
  }
}

}  // namespace
}  // namespace traindx
