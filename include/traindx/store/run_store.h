#pragma once
/// The run store: where every run's config, summary, per-step metrics, per-layer series and findings live.
/// RunStore is the interface; SQLite (one file per run directory) is the default implementation, and a server
/// database can implement the same interface when many machines share runs. The schema carries a run_id column
/// everywhere so series of many runs can live in one database.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "traindx/core/config.h"

namespace traindx {

/// One run as the store knows it.
struct RunRecord {
  std::string run_id;       ///< unique; the run directory's name
  std::string name;         ///< run.name
  std::string dir;          ///< run directory
  std::string status;       ///< running, completed, stopped, failed
  std::string started_at;   ///< ISO 8601 UTC
  std::string finished_at;  ///< empty while running
  std::string config_toml;  ///< the effective config
  Json summary = Json::object();
};

/// A (step, value) point of a series.
struct SeriesPoint {
  int64_t step;
  double value;
};

/// Name/value pairs logged at one step.
using Scalars = std::vector<std::pair<std::string, double>>;

/// Storage of runs. Writes may be buffered; flush() and end_run() make them durable. Implementations throw IoError
/// naming the database on failure. Values may be NaN or +-Inf and read back unchanged. Logging the same key again
/// (run, name, step) or (run, layer, name, step) overwrites the earlier value, so a resumed run may re-log steps.
/// Read methods see every value logged before them through the same object (buffered writes are flushed first).
class RunStore {
 public:
  virtual ~RunStore() = default;
  /// Records a run (replacing a record with the same run_id, e.g. on resume). An empty status means "running",
  /// an empty started_at means now. Written immediately so `runs list` shows the run while it trains.
  virtual void begin_run(const RunRecord& run) = 0;
  /// Per-step scalars, e.g. {"loss", 0.3}, {"lr", 0.01}, {"grad_norm", 1.2}.
  virtual void log_scalars(const std::string& run_id, int64_t step, const Scalars& values) = 0;
  /// Per-layer statistics, e.g. layer "conv1", {"grad_norm", ..}, {"act_mean", ..}.
  virtual void log_layer_stats(const std::string& run_id, int64_t step, const std::string& layer,
                               const Scalars& values) = 0;
  /// A finding (the findings.json object); replaces an earlier one with the same rule and layer.
  /// Indexed fields: "rule" (string, required), "layer" (string; absent or null = none), "severity"
  /// ("critical", "warning", "info") and "first_step" (or else "step"; integer). The whole object is kept.
  virtual void log_finding(const std::string& run_id, const Json& finding) = 0;
  /// Flushes pending writes and records the final status, finished_at (now) and summary of a begun run.
  /// Throws InternalError if the run was never begun (after the pending writes are saved).
  virtual void end_run(const std::string& run_id, const std::string& status, const Json& summary) = 0;
  /// Makes every buffered write durable in one transaction. On failure the writes stay buffered for a retry.
  virtual void flush() = 0;

  /// Every run in the store, newest started_at first.
  virtual std::vector<RunRecord> list_runs() = 0;
  /// The run with this id, or nullopt.
  virtual std::optional<RunRecord> get_run(const std::string& run_id) = 0;
  /// Names of the run's scalar series, sorted.
  virtual std::vector<std::string> scalar_names(const std::string& run_id) = 0;
  /// One scalar series ordered by step; empty when unknown.
  virtual std::vector<SeriesPoint> scalar_series(const std::string& run_id, const std::string& name) = 0;
  /// Names of the layers with statistics, sorted (by name, not model order).
  virtual std::vector<std::string> layer_names(const std::string& run_id) = 0;
  /// One statistic of one layer ordered by step; empty when unknown.
  virtual std::vector<SeriesPoint> layer_series(const std::string& run_id, const std::string& layer,
                                                const std::string& name) = 0;
  /// The run's findings, most severe first (critical, warning, info), then by first step.
  virtual std::vector<Json> findings(const std::string& run_id) = 0;
};

/// Version of the store schema this traindx writes and the newest it reads (docs/store.md).
inline constexpr int kRunStoreSchemaVersion = 1;

/// Opens (creating if needed) a SQLite run store at `path`, in WAL mode. Throws IoError naming the path, also when
/// the file is not a SQLite database, not a traindx store, or was written by a newer traindx (naming which).
/// Writes are buffered and committed in one transaction per ~2000 rows or when the oldest is 2 s old; the
/// destructor flushes and never throws (a failure there is printed to stderr). Safe to share between threads.
std::unique_ptr<RunStore> open_sqlite_store(const std::string& path);

/// Opens an existing SQLite run store for reading only: nothing is created (a mistyped path does not leave an
/// empty database behind) and writes throw IoError. Throws IoError as open_sqlite_store, and when `path` is
/// missing.
std::unique_ptr<RunStore> open_sqlite_store_readonly(const std::string& path);

/// File name of the store inside a run directory.
inline constexpr const char* kRunStoreFile = "store.sqlite";

// ---- run directories -----------------------------------------------------------------------------------------

/// Creates a fresh run directory: `out` if given (must not exist or be empty), else <root>/<name>-<UTC time>
/// (with a -2, -3 suffix on collision). Returns its path. Throws IoError.
/// The name part keeps only [A-Za-z0-9._-] (others become '_'; an empty name becomes "run"), so the directory's
/// name is a safe run id. The time is formatted YYYYmmdd-HHMMSS. The returned path has no trailing '/', so its
/// filename() is the run id; an empty root means the current directory.
std::string create_run_dir(const std::string& root, const std::string& name, const std::string& out = "");

/// Writes a file atomically: temporary file in the same directory, fsync, rename, fsync of the directory.
/// Throws IoError naming the path.
void write_file_atomic(const std::string& path, const std::string& contents);

/// write_file_atomic for a file made of pieces (e.g. a header and tensor buffers), written in order with writev,
/// without joining them in memory first.
void write_file_atomic(const std::string& path, const std::vector<std::string_view>& pieces);

/// Writes the pieces one after another to `fd` (writev, retried after short writes and EINTR).
/// Returns 0, or the errno of the failed write.
int write_pieces(int fd, const std::vector<std::string_view>& pieces);

/// Reads a whole file. Throws IoError naming the path.
std::string read_file(const std::string& path);

/// Runs found under `root`: every sub-directory holding a store, newest first. Unreadable ones are skipped with
/// their status set to "unreadable: <why>".
/// Each record's dir is where the directory is found now (runs may have been moved); a missing root gives an
/// empty list. Throws IoError when root exists but is not a readable directory.
std::vector<RunRecord> list_run_dirs(const std::string& root);

/// Resolves RUN given to `runs show`: a directory path, or a run id under `root`. Throws UsageError listing the
/// closest run ids when nothing matches.
/// A unique prefix of a run id under `root` also resolves (run ids end in a timestamp nobody wants to type);
/// an ambiguous prefix throws UsageError listing the matches.
std::string resolve_run_dir(const std::string& root, const std::string& run);

/// Current time as ISO 8601 UTC ("2026-11-21T23:59:01Z").
std::string utc_now_iso();

}  // namespace traindx
