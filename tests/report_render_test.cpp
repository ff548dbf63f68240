// The console and HTML renderers against golden files (tests/report/golden/), plus the properties a golden file
// cannot show: the page inlines its assets verbatim, the inlined report JSON survives hostile strings, findings are
// ranked whatever order they arrive in, and charts without data say so.
//
// To accept a deliberate change of output: TRAINDX_UPDATE_GOLDEN=1 build-dir/tests/report_render_test, then review
// the diff of tests/report/golden/.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "test_support.h"
#include "traindx/core/config.h"
#include "traindx/core/error.h"
#include "traindx/report/report.h"

using traindx::Json;

namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string report_dir() { return traindx::testing::source_dir() + "/tests/report"; }
Json load_report(const std::string& name) { return Json::parse(read_text(report_dir() + "/" + name)); }
Json sample() { return load_report("sample_report.json"); }

// Compares with tests/report/golden/<name>, or rewrites it when TRAINDX_UPDATE_GOLDEN is set.
void expect_golden(const std::string& actual, const std::string& name) {
  const std::string path = report_dir() + "/golden/" + name;
  if (std::getenv("TRAINDX_UPDATE_GOLDEN")) {
    std::ofstream(path, std::ios::binary) << actual;
    return;
  }
  const std::string expected = read_text(path);
  if (actual == expected) return;
  // Point at the first differing line rather than dumping two large files.
  std::istringstream a(actual), e(expected);
  std::string la, le;
  int line = 1;
  while (std::getline(a, la) && std::getline(e, le) && la == le) ++line;
  ADD_FAILURE() << name << " differs from the golden file at line " << line << ":\n  golden: " << le
                << "\n  actual: " << la << "\n(TRAINDX_UPDATE_GOLDEN=1 rewrites it after a deliberate change)";
}

// The text between `open` and the next "</script>" or "</style>" after it is replaced by `marker`.
std::string replace_element_body(std::string html, const std::string& open, const std::string& close,
                                 const std::string& marker) {
  const size_t start = html.find(open);
  if (start == std::string::npos) {
    ADD_FAILURE() << "no " << open << " in the page";
    return html;
  }
  const size_t body = start + open.size();
  const size_t end = html.find(close, body);
  if (end == std::string::npos) {
    ADD_FAILURE() << "no " << close << " after " << open;
    return html;
  }
  return html.replace(body, end - body, marker);
}

// The golden HTML keeps what render_html writes and leaves out the static assets it inlines (210 KB of chart.js,
// the page CSS and script); InlinesAssetsVerbatim checks those separately.
std::string strip_assets(const std::string& html) {
  std::string out = replace_element_body(html, "<script id=\"lib-chartjs\">", "</script>", "/* chart.umd.js */");
  out = replace_element_body(out, "<script id=\"lib-chartjs-matrix\">", "</script>", "/* chartjs-chart-matrix */");
  out = replace_element_body(out, "<script id=\"traindx-page\">", "</script>", "/* web/src/report.js */");
  return replace_element_body(out, "<style>", "</style>", "/* web/src/report.css */");
}

std::string embedded_json(const std::string& html) {
  const std::string open = "<script type=\"application/json\" id=\"traindx-report\">";
  const size_t start = html.find(open);
  if (start == std::string::npos) return "";
  const size_t body = start + open.size();
  return html.substr(body, html.find("</script>", body) - body);
}

size_t count(const std::string& haystack, const std::string& needle) {
  size_t n = 0;
  for (size_t pos = haystack.find(needle); pos != std::string::npos; pos = haystack.find(needle, pos + 1)) ++n;
  return n;
}

// A valid report with the given findings and nothing else.
Json minimal(Json findings = Json::array()) {
  return {{"schema", "traindx-report"},
          {"version", traindx::kReportVersion},
          {"traindx", {{"version", "0.1.0"}, {"commit", "abc"}}},
          {"created_at", "2026-01-01T00:00:00Z"},
          {"title", "t"},
          {"verdict", {{"status", "problems"}, {"summary", "s"}}},
          {"findings", std::move(findings)},
          {"checks", Json::array()}};
}

Json finding(const std::string& rule, const std::string& severity, int64_t step) {
  return {{"rule", rule}, {"severity", severity}, {"step", step}, {"message", rule + " happened"}};
}

}  // namespace

TEST(ReportRenderTest, ConsoleMatchesGolden) {
  expect_golden(traindx::render_console(sample()), "console.txt");
}

TEST(ReportRenderTest, ConsoleWithColourMatchesGolden) {
  const std::string text = traindx::render_console(sample(), true);
  EXPECT_NE(text.find("\x1b[1;31mCRITICAL"), std::string::npos);
  expect_golden(text, "console_color.txt");
}

TEST(ReportRenderTest, ConsoleWithoutColourHasNoEscapes) {
  EXPECT_EQ(traindx::render_console(sample()).find('\x1b'), std::string::npos);
}

TEST(ReportRenderTest, ConsoleOfEmptyReportMatchesGolden) {
  expect_golden(traindx::render_console(load_report("empty_report.json")), "console_empty.txt");
}

TEST(ReportRenderTest, HtmlMatchesGolden) {
  expect_golden(strip_assets(traindx::render_html(sample())), "report.html");
}

TEST(ReportRenderTest, HtmlOfEmptyReportMatchesGolden) {
  expect_golden(strip_assets(traindx::render_html(load_report("empty_report.json"))), "report_empty.html");
}

TEST(ReportRenderTest, RenderingIsDeterministicAndSurvivesAJsonRoundTrip) {
  const Json report = sample();
  const Json reloaded = Json::parse(report.dump(2));
  EXPECT_EQ(traindx::render_html(report), traindx::render_html(report));
  EXPECT_EQ(traindx::render_html(report), traindx::render_html(reloaded));
  EXPECT_EQ(traindx::render_console(report, true), traindx::render_console(reloaded, true));
}

TEST(ReportRenderTest, InlinesAssetsVerbatim) {
  const std::string html = traindx::render_html(sample());
  const std::string src = traindx::testing::source_dir();
  for (const char* asset : {"/web/node_modules/chart.js/dist/chart.umd.js",
                            "/web/node_modules/chartjs-chart-matrix/dist/chartjs-chart-matrix.min.js",
                            "/web/src/report.js", "/web/src/report.css"}) {
    const std::string text = read_text(src + asset);
    ASSERT_GT(text.size(), 1000u) << asset;
    EXPECT_EQ(count(html, text), 1u) << asset << " is not inlined exactly once";
  }
}

TEST(ReportRenderTest, PageIsSelfContained) {
  // Outside the inlined libraries (whose licence headers carry their home pages) nothing refers elsewhere.
  const std::string page = strip_assets(traindx::render_html(sample()));
  for (const char* reference : {"http://", "https://", "src=", "<link", "url(", "@import"}) {
    EXPECT_EQ(page.find(reference), std::string::npos) << reference;
  }
  EXPECT_NE(page.find("Content-Security-Policy\" content=\"default-src 'none'"), std::string::npos);
}

TEST(ReportRenderTest, EmbeddedJsonIsInertAndRoundTrips) {
  Json report = sample();
  const std::string hostile = "</script><script>alert(1)</script> <!-- </SCRIPT > & \u2028 \"quoted\"";
  report["title"] = hostile;
  report["findings"][0]["message"] = hostile;
  report["findings"][0]["evidence"]["note"] = hostile;
  const std::string html = traindx::render_html(report);

  const std::string data = embedded_json(html);
  ASSERT_FALSE(data.empty());
  EXPECT_EQ(data.find('<'), std::string::npos);
  EXPECT_EQ(Json::parse(data), report);
  // Four script elements close, and only four: the data never ends one early.
  EXPECT_EQ(count(html, "</script>"), 4u);
  EXPECT_EQ(count(html, "<!--") , 1u);  // the template's own comment in <head>
  EXPECT_NE(html.find("<title>&lt;/script&gt;&lt;script&gt;alert(1)"), std::string::npos);
  EXPECT_EQ(html.find("<script>alert(1)"), std::string::npos);
}

TEST(ReportRenderTest, FindingsAreRankedCriticalFirstWhateverTheInputOrder) {
  const Json report = minimal({finding("info_rule", "info", 1), finding("warn_rule", "warning", 2),
                               finding("crit_late", "critical", 9), finding("warn_second", "warning", 3),
                               finding("crit_early", "critical", 4)});
  const std::string text = traindx::render_console(report);
  std::vector<size_t> at;
  for (const char* rule : {"crit_late", "crit_early", "warn_rule", "warn_second", "info_rule"}) {
    at.push_back(text.find(std::string(rule) + ","));
    ASSERT_NE(at.back(), std::string::npos) << rule;
  }
  for (size_t i = 1; i < at.size(); ++i) EXPECT_LT(at[i - 1], at[i]);
  EXPECT_NE(text.find("Findings: 2 critical, 2 warnings, 1 info"), std::string::npos);

  const std::string html = traindx::render_html(report);
  EXPECT_LT(html.find("crit_early"), html.find("warn_rule"));
  EXPECT_LT(html.find("warn_second"), html.find("info_rule"));
}

TEST(ReportRenderTest, ConsoleShowsKeyEvidenceAndTheFirstFix) {
  Json f = finding("exploding_gradient", "critical", 7);
  f["layer"] = "fc1.weight";
  f["last_step"] = 12;
  f["count"] = 3;
  f["evidence"] = {{"a", 1}, {"b", 2.5}, {"c", 3e-7}, {"d", "x"}, {"e", true}, {"f", nullptr}, {"g", 7}, {"h", 8}};
  f["fixes"] = {"Lower the learning rate.", "Clip gradients."};
  const std::string text = traindx::render_console(minimal({f}));
  EXPECT_NE(text.find("exploding_gradient in fc1.weight, steps 7-12, 3 times"), std::string::npos) << text;
  EXPECT_NE(text.find("evidence: a = 1, b = 2.5, c = 3e-07, d = x, e = true, f = null (+2 more in report.html)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("fix: Lower the learning rate."), std::string::npos);
  EXPECT_EQ(text.find("Clip gradients."), std::string::npos);

  // Without a step the finding concerns no particular time, and no time is claimed.
  Json timeless = finding("class_imbalance", "info", 0);
  timeless.erase("step");
  EXPECT_NE(traindx::render_console(minimal({timeless})).find("INFO     class_imbalance\n"), std::string::npos);
}

TEST(ReportRenderTest, NonFiniteNumbersInMemoryRenderReadably) {
  Json f = finding("non_finite_loss", "critical", 3);
  f["evidence"] = {{"loss", std::numeric_limits<double>::quiet_NaN()},
                   {"grad", std::numeric_limits<double>::infinity()}};
  const Json report = minimal({f});
  EXPECT_NE(traindx::render_console(report).find("grad = inf, loss = nan"), std::string::npos);
  // JSON has no NaN: the inlined data carries null, which the page shows as a gap or "non-finite".
  EXPECT_NE(embedded_json(traindx::render_html(report)).find("\"grad\":null"), std::string::npos);
}

TEST(ReportRenderTest, EveryChartWithDataGetsACanvas) {
  const std::string html = traindx::render_html(sample());
  for (const char* id : {"loss", "accuracy", "lr_sweep", "grad_norm_heatmap", "activation_mean_std",
                         "activation_fractions", "confusion_matrix", "ladder"}) {
    EXPECT_EQ(count(html, std::string("data-chart=\"") + id + "\""), 1u) << id;
  }
  EXPECT_EQ(html.find("data-empty-chart"), std::string::npos);
  EXPECT_EQ(count(html, "<tr class=\"failed\">"), 1u);  // scale.weight fails the gradient check
}

TEST(ReportRenderTest, ChartsWithoutDataSaySo) {
  const std::string html = strip_assets(traindx::render_html(load_report("empty_report.json")));
  EXPECT_EQ(html.find("<canvas"), std::string::npos);
  for (const char* id : {"loss", "accuracy", "lr_sweep", "grad_norm_heatmap", "activation_mean_std",
                         "activation_fractions", "confusion_matrix", "gradient_check"}) {
    EXPECT_EQ(count(html, std::string("data-empty-chart=\"") + id + "\""), 1u) << id;
  }
  // The ladder runs only on request: absent from the report, absent from the page.
  EXPECT_EQ(html.find("id=\"ladder\""), std::string::npos);

  // A loss curve of only non-finite values has nothing to draw either.
  Json report = minimal();
  report["charts"] = {{"loss_curve", {{"steps", {0, 1}}, {"train_loss", {nullptr, nullptr}}}}};
  EXPECT_NE(traindx::render_html(report).find("data-empty-chart=\"loss\""), std::string::npos);
}

TEST(ReportRenderTest, RenderersRejectAnInvalidReport) {
  Json report = sample();
  report.erase("verdict");
  EXPECT_THROW(traindx::render_console(report), traindx::InternalError);
  EXPECT_THROW(traindx::render_html(report), traindx::InternalError);
}
