// render_html: report.html, one self-contained file. The text (verdict, findings, checks, tables) is static HTML
// written here, so it reads without scripts and is golden-tested; the page script (web/src/report.js) only draws
// the charts from the inlined report JSON into the canvases this file leaves for it. Which charts have data is
// decided here, once, and a chart without data says so instead of drawing an empty frame.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "report/format.h"
#include "traindx/core/error.h"
#include "traindx/report/report.h"
#include "web_assets.h"

namespace traindx {
namespace {

using report_detail::format_value;

std::string escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string str(const Json& object, const char* key) { return object.value(key, std::string()); }

// The report as a JSON text that is inert inside <script>: '<' can only occur inside JSON strings, so writing it
// as \u003c there keeps "</script>" and "<!--" from ever reaching the HTML parser. '>' and '&' follow for
// symmetry with common practice (they are harmless to JSON.parse either way).
std::string script_json(const Json& report) {
  const std::string text = report.dump(-1, ' ', false, Json::error_handler_t::replace);
  std::string out;
  out.reserve(text.size() + text.size() / 50);
  for (char c : text) {
    switch (c) {
      case '<': out += "\\u003c"; break;
      case '>': out += "\\u003e"; break;
      case '&': out += "\\u0026"; break;
      default: out += c;
    }
  }
  return out;
}

// Substitutes {{name}} in the page template in one pass, so inserted text is never scanned for placeholders.
std::string fill_template(std::string_view tpl, const std::map<std::string_view, std::string_view>& values) {
  size_t total = tpl.size();
  for (const auto& [name, value] : values) total += value.size();
  std::string out;
  out.reserve(total);
  size_t pos = 0;
  while (true) {
    const size_t open = tpl.find("{{", pos);
    if (open == std::string_view::npos) break;
    const size_t close = tpl.find("}}", open + 2);
    TRAINDX_ASSERT(close != std::string_view::npos, "unterminated placeholder in web/src/report.html");
    const std::string_view name = tpl.substr(open + 2, close - open - 2);
    const auto it = values.find(name);
    TRAINDX_ASSERT(it != values.end(), "unknown placeholder {{{{{}}}}} in web/src/report.html", name);
    out.append(tpl.substr(pos, open - pos));
    out.append(it->second);
    pos = close + 2;
  }
  out.append(tpl.substr(pos));
  return out;
}

const Json* chart(const Json& report, const char* name) {
  const auto charts = report.find("charts");
  if (charts == report.end()) return nullptr;
  const auto it = charts->find(name);
  return it == charts->end() ? nullptr : &*it;
}

bool non_empty(const Json* c, const char* key) {
  if (!c) return false;
  const auto it = c->find(key);
  return it != c->end() && it->is_array() && !it->empty();
}

// One figure: a canvas the page script draws into, or the reason there is nothing to draw.
void figure(std::string& out, const char* id, const char* title, const std::string& caption, bool has_data,
            const char* empty_text, int height, const char* canvas_class = "") {
  out += fmt::format("<figure class=\"chart\" id=\"figure-{}\">\n<figcaption><h3>{}</h3><p>{}</p></figcaption>\n",
                     id, title, caption);
  if (has_data) {
    out += fmt::format(
        "<div class=\"chart-canvas{}\" style=\"height: {}px\"><canvas data-chart=\"{}\" role=\"img\" "
        "aria-label=\"{}\"></canvas></div>\n",
        canvas_class, height, id, title);
  } else {
    out += fmt::format("<p class=\"chart-empty\" data-empty-chart=\"{}\">{}</p>\n", id, empty_text);
  }
  out += "</figure>\n";
}

void section_open(std::string& out, const char* id, const char* title, const std::string& count = "") {
  out += fmt::format("<section class=\"block\" id=\"{}\">\n<h2>{}{}</h2>\n", id, title,
                     count.empty() ? "" : " <span class=\"count\">" + count + "</span>");
}

void header(std::string& out, const Json& report) {
  const Json& traindx = report.at("traindx");
  out += "<header class=\"page-header\">\n<div class=\"brand\">traindx report</div>\n";
  out += fmt::format("<h1>{}</h1>\n<p class=\"meta\">created {} &middot; traindx {} ({})</p>\n</header>\n",
                     escape(str(report, "title")), escape(str(report, "created_at")),
                     escape(str(traindx, "version")), escape(str(traindx, "commit")));

  const Json& verdict = report.at("verdict");
  const std::string status = str(verdict, "status");
  const auto checks = report_detail::count_checks(report);
  out += fmt::format("<section class=\"verdict verdict-{0}\" id=\"verdict\">\n<div class=\"verdict-status\">{0}</div>\n"
                     "<p class=\"verdict-summary\">{1}</p>\n",
                     escape(status), escape(str(verdict, "summary")));
  out += fmt::format(
      "<p class=\"verdict-counts\">Findings: {} &middot; Checks: {} passed, {} warned, {} failed, {} skipped</p>\n"
      "</section>\n",
      report_detail::findings_tally(report), checks[0], checks[1], checks[2], checks[3]);
}

void toc(std::string& out, const Json& report) {
  out += "<nav class=\"toc\"><a href=\"#findings\">Findings</a> <a href=\"#checks\">Checks</a> "
         "<a href=\"#curves\">Training curves</a> <a href=\"#lr-sweep\">Learning rate</a> "
         "<a href=\"#gradients\">Gradient norms</a> <a href=\"#activations\">Activations</a> "
         "<a href=\"#confusion\">Confusion matrix</a> <a href=\"#gradient-check\">Gradient check</a> ";
  if (chart(report, "ladder")) out += "<a href=\"#ladder\">Ladder</a> ";
  out += "<a href=\"#run\">Run</a></nav>\n";
}

void finding_card(std::string& out, const Json& f) {
  const std::string severity = str(f, "severity");
  std::string where;
  const std::string layer = str(f, "layer");
  const std::string when = report_detail::finding_when(f);
  if (!layer.empty()) where += "layer <code>" + escape(layer) + "</code>";
  if (!layer.empty() && !when.empty()) where += " &middot; ";
  where += escape(when);
  out += fmt::format(
      "<article class=\"finding finding-{0}\">\n<div class=\"finding-head\"><span class=\"badge sev-{0}\">{0}</span> "
      "<code class=\"rule\">{1}</code> <span class=\"where\">{2}</span></div>\n<p class=\"message\">{3}</p>\n",
      escape(severity), escape(str(f, "rule")), where, escape(str(f, "message")));

  const Json evidence = f.value("evidence", Json::object());
  const auto causes = f.value("causes", std::vector<std::string>{});
  const auto fixes = f.value("fixes", std::vector<std::string>{});
  if (!evidence.empty() || !causes.empty() || !fixes.empty()) {
    out += "<div class=\"finding-body\">\n<div>";
    if (!evidence.empty()) {
      out += "<h4>Evidence</h4><table class=\"evidence\">";
      for (const auto& [key, value] : evidence.items()) {
        out += fmt::format("<tr><th>{}</th><td>{}</td></tr>", escape(key), escape(format_value(value)));
      }
      out += "</table>";
    }
    out += "</div>\n";
    const auto list = [&out](const char* title, const std::vector<std::string>& items) {
      out += "<div>";
      if (!items.empty()) {
        out += fmt::format("<h4>{}</h4><ol>", title);
        for (const auto& item : items) out += "<li>" + escape(item) + "</li>";
        out += "</ol>";
      }
      out += "</div>\n";
    };
    list("Likely causes", causes);
    list("Fixes to try", fixes);
    out += "</div>\n";
  }
  out += "</article>\n";
}

void findings_section(std::string& out, const Json& report) {
  const auto findings = report_detail::ranked_findings(report);
  section_open(out, "findings", "Findings", std::to_string(findings.size()));
  if (findings.empty()) out += "<p class=\"empty\">No findings: none of the rules saw anything wrong.</p>\n";
  for (const Json* f : findings) finding_card(out, *f);
  out += "</section>\n";
}

void checks_section(std::string& out, const Json& report) {
  const Json& checks = report.at("checks");
  section_open(out, "checks", "Checks", std::to_string(checks.size()));
  if (checks.empty()) {
    out += "<p class=\"empty\">No checks ran.</p>\n</section>\n";
    return;
  }
  out += "<table class=\"grid checks\">\n<thead><tr><th>Status</th><th>Check</th><th class=\"num\">Time</th>"
         "<th>Summary</th></tr></thead>\n<tbody>\n";
  for (const auto& c : checks) {
    const std::string status = str(c, "status");
    const Json seconds = c.value("seconds", Json());
    const std::string time =
        report_detail::is_finite_number(seconds) ? fmt::format("{:.1f} s", seconds.get<double>()) : "";
    std::string summary = escape(str(c, "summary"));
    const Json details = c.value("details", Json::object());
    if (!details.empty()) {
      summary += "<details><summary>details</summary><pre>" +
                 escape(details.dump(2, ' ', false, Json::error_handler_t::replace)) + "</pre></details>";
    }
    out += fmt::format(
        "<tr data-check=\"{0}\"><td><span class=\"badge status-{1}\">{1}</span></td><td>{2}<br><code>{0}</code></td>"
        "<td class=\"num\">{3}</td><td>{4}</td></tr>\n",
        escape(str(c, "id")), escape(status), escape(str(c, "title")), time, summary);
  }
  out += "</tbody>\n</table>\n</section>\n";
}

void curves_section(std::string& out, const Json& report) {
  const Json* c = chart(report, "loss_curve");
  section_open(out, "curves", "Training curves");
  out += "<div class=\"chart-grid\">\n";
  figure(out, "loss", "Loss",
         "Training loss at each recorded step, validation loss at each evaluation. Falling training loss with "
         "rising validation loss is overfitting; both high and flat is underfitting. Gaps are non-finite values.",
         c && (report_detail::has_finite(*c, "train_loss") || report_detail::has_finite(*c, "val_loss")),
         "No loss values were recorded in this report.", 300);
  figure(out, "accuracy", "Accuracy",
         "Training and validation accuracy on the same steps: the gap between them is the overfitting margin.",
         c && (report_detail::has_finite(*c, "train_accuracy") || report_detail::has_finite(*c, "val_accuracy")),
         "No accuracy values were recorded in this report (regression tasks have none).", 300);
  out += "</div>\n</section>\n";
}

void lr_section(std::string& out, const Json& report) {
  const Json* c = chart(report, "lr_sweep");
  section_open(out, "lr-sweep", "Learning-rate range test");
  std::string caption =
      "Loss while the learning rate grows exponentially over a short run, raw and smoothed. The solid vertical "
      "line is the suggested learning rate";
  if (c && c->contains("rule")) caption += " (rule: " + escape(str(*c, "rule")) + ")";
  if (c && c->contains("suggestion") && report_detail::is_finite_number(c->at("suggestion"))) {
    caption += ", " + report_detail::format_number(c->at("suggestion").get<double>());
  }
  caption += "; dashed lines are what the other rules would pick.";
  figure(out, "lr_sweep", "Loss against learning rate", caption, c && report_detail::has_finite(*c, "losses"),
         "No learning-rate sweep in this report.", 340);
  out += "</section>\n";
}

void gradients_section(std::string& out, const Json& report) {
  const Json* c = chart(report, "grad_norm_heatmap");
  section_open(out, "gradients", "Gradient norms per layer");
  const int rows = non_empty(c, "layers") ? static_cast<int>(c->at("layers").size()) : 0;
  figure(out, "grad_norm_heatmap", "Gradient norm heatmap",
         "log10 of each parameter tensor's gradient norm (rows, in forward order) over the training steps "
         "(columns). Vanishing gradients show as dark rows, explosions as a bright band; non-finite values are red.",
         non_empty(c, "layers") && non_empty(c, "steps"), "No gradient norms were recorded in this report.",
         std::clamp(90 + 26 * rows, 220, 900));
  out += "</section>\n";
}

void activations_section(std::string& out, const Json& report) {
  const Json* c = chart(report, "activation_stats");
  section_open(out, "activations", "Activation statistics per layer");
  out += "<div class=\"chart-grid\">\n";
  figure(out, "activation_mean_std", "Mean and spread",
         "Mean and standard deviation of each layer's output, in forward order. A scale that grows or shrinks "
         "layer after layer points at the initialisation or a missing normalisation.",
         non_empty(c, "layers"), "No activation statistics in this report.", 300);
  figure(out, "activation_fractions", "Dead and saturated units",
         "Share of each layer's outputs that are exactly zero (dead ReLU units) or saturated (the flat ends of "
         "tanh or sigmoid, where the gradient vanishes).",
         non_empty(c, "layers") &&
             (report_detail::has_finite(*c, "zero_fraction") || report_detail::has_finite(*c, "saturated_fraction")),
         "No dead or saturated fractions in this report.", 300);
  out += "</div>\n</section>\n";
}

void confusion_section(std::string& out, const Json& report) {
  const Json* c = chart(report, "confusion_matrix");
  section_open(out, "confusion", "Confusion matrix");
  const int n = non_empty(c, "labels") ? static_cast<int>(c->at("labels").size()) : 0;
  figure(out, "confusion_matrix", "True against predicted class",
         "Rows are the true classes, columns the predicted ones, on held-out data. Cells hold counts; the colour is "
         "the share of the row, so the diagonal reads as each class's recall.",
         n > 0, "No confusion matrix in this report (it needs a classification task).",
         std::clamp(130 + 44 * n, 260, 760), " square");
  out += "</section>\n";
}

void gradient_check_section(std::string& out, const Json& report) {
  const Json* c = chart(report, "gradient_check");
  section_open(out, "gradient-check", "Gradient check");
  std::string lead =
      "Autograd against central finite differences in double precision, per parameter tensor, with the "
      "conventions of torch.autograd.gradcheck. A failing row means that tensor's backward is wrong.";
  std::vector<std::string> tolerances;
  for (const char* key : {"eps", "atol", "rtol"}) {
    if (c && c->contains(key)) tolerances.push_back(fmt::format("{} {}", key, format_value(c->at(key))));
  }
  if (!tolerances.empty()) lead += " Tolerances: " + escape(fmt::format("{}", fmt::join(tolerances, ", "))) + ".";
  out += "<p class=\"lead\">" + lead + "</p>\n";
  if (!non_empty(c, "rows")) {
    out += "<p class=\"chart-empty\" data-empty-chart=\"gradient_check\">No gradient check in this report.</p>\n"
           "</section>\n";
    return;
  }
  out += "<table class=\"grid\" id=\"gradient-check-table\">\n<thead><tr><th>Parameter</th>"
         "<th class=\"num\">Max abs error</th><th class=\"num\">Max rel error</th><th>Result</th></tr></thead>\n"
         "<tbody>\n";
  for (const auto& row : c->at("rows")) {
    const bool passed = row.at("passed").get<bool>();
    out += fmt::format(
        "<tr{}><td><code>{}</code></td><td class=\"num\">{}</td><td class=\"num\">{}</td>"
        "<td><span class=\"badge status-{}\">{}</span></td></tr>\n",
        passed ? "" : " class=\"failed\"", escape(str(row, "parameter")), escape(format_value(row.at("max_abs_error"))),
        escape(format_value(row.at("max_rel_error"))), passed ? "pass" : "fail", passed ? "pass" : "fail");
  }
  out += "</tbody>\n</table>\n</section>\n";
}

void ladder_section(std::string& out, const Json& report) {
  const Json* c = chart(report, "ladder");
  if (!c) return;  // the ladder runs only on request (--ladder); without it there is nothing to explain
  section_open(out, "ladder", "Complexity ladder");
  const bool has_variants = non_empty(c, "variants");
  figure(out, "ladder", "Accuracy by model size",
         "The same model trained on the same budget at growing widths, and with its last hidden block removed or "
         "repeated. Where validation accuracy stops rising, more capacity no longer helps; where it falls while "
         "training accuracy rises, the larger variants overfit.",
         has_variants, "No ladder variants were trained.", 300);
  if (has_variants) {
    // The best validation score is marked: it is the size the ladder recommends.
    const Json* best = nullptr;
    for (const auto& v : c->at("variants")) {
      if (report_detail::is_finite_number(v.at("val_accuracy")) &&
          (!best || v.at("val_accuracy").get<double>() > best->at("val_accuracy").get<double>())) {
        best = &v;
      }
    }
    out += "<table class=\"grid\" id=\"ladder-table\">\n<thead><tr><th>Variant</th><th class=\"num\">Parameters</th>"
           "<th class=\"num\">Train accuracy</th><th class=\"num\">Validation accuracy</th></tr></thead>\n<tbody>\n";
    for (const auto& v : c->at("variants")) {
      out += fmt::format(
          "<tr><td>{}{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\n",
          escape(str(v, "name")), &v == best ? " <span class=\"badge status-pass\">best</span>" : "",
          escape(format_value(v.at("parameters"))), escape(format_value(v.at("train_accuracy"))),
          escape(format_value(v.at("val_accuracy"))));
    }
    out += "</tbody>\n</table>\n";
  }
  out += "</section>\n";
}

void run_section(std::string& out, const Json& report) {
  section_open(out, "run", "Run");
  const Json environment = report.value("environment", Json::object());
  if (!environment.empty()) {
    out += "<details class=\"raw\" open><summary>Environment</summary>\n<table class=\"grid\">\n<tbody>\n";
    for (const auto& [key, value] : environment.items()) {
      out += fmt::format("<tr><th><code>{}</code></th><td>{}</td></tr>\n", escape(key), escape(format_value(value)));
    }
    out += "</tbody>\n</table>\n</details>\n";
  } else {
    out += "<p class=\"empty\">No environment fingerprint in this report.</p>\n";
  }
  const std::string config = str(report, "config_toml");
  if (!config.empty()) {
    out += "<details class=\"raw\"><summary>Configuration (TOML)</summary>\n<pre>" + escape(config) +
           "</pre>\n</details>\n";
  }
  out += "</section>\n";
}

}  // namespace

std::string render_html(const Json& report) {
  validate_report(report);
  const Json& traindx = report.at("traindx");

  std::string body = "<div class=\"page\">\n";
  header(body, report);
  toc(body, report);
  body += "<main>\n";
  findings_section(body, report);
  checks_section(body, report);
  curves_section(body, report);
  lr_section(body, report);
  gradients_section(body, report);
  activations_section(body, report);
  confusion_section(body, report);
  gradient_check_section(body, report);
  ladder_section(body, report);
  run_section(body, report);
  body += "</main>\n";
  body += fmt::format(
      "<footer>Written by traindx {} ({}) from report.json (schema traindx-report, version {}). Charts drawn with "
      "Chart.js and chartjs-chart-matrix (MIT licence), inlined: this page needs no network.</footer>\n</div>",
      escape(str(traindx, "version")), escape(str(traindx, "commit")), kReportVersion);

  const std::string title = escape(str(report, "title"));
  const std::string generator = "traindx " + escape(str(traindx, "version"));
  const std::string data = script_json(report);
  return fill_template(web_assets::page_html(), {{"generator", generator},
                                                 {"title", title},
                                                 {"page_css", web_assets::page_css()},
                                                 {"body", body},
                                                 {"report_json", data},
                                                 {"chart_js", web_assets::chart_js()},
                                                 {"chart_matrix_js", web_assets::chart_matrix_js()},
                                                 {"page_js", web_assets::page_js()}});
}

}  // namespace traindx
