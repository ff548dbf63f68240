#pragma once
/// Data: readers (IDX, CSV), seeded splits, a preprocessing pipeline fitted on the training split only, and a
/// shuffling batcher whose position is saveable state.
///
/// Flow: DataOptions -> load_raw_splits() -> RawSplits (as read from disk) -> Pipeline::fit(train) ->
///       Pipeline::transform() on every split -> PreparedData (tensors ready for a model).
/// The raw form is kept because checkpoints embed the fitted pipeline and raw probe examples, so that inference
/// can replay preprocessing unchanged (and the investigator can tell when it was not).
#include <torch/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "traindx/core/config.h"

namespace traindx {

/// What the targets mean.
enum class Task { Classification, Regression };

const char* task_name(Task task);

/// One column of a table as read from CSV. Numeric columns use `numbers` (NaN = missing); categorical columns use
/// `text` ("" = missing).
struct Column {
  std::string name;
  bool categorical = false;
  std::vector<double> numbers;
  std::vector<std::string> text;
};

/// A table of feature columns (the target column is removed by the loader).
struct Table {
  std::vector<Column> columns;
  int64_t rows = 0;
  /// 1-based line of the file where each row starts (for messages); empty when the table was not read from a file.
  std::vector<int64_t> lines;
  /// data.header = "sklearn": the class names listed on the file's first line (empty otherwise).
  std::vector<std::string> target_names;
  /// Rows at the given indices, in that order.
  Table select_rows(const std::vector<int64_t>& indices) const;
};

/// Raw examples exactly as read from disk: either images ([N, C, H, W], uint8 for IDX) or a table.
struct RawData {
  torch::Tensor images;  ///< defined for image sources
  Table table;           ///< used for tabular sources
  torch::Tensor targets; ///< int64 [N] class indices, or float32 [N] regression targets
  bool is_image() const { return images.defined(); }
  int64_t size() const;
  /// Examples at the given indices, in that order.
  RawData select(const std::vector<int64_t>& indices) const;
};

/// Facts about the data that the model builder and metrics need.
struct DataInfo {
  std::string source;                      ///< "fashion-mnist", "idx", "csv"
  Task task = Task::Classification;
  int64_t num_classes = 0;                 ///< 0 for regression
  std::vector<std::string> class_names;    ///< classification: name of each class index
  std::vector<int64_t> input_shape;        ///< per example, after preprocessing, e.g. {1, 28, 28} or {30}
  std::vector<std::string> feature_names;  ///< tabular: after one-hot expansion
};

/// Options of the data module; every field mirrors a `data.*` config key (docs/config.md).
struct DataOptions {
  std::string source = "fashion-mnist";
  std::string path;
  std::string test_path;
  std::string target;
  std::string task = "auto";
  bool normalize = true;
  std::string scaler = "standardize";
  std::string impute = "mean";
  std::vector<std::string> categorical;
  std::vector<std::string> drop_columns;
  std::string delimiter = ",";
  std::string header = "first_row";  ///< csv: "first_row", "none" or "sklearn" (see CsvHeader)
  double val_fraction = 0.1;
  double test_fraction = 0.2;
  bool stratify = true;
  int64_t max_train = 0;
  int64_t max_test = 0;
  /// Permute the training split's targets with the seed (val and test keep theirs): a model that still "learns"
  /// has memorised noise. The doctor's random-label check and the monitor's fault zoo use it.
  bool shuffle_labels = false;
  uint64_t seed = 0;  ///< from run.seed

  /// Reads the data.* keys (and run.seed).
  static DataOptions from_config(const Config& config);
};

/// The three splits as read from disk, before preprocessing.
struct RawSplits {
  RawData train, val, test;
  DataInfo info;  ///< input_shape is the raw shape here; feature_names are the raw table columns (no one-hot yet)
};

// ---- readers -------------------------------------------------------------------------------------------------

/// Reads an IDX file (gzipped or not): unsigned byte, signed byte, short, int, float or double payloads.
/// Throws DataError naming the file on a bad magic number, a truncated payload or trailing bytes.
torch::Tensor read_idx(const std::string& path);

/// What the first line(s) of a CSV file hold.
enum class CsvHeader {
  FirstRow,  ///< the first line holds the column names
  None,      ///< no header: every line is data; columns are named column_1, column_2, ...
  /// scikit-learn's bundled layout (sklearn/datasets/data/*.csv): the first line is
  /// "n_samples,n_features[,class name...]"; columns are named feature_0 ... feature_{n_features-1}, target, unless
  /// the second line holds names (boston_house_prices.csv), which are then used. The class names go to
  /// Table::target_names and n_samples is checked against the rows read.
  Sklearn,
};

/// Parses "first_row", "none" or "sklearn". Throws ConfigError naming the allowed values.
CsvHeader csv_header_from_string(const std::string& name);

/// Reads a CSV file (plain or gzipped) whose first line is as `header` says. Cells that parse as numbers make
/// numeric columns; any other text makes the column categorical; empty, "NA", "NaN", "?" and "null" (any case) are
/// missing. Quoted fields ("a,b", "" escapes, line breaks) work; CRLF line ends and blank lines are tolerated.
/// Throws DataError naming file and line on a ragged row, an empty file, a duplicate header, an unterminated quote
/// or an infinite number.
Table read_csv(const std::string& path, char delimiter = ',', CsvHeader header = CsvHeader::FirstRow);

/// Canonical text of a number that sits in a categorical column: the shortest form that reads back to the same
/// double ("3", "2.5", "1e+20"); NaN gives "" (missing). Train, test and inference files therefore agree on
/// categories even when one writes "3.0" and another "3".
std::string number_to_text(double value);

/// Loads the configured source and makes seeded train/val/test splits (stratified when asked and classifying).
/// Throws DataError for a missing file (naming it), labels out of range, a target column that does not exist
/// (naming the closest column), mismatched image/label counts.
RawSplits load_raw_splits(const DataOptions& options);

// ---- preprocessing -------------------------------------------------------------------------------------------

/// A preprocessing pipeline fitted on the training split only and replayable unchanged at inference.
/// Images: to float, then (normalize) per-channel standardisation or min-max to [0, 1].
/// Tables: impute missing numeric cells, one-hot categorical columns (unseen categories -> all zeros), then
/// (normalize) standardise or min-max numeric columns. Constant columns get scale 1 (never divide by zero).
class Pipeline {
 public:
  Pipeline() = default;
  /// Fits on raw training data. Throws DataError if train is empty.
  static Pipeline fit(const RawData& train, const DataOptions& options);
  /// Transforms raw examples into float32 features shaped [N, input_shape...]. Throws DataError when the raw data
  /// does not match what the pipeline was fitted on (column names, image shape).
  torch::Tensor transform(const RawData& raw) const;
  /// Shape of one transformed example.
  std::vector<int64_t> output_shape() const;
  /// Feature names after one-hot expansion (tables), empty for images.
  std::vector<std::string> feature_names() const;
  /// Complete, versioned description: every fitted number, enough to replay the transform exactly.
  Json to_json() const;
  /// Inverse of to_json(). Throws DataError on a malformed document.
  static Pipeline from_json(const Json& doc);
  bool operator==(const Pipeline& other) const { return to_json() == other.to_json(); }

 private:
  Json state_;  // the fitted description; transform() reads from it
};

/// Preprocessed splits ready for training.
struct PreparedData {
  torch::Tensor train_x, train_y, val_x, val_y, test_x, test_y;
  Pipeline pipeline;
  DataInfo info;     ///< input_shape is the transformed shape
  RawSplits raw;     ///< kept for probes and for re-checking preprocessing
};

/// load_raw_splits + Pipeline::fit(train) + transform of all splits.
PreparedData prepare_data(const DataOptions& options);

// ---- batching ------------------------------------------------------------------------------------------------

/// Where a batcher is: enough to resume the exact same sequence of batches.
struct BatcherState {
  int64_t epoch = 0;     ///< epochs completed
  int64_t position = 0;  ///< examples already served in the current epoch
  uint64_t seed = 0;     ///< permutation seed; epoch e uses a permutation derived from (seed, e)
  /// {"epoch": e, "position": p, "seed": "<decimal>"}; the seed is a string because it may exceed int64.
  Json to_json() const;
  /// Inverse of to_json() (also accepts the seed as an unsigned number). Throws DataError on a malformed document.
  static BatcherState from_json(const Json& doc);
  bool operator==(const BatcherState& o) const {
    return epoch == o.epoch && position == o.position && seed == o.seed;
  }
};

/// One batch of example indices.
struct Batch {
  torch::Tensor indices;  ///< int64 [B]
  int64_t epoch = 0;      ///< epoch this batch belongs to
  bool last_in_epoch = false;
};

/// A seeded shuffling batcher. The permutation of epoch e depends only on (seed, e) via our own Fisher-Yates over
/// SplitMix64, so it is identical on every platform and standard library, and restoring a state resumes the exact
/// sequence mid-epoch.
class ShuffleBatcher {
 public:
  ShuffleBatcher(int64_t num_examples, int64_t batch_size, uint64_t seed, bool shuffle = true,
                 bool drop_last = false);
  /// The next batch; after the last batch of an epoch the next call starts the following epoch.
  Batch next();
  int64_t batches_per_epoch() const;
  BatcherState state() const { return state_; }
  /// Throws DataError if the state does not fit this batcher (position beyond the epoch).
  void restore(const BatcherState& state);

 private:
  void build_permutation();
  int64_t num_examples_, batch_size_;
  bool shuffle_, drop_last_;
  BatcherState state_;
  std::vector<int64_t> permutation_;
  int64_t permutation_epoch_ = -1;
};

/// Deterministic 64-bit generator used for splits and permutations (SplitMix64).
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next();
  /// Uniform integer in [0, bound).
  uint64_t below(uint64_t bound);

 private:
  uint64_t state_;
};

}  // namespace traindx
