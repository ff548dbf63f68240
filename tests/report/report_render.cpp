// report_render REPORT.json OUT_DIR: writes OUT_DIR/report.json and OUT_DIR/report.html from a report document
// and prints the console rendering, so the browser test can open a page made by the real renderer.
#include <exception>
#include <iostream>
#include <string>

#include "traindx/core/config.h"
#include "traindx/report/report.h"
#include "traindx/store/run_store.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: report_render REPORT.json OUT_DIR\n";
    return 2;
  }
  try {
    const traindx::Json report = traindx::Json::parse(traindx::read_file(argv[1]));
    std::string html_path;
    traindx::write_report_files(report, argv[2], nullptr, &html_path);
    std::cout << traindx::render_console(report) << "\nwrote " << html_path << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "report_render: " << e.what() << "\n";
    return 1;
  }
}
