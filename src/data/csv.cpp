// CSV reader: RFC 4180 quoting, CRLF or LF line ends, a header row (or none, or scikit-learn's bundled layout),
// missing-value markers, and per-column type detection. Files are read through zlib so "x.csv.gz" works too.
#include <zlib.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>

#include "traindx/core/error.h"
#include "traindx/core/text.h"
#include "traindx/data/data.h"

namespace traindx {
namespace {

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};

std::string read_whole_file(const std::string& path) {
  errno = 0;
  std::unique_ptr<gzFile_s, GzCloser> file(gzopen(path.c_str(), "rb"));
  TRAINDX_CHECK(file != nullptr, DataError, "cannot open CSV file {}: {}", path,
                errno != 0 ? std::strerror(errno) : "out of memory");
  std::string text;
  char buf[1 << 16];
  for (;;) {
    const int n = gzread(file.get(), buf, sizeof(buf));
    if (n < 0) {
      int code = 0;
      const char* msg = gzerror(file.get(), &code);
      TRAINDX_FAIL(DataError, "cannot read CSV file {}: {}", path, code == Z_ERRNO ? std::strerror(errno) : msg);
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  int code = 0;
  const char* msg = gzerror(file.get(), &code);
  TRAINDX_CHECK(code == Z_OK, DataError, "cannot read CSV file {}: {}", path, msg);
  return text;
}

struct Record {
  std::vector<std::string> fields;
  int64_t line = 0;  // 1-based line where the record starts
};

bool is_blank(char c, char delimiter) { return (c == ' ' || c == '\t') && c != delimiter; }

std::vector<Record> parse_records(const std::string& s, char delimiter, const std::string& path) {
  std::vector<Record> records;
  const size_t n = s.size();
  size_t i = 0;
  int64_t line = 1;
  if (s.compare(0, 3, "\xEF\xBB\xBF") == 0) i = 3;  // UTF-8 byte-order mark written by spreadsheet programs
  while (i < n) {
    // Blank lines carry no record (a trailing newline, spacing between blocks).
    if (s[i] == '\n') {
      ++i;
      ++line;
      continue;
    }
    if (s[i] == '\r') {
      ++i;
      if (i < n && s[i] == '\n') ++i;
      ++line;
      continue;
    }
    Record rec;
    rec.line = line;
    for (;;) {
      std::string field;
      size_t j = i;
      while (j < n && is_blank(s[j], delimiter)) ++j;
      if (j < n && s[j] == '"') {
        const int64_t open_line = line;
        i = j + 1;
        for (;;) {
          TRAINDX_CHECK(i < n, DataError,
                        "CSV file {}: line {}: unterminated quoted field {} (the quote opened there never closes)",
                        path, open_line, rec.fields.size() + 1);
          const char c = s[i];
          if (c == '"') {
            if (i + 1 < n && s[i + 1] == '"') {
              field += '"';
              i += 2;
              continue;
            }
            ++i;
            break;
          }
          if (c == '\r') {
            // Line breaks inside quotes become "\n" whatever the file's convention, so categories match across files.
            ++i;
            if (i < n && s[i] == '\n') ++i;
            field += '\n';
            ++line;
            continue;
          }
          if (c == '\n') ++line;
          field += c;
          ++i;
        }
        while (i < n && is_blank(s[i], delimiter)) ++i;
        TRAINDX_CHECK(i >= n || s[i] == delimiter || s[i] == '\n' || s[i] == '\r', DataError,
                      "CSV file {}: line {}: text after the closing quote of field {}; quote the whole field and "
                      "double any quote inside it (\"\")",
                      path, line, rec.fields.size() + 1);
      } else {
        const size_t start = i;
        while (i < n && s[i] != delimiter && s[i] != '\n' && s[i] != '\r') ++i;
        field = trim(std::string_view(s).substr(start, i - start));
      }
      rec.fields.push_back(std::move(field));
      if (i < n && s[i] == delimiter) {
        ++i;
        continue;
      }
      if (i < n && s[i] == '\r') {
        ++i;
        if (i < n && s[i] == '\n') ++i;
        ++line;
      } else if (i < n && s[i] == '\n') {
        ++i;
        ++line;
      }
      break;
    }
    records.push_back(std::move(rec));
  }
  return records;
}

bool is_missing(const std::string& cell) {
  if (cell.empty()) return true;
  if (cell.size() > 4) return false;
  const std::string lower = to_lower(cell);
  return lower == "na" || lower == "nan" || lower == "?" || lower == "null";
}

enum class NumberParse { Ok, NotANumber, OutOfRange };

// Locale-independent full-string parse. A leading '+' is accepted (from_chars alone rejects it).
NumberParse parse_number(const std::string& cell, double& value) {
  const char* first = cell.data();
  const char* last = cell.data() + cell.size();
  if (first != last && *first == '+') ++first;
  if (first == last) return NumberParse::NotANumber;
  const auto [ptr, ec] = std::from_chars(first, last, value);
  if (ec == std::errc::result_out_of_range && ptr == last) return NumberParse::OutOfRange;
  if (ec != std::errc() || ptr != last) return NumberParse::NotANumber;
  return NumberParse::Ok;
}

bool is_number(const std::string& cell) {
  double v = 0;
  return parse_number(cell, v) != NumberParse::NotANumber;
}

bool parse_count(const std::string& cell, int64_t& value) {
  const auto [ptr, ec] = std::from_chars(cell.data(), cell.data() + cell.size(), value);
  return ec == std::errc() && ptr == cell.data() + cell.size() && value >= 0;
}

}  // namespace

std::string number_to_text(double value) {
  if (std::isnan(value)) return "";
  if (value == 0) return "0";  // -0 and 0 are one category
  return fmt::format("{}", value);
}

CsvHeader csv_header_from_string(const std::string& name) {
  if (name == "first_row") return CsvHeader::FirstRow;
  if (name == "none") return CsvHeader::None;
  if (name == "sklearn") return CsvHeader::Sklearn;
  TRAINDX_FAIL(ConfigError, "data.header: unknown value '{}'; allowed: first_row, none, sklearn", name);
}

Table read_csv(const std::string& path, char delimiter, CsvHeader header) {
  TRAINDX_CHECK(delimiter != '"' && delimiter != '\n' && delimiter != '\r', ConfigError,
                "data.delimiter cannot be a quote or a line break");
  const std::vector<Record> records = parse_records(read_whole_file(path), delimiter, path);
  TRAINDX_CHECK(!records.empty(), DataError, "CSV file {} is empty: expected {}", path,
                header == CsvHeader::None ? "at least one data row" : "a header row and data rows");

  Table table;
  std::vector<std::string> names;
  size_t first_data = 0;
  int64_t announced_rows = -1;
  if (header == CsvHeader::FirstRow) {
    names = records[0].fields;
    first_data = 1;
  } else if (header == CsvHeader::None) {
    for (size_t j = 0; j < records[0].fields.size(); ++j) names.push_back(fmt::format("column_{}", j + 1));
  } else {
    const auto& first = records[0].fields;
    int64_t features = 0;
    TRAINDX_CHECK(first.size() >= 2 && parse_count(first[0], announced_rows) && parse_count(first[1], features),
                  DataError,
                  "CSV file {}: line {} should read \"n_samples,n_features[,class names]\" as in scikit-learn's "
                  "bundled files (data.header = \"sklearn\"), got \"{}\"",
                  path, records[0].line, fmt::join(first, std::string(1, delimiter)));
    bool all_named = first.size() > 2;
    for (size_t j = 2; j < first.size(); ++j) all_named = all_named && !first[j].empty();
    if (all_named) table.target_names.assign(first.begin() + 2, first.end());
    first_data = 1;
    // boston_house_prices.csv puts column names on line 2; the other bundled files go straight to numbers.
    bool names_row = records.size() > 1;
    if (names_row) {
      for (const auto& cell : records[1].fields) names_row = names_row && !is_missing(cell) && !is_number(cell);
    }
    if (names_row) {
      names = records[1].fields;
      first_data = 2;
    } else {
      for (int64_t j = 0; j < features; ++j) names.push_back(fmt::format("feature_{}", j));
      names.emplace_back("target");
    }
    TRAINDX_CHECK(static_cast<int64_t>(names.size()) == features + 1, DataError,
                  "CSV file {}: line 1 announces {} features (+1 target column) but {} {} columns", path, features,
                  names_row ? "the names on line 2 make" : "the layout makes", names.size());
  }

  const size_t cols = names.size();
  std::map<std::string, size_t> seen;
  for (size_t j = 0; j < cols; ++j) {
    // pandas writes its index under an empty name; give it one so that data.drop_columns can name it.
    if (names[j].empty()) names[j] = fmt::format("column_{}", j + 1);
    const auto [it, fresh] = seen.emplace(names[j], j);
    TRAINDX_CHECK(fresh, DataError, "CSV file {}: line {}: column name '{}' appears twice (columns {} and {})", path,
                  records[0].line, names[j], it->second + 1, j + 1);
  }

  for (size_t r = first_data; r < records.size(); ++r) {
    const Record& rec = records[r];
    if (rec.fields.size() == cols) continue;
    std::string hint;
    int64_t a = 0, b = 0;
    if (header == CsvHeader::FirstRow && r == 1 && records[0].fields.size() >= 2 &&
        parse_count(records[0].fields[0], a) && parse_count(records[0].fields[1], b) &&
        static_cast<int64_t>(rec.fields.size()) == b + 1) {
      hint = "; the first line looks like scikit-learn's \"n_samples,n_features,class names\" layout: set "
             "data.header = \"sklearn\"";
    }
    TRAINDX_FAIL(DataError, "CSV file {}: line {} has {} fields, the {} has {}{}", path, rec.line, rec.fields.size(),
                 header == CsvHeader::None ? "first row" : "header", cols, hint);
  }
  const int64_t rows = static_cast<int64_t>(records.size() - first_data);
  TRAINDX_CHECK(rows > 0, DataError, "CSV file {} has a header but no data rows", path);
  TRAINDX_CHECK(announced_rows < 0 || announced_rows == rows, DataError,
                "CSV file {}: line 1 announces {} rows but the file holds {}; is it truncated?", path, announced_rows,
                rows);

  table.rows = rows;
  for (size_t r = first_data; r < records.size(); ++r) table.lines.push_back(records[r].line);
  table.columns.resize(cols);
  for (size_t j = 0; j < cols; ++j) {
    Column& col = table.columns[j];
    col.name = names[j];
    bool numeric = true;
    for (size_t r = first_data; r < records.size() && numeric; ++r) {
      const std::string& cell = records[r].fields[j];
      numeric = is_missing(cell) || is_number(cell);
    }
    col.categorical = !numeric;
    if (numeric) {
      col.numbers.reserve(static_cast<size_t>(rows));
      for (size_t r = first_data; r < records.size(); ++r) {
        const std::string& cell = records[r].fields[j];
        if (is_missing(cell)) {
          col.numbers.push_back(std::nan(""));
          continue;
        }
        double v = 0;
        const NumberParse parsed = parse_number(cell, v);
        // Spellings of NaN beyond the markers ("-nan", "nan(1)") parse to NaN, which means missing as well.
        TRAINDX_CHECK(parsed == NumberParse::Ok && !std::isinf(v), DataError,
                      "CSV file {}: line {}, column '{}': '{}' is {}; traindx needs finite numbers (write missing "
                      "cells as empty or NA)",
                      path, records[r].line, col.name, cell,
                      parsed == NumberParse::OutOfRange ? "outside the range of a double" : "infinite");
        col.numbers.push_back(v);
      }
    } else {
      col.text.reserve(static_cast<size_t>(rows));
      for (size_t r = first_data; r < records.size(); ++r) {
        const std::string& cell = records[r].fields[j];
        col.text.push_back(is_missing(cell) ? std::string() : cell);
      }
    }
  }
  return table;
}

}  // namespace traindx
