#include <fmt/format.h>

#include <iostream>

#include "commands.h"
#include "traindx/core/error.h"
#include "traindx/store/run_store.h"

namespace traindx::cli {
namespace {

std::string headline_metric(const Json& summary) {
  for (const char* split : {"test", "val"}) {
    if (!summary.contains(split) || !summary[split].is_object()) continue;
    const Json& m = summary[split];
    if (m.contains("accuracy")) return fmt::format("{} acc {:.4f}", split, m["accuracy"].get<double>());
    if (m.contains("r2")) return fmt::format("{} r2 {:.4f}", split, m["r2"].get<double>());
  }
  return "";
}

int runs_list(const std::string& root, bool json) {
  const auto runs = list_run_dirs(root);
  if (json) {
    Json out = Json::array();
    for (const auto& r : runs)
      out.push_back({{"run_id", r.run_id}, {"name", r.name}, {"dir", r.dir}, {"status", r.status},
                     {"started_at", r.started_at}, {"finished_at", r.finished_at}, {"summary", r.summary}});
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  if (runs.empty()) {
    fmt::print("no runs under {}\n", root);
    return 0;
  }
  fmt::print("{:<36} {:<10} {:>7}  {:<20} {}\n", "RUN", "STATUS", "STEPS", "STARTED", "RESULT");
  for (const auto& r : runs)
    fmt::print("{:<36} {:<10} {:>7}  {:<20} {}\n", r.run_id, r.status, r.summary.value("steps", 0), r.started_at,
               headline_metric(r.summary));
  return 0;
}

int runs_show(const std::string& root, const std::string& run, bool json) {
  const std::string dir = resolve_run_dir(root, run);
  auto store = open_sqlite_store_readonly(dir + "/" + kRunStoreFile);
  const auto runs = store->list_runs();
  TRAINDX_CHECK(!runs.empty(), IoError, "{}/{} holds no run", dir, kRunStoreFile);
  const RunRecord& r = runs.front();
  Json series = Json::object();
  for (const auto& name : store->scalar_names(r.run_id)) {
    const auto points = store->scalar_series(r.run_id, name);
    if (points.empty()) continue;
    series[name] = {{"points", points.size()}, {"first_step", points.front().step},
                    {"last_step", points.back().step}, {"last", points.back().value}};
  }
  if (json) {
    std::cout << Json{{"run_id", r.run_id}, {"dir", r.dir}, {"status", r.status}, {"started_at", r.started_at},
                      {"finished_at", r.finished_at}, {"summary", r.summary}, {"series", series},
                      {"findings", store->findings(r.run_id)}}
                     .dump(2)
              << "\n";
    return 0;
  }
  fmt::print("run      {}\ndir      {}\nstatus   {}\nstarted  {}\nfinished {}\n", r.run_id, r.dir, r.status,
             r.started_at, r.finished_at);
  for (const char* split : {"train", "val", "test"}) {
    if (!r.summary.contains(split) || !r.summary[split].is_object() || r.summary[split].empty()) continue;
    std::string line;
    for (auto it = r.summary[split].begin(); it != r.summary[split].end(); ++it)
      if (it.value().is_number()) line += fmt::format(" {}={:.4g}", it.key(), it.value().get<double>());
    fmt::print("{:<8}{}\n", split, line);
  }
  fmt::print("series:\n");
  for (auto it = series.begin(); it != series.end(); ++it)
    fmt::print("  {:<28} {:>6} points, steps {}..{}, last {:.6g}\n", it.key(), it.value()["points"].get<size_t>(),
               it.value()["first_step"].get<int64_t>(), it.value()["last_step"].get<int64_t>(),
               it.value()["last"].get<double>());
  const auto findings = store->findings(r.run_id);
  if (!findings.empty()) {
    fmt::print("findings:\n");
    for (const auto& f : findings)
      fmt::print("  [{}] {} {}: {}\n", f.value("severity", ""), f.value("rule", ""), f.value("layer", ""),
                 f.value("message", ""));
  }
  return 0;
}

}  // namespace

void register_runs(CLI::App& app, Action& run) {
  static std::string root = "runs";
  static std::string which;
  static bool json = false;
  auto* cmd = app.add_subcommand("runs", "list and show runs in the run store");
  cmd->require_subcommand(1);
  cmd->add_option("--root", root, "directory holding run directories")->capture_default_str();
  auto* list = cmd->add_subcommand("list", "list runs, newest first");
  list->add_flag("--json", json, "print JSON");
  list->callback([&run] { run = [] { return runs_list(root, json); }; });
  auto* show = cmd->add_subcommand("show", "show one run: status, final metrics, series, findings");
  show->add_option("RUN", which, "run id (directory name under --root) or a run directory path")->required();
  show->add_flag("--json", json, "print JSON");
  show->callback([&run] { run = [] { return runs_show(root, which, json); }; });
}

}  // namespace traindx::cli
