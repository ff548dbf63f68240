#include "traindx/monitor/finding.h"

#include <algorithm>
#include <functional>
#include <map>
#include <set>

#include "traindx/core/error.h"
#include "traindx/monitor/causes.h"

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

Json FindingFix::to_json() const {
  return {{"set", set}, {"source", source}, {"status", status}, {"before", before}, {"after", after}};
}

FindingFix FindingFix::from_json(const Json& d) {
  FindingFix f;
  if (!d.is_object()) return f;
  f.set = d.value("set", Json::object());
  f.source = d.value("source", std::string());
  f.status = d.value("status", std::string("suggested"));
  f.before = d.value("before", Json::object());
  f.after = d.value("after", Json::object());
  return f;
}

Json Finding::to_json() const {
  Json out = {{"rule", rule},       {"severity", severity_name(severity)},
              {"step", step},       {"last_step", last_step},
              {"count", count},     {"layer", layer},
              {"message", message}, {"evidence", evidence},
              {"causes", causes},   {"fixes", fixes}};
  if (!fix.empty() || !fix.source.empty()) out["fix"] = fix.to_json();
  if (!caused_by.empty()) out["caused_by"] = caused_by;
  return out;
}

std::string finding_key(const Finding& f) { return f.layer.empty() ? f.rule : f.rule + "@" + f.layer; }

std::vector<Finding> rank_with_causes(std::vector<Finding> findings) {
  std::set<std::string> keys;
  for (const auto& f : findings) keys.insert(finding_key(f));
  std::map<std::string, std::vector<size_t>> children;
  std::vector<size_t> roots;
  for (size_t i = 0; i < findings.size(); ++i) {
    Finding& f = findings[i];
    if (f.caused_by == finding_key(f) || !keys.count(f.caused_by)) f.caused_by.clear();
    if (f.caused_by.empty())
      roots.push_back(i);
    else
      children[f.caused_by].push_back(i);
  }
  std::stable_sort(roots.begin(), roots.end(),
                   [&](size_t a, size_t b) { return findings[a].severity > findings[b].severity; });
  std::vector<Finding> out;
  std::vector<bool> placed(findings.size(), false);
  std::function<void(size_t)> place = [&](size_t i) {
    if (placed[i]) return;
    placed[i] = true;
    out.push_back(findings[i]);
    const auto it = children.find(finding_key(findings[i]));
    if (it == children.end()) return;
    std::vector<size_t> kids = it->second;
    std::stable_sort(kids.begin(), kids.end(),
                     [&](size_t a, size_t b) { return findings[a].severity > findings[b].severity; });
    for (size_t k : kids) place(k);
  };
  for (size_t r : roots) place(r);
  // A cycle of caused_by links has no root: its findings become roots, in their given order.
  for (size_t i = 0; i < findings.size(); ++i)
    if (!placed[i]) {
      findings[i].caused_by.clear();
      place(i);
    }
  return out;
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
  f.fix = FindingFix::from_json(d.value("fix", Json()));
  f.caused_by = d.value("caused_by", std::string());
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
  link_known_causes(out);
  return rank_with_causes(std::move(out));
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
