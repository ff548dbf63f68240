// validate_report against each required field and type of the schema, and write_report_files on disk.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>

#include "test_support.h"
#include "traindx/core/config.h"
#include "traindx/core/error.h"
#include "traindx/report/report.h"

using traindx::InternalError;
using traindx::Json;

namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

Json sample() {
  return Json::parse(read_text(traindx::testing::source_dir() + "/tests/report/sample_report.json"));
}

// Applies `edit` to the sample and expects validate_report to throw InternalError mentioning `expected`.
void expect_invalid(const std::function<void(Json&)>& edit, const std::string& expected) {
  Json report = sample();
  edit(report);
  try {
    traindx::validate_report(report);
    ADD_FAILURE() << "accepted a report that should fail with: " << expected;
  } catch (const InternalError& e) {
    EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << "message: " << e.what();
  }
}

}  // namespace

TEST(ReportValidateTest, AcceptsTheSampleAndTheEmptyReport) {
  EXPECT_NO_THROW(traindx::validate_report(sample()));
  EXPECT_NO_THROW(traindx::validate_report(
      Json::parse(read_text(traindx::testing::source_dir() + "/tests/report/empty_report.json"))));
}

TEST(ReportValidateTest, NamesEachMissingRequiredField) {
  for (const char* key : {"schema", "version", "traindx", "created_at", "title", "verdict", "findings", "checks"}) {
    expect_invalid([&](Json& r) { r.erase(key); }, std::string("report has no field '") + key + "'");
  }
  expect_invalid([](Json& r) { r["traindx"].erase("commit"); }, "report.traindx has no field 'commit'");
  expect_invalid([](Json& r) { r["verdict"].erase("summary"); }, "report.verdict has no field 'summary'");
  expect_invalid([](Json& r) { r["findings"][1].erase("rule"); }, "report.findings[1] has no field 'rule'");
  expect_invalid([](Json& r) { r["checks"][2].erase("summary"); }, "report.checks[2] has no field 'summary'");
}

TEST(ReportValidateTest, OptionalFieldsMayBeAbsent) {
  Json report = sample();
  for (const char* key : {"config_toml", "environment", "charts"}) report.erase(key);
  for (auto& f : report["findings"]) {
    for (const char* key : {"step", "last_step", "count", "layer", "evidence", "causes", "fixes"}) f.erase(key);
  }
  for (auto& c : report["checks"]) {
    c.erase("seconds");
    c.erase("details");
  }
  EXPECT_NO_THROW(traindx::validate_report(report));
  EXPECT_NO_THROW(traindx::render_html(report));
  EXPECT_NO_THROW(traindx::render_console(report));
}

TEST(ReportValidateTest, NamesMistypedFields) {
  expect_invalid([](Json& r) { r = Json::array(); }, "report must be an object, not array");
  expect_invalid([](Json& r) { r["schema"] = "other"; }, "report.schema is 'other', not 'traindx-report'");
  expect_invalid([](Json& r) { r["version"] = "1"; }, "report.version must be an integer, not string");
  expect_invalid([](Json& r) { r["version"] = 2; }, "report.version is 2; this traindx reads version 1");
  expect_invalid([](Json& r) { r["title"] = 3; }, "report.title must be a string, not a number");
  expect_invalid([](Json& r) { r["verdict"]["status"] = "fine"; },
                 "report.verdict.status is 'fine', not one of healthy, problems, critical");
  expect_invalid([](Json& r) { r["findings"] = Json::object(); }, "report.findings must be an array, not object");
  expect_invalid([](Json& r) { r["findings"][0]["severity"] = "fatal"; },
                 "report.findings[0].severity is 'fatal', not one of info, warning, critical");
  expect_invalid([](Json& r) { r["findings"][0]["step"] = 1.5; }, "report.findings[0].step must be an integer");
  expect_invalid([](Json& r) { r["findings"][0]["fixes"][1] = 1; }, "report.findings[0].fixes[1] must be a string");
  expect_invalid([](Json& r) { r["findings"][0]["evidence"] = Json::array(); },
                 "report.findings[0].evidence must be an object");
  expect_invalid([](Json& r) { r["checks"][0]["status"] = "ok"; },
                 "report.checks[0].status is 'ok', not one of pass, warn, fail, skipped");
  expect_invalid([](Json& r) { r["checks"][0]["seconds"] = "fast"; }, "report.checks[0].seconds must be a number");
  expect_invalid([](Json& r) { r["environment"] = "linux"; }, "report.environment must be an object");
}

TEST(ReportValidateTest, ChecksTheShapeOfEveryChart) {
  expect_invalid([](Json& r) { r["charts"]["loss_plot"] = Json::object(); },
                 "report.charts.loss_plot is not a known chart");
  expect_invalid([](Json& r) { r["charts"]["loss_curve"]["train_loss"].erase(0); },
                 "report.charts.loss_curve.train_loss has 30 elements but report.charts.loss_curve.steps has 31");
  expect_invalid([](Json& r) { r["charts"]["loss_curve"]["train_loss"][2] = "nan"; },
                 "report.charts.loss_curve.train_loss[2] must be a number or null, not string");
  expect_invalid([](Json& r) { r["charts"]["loss_curve"]["val_accuracy"].push_back(0.5); },
                 "report.charts.loss_curve.val_accuracy has 8 elements");
  expect_invalid([](Json& r) { r["charts"]["loss_curve"].erase("val_steps"); },
                 "report.charts.loss_curve.val_loss needs val_steps");
  expect_invalid([](Json& r) { r["charts"]["lr_sweep"]["lrs"][0] = 0; },
                 "report.charts.lr_sweep.lrs[0] must be a positive number");
  expect_invalid([](Json& r) { r["charts"]["lr_sweep"]["alternatives"]["valley"] = "x"; },
                 "report.charts.lr_sweep.alternatives.valley must be a number or null");
  expect_invalid([](Json& r) { r["charts"]["grad_norm_heatmap"]["values"][3].erase(0); },
                 "report.charts.grad_norm_heatmap.values[3] has 30 values");
  expect_invalid([](Json& r) { r["charts"]["grad_norm_heatmap"]["layers"].push_back("x"); },
                 "report.charts.grad_norm_heatmap.values has 8 rows but");
  expect_invalid([](Json& r) { r["charts"]["activation_stats"]["std"].erase(0); },
                 "report.charts.activation_stats.std has 8 elements but");
  expect_invalid([](Json& r) { r["charts"]["confusion_matrix"]["matrix"][1][2] = -1; },
                 "report.charts.confusion_matrix.matrix[1][2] must be a count");
  expect_invalid([](Json& r) { r["charts"]["confusion_matrix"]["matrix"][4].erase(0); },
                 "report.charts.confusion_matrix.matrix[4] has 9 columns but there are 10 labels");
  expect_invalid([](Json& r) { r["charts"]["gradient_check"]["rows"][0]["passed"] = "yes"; },
                 "report.charts.gradient_check.rows[0].passed must be true or false");
  expect_invalid([](Json& r) { r["charts"]["ladder"]["variants"][1].erase("val_accuracy"); },
                 "report.charts.ladder.variants[1] has no field 'val_accuracy'");
}

TEST(ReportFilesTest, WritesJsonAndHtmlThatMatchTheRenderer) {
  traindx::testing::TempDir tmp;
  const std::string dir = tmp.file("nested/reports");
  std::string json_path, html_path;
  traindx::write_report_files(sample(), dir, &json_path, &html_path);
  EXPECT_EQ(json_path, dir + "/report.json");
  EXPECT_EQ(html_path, dir + "/report.html");
  EXPECT_EQ(Json::parse(read_text(json_path)), sample());
  EXPECT_EQ(read_text(json_path).substr(0, 4), "{\n  ");  // pretty, for people who open it
  EXPECT_EQ(read_text(html_path), traindx::render_html(sample()));
  // Atomic writes leave no temporary files behind.
  size_t files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) files += entry.is_regular_file();
  EXPECT_EQ(files, 2u);
}

TEST(ReportFilesTest, AnInvalidReportWritesNothing) {
  traindx::testing::TempDir tmp;
  Json report = sample();
  report.erase("checks");
  EXPECT_THROW(traindx::write_report_files(report, tmp.file("out")), InternalError);
  EXPECT_FALSE(std::filesystem::exists(tmp.file("out")));
}

TEST(ReportFilesTest, AnUnwritableDirectoryIsAnIoError) {
  traindx::testing::TempDir tmp;
  const std::string blocker = tmp.write("file", "not a directory");
  EXPECT_THROW(traindx::write_report_files(sample(), blocker + "/sub"), traindx::IoError);
}
