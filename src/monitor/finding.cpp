#include "traindx/monitor/finding.h"

#include <algorithm>

#include "traindx/core/error.h"

namespace traindx {

const char* severity_name(Severity s) {
  switch (s) {
    case Severity::Info: return "info";
    case Severity::Warning: return "warning";
    case Severity::Critical: return "critical";
  }
  return "?";
}

Severity parse_severity(const std::string& s) {
  if (s == "info") return Severity::Info;
  if (s == "warning") return Severity::Warning;
  if (s == "critical") return Severity::Critical;
  TRAINDX_FAIL(ConfigError, "severity '{}' is not one of info, warning, critical", s);
}

Json Finding::to_json() const {
  return {{"rule", rule},       {"severity", severity_name(severity)},
          {"step", step},       {"last_step", last_step},
          {"count", count},     {"layer", layer},
          {"message", message}, {"evidence", evidence},
          {"causes", causes},   {"fixes", fixes}};
}

Finding make_finding(std::string rule, Severity severity, int64_t step, std::string layer, std::string message,
                     Json evidence, std::vector<std::string> causes, std::vector<std::string> fixes) {
  Finding f;
  f.rule = std::move(rule);
  f.severity = severity;
  f.step = step;
  f.last_step = step;
  f.layer = std::move(layer);
  f.message = std::move(message);
  f.evidence = std::move(evidence);
  f.causes = std::move(causes);
  f.fixes = std::move(fixes);
  return f;
}

Finding Finding::from_json(const Json& d) {
  Finding f;
  f.rule = d.at("rule").get<std::string>();
  f.severity = parse_severity(d.at("severity").get<std::string>());
  f.step = d.value("step", int64_t{-1});
  f.last_step = d.value("last_step", f.step);
  f.count = d.value("count", int64_t{1});
  f.layer = d.value("layer", std::string());
  f.message = d.value("message", std::string());
  f.evidence = d.value("evidence", Json::object());
  f.causes = d.value("causes", std::vector<std::string>{});
  f.fixes = d.value("fixes", std::vector<std::string>{});
  return f;
}

bool FindingSet::add(const Finding& f) {
  const auto key = std::make_pair(f.rule, f.layer);
  auto it = by_key_.find(key);
  if (it == by_key_.end()) {
    Finding first = f;
    if (first.last_step < first.step) first.last_step = first.step;
    by_key_.emplace(key, std::move(first));
    return true;
  }
  Finding& known = it->second;
  const bool rose = f.severity > known.severity;
  known.count += f.count;
  known.last_step = std::max({known.last_step, f.step, f.last_step});
  if (f.step >= 0 && (known.step < 0 || f.step < known.step)) known.step = f.step;
  // The newest numbers describe the problem best; the first step says when it began.
  known.message = f.message;
  known.evidence = f.evidence;
  if (rose) {
    known.severity = f.severity;
    known.causes = f.causes;
    known.fixes = f.fixes;
  }
  return rose;
}

std::vector<Finding> FindingSet::ranked() const {
  std::vector<Finding> out;
  out.reserve(by_key_.size());
  for (const auto& [key, f] : by_key_) out.push_back(f);
  std::stable_sort(out.begin(), out.end(), [](const Finding& a, const Finding& b) {
    if (a.severity != b.severity) return a.severity > b.severity;
    return a.step < b.step;
  });
  return out;
}

bool FindingSet::has_critical() const {
  return std::any_of(by_key_.begin(), by_key_.end(),
                     [](const auto& kv) { return kv.second.severity == Severity::Critical; });
}

Json FindingSet::to_json() const {
  Json out = Json::array();
  for (const auto& f : ranked()) out.push_back(f.to_json());
  return out;
}

}  // namespace traindx
