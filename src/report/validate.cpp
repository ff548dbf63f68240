// validate_report: the schema of docs/report.md, checked field by field so that a malformed report fails here,
// naming the field, instead of in a renderer or, worse, in a browser.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <initializer_list>
#include <string>

#include "traindx/core/error.h"
#include "traindx/report/report.h"

namespace traindx {
namespace {

const char* type_name(const Json& v) {
  if (v.is_number()) return "a number";
  return v.type_name();
}

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  TRAINDX_FAIL(InternalError, "invalid report: {} {}", path, what);
}

const Json& field(const Json& object, const std::string& path, const char* key) {
  const auto it = object.find(key);
  if (it == object.end()) fail(path, fmt::format("has no field '{}'", key));
  return *it;
}

std::string at(const std::string& path, const char* key) { return path + "." + key; }
std::string at(const std::string& path, size_t index) { return fmt::format("{}[{}]", path, index); }

void expect_object(const Json& v, const std::string& path) {
  if (!v.is_object()) fail(path, fmt::format("must be an object, not {}", type_name(v)));
}
void expect_array(const Json& v, const std::string& path) {
  if (!v.is_array()) fail(path, fmt::format("must be an array, not {}", type_name(v)));
}
void expect_string(const Json& v, const std::string& path) {
  if (!v.is_string()) fail(path, fmt::format("must be a string, not {}", type_name(v)));
}
void expect_integer(const Json& v, const std::string& path) {
  if (!v.is_number_integer()) fail(path, fmt::format("must be an integer, not {}", type_name(v)));
}
void expect_bool(const Json& v, const std::string& path) {
  if (!v.is_boolean()) fail(path, fmt::format("must be true or false, not {}", type_name(v)));
}
// Non-finite numbers are stored as null (JSON has no NaN), so every measured value may be null.
void expect_number_or_null(const Json& v, const std::string& path) {
  if (!v.is_number() && !v.is_null()) fail(path, fmt::format("must be a number or null, not {}", type_name(v)));
}
void expect_one_of(const Json& v, const std::string& path, std::initializer_list<const char*> allowed) {
  expect_string(v, path);
  const auto s = v.get<std::string>();
  if (std::none_of(allowed.begin(), allowed.end(), [&](const char* a) { return s == a; })) {
    fail(path, fmt::format("is '{}', not one of {}", s, fmt::join(allowed, ", ")));
  }
}

const Json& required_string(const Json& object, const std::string& path, const char* key) {
  const Json& v = field(object, path, key);
  expect_string(v, at(path, key));
  return v;
}

enum class Element { Number, Integer, String };

// An array of `element` (numbers may be null); with `same_length_as`, exactly as long as that array.
const Json& array_of(const Json& object, const std::string& path, const char* key, Element element,
                     const Json* same_length_as = nullptr, const char* other_key = nullptr) {
  const std::string p = at(path, key);
  const Json& v = field(object, path, key);
  expect_array(v, p);
  for (size_t i = 0; i < v.size(); ++i) {
    switch (element) {
      case Element::Number: expect_number_or_null(v[i], at(p, i)); break;
      case Element::Integer: expect_integer(v[i], at(p, i)); break;
      case Element::String: expect_string(v[i], at(p, i)); break;
    }
  }
  if (same_length_as && v.size() != same_length_as->size()) {
    fail(p, fmt::format("has {} elements but {} has {}", v.size(), at(path, other_key), same_length_as->size()));
  }
  return v;
}

// Optional arrays aligned with another: absent, empty (nothing measured) or of the same length.
void optional_aligned(const Json& object, const std::string& path, const char* key, const Json& reference,
                      const char* reference_key) {
  const auto it = object.find(key);
  if (it == object.end() || (it->is_array() && it->empty())) return;
  array_of(object, path, key, Element::Number, &reference, reference_key);
}

void validate_finding(const Json& f, const std::string& path) {
  expect_object(f, path);
  required_string(f, path, "rule");
  expect_one_of(field(f, path, "severity"), at(path, "severity"), {"info", "warning", "critical"});
  required_string(f, path, "message");
  for (const char* key : {"step", "last_step", "count"}) {
    if (f.contains(key)) expect_integer(f[key], at(path, key));
  }
  if (f.contains("layer")) expect_string(f["layer"], at(path, "layer"));
  if (f.contains("evidence")) expect_object(f["evidence"], at(path, "evidence"));
  for (const char* key : {"causes", "fixes"}) {
    if (f.contains(key)) array_of(f, path, key, Element::String);
  }
  if (f.contains("caused_by")) expect_string(f["caused_by"], at(path, "caused_by"));
  if (f.contains("fix")) {
    const Json& fix = f["fix"];
    const std::string fix_path = at(path, "fix");
    expect_object(fix, fix_path);
    expect_object(field(fix, fix_path, "set"), at(fix_path, "set"));
    expect_one_of(field(fix, fix_path, "status"), at(fix_path, "status"),
                  {"suggested", "verified", "refuted", "inconclusive"});
    if (fix.contains("source")) expect_string(fix["source"], at(fix_path, "source"));
    for (const char* key : {"before", "after"})
      if (fix.contains(key)) expect_object(fix[key], at(fix_path, key));
  }
}

void validate_check(const Json& c, const std::string& path) {
  expect_object(c, path);
  required_string(c, path, "id");
  required_string(c, path, "title");
  expect_one_of(field(c, path, "status"), at(path, "status"), {"pass", "warn", "fail", "skipped"});
  required_string(c, path, "summary");
  if (c.contains("seconds")) expect_number_or_null(c["seconds"], at(path, "seconds"));
  if (c.contains("details")) expect_object(c["details"], at(path, "details"));
}

void validate_loss_curve(const Json& c, const std::string& path) {
  const Json& steps = array_of(c, path, "steps", Element::Integer);
  array_of(c, path, "train_loss", Element::Number, &steps, "steps");
  optional_aligned(c, path, "train_accuracy", steps, "steps");
  if (c.contains("val_steps")) {
    const Json& val_steps = array_of(c, path, "val_steps", Element::Integer);
    optional_aligned(c, path, "val_loss", val_steps, "val_steps");
    optional_aligned(c, path, "val_accuracy", val_steps, "val_steps");
  } else {
    for (const char* key : {"val_loss", "val_accuracy"}) {
      if (c.contains(key) && !(c[key].is_array() && c[key].empty())) fail(at(path, key), "needs val_steps");
    }
  }
}

void validate_lr_sweep(const Json& c, const std::string& path) {
  const Json& lrs = array_of(c, path, "lrs", Element::Number);
  for (size_t i = 0; i < lrs.size(); ++i) {
    if (!lrs[i].is_number() || !(lrs[i].get<double>() > 0)) fail(at(at(path, "lrs"), i), "must be a positive number");
  }
  array_of(c, path, "losses", Element::Number, &lrs, "lrs");
  optional_aligned(c, path, "smoothed", lrs, "lrs");
  if (c.contains("suggestion")) expect_number_or_null(c["suggestion"], at(path, "suggestion"));
  if (c.contains("rule")) expect_string(c["rule"], at(path, "rule"));
  if (c.contains("alternatives")) {
    const std::string p = at(path, "alternatives");
    expect_object(c["alternatives"], p);
    for (const auto& [name, value] : c["alternatives"].items()) expect_number_or_null(value, p + "." + name);
  }
}

void validate_grad_norm_heatmap(const Json& c, const std::string& path) {
  const Json& layers = array_of(c, path, "layers", Element::String);
  const Json& steps = array_of(c, path, "steps", Element::Integer);
  const std::string p = at(path, "values");
  const Json& values = field(c, path, "values");
  expect_array(values, p);
  if (values.size() != layers.size()) {
    fail(p, fmt::format("has {} rows but {} has {} layers", values.size(), at(path, "layers"), layers.size()));
  }
  for (size_t i = 0; i < values.size(); ++i) {
    const std::string row = at(p, i);
    expect_array(values[i], row);
    if (values[i].size() != steps.size()) {
      fail(row, fmt::format("has {} values but {} has {}", values[i].size(), at(path, "steps"), steps.size()));
    }
    for (size_t j = 0; j < values[i].size(); ++j) expect_number_or_null(values[i][j], at(row, j));
  }
}

void validate_activation_stats(const Json& c, const std::string& path) {
  const Json& layers = array_of(c, path, "layers", Element::String);
  array_of(c, path, "mean", Element::Number, &layers, "layers");
  array_of(c, path, "std", Element::Number, &layers, "layers");
  optional_aligned(c, path, "zero_fraction", layers, "layers");
  optional_aligned(c, path, "saturated_fraction", layers, "layers");
}

void validate_confusion_matrix(const Json& c, const std::string& path) {
  const Json& labels = array_of(c, path, "labels", Element::String);
  const std::string p = at(path, "matrix");
  const Json& matrix = field(c, path, "matrix");
  expect_array(matrix, p);
  if (matrix.size() != labels.size()) {
    fail(p, fmt::format("has {} rows but there are {} labels", matrix.size(), labels.size()));
  }
  for (size_t i = 0; i < matrix.size(); ++i) {
    const std::string row = at(p, i);
    expect_array(matrix[i], row);
    if (matrix[i].size() != labels.size()) {
      fail(row, fmt::format("has {} columns but there are {} labels", matrix[i].size(), labels.size()));
    }
    for (size_t j = 0; j < matrix[i].size(); ++j) {
      if (!matrix[i][j].is_number() || matrix[i][j].get<double>() < 0) {
        fail(at(row, j), "must be a count (a number >= 0)");
      }
    }
  }
}

void validate_gradient_check(const Json& c, const std::string& path) {
  const std::string p = at(path, "rows");
  const Json& rows = field(c, path, "rows");
  expect_array(rows, p);
  for (size_t i = 0; i < rows.size(); ++i) {
    const std::string row = at(p, i);
    expect_object(rows[i], row);
    required_string(rows[i], row, "parameter");
    expect_number_or_null(field(rows[i], row, "max_abs_error"), at(row, "max_abs_error"));
    expect_number_or_null(field(rows[i], row, "max_rel_error"), at(row, "max_rel_error"));
    expect_bool(field(rows[i], row, "passed"), at(row, "passed"));
  }
  for (const char* key : {"eps", "atol", "rtol"}) {
    if (c.contains(key)) expect_number_or_null(c[key], at(path, key));
  }
}

void validate_ladder(const Json& c, const std::string& path) {
  const std::string p = at(path, "variants");
  const Json& variants = field(c, path, "variants");
  expect_array(variants, p);
  for (size_t i = 0; i < variants.size(); ++i) {
    const std::string v = at(p, i);
    expect_object(variants[i], v);
    required_string(variants[i], v, "name");
    for (const char* key : {"parameters", "train_accuracy", "val_accuracy"}) {
      expect_number_or_null(field(variants[i], v, key), at(v, key));
    }
  }
}

void validate_charts(const Json& charts, const std::string& path) {
  expect_object(charts, path);
  using Validator = void (*)(const Json&, const std::string&);
  struct Known {
    const char* name;
    Validator validate;
  };
  static const Known known[] = {
      {"loss_curve", validate_loss_curve},
      {"lr_sweep", validate_lr_sweep},
      {"grad_norm_heatmap", validate_grad_norm_heatmap},
      {"activation_stats", validate_activation_stats},
      {"confusion_matrix", validate_confusion_matrix},
      {"gradient_check", validate_gradient_check},
      {"ladder", validate_ladder},
  };
  for (const auto& [name, chart] : charts.items()) {
    const std::string p = path + "." + name;
    const auto* k = std::find_if(std::begin(known), std::end(known), [&](const Known& x) { return name == x.name; });
    // A misspelt chart would silently vanish from the page; the renderers know exactly these.
    if (k == std::end(known)) {
      fail(p, "is not a known chart (loss_curve, lr_sweep, grad_norm_heatmap, activation_stats, "
              "confusion_matrix, gradient_check, ladder)");
    }
    expect_object(chart, p);
    k->validate(chart, p);
  }
}

}  // namespace

void validate_report(const Json& report) {
  const std::string root = "report";
  expect_object(report, root);
  const Json& schema = required_string(report, root, "schema");
  if (schema.get<std::string>() != "traindx-report") {
    fail(at(root, "schema"), fmt::format("is '{}', not 'traindx-report'", schema.get<std::string>()));
  }
  const Json& version = field(report, root, "version");
  expect_integer(version, at(root, "version"));
  if (version.get<int64_t>() != kReportVersion) {
    fail(at(root, "version"), fmt::format("is {}; this traindx reads version {}", version.dump(), kReportVersion));
  }

  const Json& traindx = field(report, root, "traindx");
  expect_object(traindx, at(root, "traindx"));
  required_string(traindx, at(root, "traindx"), "version");
  required_string(traindx, at(root, "traindx"), "commit");
  required_string(report, root, "created_at");
  required_string(report, root, "title");
  if (report.contains("config_toml")) expect_string(report["config_toml"], at(root, "config_toml"));
  if (report.contains("environment")) expect_object(report["environment"], at(root, "environment"));

  const Json& verdict = field(report, root, "verdict");
  expect_object(verdict, at(root, "verdict"));
  expect_one_of(field(verdict, at(root, "verdict"), "status"), at(at(root, "verdict"), "status"),
                {"healthy", "problems", "critical"});
  required_string(verdict, at(root, "verdict"), "summary");

  const Json& findings = field(report, root, "findings");
  expect_array(findings, at(root, "findings"));
  for (size_t i = 0; i < findings.size(); ++i) validate_finding(findings[i], at(at(root, "findings"), i));

  const Json& checks = field(report, root, "checks");
  expect_array(checks, at(root, "checks"));
  for (size_t i = 0; i < checks.size(); ++i) validate_check(checks[i], at(at(root, "checks"), i));

  if (report.contains("charts")) validate_charts(report["charts"], at(root, "charts"));
}

}  // namespace traindx
