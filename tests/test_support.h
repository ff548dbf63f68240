#pragma once
// Helpers shared by the test executables: temporary directories and files, paths of real data.
#include <string>

namespace traindx::testing {

/// A fresh empty directory under the system temp dir, removed when the object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  /// path()/name
  std::string file(const std::string& name) const;
  /// Writes `contents` to path()/name and returns the full path.
  std::string write(const std::string& name, const std::string& contents) const;

 private:
  std::string path_;
};

/// Debian's Fashion-MNIST directory.
inline const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";
/// scikit-learn's bundled CSVs (python3-sklearn).
inline const char* kSklearnDataDir = "/usr/lib/python3/dist-packages/sklearn/datasets/data";

/// The repository root (for examples/ and tests/data).
std::string source_dir();

}  // namespace traindx::testing
