// Sources and splits: real Fashion-MNIST and scikit-learn tables, IDX directories written by the test, CSV options,
// and the seeded, stratified, disjoint splits.
#include <gtest/gtest.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "test_support.h"
#include "traindx/core/error.h"
#include "traindx/data/data.h"

namespace {

using traindx::DataError;
using traindx::DataOptions;
using traindx::load_raw_splits;
using traindx::RawSplits;
using traindx::Task;
using traindx::testing::TempDir;

std::string load_error(const DataOptions& o) {
  try {
    load_raw_splits(o);
  } catch (const traindx::Error& e) {
    return e.what();
  }
  return "no error";
}

std::vector<int64_t> values(const torch::Tensor& t) {
  const torch::Tensor c = t.to(torch::kLong).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

// Writes an IDX file; payload bytes as given (u8).
void write_idx(const std::string& path, const std::vector<uint32_t>& dims, const std::string& payload, bool gz) {
  std::string bytes = {'\0', '\0', '\x08', static_cast<char>(dims.size())};
  for (uint32_t d : dims) {
    for (int s = 24; s >= 0; s -= 8) bytes.push_back(static_cast<char>((d >> s) & 0xFF));
  }
  bytes += payload;
  if (gz) {
    gzFile f = gzopen(path.c_str(), "wb");
    gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
    gzclose(f);
  } else {
    std::FILE* out = std::fopen(path.c_str(), "wb");
    std::fwrite(bytes.data(), 1, bytes.size(), out);
    std::fclose(out);
  }
}

// A tiny IDX dataset: n train / m test images of h x w (x c when c > 0), label i % classes.
void write_idx_dir(const TempDir& dir, int n, int m, int h, int w, int c, int classes, bool gz) {
  auto images = [&](int count) {
    std::string p;
    for (int i = 0; i < count * h * w * std::max(c, 1); ++i) p.push_back(static_cast<char>(i % 251));
    return p;
  };
  auto labels = [&](int count) {
    std::string p;
    for (int i = 0; i < count; ++i) p.push_back(static_cast<char>(i % classes));
    return p;
  };
  const std::string ext = gz ? ".gz" : "";
  std::vector<uint32_t> train_dims = {static_cast<uint32_t>(n), static_cast<uint32_t>(h), static_cast<uint32_t>(w)};
  std::vector<uint32_t> test_dims = {static_cast<uint32_t>(m), static_cast<uint32_t>(h), static_cast<uint32_t>(w)};
  if (c > 0) {
    train_dims.push_back(static_cast<uint32_t>(c));
    test_dims.push_back(static_cast<uint32_t>(c));
  }
  write_idx(dir.file("train-images-idx3-ubyte" + ext), train_dims, images(n), gz);
  write_idx(dir.file("train-labels-idx1-ubyte" + ext), {static_cast<uint32_t>(n)}, labels(n), gz);
  write_idx(dir.file("t10k-images-idx3-ubyte" + ext), test_dims, images(m), gz);
  write_idx(dir.file("t10k-labels-idx1-ubyte" + ext), {static_cast<uint32_t>(m)}, labels(m), gz);
}

DataOptions csv_options(const std::string& path) {
  DataOptions o;
  o.source = "csv";
  o.path = path;
  return o;
}

// ---- Fashion-MNIST -------------------------------------------------------------------------------------------

TEST(DataLoadTest, FashionMnistLoadsWithKnownSizesAndLabels) {
  const torch::Tensor labels =
      traindx::read_idx(std::string(traindx::testing::kFashionMnistDir) + "/train-labels-idx1-ubyte.gz");
  ASSERT_EQ(labels.numel(), 60000);
  EXPECT_EQ(labels[0].item<int>(), 9);  // the first training example is an ankle boot
  EXPECT_EQ(labels[1].item<int>(), 0);
  const torch::Tensor test_labels =
      traindx::read_idx(std::string(traindx::testing::kFashionMnistDir) + "/t10k-labels-idx1-ubyte.gz");
  EXPECT_EQ(test_labels.numel(), 10000);
  EXPECT_EQ(test_labels[0].item<int>(), 9);

  DataOptions o;  // fashion-mnist from the default directory
  o.max_train = 1000;
  o.max_test = 500;
  const RawSplits s = load_raw_splits(o);
  EXPECT_EQ(s.info.source, "fashion-mnist");
  EXPECT_EQ(s.info.num_classes, 10);
  EXPECT_EQ(s.info.class_names.at(9), "Ankle boot");
  EXPECT_EQ(s.info.class_names.at(0), "T-shirt/top");
  EXPECT_EQ(s.info.input_shape, (std::vector<int64_t>{1, 28, 28}));
  EXPECT_EQ(s.train.size() + s.val.size(), 1000);
  EXPECT_EQ(s.val.size(), 100);  // stratified: round(0.1 * each class count) sums to 100 here
  EXPECT_EQ(s.test.size(), 500);
  EXPECT_EQ(s.train.images.scalar_type(), torch::kUInt8);
  EXPECT_EQ(s.train.images.sizes(), torch::IntArrayRef({s.train.size(), 1, 28, 28}));
  EXPECT_EQ(s.train.targets.scalar_type(), torch::kLong);
  EXPECT_LE(s.train.images.max().item<int>(), 255);
}

TEST(DataLoadTest, FashionMnistMissingDirectorySaysHowToInstall) {
  DataOptions o;
  o.path = "/nonexistent/fashion";
  const std::string msg = load_error(o);
  EXPECT_NE(msg.find("/nonexistent/fashion/train-images-idx3-ubyte[.gz]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("apt-get install dataset-fashion-mnist"), std::string::npos) << msg;
  EXPECT_NE(msg.find("data.path"), std::string::npos) << msg;
}

// ---- IDX directories -----------------------------------------------------------------------------------------

TEST(DataLoadTest, IdxDirectoryPlainAndGzipped) {
  for (bool gz : {false, true}) {
    TempDir dir;
    write_idx_dir(dir, 40, 10, 5, 6, 0, 4, gz);
    DataOptions o;
    o.source = "idx";
    o.path = dir.path();
    o.val_fraction = 0.25;
    const RawSplits s = load_raw_splits(o);
    EXPECT_EQ(s.info.num_classes, 4);
    EXPECT_EQ(s.info.class_names, (std::vector<std::string>{"0", "1", "2", "3"}));
    EXPECT_EQ(s.info.input_shape, (std::vector<int64_t>{1, 5, 6}));
    // Stratified: each of the 4 classes of 10 gives round(0.25 * 10) = 3 (half rounds away from zero).
    EXPECT_EQ(s.val.size(), 12);
    EXPECT_EQ(s.train.size(), 28);
    EXPECT_EQ(s.test.size(), 10);
    // Example 0 of the file is pixels 0, 1, 2, ... : check it survived in whichever split holds it.
    const torch::Tensor first = s.test.images[0].flatten();
    EXPECT_EQ(first[0].item<int>(), 0);
    EXPECT_EQ(first[7].item<int>(), 7);
  }
}

TEST(DataLoadTest, IdxFourDimensionalImagesBecomeChannelsFirst) {
  TempDir dir;
  write_idx_dir(dir, 8, 2, 2, 3, 3, 2, false);  // [N, H=2, W=3, C=3]
  DataOptions o;
  o.source = "idx";
  o.path = dir.path();
  o.val_fraction = 0;
  const RawSplits s = load_raw_splits(o);
  EXPECT_EQ(s.info.input_shape, (std::vector<int64_t>{3, 2, 3}));
  // Test example 0 holds bytes 0..17 in H, W, C order: pixel (h, w, c) = h*9 + w*3 + c.
  const torch::Tensor x = s.test.images[0];
  EXPECT_EQ(x[2][1][2].item<int>(), 1 * 9 + 2 * 3 + 2);
  EXPECT_EQ(x[1][0][1].item<int>(), 0 * 9 + 1 * 3 + 1);
}

TEST(DataLoadTest, IdxCountMismatchNamesBothFiles) {
  TempDir dir;
  write_idx_dir(dir, 10, 4, 2, 2, 0, 2, false);
  write_idx(dir.file("train-labels-idx1-ubyte"), {9}, std::string(9, '\1'), false);
  DataOptions o;
  o.source = "idx";
  o.path = dir.path();
  const std::string msg = load_error(o);
  EXPECT_NE(msg.find(dir.file("train-images-idx3-ubyte") + " holds 10 images but " +
                     dir.file("train-labels-idx1-ubyte") + " holds 9 labels"),
            std::string::npos)
      << msg;
}

TEST(DataLoadTest, IdxLabelsOutOfRangeNameTheIndex) {
  TempDir dir;
  write_idx_dir(dir, 10, 4, 2, 2, 0, 2, false);
  std::string labels(4, '\0');
  labels[3] = '\xff';  // 255 is fine for an IDX source (< 1000) ...
  write_idx(dir.file("t10k-labels-idx1-ubyte"), {4}, labels, false);
  DataOptions o;
  o.source = "idx";
  o.path = dir.path();
  EXPECT_EQ(load_raw_splits(o).info.num_classes, 256);
  // ... but a signed label file with a negative label is not.
  std::string bytes = {'\0', '\0', '\x09', '\x01', '\0', '\0', '\0', '\x04', '\0', '\1', '\xfe', '\0'};
  std::FILE* f = std::fopen(dir.file("t10k-labels-idx1-ubyte").c_str(), "wb");
  std::fwrite(bytes.data(), 1, bytes.size(), f);
  std::fclose(f);
  const std::string msg = load_error(o);
  EXPECT_NE(msg.find("example 2 has label -2"), std::string::npos) << msg;
}

TEST(DataLoadTest, IdxMissingFileAndMissingPath) {
  TempDir dir;
  DataOptions o;
  o.source = "idx";
  EXPECT_NE(load_error(o).find("needs data.path"), std::string::npos);
  o.path = dir.path();
  const std::string msg = load_error(o);
  EXPECT_NE(msg.find("IDX file not found: " + dir.file("train-images-idx3-ubyte") + "[.gz]"), std::string::npos)
      << msg;
}

// ---- CSV -----------------------------------------------------------------------------------------------------

TEST(DataLoadTest, SklearnBreastCancerAndWineWithHeaderSklearn) {
  DataOptions o = csv_options(std::string(traindx::testing::kSklearnDataDir) + "/breast_cancer.csv");
  o.header = "sklearn";
  const RawSplits bc = load_raw_splits(o);
  EXPECT_EQ(bc.info.task, Task::Classification);
  EXPECT_EQ(bc.info.class_names, (std::vector<std::string>{"malignant", "benign"}));
  EXPECT_EQ(bc.info.input_shape, (std::vector<int64_t>{30}));
  EXPECT_EQ(bc.train.size() + bc.val.size() + bc.test.size(), 569);
  EXPECT_EQ(bc.test.size(), std::llround(0.2 * 212) + std::llround(0.2 * 357));  // stratified test split

  o.path = std::string(traindx::testing::kSklearnDataDir) + "/wine_data.csv";
  const RawSplits wine = load_raw_splits(o);
  EXPECT_EQ(wine.info.num_classes, 3);
  EXPECT_EQ(wine.info.class_names, (std::vector<std::string>{"class_0", "class_1", "class_2"}));
  EXPECT_EQ(wine.info.input_shape, (std::vector<int64_t>{13}));
  EXPECT_EQ(wine.train.size() + wine.val.size() + wine.test.size(), 178);

  o.path = std::string(traindx::testing::kSklearnDataDir) + "/boston_house_prices.csv";
  const RawSplits boston = load_raw_splits(o);
  EXPECT_EQ(boston.info.task, Task::Regression);
  EXPECT_EQ(boston.train.targets.scalar_type(), torch::kFloat32);
  EXPECT_EQ(boston.info.num_classes, 0);
}

TEST(DataLoadTest, SklearnFileThroughTheConfig) {
  traindx::Config config;
  config.set("data.source=csv");
  config.set(std::string("data.path=") + traindx::testing::kSklearnDataDir + "/wine_data.csv");
  config.set("data.header=sklearn");
  config.set("run.seed=3");
  const DataOptions o = DataOptions::from_config(config);
  EXPECT_EQ(o.header, "sklearn");
  EXPECT_EQ(o.seed, 3u);
  EXPECT_EQ(load_raw_splits(o).info.num_classes, 3);
  EXPECT_THROW(config.set("data.header=yes"), traindx::ConfigError);
}

TEST(DataLoadTest, UnknownTargetNamesTheClosestColumn) {
  TempDir dir;
  DataOptions o = csv_options(dir.write("t.csv", "age,income,label\n1,2,a\n3,4,b\n"));
  o.target = "lable";
  const std::string msg = load_error(o);
  EXPECT_NE(msg.find("target column 'lable' not in " + o.path + "; closest: 'label'; columns: age, income, label"),
            std::string::npos)
      << msg;
  o.target = "";
  o.drop_columns = {"incme"};
  const std::string drop = load_error(o);
  EXPECT_NE(drop.find("column 'incme' not in " + o.path + "; closest: 'income'"), std::string::npos) << drop;
}

TEST(DataLoadTest, MissingTargetNamesTheLine) {
  TempDir dir;
  DataOptions o = csv_options(dir.write("t.csv", "x,y\n1,a\n2,b\n3,\n4,NA\n"));
  const std::string msg = load_error(o);
  EXPECT_NE(msg.find("line 4: the target column 'y' is missing (2 rows in all)"), std::string::npos) << msg;
}

TEST(DataLoadTest, TaskAutoAndClassEncoding) {
  TempDir dir;
  // Integer targets with few values classify; class indices follow numeric order, not file order.
  DataOptions o = csv_options(dir.write("int.csv", "x,y\n1,10\n2,-1\n3,2\n4,10\n5,2\n6,-1\n"));
  o.val_fraction = 0;
  o.test_fraction = 0;
  RawSplits s = load_raw_splits(o);
  EXPECT_EQ(s.info.task, Task::Classification);
  EXPECT_EQ(s.info.class_names, (std::vector<std::string>{"-1", "2", "10"}));
  EXPECT_EQ(values(s.train.targets), (std::vector<int64_t>{2, 0, 1, 2, 1, 0}));
  // Text targets classify in lexicographic order.
  o.path = dir.write("text.csv", "x,y\n1,dog\n2,cat\n3,emu\n");
  s = load_raw_splits(o);
  EXPECT_EQ(s.info.class_names, (std::vector<std::string>{"cat", "dog", "emu"}));
  EXPECT_EQ(values(s.train.targets), (std::vector<int64_t>{1, 0, 2}));
  // Fractional targets regress.
  o.path = dir.write("real.csv", "x,y\n1,0.5\n2,1.25\n3,2\n");
  s = load_raw_splits(o);
  EXPECT_EQ(s.info.task, Task::Regression);
  EXPECT_EQ(s.train.targets.scalar_type(), torch::kFloat32);
  EXPECT_EQ(s.train.targets[1].item<float>(), 1.25f);
  // More than 20 distinct integers regress; task = classification overrides.
  std::string many = "x,y\n";
  for (int i = 0; i < 25; ++i) many += std::to_string(i) + "," + std::to_string(i * 3) + "\n";
  o.path = dir.write("many.csv", many);
  EXPECT_EQ(load_raw_splits(o).info.task, Task::Regression);
  o.task = "classification";
  EXPECT_EQ(load_raw_splits(o).info.num_classes, 25);
  // Text cannot regress.
  o.path = dir.write("text.csv", "x,y\n1,dog\n2,cat\n3,emu\n");
  o.task = "regression";
  EXPECT_NE(load_error(o).find("holds text ('dog' on line 2); regression needs numbers"), std::string::npos);
}

TEST(DataLoadTest, DropColumnsAndForcedCategorical) {
  TempDir dir;
  DataOptions o = csv_options(dir.write("t.csv", "id,zip,x,y\n1,1000,0.5,a\n2,2000.0,1.5,b\n3,1000,2.5,a\n"));
  o.drop_columns = {"id"};
  o.categorical = {"zip"};
  o.val_fraction = 0;
  o.test_fraction = 0;
  const RawSplits s = load_raw_splits(o);
  ASSERT_EQ(s.train.table.columns.size(), 2u);
  EXPECT_EQ(s.info.feature_names, (std::vector<std::string>{"zip", "x"}));
  EXPECT_TRUE(s.train.table.columns[0].categorical);
  EXPECT_EQ(s.train.table.columns[0].text, (std::vector<std::string>{"1000", "2000", "1000"}));
}

TEST(DataLoadTest, SeparateTestFileIsAlignedToTheTrainingColumns) {
  TempDir dir;
  DataOptions o = csv_options(dir.write("train.csv", "a,b,y\n1,x,p\n2,y,q\n3,x,p\n4,y,q\n"));
  o.test_path = dir.write("test.csv", "b,a,y\n5,10,q\nx,20,p\n");  // reordered; b looks mixed
  o.val_fraction = 0;
  const RawSplits s = load_raw_splits(o);
  ASSERT_EQ(s.test.size(), 2);
  EXPECT_EQ(s.test.table.columns[0].name, "a");
  EXPECT_EQ(s.test.table.columns[0].numbers, (std::vector<double>{10, 20}));
  EXPECT_EQ(s.test.table.columns[1].text, (std::vector<std::string>{"5", "x"}));
  EXPECT_EQ(values(s.test.targets), (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(s.train.size(), 4);

  o.test_path = dir.write("unseen.csv", "a,b,y\n1,x,r\n");
  EXPECT_NE(load_error(o).find("line 2: target value 'r' does not occur in the training file"), std::string::npos);
  o.test_path = dir.write("extra.csv", "a,b,c,y\n1,x,3,p\n");
  EXPECT_NE(load_error(o).find("has column 'c' that the training file"), std::string::npos);
  o.test_path = dir.write("lacking.csv", "a,y\n1,p\n");
  EXPECT_NE(load_error(o).find("has no column 'b'"), std::string::npos);
  o.test_path = dir.write("text.csv", "a,b,y\nten,x,p\n");
  EXPECT_NE(load_error(o).find("column 'a' is numeric in"), std::string::npos);
}

TEST(DataLoadTest, OptionsThatDoNotApplyAreRejected) {
  DataOptions o;
  o.target = "label";
  EXPECT_NE(load_error(o).find("data.target only applies to data.source = \"csv\""), std::string::npos);
  DataOptions bad;
  bad.source = "parquet";
  EXPECT_THROW(load_raw_splits(bad), traindx::ConfigError);
}

// ---- splits --------------------------------------------------------------------------------------------------

std::string balanced_csv(const TempDir& dir, int per_class_a, int per_class_b) {
  std::string text = "x,y\n";
  for (int i = 0; i < per_class_a + per_class_b; ++i) text += std::to_string(i) + (i < per_class_a ? ",a\n" : ",b\n");
  return dir.write("split.csv", text);
}

std::vector<int64_t> ids(const traindx::RawData& d) {
  std::vector<int64_t> out;
  for (double v : d.table.columns[0].numbers) out.push_back(static_cast<int64_t>(v));
  return out;
}

TEST(DataLoadTest, SplitsAreSeededDisjointAndComplete) {
  TempDir dir;
  DataOptions o = csv_options(balanced_csv(dir, 60, 140));
  o.seed = 7;
  const RawSplits a = load_raw_splits(o);
  const RawSplits b = load_raw_splits(o);
  EXPECT_EQ(ids(a.train), ids(b.train));
  EXPECT_EQ(ids(a.val), ids(b.val));
  EXPECT_EQ(ids(a.test), ids(b.test));
  std::set<int64_t> all;
  for (const auto* split : {&a.train, &a.val, &a.test}) {
    for (int64_t id : ids(*split)) EXPECT_TRUE(all.insert(id).second) << "example " << id << " in two splits";
  }
  EXPECT_EQ(all.size(), 200u);
  o.seed = 8;
  const RawSplits c = load_raw_splits(o);
  EXPECT_NE(ids(a.test), ids(c.test));
  EXPECT_NE(ids(a.val), ids(c.val));
}

TEST(DataLoadTest, StratifiedSplitsKeepClassProportions) {
  TempDir dir;
  DataOptions o = csv_options(balanced_csv(dir, 50, 150));
  o.test_fraction = 0.2;
  o.val_fraction = 0.1;
  const RawSplits s = load_raw_splits(o);
  auto count = [](const traindx::RawData& d) {
    std::map<int64_t, int64_t> m;
    for (int64_t y : values(d.targets)) ++m[y];
    return m;
  };
  EXPECT_EQ(count(s.test), (std::map<int64_t, int64_t>{{0, 10}, {1, 30}}));
  EXPECT_EQ(count(s.val), (std::map<int64_t, int64_t>{{0, 4}, {1, 12}}));  // round(0.1 * 40), round(0.1 * 120)
  EXPECT_EQ(count(s.train), (std::map<int64_t, int64_t>{{0, 36}, {1, 108}}));
  // Without stratification the test split holds round(0.2 * 200) examples, whatever their classes.
  o.stratify = false;
  EXPECT_EQ(load_raw_splits(o).test.size(), 40);
}

TEST(DataLoadTest, MaxTrainAppliesBeforeTheValidationSplit) {
  TempDir dir;
  DataOptions o = csv_options(balanced_csv(dir, 100, 100));
  o.test_fraction = 0.5;
  o.max_train = 20;
  o.max_test = 7;
  o.val_fraction = 0.25;
  const RawSplits s = load_raw_splits(o);
  EXPECT_EQ(s.train.size() + s.val.size(), 20);
  EXPECT_EQ(s.test.size(), 7);
  // round(0.9 * 1) = 1 example held out for validation leaves nothing to train on: say so.
  o.max_train = 1;
  o.val_fraction = 0.9;
  o.stratify = false;
  EXPECT_NE(load_error(o).find("no training examples left"), std::string::npos);
}

TEST(DataLoadTest, SplitMix64MatchesTheReferenceSequence) {
  // Vigna's splitmix64.c seeded with 0 and 1234567.
  traindx::SplitMix64 zero(0);
  EXPECT_EQ(zero.next(), 0xE220A8397B1DCDAFULL);
  EXPECT_EQ(zero.next(), 0x6E789E6AA1B965F4ULL);
  traindx::SplitMix64 r(1234567);
  EXPECT_EQ(r.next(), 6457827717110365317ULL);
  EXPECT_EQ(r.next(), 3203168211198807973ULL);
  traindx::SplitMix64 b(99);
  for (int i = 0; i < 1000; ++i) EXPECT_LT(b.below(7), 7u);
}

TEST(DataLoadTest, SelectKeepsRowsAndLines) {
  TempDir dir;
  const traindx::Table t = traindx::read_csv(dir.write("t.csv", "a,b\n1,x\n2,y\n3,z\n"));
  const traindx::Table s = t.select_rows({2, 0});
  EXPECT_EQ(s.rows, 2);
  EXPECT_EQ(s.columns[0].numbers, (std::vector<double>{3, 1}));
  EXPECT_EQ(s.columns[1].text, (std::vector<std::string>{"z", "x"}));
  EXPECT_EQ(s.lines, (std::vector<int64_t>{4, 2}));
  EXPECT_THROW(t.select_rows({3}), DataError);
}

}  // namespace
