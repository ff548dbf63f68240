// The preprocessing pipeline. Its whole fitted state lives in one versioned JSON document, and transform() reads
// only that document, so a pipeline rebuilt by from_json() replays the transform bit for bit. Every statistic is
// accumulated in double by plain loops in a fixed order (never by LibTorch reductions, whose summation order
// depends on the thread count).
#include <algorithm>
#include <cmath>
#include <set>

#include "traindx/core/error.h"
#include "traindx/data/data.h"

namespace traindx {
namespace {

constexpr int kStateVersion = 1;
// A scale below this is a constant feature: dividing by it would blow noise up to huge values.
constexpr double kMinScale = 1e-12;
// One-hot columns beyond this are almost surely an id or free-text column that should be dropped.
constexpr size_t kMaxCategories = 1000;

struct ImageState {
  std::vector<int64_t> shape;  // C, H, W
  bool normalize = false;
  std::vector<double> shift, scale;  // per channel: (x - shift) / scale
};

struct ColumnState {
  std::string name;
  bool categorical = false;
  double fill = 0, shift = 0, scale = 1;
  std::vector<std::string> categories;  // sorted
};

struct TableState {
  bool normalize = false;
  std::vector<ColumnState> columns;
  int64_t features() const {
    int64_t f = 0;
    for (const auto& c : columns) f += c.categorical ? static_cast<int64_t>(c.categories.size()) : 1;
    return f;
  }
};

void validate_options(const DataOptions& o) {
  TRAINDX_CHECK(o.scaler == "standardize" || o.scaler == "minmax", ConfigError,
                "data.scaler: unknown value '{}'; allowed: standardize, minmax", o.scaler);
  TRAINDX_CHECK(o.impute == "mean" || o.impute == "median" || o.impute == "zero", ConfigError,
                "data.impute: unknown value '{}'; allowed: mean, median, zero", o.impute);
}

// Shift and scale of a set of values: standardize -> mean and population std, minmax -> min and range.
std::pair<double, double> fit_scaler(const std::vector<double>& values, const std::string& scaler) {
  if (values.empty()) return {0.0, 1.0};
  double shift = 0, scale = 1;
  if (scaler == "standardize") {
    double sum = 0;
    for (double v : values) sum += v;
    shift = sum / static_cast<double>(values.size());
    double sq = 0;
    for (double v : values) sq += (v - shift) * (v - shift);
    scale = std::sqrt(sq / static_cast<double>(values.size()));
  } else {
    const auto [lo, hi] = std::minmax_element(values.begin(), values.end());
    shift = *lo;
    scale = *hi - *lo;
  }
  if (!(scale >= kMinScale)) scale = 1;
  return {shift, scale};
}

// ---- images --------------------------------------------------------------------------------------------------

Json fit_images(const torch::Tensor& images, const DataOptions& options) {
  TRAINDX_CHECK(images.dim() == 4, DataError, "images must be [N, C, H, W]; got {} dimensions", images.dim());
  const int64_t n = images.size(0), channels = images.size(1), plane = images.size(2) * images.size(3);
  Json doc = {{"version", kStateVersion},
              {"kind", "image"},
              {"shape", {channels, images.size(2), images.size(3)}},
              {"normalize", options.normalize},
              {"scaler", options.scaler},
              {"shift", Json::array()},
              {"scale", Json::array()}};
  if (!options.normalize) return doc;

  const double count = static_cast<double>(n) * static_cast<double>(plane);
  for (int64_t c = 0; c < channels; ++c) {
    double shift = 0, scale = 1;
    if (images.scalar_type() == torch::kUInt8) {
      // A histogram makes byte images exact and fast: 256 bins per channel, summed in bin order.
      const torch::Tensor x = images.contiguous();
      const uint8_t* p = x.data_ptr<uint8_t>();
      std::vector<uint64_t> hist(256, 0);
      for (int64_t i = 0; i < n; ++i) {
        const uint8_t* q = p + (i * channels + c) * plane;
        for (int64_t k = 0; k < plane; ++k) ++hist[q[k]];
      }
      if (options.scaler == "standardize") {
        double sum = 0;
        for (int v = 0; v < 256; ++v) sum += static_cast<double>(hist[v]) * v;
        shift = sum / count;
        double sq = 0;
        for (int v = 0; v < 256; ++v) sq += static_cast<double>(hist[v]) * (v - shift) * (v - shift);
        scale = std::sqrt(sq / count);
      } else {
        int lo = 0, hi = 255;
        while (lo < 255 && hist[lo] == 0) ++lo;
        while (hi > 0 && hist[hi] == 0) --hi;
        shift = lo;
        scale = hi - lo;
      }
      if (!(scale >= kMinScale)) scale = 1;
    } else {
      const torch::Tensor x = images.select(1, c).to(torch::kFloat64).contiguous();
      const double* p = x.data_ptr<double>();
      std::vector<double> values(p, p + x.numel());
      for (size_t i = 0; i < values.size(); ++i) {
        TRAINDX_CHECK(std::isfinite(values[i]), DataError, "training image {} holds a non-finite value in channel {}",
                      static_cast<int64_t>(i) / plane, c);
      }
      std::tie(shift, scale) = fit_scaler(values, options.scaler);
    }
    doc["shift"].push_back(shift);
    doc["scale"].push_back(scale);
  }
  return doc;
}

// ---- tables --------------------------------------------------------------------------------------------------

Json fit_table(const Table& table, const DataOptions& options) {
  Json columns = Json::array();
  for (const auto& col : table.columns) {
    if (col.categorical) {
      TRAINDX_CHECK(col.text.size() == static_cast<size_t>(table.rows), DataError,
                    "column '{}' has {} cells but the table has {} rows", col.name, col.text.size(), table.rows);
      std::set<std::string> seen;
      for (const auto& t : col.text) {
        if (!t.empty()) seen.insert(t);
      }
      TRAINDX_CHECK(seen.size() <= kMaxCategories, DataError,
                    "column '{}' has {} distinct categories; one-hot encoding allows at most {} (an id or free-text "
                    "column? list it in data.drop_columns)",
                    col.name, seen.size(), kMaxCategories);
      columns.push_back({{"name", col.name}, {"kind", "categorical"}, {"categories", seen}});
      continue;
    }
    TRAINDX_CHECK(col.numbers.size() == static_cast<size_t>(table.rows), DataError,
                  "column '{}' has {} cells but the table has {} rows", col.name, col.numbers.size(), table.rows);
    std::vector<double> present;
    for (size_t r = 0; r < col.numbers.size(); ++r) {
      const double v = col.numbers[r];
      if (std::isnan(v)) continue;
      TRAINDX_CHECK(std::isfinite(v), DataError, "column '{}', row {}: {} is not a finite number", col.name, r, v);
      present.push_back(v);
    }
    double fill = 0;  // also the fill of a column with no value at all: there is nothing better to say
    if (!present.empty() && options.impute == "mean") {
      double sum = 0;
      for (double v : present) sum += v;
      fill = sum / static_cast<double>(present.size());
    } else if (!present.empty() && options.impute == "median") {
      std::vector<double> sorted = present;
      std::sort(sorted.begin(), sorted.end());
      const size_t m = sorted.size() / 2;
      fill = sorted.size() % 2 == 1 ? sorted[m] : (sorted[m - 1] + sorted[m]) / 2;
    }
    double shift = 0, scale = 1;
    if (options.normalize) {
      // Fitted after imputation: the scaler sees exactly the values transform() will produce.
      std::vector<double> imputed = col.numbers;
      for (double& v : imputed) {
        if (std::isnan(v)) v = fill;
      }
      std::tie(shift, scale) = fit_scaler(imputed, options.scaler);
    }
    columns.push_back({{"name", col.name}, {"kind", "numeric"}, {"fill", fill}, {"shift", shift}, {"scale", scale}});
  }
  return Json{{"version", kStateVersion}, {"kind", "table"},        {"normalize", options.normalize},
              {"scaler", options.scaler},   {"impute", options.impute}, {"columns", columns}};
}

// ---- reading the state back ----------------------------------------------------------------------------------

void check_doc(bool ok, const std::string& what) {
  TRAINDX_CHECK(ok, DataError, "malformed pipeline document: {}", what);
}

double finite_number(const Json& j, const std::string& what) {
  check_doc(j.is_number(), what + " must be a number");
  const double v = j.get<double>();
  check_doc(std::isfinite(v), what + " must be finite");
  return v;
}

ImageState parse_image(const Json& doc) {
  ImageState s;
  check_doc(doc.contains("shape") && doc["shape"].is_array() && doc["shape"].size() == 3, "'shape' must be [C, H, W]");
  for (const auto& d : doc["shape"]) {
    check_doc(d.is_number_integer() && d.get<int64_t>() > 0, "'shape' entries must be positive integers");
    s.shape.push_back(d.get<int64_t>());
  }
  check_doc(doc.contains("normalize") && doc["normalize"].is_boolean(), "'normalize' must be true or false");
  s.normalize = doc["normalize"].get<bool>();
  if (s.normalize) {
    for (const char* key : {"shift", "scale"}) {
      check_doc(doc.contains(key) && doc[key].is_array() && static_cast<int64_t>(doc[key].size()) == s.shape[0],
                fmt::format("'{}' must hold one number per channel", key));
    }
    for (size_t c = 0; c < doc["shift"].size(); ++c) {
      s.shift.push_back(finite_number(doc["shift"][c], "'shift' entries"));
      s.scale.push_back(finite_number(doc["scale"][c], "'scale' entries"));
      check_doc(s.scale.back() != 0, "'scale' entries must not be zero");
    }
  }
  return s;
}

TableState parse_table(const Json& doc) {
  TableState s;
  check_doc(doc.contains("normalize") && doc["normalize"].is_boolean(), "'normalize' must be true or false");
  s.normalize = doc["normalize"].get<bool>();
  check_doc(doc.contains("columns") && doc["columns"].is_array(), "'columns' must be an array");
  std::set<std::string> names;
  for (const auto& c : doc["columns"]) {
    ColumnState col;
    check_doc(c.is_object() && c.contains("name") && c["name"].is_string(), "every column needs a string 'name'");
    col.name = c["name"].get<std::string>();
    check_doc(names.insert(col.name).second, "column '" + col.name + "' appears twice");
    check_doc(c.contains("kind") && c["kind"].is_string(), "column '" + col.name + "' needs a 'kind'");
    const std::string kind = c["kind"].get<std::string>();
    if (kind == "categorical") {
      col.categorical = true;
      check_doc(c.contains("categories") && c["categories"].is_array(),
                "column '" + col.name + "' needs a 'categories' array");
      for (const auto& cat : c["categories"]) {
        check_doc(cat.is_string() && !cat.get<std::string>().empty(),
                  "categories of '" + col.name + "' must be non-empty strings");
        col.categories.push_back(cat.get<std::string>());
      }
      check_doc(std::is_sorted(col.categories.begin(), col.categories.end()) &&
                    std::adjacent_find(col.categories.begin(), col.categories.end()) == col.categories.end(),
                "categories of '" + col.name + "' must be sorted and distinct");
    } else {
      check_doc(kind == "numeric", "column '" + col.name + "' has unknown kind '" + kind + "'");
      for (const char* key : {"fill", "shift", "scale"}) {
        check_doc(c.contains(key), "column '" + col.name + "' needs '" + key + "'");
      }
      col.fill = finite_number(c["fill"], "'fill' of '" + col.name + "'");
      col.shift = finite_number(c["shift"], "'shift' of '" + col.name + "'");
      col.scale = finite_number(c["scale"], "'scale' of '" + col.name + "'");
      check_doc(col.scale != 0, "'scale' of '" + col.name + "' must not be zero");
    }
    s.columns.push_back(std::move(col));
  }
  return s;
}

std::string kind_of(const Json& state) {
  TRAINDX_CHECK(!state.is_null(), DataError, "the preprocessing pipeline is not fitted; call Pipeline::fit first");
  check_doc(state.is_object(), "expected a JSON object");
  check_doc(state.contains("version") && state["version"].is_number_integer(), "'version' must be an integer");
  const int64_t version = state["version"].get<int64_t>();
  TRAINDX_CHECK(version == kStateVersion, DataError,
                "pipeline document version {} is not supported (this traindx reads version {})", version,
                kStateVersion);
  check_doc(state.contains("kind") && state["kind"].is_string(), "'kind' must be \"image\" or \"table\"");
  const std::string kind = state["kind"].get<std::string>();
  check_doc(kind == "image" || kind == "table", "'kind' must be \"image\" or \"table\", got \"" + kind + "\"");
  return kind;
}

torch::Tensor transform_images(const ImageState& s, const RawData& raw) {
  TRAINDX_CHECK(raw.is_image(), DataError,
                "the pipeline was fitted on images shaped {} but was given a table", fmt::join(s.shape, "x"));
  const torch::Tensor& x = raw.images;
  TRAINDX_CHECK(x.dim() == 4 && x.sizes().slice(1) == torch::IntArrayRef(s.shape), DataError,
                "image shape [{}] differs from the shape the pipeline was fitted on, [N, {}]",
                fmt::join(x.sizes(), ", "), fmt::join(s.shape, ", "));
  // copy = true: never hand back (and then modify) the caller's own float tensor.
  torch::Tensor out = x.to(torch::kFloat32, /*non_blocking=*/false, /*copy=*/true).contiguous();
  if (s.normalize) {
    const int64_t channels = s.shape[0];
    torch::Tensor shift = torch::empty({1, channels, 1, 1}, torch::kFloat32);
    torch::Tensor scale = torch::empty({1, channels, 1, 1}, torch::kFloat32);
    for (int64_t c = 0; c < channels; ++c) {
      shift.data_ptr<float>()[c] = static_cast<float>(s.shift[static_cast<size_t>(c)]);
      scale.data_ptr<float>()[c] = static_cast<float>(s.scale[static_cast<size_t>(c)]);
    }
    out.sub_(shift).div_(scale);
  }
  return out;
}

torch::Tensor transform_table(const TableState& s, const RawData& raw) {
  TRAINDX_CHECK(!raw.is_image(), DataError, "the pipeline was fitted on a table but was given images");
  const Table& t = raw.table;
  TRAINDX_CHECK(t.columns.size() == s.columns.size(), DataError,
                "the table has {} columns but the pipeline was fitted on {}", t.columns.size(), s.columns.size());
  const int64_t n = t.rows, features = s.features();
  torch::Tensor out = torch::zeros({n, features}, torch::kFloat32);
  float* o = out.data_ptr<float>();
  int64_t offset = 0;
  for (size_t j = 0; j < s.columns.size(); ++j) {
    const ColumnState& cs = s.columns[j];
    const Column& col = t.columns[j];
    TRAINDX_CHECK(col.name == cs.name, DataError, "column {} is '{}' but the pipeline was fitted with '{}' there",
                  j + 1, col.name, cs.name);
    const size_t cells = col.categorical ? col.text.size() : col.numbers.size();
    TRAINDX_CHECK(cells == static_cast<size_t>(n), DataError, "column '{}' has {} cells but the table has {} rows",
                  col.name, cells, n);
    if (cs.categorical) {
      for (int64_t r = 0; r < n; ++r) {
        // A categorical column read from a new file may look numeric; compare by the loader's canonical text.
        const std::string value =
            col.categorical ? col.text[static_cast<size_t>(r)] : number_to_text(col.numbers[static_cast<size_t>(r)]);
        const auto it = std::lower_bound(cs.categories.begin(), cs.categories.end(), value);
        if (!value.empty() && it != cs.categories.end() && *it == value) {
          o[r * features + offset + (it - cs.categories.begin())] = 1.0f;
        }
      }
      offset += static_cast<int64_t>(cs.categories.size());
      continue;
    }
    if (col.categorical) {
      for (int64_t r = 0; r < n; ++r) {
        TRAINDX_CHECK(col.text[static_cast<size_t>(r)].empty(), DataError,
                      "column '{}' was numeric when the pipeline was fitted but row {} holds text '{}'", col.name, r,
                      col.text[static_cast<size_t>(r)]);
      }
    }
    for (int64_t r = 0; r < n; ++r) {
      double v = col.categorical ? std::nan("") : col.numbers[static_cast<size_t>(r)];
      if (std::isnan(v)) v = cs.fill;
      TRAINDX_CHECK(std::isfinite(v), DataError, "column '{}', row {}: {} is not a finite number", col.name, r, v);
      o[r * features + offset] = static_cast<float>((v - cs.shift) / cs.scale);
    }
    offset += 1;
  }
  return out;
}

}  // namespace

Pipeline Pipeline::fit(const RawData& train, const DataOptions& options) {
  validate_options(options);
  TRAINDX_CHECK(train.size() > 0, DataError, "cannot fit the preprocessing pipeline on an empty training split");
  Pipeline p;
  p.state_ = train.is_image() ? fit_images(train.images, options) : fit_table(train.table, options);
  return p;
}

torch::Tensor Pipeline::transform(const RawData& raw) const {
  if (kind_of(state_) == "image") return transform_images(parse_image(state_), raw);
  return transform_table(parse_table(state_), raw);
}

std::vector<int64_t> Pipeline::output_shape() const {
  if (kind_of(state_) == "image") return parse_image(state_).shape;
  return {parse_table(state_).features()};
}

std::vector<std::string> Pipeline::feature_names() const {
  if (state_.is_null() || kind_of(state_) == "image") return {};
  std::vector<std::string> names;
  for (const auto& c : parse_table(state_).columns) {
    if (!c.categorical) {
      names.push_back(c.name);
      continue;
    }
    for (const auto& cat : c.categories) names.push_back(c.name + "=" + cat);
  }
  return names;
}

Json Pipeline::to_json() const { return state_; }

Pipeline Pipeline::from_json(const Json& doc) {
  try {
    // Parse once here so that a bad document fails at load time, not at the first transform.
    if (kind_of(doc) == "image") {
      parse_image(doc);
    } else {
      parse_table(doc);
    }
  } catch (const Json::exception& e) {
    TRAINDX_FAIL(DataError, "malformed pipeline document: {}", e.what());
  }
  Pipeline p;
  p.state_ = doc;
  return p;
}

PreparedData prepare_data(const DataOptions& options) {
  PreparedData out;
  out.raw = load_raw_splits(options);
  out.pipeline = Pipeline::fit(out.raw.train, options);
  out.train_x = out.pipeline.transform(out.raw.train);
  out.val_x = out.pipeline.transform(out.raw.val);
  out.test_x = out.pipeline.transform(out.raw.test);
  out.train_y = out.raw.train.targets;
  out.val_y = out.raw.val.targets;
  out.test_y = out.raw.test.targets;
  out.info = out.raw.info;
  out.info.input_shape = out.pipeline.output_shape();
  out.info.feature_names = out.pipeline.feature_names();
  return out;
}

}  // namespace traindx
