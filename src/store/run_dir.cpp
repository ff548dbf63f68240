// Run directories and the files in them: creation, atomic writes, discovery and resolution of `runs show RUN`.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <ctime>
#include <filesystem>
#include <string>
#include <system_error>
#include <tuple>
#include <vector>

#include "traindx/core/error.h"
#include "traindx/core/text.h"
#include "traindx/store/run_store.h"

namespace traindx {
namespace fs = std::filesystem;

namespace {

std::string errno_text(int err) { return std::error_code(err, std::generic_category()).message(); }

/// What the user can do about a failed file operation, by errno.
const char* errno_hint(int err) {
  switch (err) {
    case ENOSPC:
    case EDQUOT: return "; the disk (or quota) is full: free some space, then retry";
    case EROFS: return "; the file system is read-only: write elsewhere (--out)";
    case EACCES:
    case EPERM: return "; check the permissions of the file and its directory, or write elsewhere (--out)";
    case ENOENT: return "; check that the path exists";
    default: return "";
  }
}

/// Closes a file descriptor when it goes out of scope (error paths included).
class FdGuard {
 public:
  explicit FdGuard(int fd) : fd_(fd) {}
  ~FdGuard() {
    if (fd_ >= 0) ::close(fd_);
  }
  FdGuard(const FdGuard&) = delete;
  FdGuard& operator=(const FdGuard&) = delete;
  int get() const { return fd_; }
  /// Closes now and returns close()'s errno (0 on success): on NFS a failed write may only surface here.
  int close_now() {
    const int rc = ::close(fd_);
    fd_ = -1;
    return rc == 0 ? 0 : errno;
  }

 private:
  int fd_;
};

/// `name` reduced to characters safe in a directory name and a shell word.
std::string safe_name(const std::string& name) {
  std::string out;
  for (char c : name) {
    const bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                      c == '_' || c == '.';
    out += keep ? c : '_';
  }
  // A leading dot would hide the directory from `ls`, and ".."/"." would escape it.
  if (!out.empty() && out.front() == '.') out.front() = '_';
  return out.empty() ? "run" : out;
}

std::string utc_stamp(const char* format) {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  const size_t n = std::strftime(buf, sizeof(buf), format, &tm);
  return std::string(buf, n);
}

bool holds_store(const fs::path& dir) {
  std::error_code ec;
  return fs::is_directory(dir, ec) && fs::is_regular_file(dir / kRunStoreFile, ec);
}

/// Names of the sub-directories of `root` that hold a store (their run ids), sorted; empty when root is missing.
std::vector<std::string> run_ids_under(const fs::path& root) {
  std::vector<std::string> ids;
  std::error_code ec;
  fs::directory_iterator it(root, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    if (holds_store(it->path())) ids.push_back(it->path().filename().string());
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

std::string without_trailing_slash(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  return path;
}

std::string join_first(const std::vector<std::string>& items, size_t limit) {
  std::string out;
  for (size_t i = 0; i < items.size() && i < limit; ++i) out += (i ? ", " : "") + items[i];
  if (items.size() > limit) out += fmt::format(" (and {} more)", items.size() - limit);
  return out;
}

}  // namespace

std::string utc_now_iso() { return utc_stamp("%Y-%m-%dT%H:%M:%SZ"); }

std::string create_run_dir(const std::string& root_arg, const std::string& name, const std::string& out_arg) {
  // Without a trailing '/', so that the caller's path(dir).filename() is the run id.
  const std::string out = without_trailing_slash(out_arg);
  const std::string root = root_arg.empty() ? std::string(".") : without_trailing_slash(root_arg);
  std::error_code ec;
  if (!out.empty()) {
    const fs::file_status st = fs::status(out, ec);
    if (fs::exists(st)) {
      TRAINDX_CHECK(fs::is_directory(st), IoError, "--out {} exists and is not a directory; choose another --out",
                    out);
      const bool empty = fs::is_empty(out, ec);
      TRAINDX_CHECK(!ec, IoError, "cannot read directory {}: {}", out, ec.message());
      // Never mix two runs' files: a second store.sqlite or report would silently overwrite the first.
      TRAINDX_CHECK(empty, IoError,
                    "--out {} already exists and is not empty; choose another --out (or remove that directory)", out);
      return out;
    }
    fs::create_directories(out, ec);
    TRAINDX_CHECK(!ec, IoError, "cannot create run directory {}: {}{}", out, ec.message(), errno_hint(ec.value()));
    return out;
  }

  fs::create_directories(root, ec);
  TRAINDX_CHECK(!ec, IoError, "cannot create runs directory {}: {}{}", root, ec.message(), errno_hint(ec.value()));
  const std::string base = safe_name(name) + "-" + utc_stamp("%Y%m%d-%H%M%S");
  // mkdir is atomic, so two runs started in the same second (e.g. an HPO sweep) cannot pick the same directory.
  for (int n = 1; n <= 10000; ++n) {
    const fs::path candidate = fs::path(root) / (n == 1 ? base : base + "-" + std::to_string(n));
    if (::mkdir(candidate.c_str(), 0777) == 0) return candidate.string();
    const int err = errno;
    TRAINDX_CHECK(err == EEXIST, IoError, "cannot create run directory {}: {}{}", candidate.string(),
                  errno_text(err), errno_hint(err));
  }
  TRAINDX_FAIL(IoError, "cannot create a run directory under {}: {}-2 .. {}-10000 all exist; clean up {}", root, base,
               base, root);
}

int write_pieces(int fd, const std::vector<std::string_view>& pieces) {
  // writev takes at most IOV_MAX buffers and may write less than asked: advance through the pieces by what it wrote.
  std::vector<iovec> iov;
  iov.reserve(std::min<size_t>(pieces.size(), IOV_MAX));
  size_t next = 0;      // first piece not yet handed to writev
  size_t consumed = 0;  // bytes of pieces[next] already written (a short write can stop mid-piece)
  while (next < pieces.size()) {
    iov.clear();
    for (size_t i = next; i < pieces.size() && iov.size() < IOV_MAX; ++i) {
      const size_t skip = i == next ? consumed : 0;
      if (pieces[i].size() == skip) continue;
      iov.push_back({const_cast<char*>(pieces[i].data() + skip), pieces[i].size() - skip});
    }
    if (iov.empty()) break;
    const ssize_t n = ::writev(fd, iov.data(), static_cast<int>(iov.size()));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return EIO;
    auto left = static_cast<size_t>(n);
    while (next < pieces.size() && left >= pieces[next].size() - consumed) {
      left -= pieces[next].size() - consumed;
      consumed = 0;
      ++next;
    }
    consumed += left;
  }
  return 0;
}

void write_file_atomic(const std::string& path, const std::string& contents) {
  write_file_atomic(path, std::vector<std::string_view>{contents});
}

void write_file_atomic(const std::string& path, const std::vector<std::string_view>& pieces) {
  static std::atomic<unsigned> counter{0};
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  const std::string stem = "." + target.filename().string() + ".tmp-" + std::to_string(::getpid()) + "-";

  // O_EXCL with a unique name instead of mkstemp: the file gets the usual 0666 & ~umask mode, not 0600.
  std::string tmp;
  int fd = -1;
  for (int attempt = 0; fd < 0; ++attempt) {
    tmp = (dir / (stem + std::to_string(counter.fetch_add(1)))).string();
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    const int err = errno;
    TRAINDX_CHECK(fd >= 0 || (err == EEXIST && attempt < 100), IoError, "cannot write {}: creating {}: {}{}", path,
                  tmp, errno_text(err), errno_hint(err));
  }
  FdGuard guard(fd);

  auto fail = [&](const char* doing, int err) {
    ::unlink(tmp.c_str());
    TRAINDX_FAIL(IoError, "cannot write {}: {}: {}{}", path, doing, errno_text(err), errno_hint(err));
  };
  if (const int err = write_pieces(fd, pieces); err != 0) fail("writing", err);
  // fsync before rename: otherwise a crash can leave the new name pointing at an empty file.
  if (::fsync(fd) != 0) {
    const int err = errno;
    fail("syncing", err);
  }
  if (const int err = guard.close_now(); err != 0) fail("closing", err);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    fail("renaming the temporary file into place", err);
  }

  // fsync the directory so the rename itself survives a crash.
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  const int open_err = errno;
  TRAINDX_CHECK(dir_fd >= 0, IoError, "cannot sync directory {} after writing {}: {}", dir.string(), path,
                errno_text(open_err));
  FdGuard dir_guard(dir_fd);
  const int sync_err = ::fsync(dir_fd) == 0 ? 0 : errno;
  // Some file systems cannot sync a directory (EINVAL); the rename is done and that is the best they offer.
  TRAINDX_CHECK(sync_err == 0 || sync_err == EINVAL, IoError, "cannot sync directory {} after writing {}: {}{}",
                dir.string(), path, errno_text(sync_err), errno_hint(sync_err));
}

std::string read_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  const int open_err = errno;
  TRAINDX_CHECK(fd >= 0, IoError, "cannot read {}: {}{}", path, errno_text(open_err), errno_hint(open_err));
  FdGuard guard(fd);
  std::string out;
  struct stat st {};
  if (::fstat(fd, &st) == 0 && st.st_size > 0) out.reserve(static_cast<size_t>(st.st_size));
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n == 0) break;
    if (n < 0) {
      const int err = errno;
      if (err == EINTR) continue;
      TRAINDX_FAIL(IoError, "cannot read {}: {}{}", path, errno_text(err), errno_hint(err));
    }
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

std::vector<RunRecord> list_run_dirs(const std::string& root) {
  std::error_code ec;
  const fs::file_status st = fs::status(root, ec);
  if (!fs::exists(st)) return {};
  TRAINDX_CHECK(fs::is_directory(st), IoError, "{} is not a directory; pass the directory that holds the runs", root);

  std::vector<RunRecord> runs;
  fs::directory_iterator it(root, ec), end;
  TRAINDX_CHECK(!ec, IoError, "cannot list {}: {}{}", root, ec.message(), errno_hint(ec.value()));
  for (; it != end; it.increment(ec)) {
    if (!holds_store(it->path())) continue;
    const std::string dir = it->path().string();
    try {
      // Read-only: listing must never create or modify anything, also while a run is writing its store.
      auto store = open_sqlite_store_readonly((it->path() / kRunStoreFile).string());
      std::vector<RunRecord> found = store->list_runs();
      TRAINDX_CHECK(!found.empty(), IoError, "{} records no run", (it->path() / kRunStoreFile).string());
      for (auto& run : found) {
        run.dir = dir;  // where it is now, even if the runs were moved since
        runs.push_back(std::move(run));
      }
    } catch (const std::exception& e) {
      RunRecord bad;
      bad.run_id = it->path().filename().string();
      bad.dir = dir;
      bad.status = std::string("unreadable: ") + e.what();
      runs.push_back(std::move(bad));
    }
  }
  TRAINDX_CHECK(!ec, IoError, "cannot list {}: {}{}", root, ec.message(), errno_hint(ec.value()));
  std::sort(runs.begin(), runs.end(), [](const RunRecord& a, const RunRecord& b) {
    // Newest first; ISO 8601 UTC strings order like times, and within one second "x-2" sorts before "x".
    // Unreadable ones (no start) go last.
    return std::tie(b.started_at, b.run_id) < std::tie(a.started_at, a.run_id);
  });
  return runs;
}

std::string resolve_run_dir(const std::string& root, const std::string& run) {
  TRAINDX_CHECK(!run.empty(), UsageError, "no run given; pass a run directory or a run id (see `traindx runs list`)");
  if (holds_store(run)) return run;
  const fs::path under = fs::path(root) / run;
  if (holds_store(under)) return under.string();

  // Compare against the last path component, so "runs/mnist-2026..." with a typo still gets suggestions.
  const std::string key = fs::path(without_trailing_slash(run)).filename().string();

  const std::vector<std::string> ids = run_ids_under(root);
  // Prefixes only for bare ids: a path that does not exist is a typo, not an abbreviation.
  std::vector<std::string> prefixed;
  if (run.find('/') == std::string::npos) {
    for (const auto& id : ids) {
      if (id.compare(0, key.size(), key) == 0) prefixed.push_back(id);
    }
  }
  if (prefixed.size() == 1) return (fs::path(root) / prefixed.front()).string();
  TRAINDX_CHECK(prefixed.empty(), UsageError,
                "run '{}' is ambiguous: it starts {} run ids under {}: {}; give more of the id (see `traindx runs "
                "list`)",
                run, prefixed.size(), root, join_first(prefixed, 3));

  std::string why;
  std::error_code ec;
  if (fs::is_directory(run, ec)) why = fmt::format(" ({} is a directory but holds no {})", run, kRunStoreFile);
  std::string suggestion;
  if (ids.empty()) {
    suggestion = fmt::format("{} holds no runs", root);
  } else {
    std::vector<std::pair<size_t, std::string>> ranked;
    for (const auto& id : ids) ranked.emplace_back(edit_distance(to_lower(key), to_lower(id)), id);
    std::sort(ranked.begin(), ranked.end());
    std::vector<std::string> closest;
    for (size_t i = 0; i < ranked.size() && i < 3; ++i) closest.push_back(ranked[i].second);
    suggestion = "closest run ids: " + join_first(closest, 3);
  }
  TRAINDX_FAIL(UsageError, "no run '{}' under {}{}; {}; see `traindx runs list`", run, root, why, suggestion);
}

}  // namespace traindx
