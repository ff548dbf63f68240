#pragma once
/// The doctor: "is this model learning, and if not, why?" in about a minute. A battery of checks, cheapest first,
/// that stops early when a result makes the rest meaningless, and one report (report.json / report.html) with every
/// finding ranked.
///
/// Order: data -> initialisation -> gradient check -> overfit one batch -> learning-rate range test ->
/// determinism audit and checkpoint round trip -> short monitored training with a train/validation diagnosis ->
/// (--ladder) gradual complexity. Findings rank critical first, then by the order of the check that produced them
/// (an earlier check names a cause a later one only sees the effect of), then by step.
#include <functional>
#include <string>
#include <vector>

#include "traindx/core/config.h"
#include "traindx/monitor/finding.h"

namespace traindx {

/// How the doctor runs.
struct DoctorOptions {
  bool quick = false;   ///< smaller budgets everywhere (target: under 20 s on 2 cores)
  bool ladder = false;  ///< also train narrower-to-wider variants
  std::string out;      ///< report directory; empty: <run.out_root>/doctor-<run.name>-<time>
  /// Called when a check starts (status "running") and ends ("pass", "warn", "fail", "skipped").
  std::function<void(const std::string& id, const std::string& title, const std::string& status,
                     const std::string& summary)>
      on_check;
};

/// The doctor's result.
struct DoctorResult {
  std::string dir;       ///< where report.json and report.html were written
  Json report;           ///< the report document (include/traindx/report/report.h)
  std::vector<Finding> findings;  ///< ranked
  bool has_critical() const;
  /// 1 when anything critical was found, 0 otherwise.
  int exit_code() const { return has_critical() ? 1 : 0; }
};

/// The built-in subject: the Fashion-MNIST CNN of examples/fashion_cnn.toml.
Config default_doctor_config();

/// Runs the battery on `config`. Throws Error subclasses for bad input (exit 2 at the CLI).
DoctorResult run_doctor(const Config& config, const DoctorOptions& options = {});

}  // namespace traindx
