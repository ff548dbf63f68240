// CSV reader: quoting, line ends, missing markers, type detection, the header layouts and every error message.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "test_support.h"
#include "traindx/core/error.h"
#include "traindx/data/data.h"

namespace {

using traindx::CsvHeader;
using traindx::DataError;
using traindx::read_csv;
using traindx::Table;
using traindx::testing::TempDir;

std::string csv_error(const std::string& path, char delimiter = ',', CsvHeader header = CsvHeader::FirstRow) {
  try {
    read_csv(path, delimiter, header);
  } catch (const DataError& e) {
    return e.what();
  }
  return "no error";
}

const traindx::Column& column(const Table& t, const std::string& name) {
  for (const auto& c : t.columns) {
    if (c.name == name) return c;
  }
  throw std::runtime_error("no column " + name);
}

TEST(DataCsvTest, QuotedFieldsWithDelimitersQuotesAndLineBreaks) {
  TempDir dir;
  const std::string path = dir.write("q.csv",
                                     "name,note,x\n"
                                     "\"Smith, J\",\"said \"\"hi\"\"\",1\n"
                                     "plain,\"two\nlines\",2\n"
                                     "  spaced  , \"  kept  \" ,3\n");
  const Table t = read_csv(path);
  ASSERT_EQ(t.rows, 3);
  ASSERT_EQ(t.columns.size(), 3u);
  EXPECT_EQ(column(t, "name").text, (std::vector<std::string>{"Smith, J", "plain", "spaced"}));
  EXPECT_EQ(column(t, "note").text, (std::vector<std::string>{"said \"hi\"", "two\nlines", "  kept  "}));
  EXPECT_FALSE(column(t, "x").categorical);
  EXPECT_EQ(column(t, "x").numbers, (std::vector<double>{1, 2, 3}));
  // Rows remember the line they start on, also after a quoted line break.
  EXPECT_EQ(t.lines, (std::vector<int64_t>{2, 3, 5}));
}

TEST(DataCsvTest, CrlfBomAndBlankLinesAreTolerated) {
  TempDir dir;
  const Table t = read_csv(dir.write("crlf.csv", "\xEF\xBB\xBF" "a,b\r\n1,x\r\n\r\n2,\"y\r\nz\"\r\n3,w"));
  ASSERT_EQ(t.rows, 3);
  EXPECT_EQ(t.columns[0].name, "a");
  EXPECT_EQ(t.columns[0].numbers, (std::vector<double>{1, 2, 3}));
  EXPECT_EQ(t.columns[1].text, (std::vector<std::string>{"x", "y\nz", "w"}));
  EXPECT_EQ(t.lines, (std::vector<int64_t>{2, 4, 6}));
}

TEST(DataCsvTest, MissingMarkersAndNumericDetection) {
  TempDir dir;
  const Table t = read_csv(dir.write("m.csv",
                                     "num,cat,allmiss,mixed\n"
                                     "1.5,red,,1\n"
                                     "NA,?,na,2\n"
                                     "nan,NULL,NaN,two\n"
                                     "-2e3,\"\",null,+4\n"
                                     "+7,blue,?,5\n"));
  const auto& num = column(t, "num");
  ASSERT_FALSE(num.categorical);
  EXPECT_EQ(num.numbers[0], 1.5);
  EXPECT_TRUE(std::isnan(num.numbers[1]));
  EXPECT_TRUE(std::isnan(num.numbers[2]));
  EXPECT_EQ(num.numbers[3], -2000);
  EXPECT_EQ(num.numbers[4], 7);
  const auto& cat = column(t, "cat");
  ASSERT_TRUE(cat.categorical);
  EXPECT_EQ(cat.text, (std::vector<std::string>{"red", "", "", "", "blue"}));
  const auto& all = column(t, "allmiss");
  EXPECT_FALSE(all.categorical);  // no evidence of text: numeric, all missing
  for (double v : all.numbers) EXPECT_TRUE(std::isnan(v));
  const auto& mixed = column(t, "mixed");
  ASSERT_TRUE(mixed.categorical);  // one non-number makes the column text, numbers kept as written
  EXPECT_EQ(mixed.text, (std::vector<std::string>{"1", "2", "two", "+4", "5"}));
}

TEST(DataCsvTest, OtherDelimiter) {
  TempDir dir;
  const Table t = read_csv(dir.write("s.csv", "a;b\n1,5;x\n2;\"y;z\"\n"), ';');
  ASSERT_EQ(t.rows, 2);
  EXPECT_TRUE(t.columns[0].categorical);  // "1,5" is text with ';' as the delimiter
  EXPECT_EQ(t.columns[1].text[1], "y;z");
  const Table tabs = read_csv(dir.write("t.tsv", "a\tb\n1\t2\n"), '\t');
  EXPECT_EQ(tabs.columns[1].numbers, (std::vector<double>{2}));
}

TEST(DataCsvTest, RaggedRowNamesFileAndLine) {
  TempDir dir;
  std::string text = "a,b,c,d,e,f\n";
  for (int i = 0; i < 15; ++i) text += "1,2,3,4,5,6\n";
  text += "1,2,3,4,5\n";
  const std::string path = dir.write("ragged.csv", text);
  const std::string msg = csv_error(path);
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("line 17 has 5 fields, the header has 6"), std::string::npos) << msg;
}

TEST(DataCsvTest, EmptyFileDuplicateHeaderUnterminatedQuoteAndNoRows) {
  TempDir dir;
  EXPECT_NE(csv_error(dir.write("empty.csv", "")).find("is empty"), std::string::npos);
  EXPECT_NE(csv_error(dir.write("blank.csv", "\n\r\n\n")).find("is empty"), std::string::npos);
  const std::string dup = csv_error(dir.write("dup.csv", "a,b,a\n1,2,3\n"));
  EXPECT_NE(dup.find("line 1: column name 'a' appears twice (columns 1 and 3)"), std::string::npos) << dup;
  const std::string quote = csv_error(dir.write("quote.csv", "a,b\n1,2\n3,\"open\n4,5\n"));
  EXPECT_NE(quote.find("line 3: unterminated quoted field 2"), std::string::npos) << quote;
  const std::string after = csv_error(dir.write("after.csv", "a,b\n1,\"x\"y\n"));
  EXPECT_NE(after.find("line 2: text after the closing quote of field 2"), std::string::npos) << after;
  EXPECT_NE(csv_error(dir.write("header-only.csv", "a,b\n")).find("no data rows"), std::string::npos);
  EXPECT_NE(csv_error(dir.file("absent.csv")).find("cannot open CSV file " + dir.file("absent.csv")),
            std::string::npos);
}

TEST(DataCsvTest, InfiniteNumbersAreRejected) {
  TempDir dir;
  const std::string msg = csv_error(dir.write("inf.csv", "a,b\n1,2\ninf,3\n"));
  EXPECT_NE(msg.find("line 3, column 'a': 'inf' is infinite"), std::string::npos) << msg;
  const std::string big = csv_error(dir.write("big.csv", "a\n1e999\n"));
  EXPECT_NE(big.find("outside the range of a double"), std::string::npos) << big;
}

TEST(DataCsvTest, EmptyHeaderNamesGetPositionNames) {
  TempDir dir;
  const Table t = read_csv(dir.write("pandas.csv", ",x\n0,1\n1,2\n"));
  EXPECT_EQ(t.columns[0].name, "column_1");
  EXPECT_EQ(t.columns[1].name, "x");
}

TEST(DataCsvTest, HeaderNoneNamesColumnsByPosition) {
  TempDir dir;
  const Table t = read_csv(dir.write("none.csv", "1,a\n2,b\n"), ',', CsvHeader::None);
  ASSERT_EQ(t.rows, 2);
  EXPECT_EQ(t.columns[0].name, "column_1");
  EXPECT_EQ(t.columns[1].name, "column_2");
  EXPECT_EQ(t.lines, (std::vector<int64_t>{1, 2}));
  const std::string msg = csv_error(dir.write("none-ragged.csv", "1,a\n2\n"), ',', CsvHeader::None);
  EXPECT_NE(msg.find("line 2 has 1 fields, the first row has 2"), std::string::npos) << msg;
}

TEST(DataCsvTest, SklearnLayoutOfBreastCancerAndWine) {
  const std::string dir = traindx::testing::kSklearnDataDir;
  const Table bc = read_csv(dir + "/breast_cancer.csv", ',', CsvHeader::Sklearn);
  EXPECT_EQ(bc.rows, 569);
  ASSERT_EQ(bc.columns.size(), 31u);
  EXPECT_EQ(bc.columns[0].name, "feature_0");
  EXPECT_EQ(bc.columns[30].name, "target");
  EXPECT_EQ(bc.columns[0].numbers[0], 17.99);
  EXPECT_EQ(bc.target_names, (std::vector<std::string>{"malignant", "benign"}));
  EXPECT_EQ(bc.lines.front(), 2);
  const Table wine = read_csv(dir + "/wine_data.csv", ',', CsvHeader::Sklearn);
  EXPECT_EQ(wine.rows, 178);
  EXPECT_EQ(wine.columns.size(), 14u);
  EXPECT_EQ(wine.target_names, (std::vector<std::string>{"class_0", "class_1", "class_2"}));
  // boston_house_prices.csv has the names on line 2 and no class names.
  const Table boston = read_csv(dir + "/boston_house_prices.csv", ',', CsvHeader::Sklearn);
  EXPECT_EQ(boston.rows, 506);
  EXPECT_EQ(boston.columns[0].name, "CRIM");
  EXPECT_EQ(boston.columns[13].name, "MEDV");
  EXPECT_TRUE(boston.target_names.empty());
}

TEST(DataCsvTest, SklearnFileReadAsFirstRowHintsAtTheOption) {
  const std::string path = std::string(traindx::testing::kSklearnDataDir) + "/breast_cancer.csv";
  const std::string msg = csv_error(path);
  EXPECT_NE(msg.find("line 2 has 31 fields, the header has 4"), std::string::npos) << msg;
  EXPECT_NE(msg.find("data.header = \"sklearn\""), std::string::npos) << msg;
}

TEST(DataCsvTest, SklearnLayoutChecksTheAnnouncedCounts) {
  TempDir dir;
  const std::string rows = csv_error(dir.write("rows.csv", "3,2,a,b\n1,2,0\n3,4,1\n"), ',', CsvHeader::Sklearn);
  EXPECT_NE(rows.find("announces 3 rows but the file holds 2"), std::string::npos) << rows;
  const std::string bad = csv_error(dir.write("bad.csv", "x,y\n1,2\n"), ',', CsvHeader::Sklearn);
  EXPECT_NE(bad.find("n_samples,n_features"), std::string::npos) << bad;
}

TEST(DataCsvTest, GzippedCsvIsReadTransparently) {
  const Table digits =
      read_csv(std::string(traindx::testing::kSklearnDataDir) + "/digits.csv.gz", ',', CsvHeader::None);
  EXPECT_EQ(digits.rows, 1797);
  EXPECT_EQ(digits.columns.size(), 65u);
}

TEST(DataCsvTest, MutatedFilesNeverCrash) {
  // Every mutation either reads or throws DataError (never another exception, never a crash).
  TempDir dir;
  const std::string good = "a,\"b,c\",d\r\n1,\"x \"\"q\"\"\",NA\r\n2.5,\"multi\nline\",?\r\n-3,,7\r\n";
  const std::string alphabet = ",\"\r\n ?a1.e-+";
  std::mt19937 gen(7);
  for (int round = 0; round < 150; ++round) {
    std::string bytes = good;
    for (int e = 0, edits = 1 + static_cast<int>(gen() % 4); e < edits; ++e) {
      const size_t at = gen() % (bytes.size() + 1);
      const char c = alphabet[gen() % alphabet.size()];
      if (gen() % 2 == 0 && at < bytes.size()) {
        bytes[at] = c;
      } else {
        bytes.insert(at, 1, c);
      }
    }
    try {
      const Table t = read_csv(dir.write("m.csv", bytes));
      for (const auto& col : t.columns) {
        EXPECT_EQ(static_cast<int64_t>(col.categorical ? col.text.size() : col.numbers.size()), t.rows);
      }
    } catch (const DataError&) {
    }
  }
}

TEST(DataCsvTest, NumberToTextIsCanonical) {
  EXPECT_EQ(traindx::number_to_text(3.0), "3");
  EXPECT_EQ(traindx::number_to_text(-0.0), "0");
  EXPECT_EQ(traindx::number_to_text(2.5), "2.5");
  EXPECT_EQ(traindx::number_to_text(0.1), "0.1");
  EXPECT_EQ(traindx::number_to_text(std::nan("")), "");
}

}  // namespace
