#pragma once
/// Reports: one versioned JSON document (report.json) that the console, JSON and HTML renderers all read
/// (google/benchmark's reporter model). The doctor builds the document; nothing else decides what a report says.
///
/// Schema "traindx-report", version 1 (docs/report.md):
/// {
///   "schema": "traindx-report", "version": 1,
///   "traindx": {"version": "0.1.0", "commit": "..."}, "created_at": "ISO 8601", "title": "...",
///   "config_toml": "...", "environment": {fingerprint},
///   "verdict": {"status": "healthy" | "problems" | "critical", "summary": "one sentence"},
///   "findings": [ finding objects as in findings.json, ranked critical first ],
///   "checks": [ {"id": "data", "title": "Data", "status": "pass" | "warn" | "fail" | "skipped",
///                "seconds": 0.4, "summary": "one line", "details": {...}} ... ],
///   "charts": {   // every chart optional
///     "loss_curve": {"steps": [..], "train_loss": [..], "val_steps": [..], "val_loss": [..],
///                    "val_accuracy": [..], "train_accuracy": [..]},
///     "lr_sweep": {"lrs": [..], "losses": [..], "smoothed": [..], "suggestion": 0.003, "rule": "...",
///                  "alternatives": {"steepest": .., "valley": ..}},
///     "grad_norm_heatmap": {"layers": [..], "steps": [..], "values": [[..] per layer]},   // log10 norms
///     "activation_stats": {"layers": [..], "mean": [..], "std": [..], "zero_fraction": [..],
///                          "saturated_fraction": [..]},
///     "confusion_matrix": {"labels": [..], "matrix": [[..] per true class]},
///     "gradient_check": {"rows": [{"parameter": "fc1.weight", "max_abs_error": .., "max_rel_error": ..,
///                                  "passed": true}]},
///     "ladder": {"variants": [{"name": "..", "parameters": .., "train_accuracy": .., "val_accuracy": ..}]}
///   }
/// }
#include <string>

#include "traindx/core/config.h"

namespace traindx {

inline constexpr int kReportVersion = 1;

/// Checks that `report` has the required top-level fields of the schema. Throws InternalError naming the first
/// missing or mistyped field (a report is built by traindx, so a bad one is our bug).
void validate_report(const Json& report);

/// A plain-text summary for a terminal: verdict, findings (critical first, with evidence and the first fix),
/// then one line per check. `color` adds ANSI colours. Deterministic for a given report (golden-tested).
std::string render_console(const Json& report, bool color = false);

/// One self-contained HTML file: the charting library (from npm, bundled at build time) and the report data are
/// inlined, so it opens without a network. Deterministic for a given report (golden-tested).
std::string render_html(const Json& report);

/// Writes report.json, report.html and returns their paths through the out-parameters. Atomic writes.
void write_report_files(const Json& report, const std::string& dir, std::string* json_path = nullptr,
                        std::string* html_path = nullptr);

}  // namespace traindx
