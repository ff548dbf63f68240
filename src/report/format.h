#pragma once
// Wording and ordering shared by the console and HTML renderers, so both say the same thing the same way.
// Private to the report module. Every function expects a report that passed validate_report.
#include <array>
#include <string>
#include <vector>

#include "traindx/core/config.h"

namespace traindx::report_detail {

/// 4 significant digits ("0.0031", "3.1e+04"); integral values below 1e15 in full ("60000"); "nan", "inf".
std::string format_number(double v);

/// A value for people: numbers through format_number, strings verbatim, true/false, "null" (how report.json
/// stores non-finite numbers); arrays and objects as compact JSON with their numbers formatted the same way.
std::string format_value(const Json& v);

/// Ranking weight of a severity name: critical 2, warning 1, info 0.
int severity_rank(const std::string& severity);

/// The report's findings, critical first, then warning, then info; the report's order within a severity.
std::vector<const Json*> ranked_findings(const Json& report);

/// Findings per severity: {critical, warning, info}.
std::array<int, 3> count_findings(const Json& report);

/// When a finding was seen: "before training", "step 12", "steps 230-270, 5 times"; empty without a step.
std::string finding_when(const Json& finding);

/// Checks per status: {pass, warn, fail, skipped}.
std::array<int, 4> count_checks(const Json& report);

/// "3 critical, 2 warnings, 1 info" (zero counts left out); "none" when there are no findings.
std::string findings_tally(const Json& report);

/// True when `v` is a number that is finite (report.json stores NaN and Inf as null).
bool is_finite_number(const Json& v);

/// True when `key` holds an array with at least one finite number.
bool has_finite(const Json& object, const char* key);

}  // namespace traindx::report_detail
