#pragma once
/// Findings are data: what was seen (the numbers), where (step, layer), the likely causes and what to try.
/// Detectors produce them; the console, JSON and HTML reporters render them; the store keeps them.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "traindx/core/config.h"

namespace traindx {

enum class Severity { Info = 0, Warning = 1, Critical = 2 };

const char* severity_name(Severity s);
/// Parses "info", "warning", "critical". Throws ConfigError otherwise.
Severity parse_severity(const std::string& s);

/// One diagnosis. Serialised as the findings.json object:
/// {rule, severity, step, last_step, count, layer, message, evidence, causes, fixes}.
struct Finding {
  std::string rule;        ///< stable id, e.g. "exploding_gradient"
  Severity severity = Severity::Warning;
  int64_t step = -1;       ///< first step it was seen (-1: before training)
  int64_t last_step = -1;  ///< last step it was seen
  int64_t count = 1;       ///< how many times it was seen
  std::string layer;       ///< layer or parameter name; empty when it concerns the whole run
  std::string message;     ///< one sentence with the key numbers
  Json evidence = Json::object();  ///< the numbers behind the message
  std::vector<std::string> causes; ///< likely causes, most likely first
  std::vector<std::string> fixes;  ///< concrete things to try, most promising first
  Json to_json() const;
  static Finding from_json(const Json& doc);
};

/// A finding first and last seen at `step`: what rules and the doctor's checks report.
Finding make_finding(std::string rule, Severity severity, int64_t step, std::string layer, std::string message,
                     Json evidence, std::vector<std::string> causes, std::vector<std::string> fixes);

/// Findings deduplicated by (rule, layer): a repeated report updates last_step, count, evidence and message and
/// keeps the first step; severity only rises. Bounded by the number of distinct (rule, layer) pairs.
class FindingSet {
 public:
  /// Adds or merges; returns true when this (rule, layer) is new or its severity rose.
  bool add(const Finding& f);
  /// Ranked: critical first, then warning, info; within a severity by first step.
  std::vector<Finding> ranked() const;
  bool has_critical() const;
  size_t size() const { return by_key_.size(); }
  bool empty() const { return by_key_.empty(); }
  /// The findings.json document: an array of ranked finding objects.
  Json to_json() const;

 private:
  std::map<std::pair<std::string, std::string>, Finding> by_key_;
};

}  // namespace traindx
