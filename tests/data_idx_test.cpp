// IDX reader: round trips of every payload type through plain and gzipped files, and every kind of damage.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstring>
#include <random>

#include "test_support.h"
#include "traindx/core/error.h"
#include "traindx/data/data.h"

namespace {

using traindx::DataError;
using traindx::read_idx;
using traindx::testing::TempDir;

std::string header(unsigned char type, const std::vector<uint32_t>& dims) {
  std::string h = {'\0', '\0', static_cast<char>(type), static_cast<char>(dims.size())};
  for (uint32_t d : dims) {
    for (int shift = 24; shift >= 0; shift -= 8) h.push_back(static_cast<char>((d >> shift) & 0xFF));
  }
  return h;
}

template <typename T>
std::string big_endian_payload(const std::vector<T>& values) {
  std::string out;
  for (T v : values) {
    unsigned char bytes[sizeof(T)];
    std::memcpy(bytes, &v, sizeof(T));
    for (size_t i = 0; i < sizeof(T); ++i) out.push_back(static_cast<char>(bytes[sizeof(T) - 1 - i]));  // host is LE
  }
  return out;
}

std::string write_gz(const TempDir& dir, const std::string& name, const std::string& bytes) {
  const std::string path = dir.file(name);
  gzFile f = gzopen(path.c_str(), "wb");
  EXPECT_NE(f, nullptr);
  EXPECT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
  gzclose(f);
  return path;
}

std::string error_of(const std::string& path) {
  try {
    read_idx(path);
  } catch (const DataError& e) {
    return e.what();
  }
  return "no error";
}

TEST(DataIdxTest, ReadsUnsignedBytesPlainAndGzipped) {
  TempDir dir;
  std::string payload;
  for (int i = 0; i < 2 * 3 * 4; ++i) payload.push_back(static_cast<char>(i * 10));
  const std::string bytes = header(0x08, {2, 3, 4}) + payload;
  for (const std::string& path : {dir.write("plain-idx3-ubyte", bytes), write_gz(dir, "zipped-idx3-ubyte.gz", bytes)}) {
    const torch::Tensor t = read_idx(path);
    ASSERT_EQ(t.scalar_type(), torch::kUInt8) << path;
    ASSERT_EQ(t.sizes(), torch::IntArrayRef({2, 3, 4}));
    EXPECT_EQ(t[0][0][0].item<int>(), 0);
    EXPECT_EQ(t[1][2][3].item<int>(), 230);
    EXPECT_EQ(t.flatten()[7].item<int>(), 70);
  }
}

TEST(DataIdxTest, ReadsFloatsAndOtherTypesBigEndian) {
  TempDir dir;
  const std::vector<float> f = {1.5f, -2.25f, 3.0e-8f, 1.0e30f, 0.0f, -0.0f};
  const std::string fbytes = header(0x0D, {3, 2}) + big_endian_payload(f);
  for (const std::string& path : {dir.write("f32", fbytes), write_gz(dir, "f32.gz", fbytes)}) {
    const torch::Tensor t = read_idx(path);
    ASSERT_EQ(t.scalar_type(), torch::kFloat32);
    ASSERT_EQ(t.sizes(), torch::IntArrayRef({3, 2}));
    const float* p = t.data_ptr<float>();
    for (size_t i = 0; i < f.size(); ++i) EXPECT_EQ(std::memcmp(&p[i], &f[i], 4), 0) << i;
  }
  const std::vector<double> d = {3.141592653589793, -1e300};
  const torch::Tensor td = read_idx(dir.write("f64", header(0x0E, {2}) + big_endian_payload(d)));
  EXPECT_EQ(td.scalar_type(), torch::kFloat64);
  EXPECT_EQ(td[0].item<double>(), d[0]);
  EXPECT_EQ(td[1].item<double>(), d[1]);
  const std::vector<int16_t> s = {-300, 12345};
  const torch::Tensor ts = read_idx(dir.write("i16", header(0x0B, {2}) + big_endian_payload(s)));
  EXPECT_EQ(ts.scalar_type(), torch::kInt16);
  EXPECT_EQ(ts[0].item<int>(), -300);
  EXPECT_EQ(ts[1].item<int>(), 12345);
  const std::vector<int32_t> i = {-70000, 2000000000};
  const torch::Tensor ti = read_idx(dir.write("i32", header(0x0C, {1, 2}) + big_endian_payload(i)));
  EXPECT_EQ(ti.scalar_type(), torch::kInt32);
  EXPECT_EQ(ti[0][0].item<int64_t>(), -70000);
  EXPECT_EQ(ti[0][1].item<int64_t>(), 2000000000);
  const torch::Tensor tb = read_idx(dir.write("i8", header(0x09, {2}) + std::string{'\xff', '\x05'}));
  EXPECT_EQ(tb.scalar_type(), torch::kInt8);
  EXPECT_EQ(tb[0].item<int>(), -1);
}

TEST(DataIdxTest, TruncatedPayloadNamesExpectedAndActualBytes) {
  TempDir dir;
  const std::string bytes = header(0x08, {2, 5}) + std::string(7, '\x01');
  for (const std::string& path : {dir.write("short", bytes), write_gz(dir, "short.gz", bytes)}) {
    const std::string msg = error_of(path);
    EXPECT_NE(msg.find(path + " is truncated: expected 10 bytes of payload, got 7"), std::string::npos) << msg;
  }
  const std::string dims_cut = error_of(dir.write("cut-dims", header(0x08, {2, 5}).substr(0, 7)));
  EXPECT_NE(dims_cut.find("truncated"), std::string::npos) << dims_cut;
}

TEST(DataIdxTest, TruncatedGzipStreamIsAnError) {
  TempDir dir;
  std::string payload(5000, '\0');
  std::mt19937 gen(3);
  for (char& c : payload) c = static_cast<char>(gen());
  const std::string full = write_gz(dir, "full.gz", header(0x08, {5000}) + payload);
  std::string gz;
  {
    std::FILE* f = std::fopen(full.c_str(), "rb");
    char buf[8192];
    size_t n = 0;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) gz.append(buf, n);
    std::fclose(f);
  }
  const std::string cut = dir.write("cut.gz", gz.substr(0, gz.size() / 2));
  const std::string msg = error_of(cut);
  EXPECT_NE(msg.find(cut), std::string::npos) << msg;
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
}

TEST(DataIdxTest, BadMagicUnknownTypeAndBadDimsAreErrors) {
  TempDir dir;
  const std::string magic = error_of(dir.write("png", std::string("\x89PNG\r\n\x1a\n", 8)));
  EXPECT_NE(magic.find("bad magic number 89 50 4e 47"), std::string::npos) << magic;
  const std::string type = error_of(dir.write("type", header(0x07, {1}) + "x"));
  EXPECT_NE(type.find("unknown type code 0x07"), std::string::npos) << type;
  const std::string nodims = error_of(dir.write("nodims", header(0x08, {})));
  EXPECT_NE(nodims.find("0 dimensions"), std::string::npos) << nodims;
  const std::string tiny = error_of(dir.write("tiny", std::string("\0\0", 2)));
  EXPECT_NE(tiny.find("too short"), std::string::npos) << tiny;
  const std::string empty = error_of(dir.write("empty", ""));
  EXPECT_NE(empty.find("too short"), std::string::npos) << empty;
}

TEST(DataIdxTest, HugeDeclaredSizeIsRejectedWithoutAllocating) {
  TempDir dir;
  // 4 billion x 4 billion doubles: the product overflows 64 bits; must be caught, not wrapped.
  const std::string overflow = error_of(dir.write("huge", header(0x0E, {0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF}) + "x"));
  EXPECT_NE(overflow.find("exceeds"), std::string::npos) << overflow;
  // Under the cap but far beyond the file: a truncation error, after reading only what is there.
  const std::string lying = error_of(dir.write("lying", header(0x08, {1000000, 1000}) + "abc"));
  EXPECT_NE(lying.find("expected 1000000000 bytes of payload, got 3"), std::string::npos) << lying;
}

TEST(DataIdxTest, TrailingBytesAreAnError) {
  TempDir dir;
  const std::string bytes = header(0x08, {4}) + "abcd" + "XYZ";
  for (const std::string& path : {dir.write("trail", bytes), write_gz(dir, "trail.gz", bytes)}) {
    const std::string msg = error_of(path);
    EXPECT_NE(msg.find(path + " has 3 trailing bytes after the 4-byte payload"), std::string::npos) << msg;
  }
}

TEST(DataIdxTest, MissingFileNamesThePath) {
  const std::string msg = error_of("/nonexistent/dir/train-images-idx3-ubyte");
  EXPECT_NE(msg.find("cannot open IDX file /nonexistent/dir/train-images-idx3-ubyte"), std::string::npos) << msg;
}

TEST(DataIdxTest, MutatedFilesNeverCrash) {
  // A small fuzz pass: every mutation either reads or throws DataError; the fuzzer proper runs later.
  TempDir dir;
  const std::string good = header(0x0D, {3, 4}) + big_endian_payload(std::vector<float>(12, 1.0f));
  std::mt19937 gen(42);
  int errors = 0;
  for (int round = 0; round < 200; ++round) {
    std::string bytes = good;
    const int edits = 1 + static_cast<int>(gen() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t at = gen() % bytes.size();
      switch (gen() % 3) {
        case 0: bytes[at] = static_cast<char>(gen()); break;
        case 1: bytes.erase(at, 1 + gen() % 8); break;
        default: bytes.insert(at, std::string(1 + gen() % 8, static_cast<char>(gen()))); break;
      }
      if (bytes.empty()) bytes = "x";
    }
    const std::string path = round % 2 ? dir.write("m", bytes) : write_gz(dir, "m.gz", bytes);
    try {
      read_idx(path);
    } catch (const DataError&) {
      ++errors;
    }
  }
  EXPECT_GT(errors, 60);
}

}  // namespace
