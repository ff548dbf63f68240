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

/// A fix a program can apply: config overrides that remove the cause, where their values come from, and, once the
/// doctor has tried it, what a short trial with and without it measured. Serialised as the finding's "fix" object:
/// {set, source, status, before, after}.
struct FindingFix {
  /// Dotted config keys and their new values, e.g. {"train.lr": 0.003} or {"model.layers": [...]}; apply them as
  /// `--set key=value`. Empty when no config change fixes the cause (the prose `fixes` then say what to do).
  Json set = Json::object();
  std::string source;  ///< where the values come from, in words ("the range test's suggestion, ...")
  /// "suggested": not tried; "verified": a trial with the fix scored clearly better than the same trial without
  /// it; "refuted": it did not; "inconclusive": the trial could not tell (both failed, or too short to show it).
  std::string status = "suggested";
  Json before = Json::object();  ///< the trial without the fix: score, loss, steps, ...
  Json after = Json::object();   ///< the same trial with the fix
  bool empty() const { return set.empty(); }
  Json to_json() const;
  /// Inverse of to_json(); a missing document gives an empty fix.
  static FindingFix from_json(const Json& doc);
};

/// One diagnosis. Serialised as the findings.json object:
/// {rule, severity, step, last_step, count, layer, message, evidence, causes, fixes, fix, caused_by}.
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
  FindingFix fix;                  ///< the first of `fixes` as config overrides, when one exists
  /// finding_key() of the finding this one follows from (a symptom of that cause); empty for a root cause.
  std::string caused_by;
  Json to_json() const;
  static Finding from_json(const Json& doc);
};

/// A finding first and last seen at `step`: what rules and the doctor's checks report.
Finding make_finding(std::string rule, Severity severity, int64_t step, std::string layer, std::string message,
                     Json evidence, std::vector<std::string> causes, std::vector<std::string> fixes);

/// The identity of a finding within one report: "rule" or "rule@layer".
std::string finding_key(const Finding& f);

/// Orders findings for a reader: each root cause followed by the findings that follow from it (caused_by, to any
/// depth), roots by severity (highest first) and then in their given order. A caused_by naming a finding that is
/// not in the list is cleared, so every finding is shown exactly once.
std::vector<Finding> rank_with_causes(std::vector<Finding> findings);

/// Findings deduplicated by (rule, layer): a repeated report updates last_step, count, evidence and message and
/// keeps the first step; severity only rises. Bounded by the number of distinct (rule, layer) pairs.
class FindingSet {
 public:
  /// Adds or merges; returns true when this (rule, layer) is new or its severity rose.
  bool add(const Finding& f);
  /// Ranked: findings linked to their causes (link_known_causes, causes.h), then roots critical first, warning,
  /// info, within a severity by first step, each followed by its symptoms (rank_with_causes).
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
