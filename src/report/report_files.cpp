// write_report_files: report.json and report.html side by side, each written atomically so a crash or a full
// disk never leaves a half-written report for someone to open.
#include <filesystem>
#include <string>
#include <system_error>

#include "traindx/core/error.h"
#include "traindx/report/report.h"
#include "traindx/store/run_store.h"

namespace traindx {

void write_report_files(const Json& report, const std::string& dir, std::string* json_path,
                        std::string* html_path) {
  // Render before touching the disk: a report that does not validate writes nothing.
  const std::string json = report.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
  const std::string html = render_html(report);

  if (!dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    TRAINDX_CHECK(!ec, IoError, "cannot create the report directory {}: {}", dir, ec.message());
  }
  const std::string base = dir.empty() ? std::string(".") : dir;
  const std::string json_file = (std::filesystem::path(base) / "report.json").string();
  const std::string html_file = (std::filesystem::path(base) / "report.html").string();
  write_file_atomic(json_file, json);
  write_file_atomic(html_file, html);
  if (json_path) *json_path = json_file;
  if (html_path) *html_path = html_file;
}

}  // namespace traindx
