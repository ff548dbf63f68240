// Sources (Fashion-MNIST, IDX directories, CSV tables) and the seeded splits made from them.
#include <algorithm>
#include <cstdlib>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>

#include "traindx/core/error.h"
#include "traindx/core/text.h"
#include "traindx/data/data.h"

namespace traindx {
namespace {

constexpr const char* kFashionMnistDefaultDir = "/usr/share/datasets/fashion-mnist";
constexpr const char* kTrainImages = "train-images-idx3-ubyte";
constexpr const char* kTrainLabels = "train-labels-idx1-ubyte";
constexpr const char* kTestImages = "t10k-images-idx3-ubyte";
constexpr const char* kTestLabels = "t10k-labels-idx1-ubyte";
// More classes than this is almost surely a continuous target or an id column by mistake; a 1000-way softmax
// (ImageNet) is the largest classifier traindx is meant for.
constexpr int64_t kMaxClasses = 1000;
// task = "auto": an integer target with at most this many distinct values is a class label (ratings, digits,
// counts of a few kinds); more distinct integers are far more often a quantity (age, price) to regress.
constexpr size_t kAutoMaxClasses = 20;
constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ULL;

// Independent streams per purpose so that changing, say, max_test does not move the validation split.
enum class Stream : uint64_t { Test = 1, MaxTrain = 2, MaxTest = 3, Val = 4, ShuffleLabels = 5 };

uint64_t stream_seed(uint64_t seed, Stream stream) {
  SplitMix64 mix(seed ^ (static_cast<uint64_t>(stream) * kGolden));
  mix.next();
  return mix.next();
}

void shuffle(std::vector<int64_t>& v, SplitMix64& rng) {
  for (size_t i = v.size(); i > 1; --i) {
    const auto j = static_cast<size_t>(rng.below(i));
    std::swap(v[i - 1], v[j]);
  }
}

std::vector<int64_t> iota(int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = i;
  return v;
}

struct HoldOut {
  std::vector<int64_t> kept, held;  // both ascending
};

// Holds out round(fraction * n) examples, or round(fraction * count) of every class when `classes` is given.
HoldOut hold_out(int64_t n, double fraction, const std::vector<int64_t>* classes, uint64_t seed) {
  SplitMix64 rng(seed);
  std::vector<std::vector<int64_t>> groups;
  if (classes != nullptr) {
    std::map<int64_t, std::vector<int64_t>> by_class;  // ordered: the rng is consumed class by class, ascending
    for (int64_t i = 0; i < n; ++i) by_class[(*classes)[static_cast<size_t>(i)]].push_back(i);
    for (auto& [cls, members] : by_class) groups.push_back(std::move(members));
  } else {
    groups.push_back(iota(n));
  }
  HoldOut out;
  for (auto& group : groups) {
    shuffle(group, rng);
    const auto k = static_cast<size_t>(std::llround(fraction * static_cast<double>(group.size())));
    out.held.insert(out.held.end(), group.begin(), group.begin() + static_cast<std::ptrdiff_t>(k));
    out.kept.insert(out.kept.end(), group.begin() + static_cast<std::ptrdiff_t>(k), group.end());
  }
  std::sort(out.held.begin(), out.held.end());
  std::sort(out.kept.begin(), out.kept.end());
  return out;
}

std::vector<int64_t> class_vector(const RawData& data) {
  const torch::Tensor t = data.targets.to(torch::kLong).contiguous();
  const int64_t* p = t.data_ptr<int64_t>();
  return std::vector<int64_t>(p, p + t.numel());
}

// `max` examples chosen with the seed (kept in file order), or all of them.
RawData truncate(const RawData& data, int64_t max, uint64_t seed) {
  if (max <= 0 || data.size() <= max) return data;
  std::vector<int64_t> order = iota(data.size());
  SplitMix64 rng(seed);
  shuffle(order, rng);
  order.resize(static_cast<size_t>(max));
  std::sort(order.begin(), order.end());
  return data.select(order);
}

std::string dims(torch::IntArrayRef sizes) { return fmt::format("{}", fmt::join(sizes, "x")); }

std::string list_names(const std::vector<std::string>& names) {
  constexpr size_t kShown = 40;
  std::string out;
  for (size_t i = 0; i < names.size() && i < kShown; ++i) out += (i ? ", " : "") + names[i];
  if (names.size() > kShown) out += fmt::format(", ... ({} more)", names.size() - kShown);
  return out;
}

// ---- images --------------------------------------------------------------------------------------------------

std::string find_idx_file(const std::string& dir, const char* base, bool fashion) {
  namespace fs = std::filesystem;
  const std::string plain = dir + "/" + base;
  std::error_code ec;
  if (fs::is_regular_file(plain, ec)) return plain;
  if (fs::is_regular_file(plain + ".gz", ec)) return plain + ".gz";
  if (fashion) {
    TRAINDX_FAIL(DataError,
                 "Fashion-MNIST file not found: {}[.gz]; install it with `apt-get install dataset-fashion-mnist` or "
                 "set data.path to a directory holding {}[.gz]",
                 plain, base);
  }
  TRAINDX_FAIL(DataError,
               "IDX file not found: {}[.gz]; data.source = \"idx\" needs data.path to hold {}, {}, {} and {} (each "
               "plain or .gz)",
               plain, kTrainImages, kTrainLabels, kTestImages, kTestLabels);
}

torch::Tensor images_nchw(const torch::Tensor& raw, const std::string& file) {
  if (raw.dim() == 3) return raw.unsqueeze(1).contiguous();
  if (raw.dim() == 4) return raw.permute({0, 3, 1, 2}).contiguous();
  TRAINDX_FAIL(DataError, "image file {} has {} dimensions; expected 3 [N, H, W] or 4 [N, H, W, C]", file, raw.dim());
}

torch::Tensor labels_long(const torch::Tensor& raw, const std::string& file, int64_t limit, const char* what) {
  TRAINDX_CHECK(raw.dim() == 1, DataError, "label file {} has {} dimensions; labels must be 1-D [N]", file, raw.dim());
  TRAINDX_CHECK(!torch::isFloatingType(raw.scalar_type()), DataError,
                "label file {} holds floating-point values; class labels must be integers", file);
  torch::Tensor labels = raw.to(torch::kLong).contiguous();
  const int64_t* p = labels.data_ptr<int64_t>();
  for (int64_t i = 0; i < labels.numel(); ++i) {
    TRAINDX_CHECK(p[i] >= 0 && p[i] < limit, DataError,
                  "label file {}: example {} has label {}; {} labels must be in 0..{}", file, i, p[i], what,
                  limit - 1);
  }
  return labels;
}

void load_images(const DataOptions& options, RawData& train, RawData& test, DataInfo& info) {
  const bool fashion = options.source == "fashion-mnist";
  TRAINDX_CHECK(fashion || !options.path.empty(), ConfigError,
                "data.source = \"idx\" needs data.path: the directory holding {}[.gz] and the other IDX files",
                kTrainImages);
  TRAINDX_CHECK(options.task != "regression", ConfigError,
                "data.task = \"regression\" is not available for image sources ({}): their labels are classes",
                options.source);
  const std::string dir = options.path.empty() ? kFashionMnistDefaultDir : options.path;
  const int64_t limit = fashion ? 10 : kMaxClasses;
  const char* what = fashion ? "Fashion-MNIST" : "IDX";

  auto load_pair = [&](const char* image_base, const char* label_base, RawData& out) {
    const std::string image_file = find_idx_file(dir, image_base, fashion);
    const std::string label_file = find_idx_file(dir, label_base, fashion);
    out.images = images_nchw(read_idx(image_file), image_file);
    out.targets = labels_long(read_idx(label_file), label_file, limit, what);
    TRAINDX_CHECK(out.images.size(0) == out.targets.size(0), DataError,
                  "{} holds {} images but {} holds {} labels; they must pair up one to one", image_file,
                  out.images.size(0), label_file, out.targets.size(0));
    if (fashion) {
      TRAINDX_CHECK(out.images.scalar_type() == torch::kUInt8 && out.images.size(1) == 1 &&
                        out.images.size(2) == 28 && out.images.size(3) == 28,
                    DataError, "{} is not Fashion-MNIST: expected unsigned-byte images 1x28x28, got {} {}",
                    image_file, dims(out.images.sizes().slice(1)), c10::toString(out.images.scalar_type()));
    }
    return image_file;
  };
  const std::string train_file = load_pair(kTrainImages, kTrainLabels, train);
  const std::string test_file = load_pair(kTestImages, kTestLabels, test);
  TRAINDX_CHECK(train.images.sizes().slice(1) == test.images.sizes().slice(1), DataError,
                "{} holds images shaped {} but {} holds {}; train and test images must have one shape", train_file,
                dims(train.images.sizes().slice(1)), test_file, dims(test.images.sizes().slice(1)));
  TRAINDX_CHECK(train.size() > 0, DataError, "{} holds no images", train_file);

  info.task = Task::Classification;
  if (fashion) {
    info.class_names = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                        "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  } else {
    int64_t max_label = train.targets.max().item<int64_t>();
    if (test.size() > 0) max_label = std::max(max_label, test.targets.max().item<int64_t>());
    for (int64_t c = 0; c <= max_label; ++c) info.class_names.push_back(std::to_string(c));
  }
  info.num_classes = static_cast<int64_t>(info.class_names.size());
  const auto shape = train.images.sizes().slice(1);
  info.input_shape.assign(shape.begin(), shape.end());
}

// ---- tables --------------------------------------------------------------------------------------------------

std::vector<std::string> column_names(const Table& table) {
  std::vector<std::string> names;
  for (const auto& c : table.columns) names.push_back(c.name);
  return names;
}

int64_t find_column(const Table& table, const std::string& name) {
  for (size_t j = 0; j < table.columns.size(); ++j) {
    if (table.columns[j].name == name) return static_cast<int64_t>(j);
  }
  return -1;
}

void make_categorical(Column& col) {
  if (col.categorical) return;
  col.text.clear();
  for (double v : col.numbers) col.text.push_back(number_to_text(v));
  col.numbers.clear();
  col.categorical = true;
}

int64_t line_of(const Table& table, int64_t row) {
  return row < static_cast<int64_t>(table.lines.size()) ? table.lines[static_cast<size_t>(row)] : row + 2;
}

bool cell_missing(const Column& col, int64_t row) {
  const auto r = static_cast<size_t>(row);
  return col.categorical ? col.text[r].empty() : std::isnan(col.numbers[r]);
}

std::string cell_text(const Column& col, int64_t row) {
  const auto r = static_cast<size_t>(row);
  return col.categorical ? col.text[r] : number_to_text(col.numbers[r]);
}

// Puts the test table's columns in the training table's order and kinds; anything else is an error naming it.
Table align_test(const Table& train, Table test, const std::string& train_file, const std::string& test_file) {
  Table out;
  out.rows = test.rows;
  out.lines = test.lines;
  for (const auto& col : train.columns) {
    const int64_t j = find_column(test, col.name);
    TRAINDX_CHECK(j >= 0, DataError, "test file {} has no column '{}' (the training file {} has it); closest: '{}'",
                  test_file, col.name, train_file, closest_match(col.name, column_names(test)));
    Column c = test.columns[static_cast<size_t>(j)];
    if (col.categorical) {
      make_categorical(c);
    } else if (c.categorical) {
      for (int64_t r = 0; r < test.rows; ++r) {
        TRAINDX_CHECK(c.text[static_cast<size_t>(r)].empty(), DataError,
                      "column '{}' is numeric in {} but test file {} holds text '{}' on line {}", col.name, train_file,
                      test_file, c.text[static_cast<size_t>(r)], line_of(test, r));
      }
      // Entirely missing in the test file: read as text, means "all missing" numbers.
      c.categorical = false;
      c.numbers.assign(static_cast<size_t>(test.rows), std::nan(""));
      c.text.clear();
    }
    out.columns.push_back(std::move(c));
  }
  for (const auto& col : test.columns) {
    TRAINDX_CHECK(find_column(train, col.name) >= 0, DataError,
                  "test file {} has column '{}' that the training file {} lacks; remove it or list it in "
                  "data.drop_columns",
                  test_file, col.name, train_file);
  }
  return out;
}

struct TargetCoding {
  Task task = Task::Classification;
  bool text = false;                  // the target column is categorical
  std::vector<std::string> text_classes;
  std::vector<double> number_classes;
  std::vector<std::string> class_names;
};

void check_no_missing_target(const Table& table, const Column& target, const std::string& file) {
  int64_t missing = 0, first = -1;
  for (int64_t r = 0; r < table.rows; ++r) {
    if (cell_missing(target, r)) {
      if (first < 0) first = r;
      ++missing;
    }
  }
  TRAINDX_CHECK(missing == 0, DataError,
                "CSV file {}: line {}: the target column '{}' is missing ({} row{} in all); remove or fill rows "
                "without a target",
                file, line_of(table, first), target.name, missing, missing == 1 ? "" : "s");
}

TargetCoding fit_target(const Column& target, const std::vector<std::string>& sklearn_names,
                        const DataOptions& options, const std::string& file, const Table& table) {
  TargetCoding coding;
  coding.text = target.categorical;
  std::set<std::string> text_values;
  std::set<double> number_values;
  bool integers = true;
  if (target.categorical) {
    text_values.insert(target.text.begin(), target.text.end());
  } else {
    for (double v : target.numbers) {
      number_values.insert(v);
      integers = integers && v == std::floor(v) && std::fabs(v) <= 9007199254740992.0;  // 2^53
    }
  }
  if (options.task == "classification") {
    coding.task = Task::Classification;
  } else if (options.task == "regression") {
    coding.task = Task::Regression;
  } else {
    coding.task = target.categorical || (integers && number_values.size() <= kAutoMaxClasses) ? Task::Classification
                                                                                              : Task::Regression;
  }
  if (coding.task == Task::Regression) {
    if (target.categorical) {
      // Name the first cell that is not a number (the column became text because of it).
      size_t bad = 0;
      for (size_t i = 0; i < target.text.size(); ++i) {
        char* end = nullptr;
        const std::string& cell = target.text[i];
        std::strtod(cell.c_str(), &end);
        if (cell.empty() || end != cell.c_str() + cell.size()) {
          bad = i;
          break;
        }
      }
      TRAINDX_FAIL(DataError,
                   "CSV file {}: the target column '{}' holds text ('{}' on line {}); regression needs numbers "
                   "(or set data.task = \"classification\")",
                   file, target.name, target.text[bad], line_of(table, static_cast<int64_t>(bad)));
    }
    return coding;
  }
  const size_t classes = target.categorical ? text_values.size() : number_values.size();
  TRAINDX_CHECK(classes <= static_cast<size_t>(kMaxClasses), DataError,
                "CSV file {}: the target column '{}' has {} distinct values; classification supports at most {} "
                "(set data.task = \"regression\" for a continuous target)",
                file, target.name, classes, kMaxClasses);
  TRAINDX_CHECK(classes >= 2, DataError,
                "CSV file {}: the target column '{}' has a single value '{}'; classification needs at least two "
                "classes",
                file, target.name, cell_text(target, 0));
  if (target.categorical) {
    coding.text_classes.assign(text_values.begin(), text_values.end());
    coding.class_names = coding.text_classes;
  } else {
    coding.number_classes.assign(number_values.begin(), number_values.end());
    // scikit-learn's layout names the classes 0..K-1 on its first line; use those names when they fit.
    bool named = !sklearn_names.empty();
    for (double v : coding.number_classes) {
      named = named && v >= 0 && v == std::floor(v) && v < static_cast<double>(sklearn_names.size());
    }
    for (double v : coding.number_classes) {
      coding.class_names.push_back(named ? sklearn_names[static_cast<size_t>(v)] : number_to_text(v));
    }
  }
  return coding;
}

torch::Tensor encode_target(const TargetCoding& coding, const Column& target, const Table& table,
                            const std::string& file, const std::string& train_file) {
  const int64_t n = table.rows;
  if (coding.task == Task::Regression) {
    torch::Tensor y = torch::empty({n}, torch::kFloat32);
    float* p = y.data_ptr<float>();
    for (int64_t r = 0; r < n; ++r) p[r] = static_cast<float>(target.numbers[static_cast<size_t>(r)]);
    return y;
  }
  torch::Tensor y = torch::empty({n}, torch::kLong);
  int64_t* p = y.data_ptr<int64_t>();
  for (int64_t r = 0; r < n; ++r) {
    const auto rr = static_cast<size_t>(r);
    int64_t index = -1;
    if (coding.text) {
      const auto it = std::lower_bound(coding.text_classes.begin(), coding.text_classes.end(), target.text[rr]);
      if (it != coding.text_classes.end() && *it == target.text[rr]) index = it - coding.text_classes.begin();
    } else {
      const auto it =
          std::lower_bound(coding.number_classes.begin(), coding.number_classes.end(), target.numbers[rr]);
      if (it != coding.number_classes.end() && *it == target.numbers[rr]) index = it - coding.number_classes.begin();
    }
    TRAINDX_CHECK(index >= 0, DataError,
                  "CSV file {}: line {}: target value '{}' does not occur in the training file {} (classes: {})", file,
                  line_of(table, r), cell_text(target, r), train_file, list_names(coding.class_names));
    p[r] = index;
  }
  return y;
}

void drop_columns(Table& table, const std::vector<std::string>& drops, const std::string& file, bool strict) {
  for (const auto& name : drops) {
    const int64_t j = find_column(table, name);
    if (j < 0) {
      TRAINDX_CHECK(!strict, DataError, "data.drop_columns: column '{}' not in {}; closest: '{}'; columns: {}", name,
                    file, closest_match(name, column_names(table)), list_names(column_names(table)));
      continue;
    }
    table.columns.erase(table.columns.begin() + j);
  }
}

void load_table(const DataOptions& options, RawData& train, RawData& test, DataInfo& info) {
  TRAINDX_CHECK(!options.path.empty(), ConfigError, "data.source = \"csv\" needs data.path: the CSV file to read");
  TRAINDX_CHECK(options.delimiter.size() == 1, ConfigError, "data.delimiter must be one character, got \"{}\"",
                options.delimiter);
  const char delimiter = options.delimiter[0];
  const CsvHeader header = csv_header_from_string(options.header);
  const std::string& file = options.path;

  Table table = read_csv(file, delimiter, header);
  drop_columns(table, options.drop_columns, file, true);
  for (const auto& name : options.categorical) {
    const int64_t j = find_column(table, name);
    TRAINDX_CHECK(j >= 0, DataError, "data.categorical: column '{}' not in {}; closest: '{}'; columns: {}", name,
                  file, closest_match(name, column_names(table)), list_names(column_names(table)));
    make_categorical(table.columns[static_cast<size_t>(j)]);
  }
  TRAINDX_CHECK(!table.columns.empty(), DataError, "CSV file {}: no columns left after data.drop_columns", file);
  const std::string target_name = options.target.empty() ? table.columns.back().name : options.target;
  const int64_t target_index = find_column(table, target_name);
  TRAINDX_CHECK(target_index >= 0, DataError, "target column '{}' not in {}; closest: '{}'; columns: {}", target_name,
                file, closest_match(target_name, column_names(table)), list_names(column_names(table)));
  TRAINDX_CHECK(table.columns.size() >= 2, DataError,
                "CSV file {}: only the target column '{}' is left; there are no feature columns", file, target_name);

  std::optional<Table> test_table;
  if (!options.test_path.empty()) {
    Table t = read_csv(options.test_path, delimiter, header);
    drop_columns(t, options.drop_columns, options.test_path, false);
    test_table = align_test(table, std::move(t), file, options.test_path);
  }

  const Column target = table.columns[static_cast<size_t>(target_index)];
  table.columns.erase(table.columns.begin() + target_index);
  check_no_missing_target(table, target, file);
  // The class names of scikit-learn's first line belong to its "target" column, not to any column picked instead.
  const TargetCoding coding =
      fit_target(target, target.name == "target" ? table.target_names : std::vector<std::string>{}, options, file,
                 table);

  train.table = table;
  train.table.target_names.clear();
  train.targets = encode_target(coding, target, table, file, file);
  if (test_table) {
    const Column test_target = test_table->columns[static_cast<size_t>(target_index)];
    test_table->columns.erase(test_table->columns.begin() + target_index);
    check_no_missing_target(*test_table, test_target, options.test_path);
    test.table = std::move(*test_table);
    test.targets = encode_target(coding, test_target, test.table, options.test_path, file);
  } else {
    const bool classify = coding.task == Task::Classification;
    const std::vector<int64_t> classes = classify ? class_vector(train) : std::vector<int64_t>{};
    const HoldOut split = hold_out(train.size(), options.test_fraction,
                                   options.stratify && classify ? &classes : nullptr,
                                   stream_seed(options.seed, Stream::Test));
    test = train.select(split.held);
    train = train.select(split.kept);
  }

  info.task = coding.task;
  info.class_names = coding.class_names;
  info.num_classes = static_cast<int64_t>(coding.class_names.size());
  info.input_shape = {static_cast<int64_t>(train.table.columns.size())};
  info.feature_names = column_names(train.table);
}

void validate(const DataOptions& o) {
  TRAINDX_CHECK(o.source == "fashion-mnist" || o.source == "idx" || o.source == "csv", ConfigError,
                "data.source: unknown value '{}'; allowed: fashion-mnist, idx, csv", o.source);
  TRAINDX_CHECK(o.task == "auto" || o.task == "classification" || o.task == "regression", ConfigError,
                "data.task: unknown value '{}'; allowed: auto, classification, regression", o.task);
  TRAINDX_CHECK(o.val_fraction >= 0 && o.val_fraction < 1, ConfigError, "data.val_fraction must be in [0, 1), got {}",
                o.val_fraction);
  TRAINDX_CHECK(o.test_fraction >= 0 && o.test_fraction < 1, ConfigError,
                "data.test_fraction must be in [0, 1), got {}", o.test_fraction);
  TRAINDX_CHECK(o.max_train >= 0 && o.max_test >= 0, ConfigError,
                "data.max_train and data.max_test must be >= 0 (0 = all), got {} and {}", o.max_train, o.max_test);
  if (o.source != "csv") {
    // Silently ignoring these would train on something other than what the config says.
    const char* stray = !o.test_path.empty()      ? "data.test_path"
                        : !o.target.empty()       ? "data.target"
                        : !o.drop_columns.empty() ? "data.drop_columns"
                        : !o.categorical.empty()  ? "data.categorical"
                                                  : nullptr;
    TRAINDX_CHECK(stray == nullptr, ConfigError, "{} only applies to data.source = \"csv\" (the source is \"{}\")",
                  stray ? stray : "", o.source);
  }
}

}  // namespace

// ---- SplitMix64 ----------------------------------------------------------------------------------------------

uint64_t SplitMix64::next() {
  // Steele, Lea & Flood (2014), constants as in Vigna's reference splitmix64.c.
  uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

uint64_t SplitMix64::below(uint64_t bound) {
  TRAINDX_ASSERT(bound > 0, "SplitMix64::below needs a positive bound");
  // Rejection keeps the draw unbiased: values under 2^64 mod bound would favour small results.
  const uint64_t threshold = (0 - bound) % bound;
  for (;;) {
    const uint64_t r = next();
    if (r >= threshold) return r % bound;
  }
}

// ---- Table / RawData -----------------------------------------------------------------------------------------

Table Table::select_rows(const std::vector<int64_t>& indices) const {
  Table out;
  out.rows = static_cast<int64_t>(indices.size());
  out.target_names = target_names;
  for (int64_t i : indices) {
    TRAINDX_CHECK(i >= 0 && i < rows, DataError, "row index {} out of range for a table of {} rows", i, rows);
  }
  if (!lines.empty()) {
    for (int64_t i : indices) out.lines.push_back(lines[static_cast<size_t>(i)]);
  }
  out.columns.reserve(columns.size());
  for (const auto& col : columns) {
    Column c;
    c.name = col.name;
    c.categorical = col.categorical;
    if (col.categorical) {
      c.text.reserve(indices.size());
      for (int64_t i : indices) c.text.push_back(col.text[static_cast<size_t>(i)]);
    } else {
      c.numbers.reserve(indices.size());
      for (int64_t i : indices) c.numbers.push_back(col.numbers[static_cast<size_t>(i)]);
    }
    out.columns.push_back(std::move(c));
  }
  return out;
}

int64_t RawData::size() const { return is_image() ? images.size(0) : table.rows; }

RawData RawData::select(const std::vector<int64_t>& indices) const {
  const int64_t n = size();
  for (int64_t i : indices) {
    TRAINDX_CHECK(i >= 0 && i < n, DataError, "example index {} out of range for {} examples", i, n);
  }
  RawData out;
  const torch::Tensor index =
      torch::from_blob(const_cast<int64_t*>(indices.data()), {static_cast<int64_t>(indices.size())}, torch::kLong)
          .clone();
  if (is_image()) {
    out.images = images.index_select(0, index);
  } else {
    out.table = table.select_rows(indices);
  }
  if (targets.defined()) out.targets = targets.index_select(0, index);
  return out;
}

// ---- load_raw_splits -----------------------------------------------------------------------------------------

RawSplits load_raw_splits(const DataOptions& options) {
  validate(options);
  RawSplits splits;
  RawData pool, test;
  splits.info.source = options.source;
  if (options.source == "csv") {
    load_table(options, pool, test, splits.info);
  } else {
    load_images(options, pool, test, splits.info);
  }
  const bool classify = splits.info.task == Task::Classification;

  // max_train before the validation split, so a small max_train keeps every later step small.
  pool = truncate(pool, options.max_train, stream_seed(options.seed, Stream::MaxTrain));
  test = truncate(test, options.max_test, stream_seed(options.seed, Stream::MaxTest));

  const std::vector<int64_t> classes = classify ? class_vector(pool) : std::vector<int64_t>{};
  const HoldOut val = hold_out(pool.size(), options.val_fraction, options.stratify && classify ? &classes : nullptr,
                               stream_seed(options.seed, Stream::Val));
  TRAINDX_CHECK(!val.kept.empty(), DataError,
                "no training examples left: {} examples before the validation split (data.val_fraction = {}, "
                "data.test_fraction = {}, data.max_train = {})",
                pool.size(), options.val_fraction, options.test_fraction, options.max_train);
  splits.train = pool.select(val.kept);
  splits.val = pool.select(val.held);
  if (options.shuffle_labels && splits.train.targets.defined()) {
    // A permutation keeps the class frequencies, so only the link between inputs and labels is destroyed.
    std::vector<int64_t> order = iota(splits.train.size());
    SplitMix64 rng(stream_seed(options.seed, Stream::ShuffleLabels));
    shuffle(order, rng);
    splits.train.targets = splits.train.targets.index_select(
        0, torch::from_blob(order.data(), {static_cast<int64_t>(order.size())}, torch::kLong).clone());
  }
  splits.test = std::move(test);
  return splits;
}

}  // namespace traindx
