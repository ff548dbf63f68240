#include "test_support.h"

#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>

namespace traindx::testing {

TempDir::TempDir() {
  std::random_device rd;
  auto base = std::filesystem::temp_directory_path();
  for (int attempt = 0; attempt < 100; ++attempt) {
    auto p = base / ("traindx-test-" + std::to_string(rd()));
    if (std::filesystem::create_directory(p)) {
      path_ = p.string();
      return;
    }
  }
  throw std::runtime_error("cannot create a temporary directory");
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string TempDir::file(const std::string& name) const { return path_ + "/" + name; }

std::string TempDir::write(const std::string& name, const std::string& contents) const {
  const std::string p = file(name);
  std::ofstream out(p, std::ios::binary);
  out << contents;
  return p;
}

std::string source_dir() { return TRAINDX_SOURCE_DIR; }

}  // namespace traindx::testing
