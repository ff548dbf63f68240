#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <regex>
#include <string>
#include <vector>

#include "traindx/core/error.h"
#include "traindx/store/run_store.h"
#include "test_support.h"

namespace fs = std::filesystem;
using traindx::IoError;
using traindx::RunRecord;
using traindx::UsageError;
using traindx::testing::TempDir;

namespace {

std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

/// A run directory root/id with a store holding one run started at `started_at`.
std::string make_run_dir(const std::string& root, const std::string& id, const std::string& started_at) {
  const std::string dir = root + "/" + id;
  fs::create_directories(dir);
  auto store = traindx::open_sqlite_store(dir + "/" + traindx::kRunStoreFile);
  RunRecord r;
  r.run_id = id;
  r.name = "n";
  r.dir = "/somewhere/else/" + id;
  r.started_at = started_at;
  store->begin_run(r);
  return dir;
}

template <typename E, typename Fn>
std::string error_message(Fn&& fn) {
  try {
    fn();
  } catch (const E& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected exception";
  return "";
}

}  // namespace

TEST(StoreRunDirTest, UtcNowIsIso8601) {
  EXPECT_TRUE(std::regex_match(traindx::utc_now_iso(), std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)")))
      << traindx::utc_now_iso();
}

TEST(StoreRunDirTest, CreateRunDirNamesByUtcTimeAndSuffixesCollisions) {
  TempDir tmp;
  const std::string root = tmp.file("runs");  // created on demand
  // Three directories in the same second get -2 and -3; retry if the clock ticks over between the calls.
  for (int attempt = 0; attempt < 5; ++attempt) {
    const std::string a = traindx::create_run_dir(root, "mnist");
    const std::string b = traindx::create_run_dir(root, "mnist");
    const std::string c = traindx::create_run_dir(root, "mnist");
    const std::string id = fs::path(a).filename().string();
    ASSERT_TRUE(std::regex_match(id, std::regex(R"(mnist-\d{8}-\d{6})"))) << id;
    EXPECT_EQ(fs::path(a).parent_path(), fs::path(root));
    EXPECT_TRUE(fs::is_directory(a));
    if (b == a + "-2" && c == a + "-3") {
      EXPECT_TRUE(fs::is_directory(b));
      EXPECT_TRUE(fs::is_directory(c));
      return;
    }
  }
  FAIL() << "never got three directories within one second";
}

TEST(StoreRunDirTest, CreateRunDirSanitisesTheName) {
  TempDir tmp;
  const std::string a = fs::path(traindx::create_run_dir(tmp.path(), "my run/../x")).filename().string();
  EXPECT_EQ(a.substr(0, 11), "my_run_.._x") << a;
  const std::string b = fs::path(traindx::create_run_dir(tmp.path(), ".hidden")).filename().string();
  EXPECT_EQ(b.substr(0, 8), "_hidden-") << b;
  const std::string c = fs::path(traindx::create_run_dir(tmp.path(), "")).filename().string();
  EXPECT_EQ(c.substr(0, 4), "run-") << c;
  EXPECT_EQ(entries(tmp.path()).size(), 3u);  // nothing escaped the root
}

TEST(StoreRunDirTest, CreateRunDirWithOut) {
  TempDir tmp;
  const std::string fresh = tmp.file("a/b/out");
  EXPECT_EQ(traindx::create_run_dir("ignored", "x", fresh), fresh);
  EXPECT_TRUE(fs::is_directory(fresh));
  EXPECT_FALSE(fs::exists("ignored"));
  EXPECT_EQ(traindx::create_run_dir("ignored", "x", fresh), fresh);  // exists and empty: fine

  tmp.write("a/b/out/store.sqlite", "x");
  std::string m = error_message<IoError>([&] { traindx::create_run_dir("ignored", "x", fresh); });
  EXPECT_NE(m.find(fresh), std::string::npos) << m;
  EXPECT_NE(m.find("not empty"), std::string::npos) << m;
  EXPECT_NE(m.find("--out"), std::string::npos) << m;

  // A trailing slash is dropped, so filename() of the result is the run id.
  const std::string slashed = traindx::create_run_dir("ignored", "x", tmp.file("c/") + "/");
  EXPECT_EQ(slashed, tmp.file("c"));
  EXPECT_EQ(fs::path(slashed).filename(), "c");
  EXPECT_EQ(fs::path(traindx::create_run_dir(tmp.path() + "/", "x")).filename().string().substr(0, 2), "x-");

  const std::string file = tmp.write("file", "x");
  m = error_message<IoError>([&] { traindx::create_run_dir("ignored", "x", file); });
  EXPECT_NE(m.find("not a directory"), std::string::npos) << m;
}

TEST(StoreRunDirTest, WritePiecesWritesMoreThanOneWritevCallCanTakeInOrder) {
  // 3000 pieces (writev takes at most IOV_MAX = 1024 per call), empty ones among them, sizes that cross batches.
  std::vector<std::string> storage;
  std::string expected;
  for (int i = 0; i < 3000; ++i) {
    storage.push_back(i % 7 == 0 ? std::string() : std::string(static_cast<size_t>(i % 13) * 37 + 1, 'a' + i % 26));
    expected += storage.back();
  }
  const std::vector<std::string_view> pieces(storage.begin(), storage.end());
  TempDir tmp;
  const std::string path = tmp.file("pieces.bin");
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(traindx::write_pieces(fd, pieces), 0);
  ::close(fd);
  EXPECT_EQ(traindx::read_file(path), expected);

  traindx::write_file_atomic(path, pieces);
  EXPECT_EQ(traindx::read_file(path), expected);
  traindx::write_file_atomic(path, std::vector<std::string_view>{});
  EXPECT_EQ(traindx::read_file(path), "");
  EXPECT_EQ(traindx::write_pieces(-1, pieces), EBADF);  // errors come back as errno, not as a crash
}

TEST(StoreRunDirTest, WriteFileAtomicReplacesAndLeavesNoTempFile) {
  TempDir tmp;
  const std::string path = tmp.file("config.toml");
  const mode_t old_mask = ::umask(022);
  traindx::write_file_atomic(path, "first");
  ::umask(old_mask);
  EXPECT_EQ(traindx::read_file(path), "first");
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);  // umask applies (not mkstemp's 0600)

  const std::string binary("a\0b\nc\xff", 6);
  traindx::write_file_atomic(path, binary);
  EXPECT_EQ(traindx::read_file(path), binary);
  traindx::write_file_atomic(path, "");
  EXPECT_EQ(traindx::read_file(path), "");
  EXPECT_EQ(entries(tmp.path()), std::vector<std::string>{"config.toml"});

  // Relative path in the current directory works too (parent "").
  const fs::path cwd = fs::current_path();
  fs::current_path(tmp.path());
  traindx::write_file_atomic("rel.txt", "r");
  fs::current_path(cwd);
  EXPECT_EQ(traindx::read_file(tmp.file("rel.txt")), "r");
}

TEST(StoreRunDirTest, WriteAndReadErrorsNameThePath) {
  TempDir tmp;
  const std::string bad = tmp.file("no/such/dir/x.json");
  std::string m = error_message<IoError>([&] { traindx::write_file_atomic(bad, "x"); });
  EXPECT_NE(m.find(bad), std::string::npos) << m;
  EXPECT_NE(m.find("No such file"), std::string::npos) << m;

  // Target is a directory: rename fails, and the temporary file is removed again.
  fs::create_directory(tmp.file("adir"));
  fs::create_directory(tmp.file("adir/inner"));
  m = error_message<IoError>([&] { traindx::write_file_atomic(tmp.file("adir"), "x"); });
  EXPECT_NE(m.find(tmp.file("adir")), std::string::npos) << m;
  EXPECT_EQ(entries(tmp.path()), std::vector<std::string>{"adir"});

  const std::string missing = tmp.file("missing.txt");
  m = error_message<IoError>([&] { traindx::read_file(missing); });
  EXPECT_NE(m.find(missing), std::string::npos) << m;
  m = error_message<IoError>([&] { traindx::read_file(tmp.file("adir")); });
  EXPECT_NE(m.find("directory"), std::string::npos) << m;
}

TEST(StoreRunDirTest, ListRunDirsNewestFirstSkippingNonRunsAndReportingCorruptStores) {
  TempDir tmp;
  const std::string root = tmp.path();
  const std::string old_dir = make_run_dir(root, "old-run", "2026-01-01T00:00:00Z");
  const std::string new_dir = make_run_dir(root, "new-run", "2026-02-01T00:00:00Z");
  fs::create_directory(tmp.file("not-a-run"));
  tmp.write("not-a-run/readme.txt", "hello");
  tmp.write("loose-file.txt", "x");
  fs::create_directory(tmp.file("broken"));
  tmp.write("broken/store.sqlite", "this is not a database");

  const auto runs = traindx::list_run_dirs(root);
  ASSERT_EQ(runs.size(), 3u);
  EXPECT_EQ(runs[0].run_id, "new-run");
  EXPECT_EQ(runs[0].dir, new_dir);  // where it is now, not where it was created
  EXPECT_EQ(runs[0].status, "running");
  EXPECT_EQ(runs[1].run_id, "old-run");
  EXPECT_EQ(runs[1].dir, old_dir);
  EXPECT_EQ(runs[2].run_id, "broken");
  EXPECT_EQ(runs[2].status.rfind("unreadable: ", 0), 0u) << runs[2].status;
  EXPECT_NE(runs[2].status.find("broken/store.sqlite"), std::string::npos) << runs[2].status;
  // Listing wrote nothing.
  EXPECT_EQ(traindx::read_file(tmp.file("broken/store.sqlite")), "this is not a database");
  EXPECT_EQ(entries(tmp.file("broken")), std::vector<std::string>{"store.sqlite"});
}

TEST(StoreRunDirTest, ListRunDirsOfMissingRootIsEmptyAndOfAFileIsAnError) {
  TempDir tmp;
  EXPECT_TRUE(traindx::list_run_dirs(tmp.file("nothing-here")).empty());
  EXPECT_FALSE(fs::exists(tmp.file("nothing-here")));
  const std::string file = tmp.write("f", "x");
  const std::string m = error_message<IoError>([&] { traindx::list_run_dirs(file); });
  EXPECT_NE(m.find(file), std::string::npos) << m;
}

TEST(StoreRunDirTest, ResolveRunDirByPathIdAndUniquePrefix) {
  TempDir tmp;
  const std::string root = tmp.file("runs");
  const std::string a = make_run_dir(root, "mnist-20260101-000000", "2026-01-01T00:00:00Z");
  const std::string b = make_run_dir(root, "mnist-20260102-000000", "2026-01-02T00:00:00Z");
  make_run_dir(root, "cifar-20260103-000000", "2026-01-03T00:00:00Z");

  EXPECT_EQ(traindx::resolve_run_dir("elsewhere", a), a);  // a path, whatever the root
  EXPECT_EQ(fs::path(traindx::resolve_run_dir(root, "mnist-20260102-000000")), fs::path(b));
  EXPECT_EQ(fs::path(traindx::resolve_run_dir(root, "mnist-20260101")), fs::path(a));
  EXPECT_EQ(fs::path(traindx::resolve_run_dir(root, "cifar")).filename(), "cifar-20260103-000000");

  const std::string m = error_message<UsageError>([&] { traindx::resolve_run_dir(root, "mnist"); });
  EXPECT_NE(m.find("ambiguous"), std::string::npos) << m;
  EXPECT_NE(m.find("mnist-20260101-000000"), std::string::npos) << m;
  EXPECT_NE(m.find("mnist-20260102-000000"), std::string::npos) << m;
}

TEST(StoreRunDirTest, ResolveRunDirSuggestsClosestRunIds) {
  TempDir tmp;
  const std::string root = tmp.file("runs");
  for (const char* id : {"mnist-20260101-000000", "mnist-20260102-000000", "cifar-20260103-000000",
                         "fashion-20260104-000000", "zzzzzzzzzz"}) {
    make_run_dir(root, id, "2026-01-01T00:00:00Z");
  }
  fs::create_directories(root + "/empty-dir");

  std::string m = error_message<UsageError>([&] { traindx::resolve_run_dir(root, "mnsit-20260101-000000"); });
  EXPECT_NE(m.find("'mnsit-20260101-000000'"), std::string::npos) << m;
  EXPECT_NE(m.find("closest run ids: mnist-20260101-000000, mnist-20260102-000000"), std::string::npos) << m;
  EXPECT_EQ(m.find("zzzzzzzzzz"), std::string::npos) << m;  // only the 3 closest
  EXPECT_NE(m.find("traindx runs list"), std::string::npos) << m;

  // A path with a typo is not treated as a prefix, but still gets suggestions from its last component.
  m = error_message<UsageError>([&] { traindx::resolve_run_dir(root, root + "/cifar"); });
  EXPECT_NE(m.find("cifar-20260103-000000"), std::string::npos) << m;

  m = error_message<UsageError>([&] { traindx::resolve_run_dir(root, root + "/empty-dir"); });
  EXPECT_NE(m.find("holds no store.sqlite"), std::string::npos) << m;

  m = error_message<UsageError>([&] { traindx::resolve_run_dir(tmp.file("no-runs"), "x"); });
  EXPECT_NE(m.find("holds no runs"), std::string::npos) << m;
  EXPECT_THROW(traindx::resolve_run_dir(root, ""), UsageError);
}
