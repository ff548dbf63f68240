// render_console: the report as a terminal reads it. Plain ASCII framing (the report's own text may be UTF-8),
// wrapped at 100 columns, colours only on request so logs and golden files stay clean.
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <string>
#include <vector>

#include "report/format.h"
#include "traindx/report/report.h"

namespace traindx {
namespace {

using report_detail::format_value;

constexpr size_t kWidth = 100;
// How many evidence entries a console line shows; report.html and report.json have them all.
constexpr size_t kEvidenceShown = 6;

struct Style {
  bool color;
  std::string paint(const std::string& text, const char* code) const {
    return color ? fmt::format("\x1b[{}m{}\x1b[0m", code, text) : text;
  }
};

const char* severity_color(const std::string& severity) {
  if (severity == "critical") return "1;31";
  if (severity == "warning") return "1;33";
  return "1;36";
}

const char* status_color(const std::string& status) {
  if (status == "pass") return "32";
  if (status == "warn") return "33";
  if (status == "fail") return "1;31";
  return "2";
}

const char* verdict_color(const std::string& status) {
  if (status == "healthy") return "1;32";
  if (status == "problems") return "1;33";
  return "1;31";
}

std::string upper(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return s;
}

// Display width in code points: UTF-8 continuation bytes take no column.
size_t columns(const std::string& s) {
  return static_cast<size_t>(std::count_if(s.begin(), s.end(), [](char c) { return (c & 0xC0) != 0x80; }));
}

// Greedy word wrap of `words`, separated by single spaces. The first line continues after text already printed
// (`first_used` columns wide); later lines start with `indent` spaces. A word longer than a line stays whole
// rather than break mid-token.
std::string wrap_words(const std::vector<std::string>& words, size_t first_used, size_t indent) {
  std::string out;
  size_t used = first_used;
  bool line_empty = true;
  for (const auto& word : words) {
    const size_t w = columns(word);
    if (!line_empty && used + 1 + w > kWidth) {
      out += "\n" + std::string(indent, ' ');
      used = indent;
      line_empty = true;
    }
    if (!line_empty) {
      out += ' ';
      ++used;
    }
    out += word;
    used += w;
    line_empty = false;
  }
  return out;
}

std::string wrap(const std::string& text, size_t first_used, size_t indent) {
  std::vector<std::string> words;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && (text[i] == ' ' || text[i] == '\n')) ++i;
    const size_t start = i;
    while (i < text.size() && text[i] != ' ' && text[i] != '\n') ++i;
    if (i > start) words.push_back(text.substr(start, i - start));
  }
  return wrap_words(words, first_used, indent);
}

// "key = value" pairs, each kept on one line when wrapped.
std::string evidence_line(const Json& evidence, size_t first_used, size_t indent) {
  std::vector<std::string> pairs;
  for (const auto& [key, value] : evidence.items()) {
    if (pairs.size() == kEvidenceShown) break;
    pairs.push_back(fmt::format("{} = {}", key, format_value(value)));
  }
  const size_t shown = pairs.size();
  for (size_t i = 0; i + 1 < shown; ++i) pairs[i] += ",";
  if (evidence.size() > shown) pairs.push_back(fmt::format("(+{} more in report.html)", evidence.size() - shown));
  return wrap_words(pairs, first_used, indent);
}

}  // namespace

std::string render_console(const Json& report, bool color) {
  validate_report(report);
  const Style style{color};
  std::string out;

  out += style.paint("traindx report: " + report.at("title").get<std::string>(), "1") + "\n";
  out += fmt::format("traindx {} ({}), created {}\n\n", report.at("traindx").at("version").get<std::string>(),
                     report.at("traindx").at("commit").get<std::string>(),
                     report.at("created_at").get<std::string>());

  const Json& verdict = report.at("verdict");
  const std::string status = verdict.at("status").get<std::string>();
  const std::string head = upper(status) + ": ";
  out += style.paint(upper(status), verdict_color(status)) + ": " +
         wrap(verdict.at("summary").get<std::string>(), head.size(), 2) + "\n\n";

  const auto findings = report_detail::ranked_findings(report);
  out += style.paint("Findings", "1") + ": " + report_detail::findings_tally(report) + "\n";
  for (size_t i = 0; i < findings.size(); ++i) {
    const Json& f = *findings[i];
    const std::string severity = f.at("severity").get<std::string>();
    const std::string number = fmt::format("{:>3}. ", i + 1);
    const std::string label = fmt::format("{:<8}", upper(severity));
    std::string where = f.at("rule").get<std::string>();
    const std::string layer = f.value("layer", std::string());
    if (!layer.empty()) where += " in " + layer;
    const std::string when = report_detail::finding_when(f);
    if (!when.empty()) where += ", " + when;
    out += number + style.paint(label, severity_color(severity)) + " " +
           wrap(where, number.size() + label.size() + 1, 5) + "\n";
    out += "     " + wrap(f.at("message").get<std::string>(), 5, 5) + "\n";
    const Json evidence = f.value("evidence", Json::object());
    if (!evidence.empty()) out += "     evidence: " + evidence_line(evidence, 15, 15) + "\n";
    const auto fixes = f.value("fixes", std::vector<std::string>{});
    if (!fixes.empty()) out += "     fix: " + wrap(fixes.front(), 10, 10) + "\n";
  }
  out += "\n";

  const Json& checks = report.at("checks");
  out += style.paint("Checks", "1") + ":" + (checks.empty() ? " none ran\n" : "\n");
  size_t title_width = 0;
  for (const auto& c : checks) title_width = std::max(title_width, columns(c.at("title").get<std::string>()));
  for (const auto& c : checks) {
    const std::string check_status = c.at("status").get<std::string>();
    const std::string title = c.at("title").get<std::string>();
    const Json seconds = c.value("seconds", Json());
    const std::string time =
        report_detail::is_finite_number(seconds) ? fmt::format("{:.1f} s", seconds.get<double>()) : "";
    const std::string label = fmt::format("{:<8}", upper(check_status));
    const std::string lead = fmt::format("  {} {}{} {:>7}  ", label, title,
                                         std::string(title_width - columns(title), ' '), time);
    out += "  " + style.paint(label, status_color(check_status)) + lead.substr(2 + label.size()) +
           wrap(c.at("summary").get<std::string>(), columns(lead), columns(lead)) + "\n";
  }
  return out;
}

}  // namespace traindx
