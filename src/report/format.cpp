#include "report/format.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>

namespace traindx::report_detail {

std::string format_number(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  // Counts and step numbers stored as doubles read better in full than as 6e+04.
  if (v == std::trunc(v) && std::fabs(v) < 1e15) return fmt::format("{}", static_cast<long long>(v));
  return fmt::format("{:.4g}", v);
}

namespace {

std::string format_nested(const Json& v) {
  if (v.is_string()) return v.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (v.is_array()) {
    std::string out = "[";
    for (size_t i = 0; i < v.size(); ++i) {
      if (i) out += ", ";
      out += format_nested(v[i]);
    }
    return out + "]";
  }
  if (v.is_object()) {
    std::string out = "{";
    bool first = true;
    for (const auto& [key, value] : v.items()) {
      if (!first) out += ", ";
      first = false;
      out += key + ": " + format_nested(value);
    }
    return out + "}";
  }
  return format_value(v);
}

}  // namespace

std::string format_value(const Json& v) {
  if (v.is_number_integer()) return fmt::format("{}", v.get<int64_t>());
  if (v.is_number_unsigned()) return fmt::format("{}", v.get<uint64_t>());
  if (v.is_number_float()) return format_number(v.get<double>());
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  if (v.is_null()) return "null";
  if (v.is_string()) return v.get<std::string>();
  return format_nested(v);
}

int severity_rank(const std::string& severity) {
  if (severity == "critical") return 2;
  if (severity == "warning") return 1;
  return 0;
}

std::vector<const Json*> ranked_findings(const Json& report) {
  std::vector<const Json*> out;
  for (const auto& f : report.at("findings")) out.push_back(&f);
  // The doctor ranks already; sorting again keeps "critical first" true for any report handed to us.
  std::stable_sort(out.begin(), out.end(), [](const Json* a, const Json* b) {
    return severity_rank(a->at("severity").get<std::string>()) > severity_rank(b->at("severity").get<std::string>());
  });
  return out;
}

std::array<int, 3> count_findings(const Json& report) {
  std::array<int, 3> counts{0, 0, 0};
  for (const auto& f : report.at("findings")) {
    const int rank = severity_rank(f.at("severity").get<std::string>());
    ++counts[static_cast<size_t>(2 - rank)];
  }
  return counts;
}

std::string finding_when(const Json& finding) {
  if (!finding.contains("step")) return "";
  const int64_t step = finding.value("step", int64_t{-1});
  const int64_t last = std::max(step, finding.value("last_step", step));
  const int64_t count = finding.value("count", int64_t{1});
  if (step < 0) return "before training";
  std::string out = last > step ? fmt::format("steps {}-{}", step, last) : fmt::format("step {}", step);
  if (count > 1) out += fmt::format(", {} times", count);
  return out;
}

std::array<int, 4> count_checks(const Json& report) {
  std::array<int, 4> counts{0, 0, 0, 0};
  for (const auto& c : report.at("checks")) {
    const auto status = c.at("status").get<std::string>();
    if (status == "pass") ++counts[0];
    if (status == "warn") ++counts[1];
    if (status == "fail") ++counts[2];
    if (status == "skipped") ++counts[3];
  }
  return counts;
}

std::string findings_tally(const Json& report) {
  const auto counts = count_findings(report);
  std::vector<std::string> parts;
  if (counts[0]) parts.push_back(fmt::format("{} critical", counts[0]));
  if (counts[1]) parts.push_back(fmt::format("{} warning{}", counts[1], counts[1] == 1 ? "" : "s"));
  if (counts[2]) parts.push_back(fmt::format("{} info", counts[2]));
  return parts.empty() ? "none" : fmt::format("{}", fmt::join(parts, ", "));
}

bool is_finite_number(const Json& v) { return v.is_number() && std::isfinite(v.get<double>()); }

bool has_finite(const Json& object, const char* key) {
  const auto it = object.find(key);
  if (it == object.end() || !it->is_array()) return false;
  return std::any_of(it->begin(), it->end(), is_finite_number);
}

}  // namespace traindx::report_detail
