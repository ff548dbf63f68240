// SqliteRunStore: the default RunStore, one SQLite file per run directory (schema in docs/store.md).
//
// Writes are buffered in memory and written in one transaction per batch: a training step logs a handful of
// rows, and one transaction per step would cost a WAL append each; batching makes 100k scalars take a fraction of
// a second. WAL + synchronous=NORMAL lets `traindx runs show` read while a run is writing, and a power loss can
// lose only the last batches, never corrupt the file.
#include <sqlite3.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <utility>
#include <vector>

#include "traindx/core/build_info.h"
#include "traindx/core/error.h"
#include "traindx/store/run_store.h"

namespace traindx {
namespace {

// A batch is written when it holds this many rows: large enough that the per-transaction cost vanishes, small
// enough that a crash loses little and memory stays bounded.
constexpr size_t kFlushRows = 2000;
// ... or when its oldest row is this old, so a live `runs show` of a slow run (a step every few seconds) lags by
// seconds rather than by thousands of steps. Checked only when something is logged.
constexpr std::chrono::seconds kFlushAge{2};
// How long a writer waits for another process's lock before failing with SQLITE_BUSY.
constexpr int kBusyTimeoutMs = 5000;

// ---- SQL -------------------------------------------------------------------------------------------------------
// Statements are cached by the address of these constants.

constexpr const char* kCreateSchema = R"sql(
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE runs(
  run_id TEXT PRIMARY KEY,
  name TEXT NOT NULL DEFAULT '',
  dir TEXT NOT NULL DEFAULT '',
  status TEXT NOT NULL DEFAULT '',
  started_at TEXT NOT NULL DEFAULT '',
  finished_at TEXT NOT NULL DEFAULT '',
  config_toml TEXT NOT NULL DEFAULT '',
  summary_json TEXT NOT NULL DEFAULT '{}');
CREATE TABLE scalars(
  run_id TEXT NOT NULL,
  step INTEGER NOT NULL,
  name TEXT NOT NULL,
  value REAL,
  PRIMARY KEY(run_id, name, step)) WITHOUT ROWID;
CREATE TABLE layer_stats(
  run_id TEXT NOT NULL,
  step INTEGER NOT NULL,
  layer TEXT NOT NULL,
  name TEXT NOT NULL,
  value REAL,
  PRIMARY KEY(run_id, layer, name, step)) WITHOUT ROWID;
CREATE TABLE findings(
  run_id TEXT NOT NULL,
  rule TEXT NOT NULL,
  layer TEXT NOT NULL DEFAULT '',
  severity TEXT NOT NULL DEFAULT '',
  first_step INTEGER,
  json TEXT NOT NULL,
  PRIMARY KEY(run_id, rule, layer));
)sql";

constexpr const char* kHasTable = "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1";
constexpr const char* kCountTables = "SELECT count(*) FROM sqlite_master WHERE type = 'table'";
constexpr const char* kGetMeta = "SELECT value FROM meta WHERE key = ?1";
constexpr const char* kSetMeta = "INSERT OR REPLACE INTO meta(key, value) VALUES(?1, ?2)";

constexpr const char* kInsertRun =
    "INSERT OR REPLACE INTO runs(run_id, name, dir, status, started_at, finished_at, config_toml, summary_json) "
    "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
constexpr const char* kEndRun = "UPDATE runs SET status = ?2, finished_at = ?3, summary_json = ?4 WHERE run_id = ?1";
constexpr const char* kInsertScalar =
    "INSERT OR REPLACE INTO scalars(run_id, step, name, value) VALUES(?1, ?2, ?3, ?4)";
constexpr const char* kInsertLayerStat =
    "INSERT OR REPLACE INTO layer_stats(run_id, step, layer, name, value) VALUES(?1, ?2, ?3, ?4, ?5)";
constexpr const char* kInsertFinding =
    "INSERT OR REPLACE INTO findings(run_id, rule, layer, severity, first_step, json) VALUES(?1, ?2, ?3, ?4, ?5, ?6)";

constexpr const char* kListRuns =
    "SELECT run_id, name, dir, status, started_at, finished_at, config_toml, summary_json FROM runs "
    "ORDER BY started_at DESC, run_id DESC";
constexpr const char* kGetRun =
    "SELECT run_id, name, dir, status, started_at, finished_at, config_toml, summary_json FROM runs "
    "WHERE run_id = ?1";
// Distinct names by hopping through the primary-key index (one lookup per name) instead of scanning every row:
// a run with a million scalar rows but ten names costs ten index probes.
constexpr const char* kScalarNames = R"sql(
WITH RECURSIVE n(name) AS (
  SELECT min(name) FROM scalars WHERE run_id = ?1
  UNION ALL
  SELECT (SELECT min(name) FROM scalars WHERE run_id = ?1 AND name > n.name) FROM n WHERE n.name IS NOT NULL)
SELECT name FROM n WHERE name IS NOT NULL)sql";
constexpr const char* kLayerNames = R"sql(
WITH RECURSIVE n(layer) AS (
  SELECT min(layer) FROM layer_stats WHERE run_id = ?1
  UNION ALL
  SELECT (SELECT min(layer) FROM layer_stats WHERE run_id = ?1 AND layer > n.layer) FROM n WHERE n.layer IS NOT NULL)
SELECT layer FROM n WHERE layer IS NOT NULL)sql";
constexpr const char* kScalarSeries = "SELECT step, value FROM scalars WHERE run_id = ?1 AND name = ?2 ORDER BY step";
constexpr const char* kLayerSeries =
    "SELECT step, value FROM layer_stats WHERE run_id = ?1 AND layer = ?2 AND name = ?3 ORDER BY step";
constexpr const char* kFindings =
    "SELECT json FROM findings WHERE run_id = ?1 ORDER BY "
    "CASE severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 WHEN 'info' THEN 2 ELSE 3 END, "
    "first_step IS NULL, first_step, rule, layer";

// What the user can do about a failed SQLite call, by primary result code.
const char* sqlite_hint(int rc) {
  switch (rc & 0xff) {
    case SQLITE_FULL: return "the disk is full: free some space, then retry";
    case SQLITE_READONLY:
      return "the database or its directory is read-only: check permissions, or write the run elsewhere (--out)";
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return "another process held a lock on the database for over 5 s: stop it, or use another run directory";
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
      return "the file is not a traindx run store or is damaged: point to a run directory's store.sqlite, or move "
             "the file away";
    case SQLITE_CANTOPEN: return "check that the file's directory exists and is writable";
    case SQLITE_IOERR:
      return "the file system reported an I/O error: check the disk, its free space and the file-size limit "
             "(ulimit -f)";
    case SQLITE_PERM:
    case SQLITE_AUTH: return "check the file's permissions";
    case SQLITE_NOMEM: return "the process ran out of memory";
    default: return "check the file and its directory";
  }
}

/// " (<errno text>)" for failures of the operating system ("disk I/O error" alone does not say "file too large"),
/// else "". Only for codes that come from a system call, since SQLite keeps the last errno around.
std::string os_error(sqlite3* db, int rc) {
  const int primary = rc & 0xff;
  if (primary != SQLITE_IOERR && primary != SQLITE_CANTOPEN && primary != SQLITE_FULL) return "";
  const int err = sqlite3_system_errno(db);
  return err == 0 ? "" : " (" + std::error_code(err, std::generic_category()).message() + ")";
}

std::string dump_json(const Json& j) {
  // `replace` rather than throwing on invalid UTF-8 in a layer name: a store write must not fail over that.
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

class Connection;

/// One use of a cached prepared statement. Resets it when destroyed, so no statement keeps a read transaction
/// open (that would stop WAL checkpoints) even when reading stops early on an exception.
class Query {
 public:
  Query(const Connection& conn, sqlite3_stmt* stmt) : conn_(conn), stmt_(stmt) {}
  ~Query() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  Query(const Query&) = delete;
  Query& operator=(const Query&) = delete;

  Query& bind(int index, const std::string& text);
  Query& bind(int index, int64_t value);
  /// Binds NULL for NaN: SQLite turns NaN into NULL anyway; doing it here makes the encoding explicit.
  Query& bind_value(int index, double value);
  Query& bind_null(int index);

  /// Steps once: true when a row is ready, false when done. Throws IoError naming `doing`.
  bool next(std::string_view doing);
  /// Steps to completion (for writes).
  void run(std::string_view doing) {
    while (next(doing)) {
    }
  }

  std::string text(int col) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(stmt_, col))) : std::string();
  }
  int64_t integer(int col) const { return sqlite3_column_int64(stmt_, col); }
  bool is_null(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  /// A stored value; NULL reads back as the NaN it encodes.
  double value(int col) const {
    return is_null(col) ? std::numeric_limits<double>::quiet_NaN() : sqlite3_column_double(stmt_, col);
  }

 private:
  const Connection& conn_;
  sqlite3_stmt* stmt_;
};

/// An open database handle with its cached statements; every failure becomes an IoError naming the file.
class Connection {
 public:
  Connection(std::string path, bool read_only) : path_(std::move(path)) {
    const int flags = (read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
                      SQLITE_OPEN_NOMUTEX;  // the store serialises calls with its own mutex
    const int rc = sqlite3_open_v2(path_.c_str(), &db_, flags, nullptr);
    if (rc != SQLITE_OK) {
      const std::string msg = db_ ? sqlite3_errmsg(db_) + os_error(db_, rc) : sqlite3_errstr(rc);
      sqlite3_close_v2(db_);
      db_ = nullptr;
      TRAINDX_FAIL(IoError, "run store {}: cannot open: {}; {}", path_, msg, sqlite_hint(rc));
    }
    sqlite3_busy_timeout(db_, kBusyTimeoutMs);
  }

  ~Connection() {
    for (auto& entry : cache_) sqlite3_finalize(entry.second);
    // The last connection to close checkpoints the WAL and removes -wal/-shm, leaving one file behind.
    sqlite3_close_v2(db_);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  const std::string& path() const { return path_; }
  sqlite3* handle() const { return db_; }

  [[noreturn]] void fail(int rc, std::string_view doing) const {
    TRAINDX_FAIL(IoError, "run store {}: {}: {}{}; {}", path_, doing, sqlite3_errmsg(db_), os_error(db_, rc),
                 sqlite_hint(rc));
  }
  void check(int rc, std::string_view doing) const {
    if (rc != SQLITE_OK) fail(rc, doing);
  }

  /// Runs one or more statements without results.
  void exec(const char* sql, std::string_view doing) {
    check(sqlite3_exec(db_, sql, nullptr, nullptr, nullptr), doing);
  }

  /// The cached statement for `sql` (a kXxx constant), prepared on first use.
  Query query(const char* sql) {
    auto it = cache_.find(sql);
    if (it == cache_.end()) {
      sqlite3_stmt* stmt = nullptr;
      const int rc = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
      if (rc != SQLITE_OK) {
        sqlite3_finalize(stmt);
        fail(rc, "preparing a query");
      }
      it = cache_.emplace(sql, stmt).first;
    }
    return Query(*this, it->second);
  }

  /// Rolls back an open transaction after a failure; never throws (it runs while an exception is in flight).
  void rollback_quietly() noexcept {
    if (!sqlite3_get_autocommit(db_)) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }

 private:
  std::string path_;
  sqlite3* db_ = nullptr;
  std::unordered_map<const char*, sqlite3_stmt*> cache_;
};

Query& Query::bind(int index, const std::string& text) {
  conn_.check(sqlite3_bind_text64(stmt_, index, text.data(), text.size(), SQLITE_TRANSIENT, SQLITE_UTF8),
              "binding a value");
  return *this;
}
Query& Query::bind(int index, int64_t value) {
  conn_.check(sqlite3_bind_int64(stmt_, index, value), "binding a value");
  return *this;
}
Query& Query::bind_value(int index, double value) {
  if (std::isnan(value)) return bind_null(index);
  conn_.check(sqlite3_bind_double(stmt_, index, value), "binding a value");
  return *this;
}
Query& Query::bind_null(int index) {
  conn_.check(sqlite3_bind_null(stmt_, index), "binding a value");
  return *this;
}
bool Query::next(std::string_view doing) {
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  conn_.fail(rc, doing);
}

struct ScalarRow {
  std::string run_id;
  int64_t step;
  std::string name;
  double value;
};
struct LayerStatRow {
  std::string run_id;
  int64_t step;
  std::string layer;
  std::string name;
  double value;
};
struct FindingRow {
  std::string run_id;
  std::string rule;
  std::string layer;
  std::string severity;
  std::optional<int64_t> first_step;
  std::string json;
};

class SqliteRunStore final : public RunStore {
 public:
  SqliteRunStore(const std::string& path, bool read_only) : conn_(path, read_only), read_only_(read_only) {
    if (!read_only) {
      // journal_mode is stored in the file; synchronous is per connection. In WAL mode NORMAL syncs only at
      // checkpoints: a power loss may drop the last commits but cannot corrupt the database.
      conn_.exec("PRAGMA journal_mode=WAL", "opening the database (switching to WAL mode)");
      conn_.exec("PRAGMA synchronous=NORMAL", "setting synchronous=NORMAL");
    }
    open_schema();
  }

  ~SqliteRunStore() override {
    try {
      std::lock_guard<std::mutex> lock(mutex_);
      const size_t pending = pending_rows();
      try {
        flush_locked();
      } catch (const std::exception& e) {
        // A destructor must not throw; the rows are lost, so at least say so instead of dropping them silently.
        std::fprintf(stderr, "traindx: warning: %zu buffered rows were not saved: %s\n", pending, e.what());
      }
    } catch (...) {
    }
  }

  void begin_run(const RunRecord& run) override {
    std::lock_guard<std::mutex> lock(mutex_);
    require_writable();
    write_batch([&] {
      conn_.query(kInsertRun)
          .bind(1, run.run_id)
          .bind(2, run.name)
          .bind(3, run.dir)
          .bind(4, run.status.empty() ? std::string("running") : run.status)
          .bind(5, run.started_at.empty() ? utc_now_iso() : run.started_at)
          .bind(6, run.finished_at)
          .bind(7, run.config_toml)
          .bind(8, dump_json(run.summary.is_null() ? Json::object() : run.summary))
          .run("recording the run");
    });
  }

  void log_scalars(const std::string& run_id, int64_t step, const Scalars& values) override {
    std::lock_guard<std::mutex> lock(mutex_);
    require_writable();
    note_first_pending();
    for (const auto& [name, value] : values) scalars_.push_back({run_id, step, name, value});
    flush_if_due();
  }

  void log_layer_stats(const std::string& run_id, int64_t step, const std::string& layer,
                       const Scalars& values) override {
    std::lock_guard<std::mutex> lock(mutex_);
    require_writable();
    note_first_pending();
    for (const auto& [name, value] : values) layer_stats_.push_back({run_id, step, layer, name, value});
    flush_if_due();
  }

  void log_finding(const std::string& run_id, const Json& finding) override {
    TRAINDX_ASSERT(finding.is_object() && finding.contains("rule") && finding["rule"].is_string(),
                   "a finding must be a JSON object with a string \"rule\", got {}", dump_json(finding));
    FindingRow row;
    row.run_id = run_id;
    row.rule = finding["rule"].get<std::string>();
    if (auto it = finding.find("layer"); it != finding.end() && it->is_string()) row.layer = it->get<std::string>();
    if (auto it = finding.find("severity"); it != finding.end() && it->is_string()) {
      row.severity = it->get<std::string>();
    }
    for (const char* key : {"first_step", "step"}) {
      if (auto it = finding.find(key); it != finding.end() && it->is_number_integer()) {
        row.first_step = it->get<int64_t>();
        break;
      }
    }
    row.json = dump_json(finding);

    std::lock_guard<std::mutex> lock(mutex_);
    require_writable();
    note_first_pending();
    findings_.push_back(std::move(row));
    flush_if_due();
  }

  void end_run(const std::string& run_id, const std::string& status, const Json& summary) override {
    std::lock_guard<std::mutex> lock(mutex_);
    require_writable();
    bool found = false;
    write_batch([&] {
      conn_.query(kEndRun)
          .bind(1, run_id)
          .bind(2, status)
          .bind(3, utc_now_iso())
          .bind(4, dump_json(summary.is_null() ? Json::object() : summary))
          .run("recording the end of the run");
      found = sqlite3_changes(conn_.handle()) > 0;
    });
    TRAINDX_ASSERT(found, "end_run(\"{}\") on run store {} without begin_run for that run", run_id, conn_.path());
  }

  void flush() override {
    std::lock_guard<std::mutex> lock(mutex_);
    flush_locked();
  }

  std::vector<RunRecord> list_runs() override {
    std::lock_guard<std::mutex> lock(mutex_);
    flush_locked();
    std::vector<RunRecord> runs;
    auto q = conn_.query(kListRuns);
    while (q.next("listing runs")) runs.push_back(read_run(q));
    return runs;
  }

  std::optional<RunRecord> get_run(const std::string& run_id) override {
    std::lock_guard<std::mutex> lock(mutex_);
    flush_locked();
    auto q = conn_.query(kGetRun);
    q.bind(1, run_id);
    if (!q.next("reading a run")) return std::nullopt;
    return read_run(q);
  }

  std::vector<std::string> scalar_names(const std::string& run_id) override {
    return names(kScalarNames, run_id, "listing scalar names");
  }

  std::vector<SeriesPoint> scalar_series(const std::string& run_id, const std::string& name) override {
    std::lock_guard<std::mutex> lock(mutex_);
    flush_locked();
    auto q = conn_.query(kScalarSeries);
    q.bind(1, run_id).bind(2, name);
    return read_series(q, "reading a scalar series");
  }

  std::vector<std::string> layer_names(const std::string& run_id) override {
    return names(kLayerNames, run_id, "listing layers");
  }

  std::vector<SeriesPoint> layer_series(const std::string& run_id, const std::string& layer,
                                        const std::string& name) override {
    std::lock_guard<std::mutex> lock(mutex_);
    flush_locked();
    auto q = conn_.query(kLayerSeries);
    q.bind(1, run_id).bind(2, layer).bind(3, name);
    return read_series(q, "reading a layer series");
  }

  std::vector<Json> findings(const std::string& run_id) override {
    std::lock_guard<std::mutex> lock(mutex_);
    flush_locked();
    std::vector<Json> out;
    auto q = conn_.query(kFindings);
    q.bind(1, run_id);
    while (q.next("reading findings")) out.push_back(parse_json(q.text(0), "a finding"));
    return out;
  }

 private:
  /// Creates the schema in a fresh file; checks the version of an existing one.
  void open_schema() {
    if (!has_table("meta")) {
      int64_t tables = 0;
      {
        auto q = conn_.query(kCountTables);
        if (q.next("reading the schema")) tables = q.integer(0);
      }
      TRAINDX_CHECK(tables == 0, IoError,
                    "run store {}: a SQLite database but not a traindx run store (it has no meta table); point to "
                    "a run directory's store.sqlite",
                    conn_.path());
      TRAINDX_CHECK(!read_only_, IoError,
                    "run store {}: the database is empty, not a traindx run store; point to a run directory's "
                    "store.sqlite",
                    conn_.path());
      create_schema();
    }

    std::string version_text;
    {
      auto q = conn_.query(kGetMeta);
      q.bind(1, std::string("schema_version"));
      if (q.next("reading the schema version")) version_text = q.text(0);
    }
    int64_t version = 0;
    try {
      size_t used = 0;
      version = std::stoll(version_text, &used);
      if (used != version_text.size()) version = 0;
    } catch (const std::exception&) {
      version = 0;
    }
    TRAINDX_CHECK(version >= 1, IoError,
                  "run store {}: the meta table has no valid schema_version (found \"{}\"); the file is damaged, "
                  "move it away",
                  conn_.path(), version_text);
    if (version > kRunStoreSchemaVersion) {
      std::string writer;
      {
        auto q = conn_.query(kGetMeta);
        q.bind(1, std::string("traindx_version"));
        if (q.next("reading the schema version")) writer = q.text(0);
      }
      const std::string needed = writer.empty() ? fmt::format("a traindx that knows store schema version {}", version)
                                                : fmt::format("traindx {} or newer", writer);
      TRAINDX_FAIL(IoError,
                   "run store {}: written with store schema version {}{}, but this traindx {} reads schema "
                   "version {} at most; open it with {}",
                   conn_.path(), version, writer.empty() ? "" : " by traindx " + writer, TRAINDX_VERSION,
                   kRunStoreSchemaVersion, needed);
    }
  }

  void create_schema() {
    // IMMEDIATE takes the write lock now, so two processes creating the same store cannot both create tables;
    // the loser re-checks inside the transaction.
    conn_.exec("BEGIN IMMEDIATE", "creating the schema");
    try {
      if (!has_table("meta")) {
        conn_.exec(kCreateSchema, "creating the schema");
        conn_.query(kSetMeta)
            .bind(1, std::string("schema_version"))
            .bind(2, std::to_string(kRunStoreSchemaVersion))
            .run("creating the schema");
        // Lets an older traindx say which version it needs to read this file.
        conn_.query(kSetMeta)
            .bind(1, std::string("traindx_version"))
            .bind(2, std::string(TRAINDX_VERSION))
            .run("creating the schema");
      }
      conn_.exec("COMMIT", "creating the schema");
    } catch (...) {
      conn_.rollback_quietly();
      throw;
    }
  }

  bool has_table(const std::string& name) {
    auto q = conn_.query(kHasTable);
    q.bind(1, name);
    return q.next("reading the schema") && q.integer(0) > 0;
  }

  void require_writable() const {
    TRAINDX_CHECK(!read_only_, IoError, "run store {}: opened read-only, cannot write; open it with open_sqlite_store",
                  conn_.path());
  }

  size_t pending_rows() const { return scalars_.size() + layer_stats_.size() + findings_.size(); }

  void note_first_pending() {
    if (pending_rows() == 0) first_pending_ = std::chrono::steady_clock::now();
  }

  void flush_if_due() {
    if (pending_rows() >= kFlushRows || std::chrono::steady_clock::now() - first_pending_ >= kFlushAge) {
      flush_locked();
    }
  }

  void flush_locked() {
    if (pending_rows() == 0) return;
    write_batch([] {});
  }

  /// Writes the buffered rows and then `extra` in one transaction. The buffer is cleared only after COMMIT, so a
  /// failed batch (disk full) can be retried by flush() once the cause is fixed.
  template <typename Extra>
  void write_batch(Extra&& extra) {
    const std::string doing = fmt::format("writing {} buffered rows", pending_rows());
    conn_.exec("BEGIN IMMEDIATE", doing);
    try {
      for (const auto& r : scalars_) {
        conn_.query(kInsertScalar).bind(1, r.run_id).bind(2, r.step).bind(3, r.name).bind_value(4, r.value).run(doing);
      }
      for (const auto& r : layer_stats_) {
        conn_.query(kInsertLayerStat)
            .bind(1, r.run_id)
            .bind(2, r.step)
            .bind(3, r.layer)
            .bind(4, r.name)
            .bind_value(5, r.value)
            .run(doing);
      }
      for (const auto& r : findings_) {
        auto q = conn_.query(kInsertFinding);
        q.bind(1, r.run_id).bind(2, r.rule).bind(3, r.layer).bind(4, r.severity).bind(6, r.json);
        if (r.first_step) {
          q.bind(5, *r.first_step);
        } else {
          q.bind_null(5);
        }
        q.run(doing);
      }
      extra();
      conn_.exec("COMMIT", doing);
    } catch (...) {
      conn_.rollback_quietly();
      throw;
    }
    scalars_.clear();
    layer_stats_.clear();
    findings_.clear();
  }

  std::vector<std::string> names(const char* sql, const std::string& run_id, std::string_view doing) {
    std::lock_guard<std::mutex> lock(mutex_);
    flush_locked();
    std::vector<std::string> out;
    auto q = conn_.query(sql);
    q.bind(1, run_id);
    while (q.next(doing)) out.push_back(q.text(0));
    return out;
  }

  static std::vector<SeriesPoint> read_series(Query& q, std::string_view doing) {
    std::vector<SeriesPoint> out;
    while (q.next(doing)) out.push_back({q.integer(0), q.value(1)});
    return out;
  }

  RunRecord read_run(const Query& q) const {
    RunRecord r;
    r.run_id = q.text(0);
    r.name = q.text(1);
    r.dir = q.text(2);
    r.status = q.text(3);
    r.started_at = q.text(4);
    r.finished_at = q.text(5);
    r.config_toml = q.text(6);
    const std::string summary = q.text(7);
    r.summary = summary.empty() ? Json::object() : parse_json(summary, "a run summary");
    return r;
  }

  Json parse_json(const std::string& text, std::string_view what) const {
    Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
    TRAINDX_CHECK(!j.is_discarded(), IoError, "run store {}: {} holds malformed JSON; the file is damaged",
                  conn_.path(), what);
    return j;
  }

  Connection conn_;
  const bool read_only_;
  std::mutex mutex_;  // the trainer and a monitor thread may share one store
  std::vector<ScalarRow> scalars_;
  std::vector<LayerStatRow> layer_stats_;
  std::vector<FindingRow> findings_;
  std::chrono::steady_clock::time_point first_pending_{};
};

}  // namespace

std::unique_ptr<RunStore> open_sqlite_store(const std::string& path) {
  return std::make_unique<SqliteRunStore>(path, /*read_only=*/false);
}

std::unique_ptr<RunStore> open_sqlite_store_readonly(const std::string& path) {
  std::error_code ec;
  TRAINDX_CHECK(std::filesystem::is_regular_file(path, ec), IoError,
                "run store {} does not exist (or is not a file); pass a run directory (see `traindx runs list`)",
                path);
  return std::make_unique<SqliteRunStore>(path, /*read_only=*/true);
}

}  // namespace traindx
