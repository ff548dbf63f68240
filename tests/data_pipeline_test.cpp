// Preprocessing pipeline: numbers checked by hand on tiny tables and images, real-data sanity, exact replay.
#include <gtest/gtest.h>

#include <cmath>

#include "test_support.h"
#include "traindx/core/error.h"
#include "traindx/data/data.h"

namespace {

using traindx::Column;
using traindx::DataError;
using traindx::DataOptions;
using traindx::Pipeline;
using traindx::RawData;

const double kNaN = std::nan("");

Column numeric(const std::string& name, std::vector<double> values) {
  Column c;
  c.name = name;
  c.numbers = std::move(values);
  return c;
}

Column categorical(const std::string& name, std::vector<std::string> values) {
  Column c;
  c.name = name;
  c.categorical = true;
  c.text = std::move(values);
  return c;
}

RawData table(std::vector<Column> columns) {
  RawData d;
  d.table.rows = static_cast<int64_t>(columns.front().categorical ? columns.front().text.size()
                                                                  : columns.front().numbers.size());
  d.table.columns = std::move(columns);
  return d;
}

std::vector<float> column_of(const torch::Tensor& x, int64_t j) {
  const torch::Tensor c = x.select(1, j).contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

std::string transform_error(const Pipeline& p, const RawData& raw) {
  try {
    p.transform(raw);
  } catch (const DataError& e) {
    return e.what();
  }
  return "no error";
}

TEST(DataPipelineTest, MeanImputationThenStandardizeByHand) {
  DataOptions o;  // standardize, mean
  const RawData train = table({numeric("x", {1, 3, kNaN, 5}), numeric("constant", {7, 7, 7, 7}),
                               numeric("empty", {kNaN, kNaN, kNaN, kNaN})});
  const Pipeline p = Pipeline::fit(train, o);
  const traindx::Json doc = p.to_json();
  const auto& cols = doc["columns"];
  EXPECT_EQ(cols[0]["fill"].get<double>(), 3.0);   // mean of 1, 3, 5
  EXPECT_EQ(cols[0]["shift"].get<double>(), 3.0);  // mean after imputation: 1, 3, 3, 5
  EXPECT_DOUBLE_EQ(cols[0]["scale"].get<double>(), std::sqrt(2.0));  // population std
  EXPECT_EQ(cols[1]["scale"].get<double>(), 1.0);  // constant column: never divide by zero
  EXPECT_EQ(cols[2]["fill"].get<double>(), 0.0);   // nothing seen: impute 0
  const torch::Tensor x = p.transform(train);
  ASSERT_EQ(x.scalar_type(), torch::kFloat32);
  ASSERT_EQ(x.sizes(), torch::IntArrayRef({4, 3}));
  const float r2 = static_cast<float>(std::sqrt(2.0));
  EXPECT_EQ(column_of(x, 0), (std::vector<float>{-r2, 0.0f, 0.0f, r2}));
  EXPECT_EQ(column_of(x, 1), (std::vector<float>{0, 0, 0, 0}));
  EXPECT_EQ(column_of(x, 2), (std::vector<float>{0, 0, 0, 0}));
}

TEST(DataPipelineTest, MedianAndZeroImputationWithMinMax) {
  DataOptions o;
  o.scaler = "minmax";
  o.impute = "median";
  const RawData train = table({numeric("x", {1, 3, kNaN, 10, 20})});
  const Pipeline median = Pipeline::fit(train, o);
  EXPECT_EQ(median.to_json()["columns"][0]["fill"].get<double>(), 6.5);  // median of 1, 3, 10, 20
  o.impute = "zero";
  const RawData train2 = table({numeric("x", {2, 4, kNaN, 10})});
  const Pipeline zero = Pipeline::fit(train2, o);
  const traindx::Json doc = zero.to_json();
  const auto& col = doc["columns"][0];
  EXPECT_EQ(col["fill"].get<double>(), 0.0);
  EXPECT_EQ(col["shift"].get<double>(), 0.0);  // min after imputation
  EXPECT_EQ(col["scale"].get<double>(), 10.0);
  EXPECT_EQ(column_of(zero.transform(train2), 0), (std::vector<float>{0.2f, 0.4f, 0.0f, 1.0f}));
  // Unseen data can leave [0, 1]: min-max is a fitted affine map, not a clamp.
  EXPECT_EQ(column_of(zero.transform(table({numeric("x", {15})})), 0), (std::vector<float>{1.5f}));
}

TEST(DataPipelineTest, OneHotWithUnseenAndMissingCategories) {
  DataOptions o;
  const RawData train = table({categorical("color", {"red", "blue", "", "red"}), numeric("n", {1, 2, 3, 4})});
  const Pipeline p = Pipeline::fit(train, o);
  EXPECT_EQ(p.feature_names(), (std::vector<std::string>{"color=blue", "color=red", "n"}));
  EXPECT_EQ(p.output_shape(), (std::vector<int64_t>{3}));
  const torch::Tensor x = p.transform(table({categorical("color", {"green", "red", "", "blue"}),
                                             numeric("n", {1, 2, 3, 4})}));
  EXPECT_EQ(column_of(x, 0), (std::vector<float>{0, 0, 0, 1}));
  EXPECT_EQ(column_of(x, 1), (std::vector<float>{0, 1, 0, 0}));
  // A categorical column that reads as numbers in a new file still matches by canonical text.
  const Pipeline digits = Pipeline::fit(table({categorical("zip", {"1000", "2000"})}), o);
  const torch::Tensor z = digits.transform(table({numeric("zip", {2000.0, 1000.0, 3000.0})}));
  EXPECT_EQ(column_of(z, 0), (std::vector<float>{0, 1, 0}));
  EXPECT_EQ(column_of(z, 1), (std::vector<float>{1, 0, 0}));
}

TEST(DataPipelineTest, NormalizeFalseImputesAndOneHotsButDoesNotScale) {
  DataOptions o;
  o.normalize = false;
  const RawData train = table({numeric("x", {10, kNaN, 30}), categorical("c", {"a", "b", "a"})});
  const torch::Tensor x = Pipeline::fit(train, o).transform(train);
  EXPECT_EQ(column_of(x, 0), (std::vector<float>{10, 20, 30}));
  EXPECT_EQ(column_of(x, 1), (std::vector<float>{1, 0, 1}));
  EXPECT_EQ(column_of(x, 2), (std::vector<float>{0, 1, 0}));
}

TEST(DataPipelineTest, TransformRejectsMismatchedTables) {
  DataOptions o;
  const Pipeline p = Pipeline::fit(table({numeric("age", {1, 2}), numeric("income", {3, 4})}), o);
  const std::string renamed = transform_error(p, table({numeric("age", {1}), numeric("salary", {2})}));
  EXPECT_NE(renamed.find("column 2 is 'salary' but the pipeline was fitted with 'income'"), std::string::npos)
      << renamed;
  const std::string fewer = transform_error(p, table({numeric("age", {1})}));
  EXPECT_NE(fewer.find("has 1 columns but the pipeline was fitted on 2"), std::string::npos) << fewer;
  const std::string text = transform_error(p, table({numeric("age", {1}), categorical("income", {"lots"})}));
  EXPECT_NE(text.find("holds text 'lots'"), std::string::npos) << text;
  RawData images;
  images.images = torch::zeros({1, 1, 2, 2}, torch::kUInt8);
  EXPECT_NE(transform_error(p, images).find("fitted on a table"), std::string::npos);
  EXPECT_NE(transform_error(Pipeline(), images).find("not fitted"), std::string::npos);
}

RawData images(const torch::Tensor& x) {
  RawData d;
  d.images = x;
  return d;
}

TEST(DataPipelineTest, PerChannelImageStatisticsByHand) {
  // 2 images, 2 channels, 1x2 pixels. Channel 0: 0, 10, 20, 30. Channel 1: constant 100.
  const torch::Tensor x =
      torch::tensor({0, 10, 100, 100, 20, 30, 100, 100}, torch::kUInt8).reshape({2, 2, 1, 2});
  for (auto dtype : {torch::kUInt8, torch::kFloat32}) {  // histogram path and generic path agree
    DataOptions o;
    const Pipeline p = Pipeline::fit(images(x.to(dtype)), o);
    const auto doc = p.to_json();
    EXPECT_EQ(doc["shift"][0].get<double>(), 15.0);
    EXPECT_EQ(doc["scale"][0].get<double>(), std::sqrt(125.0));
    EXPECT_EQ(doc["shift"][1].get<double>(), 100.0);
    EXPECT_EQ(doc["scale"][1].get<double>(), 1.0);
    const torch::Tensor y = p.transform(images(x));
    ASSERT_EQ(y.sizes(), torch::IntArrayRef({2, 2, 1, 2}));
    const float s = static_cast<float>(std::sqrt(125.0));
    EXPECT_EQ(y[1][0][0][1].item<float>(), (30.0f - 15.0f) / s);
    EXPECT_EQ(y[0][1][0][0].item<float>(), 0.0f);
    o.scaler = "minmax";
    const Pipeline m = Pipeline::fit(images(x.to(dtype)), o);
    EXPECT_EQ(m.to_json()["shift"][0].get<double>(), 0.0);
    EXPECT_EQ(m.to_json()["scale"][0].get<double>(), 30.0);
    EXPECT_EQ(m.transform(images(x))[1][0][0][0].item<float>(), 20.0f / 30.0f);
  }
  DataOptions o;
  const Pipeline p = Pipeline::fit(images(x), o);
  const std::string msg = transform_error(p, images(torch::zeros({1, 3, 1, 2})));
  EXPECT_NE(msg.find("image shape [1, 3, 1, 2] differs from the shape the pipeline was fitted on, [N, 2, 1, 2]"),
            std::string::npos)
      << msg;
}

TEST(DataPipelineTest, FloatImagesAreNotModifiedInPlace) {
  const torch::Tensor x = torch::tensor({1.0f, 3.0f}).reshape({2, 1, 1, 1});
  const torch::Tensor before = x.clone();
  DataOptions o;
  Pipeline::fit(images(x), o).transform(images(x));
  EXPECT_TRUE(torch::equal(x, before));
}

DataOptions fashion(int64_t max_train) {
  DataOptions o;
  o.max_train = max_train;
  o.max_test = 200;
  return o;
}

TEST(DataPipelineTest, FashionMnistStandardizedTrainingSplitHasZeroMeanUnitStd) {
  const traindx::PreparedData d = traindx::prepare_data(fashion(2000));
  ASSERT_EQ(d.train_x.scalar_type(), torch::kFloat32);
  EXPECT_EQ(d.info.input_shape, (std::vector<int64_t>{1, 28, 28}));
  EXPECT_TRUE(d.info.feature_names.empty());
  const double mean = d.pipeline.to_json()["shift"][0].get<double>();
  EXPECT_GT(mean, 65.0);  // Fashion-MNIST's pixel mean is about 72.9 (0.286 * 255)
  EXPECT_LT(mean, 80.0);
  EXPECT_NEAR(d.train_x.to(torch::kDouble).mean().item<double>(), 0.0, 1e-5);
  EXPECT_NEAR(d.train_x.to(torch::kDouble).std(/*unbiased=*/false).item<double>(), 1.0, 1e-5);
  EXPECT_EQ(d.train_y.scalar_type(), torch::kLong);
  EXPECT_EQ(d.train_y.size(0), d.train_x.size(0));
  EXPECT_EQ(d.test_x.size(0), 200);
}

TEST(DataPipelineTest, NormalizeFalseLeavesPixelsAt0To255) {
  DataOptions o = fashion(500);
  o.normalize = false;
  const traindx::PreparedData d = traindx::prepare_data(o);
  EXPECT_EQ(d.train_x.scalar_type(), torch::kFloat32);
  EXPECT_EQ(d.train_x.min().item<float>(), 0.0f);
  EXPECT_EQ(d.train_x.max().item<float>(), 255.0f);
  EXPECT_TRUE(torch::equal(d.train_x, d.raw.train.images.to(torch::kFloat32)));
}

TEST(DataPipelineTest, JsonRoundTripReplaysTheTransformBitForBit) {
  const traindx::PreparedData d = traindx::prepare_data(fashion(1000));
  const Pipeline back = Pipeline::from_json(traindx::Json::parse(d.pipeline.to_json().dump()));
  EXPECT_TRUE(back == d.pipeline);
  EXPECT_TRUE(torch::equal(back.transform(d.raw.test), d.test_x));
  // Fitting again on the same data gives the same document.
  EXPECT_EQ(Pipeline::fit(d.raw.train, fashion(1000)).to_json(), d.pipeline.to_json());

  DataOptions o;
  o.source = "csv";
  o.path = std::string(traindx::testing::kSklearnDataDir) + "/breast_cancer.csv";
  o.header = "sklearn";
  const traindx::PreparedData t = traindx::prepare_data(o);
  EXPECT_EQ(t.info.input_shape, (std::vector<int64_t>{30}));
  EXPECT_EQ(t.info.feature_names.size(), 30u);
  EXPECT_EQ(t.info.feature_names[0], "feature_0");
  const Pipeline tb = Pipeline::from_json(traindx::Json::parse(t.pipeline.to_json().dump()));
  EXPECT_TRUE(torch::equal(tb.transform(t.raw.test), t.test_x));
  EXPECT_TRUE(torch::equal(tb.transform(t.raw.train), t.train_x));
}

TEST(DataPipelineTest, MalformedDocumentsAreRejected) {
  auto error_of = [](const traindx::Json& doc) -> std::string {
    try {
      Pipeline::from_json(doc);
    } catch (const DataError& e) {
      return e.what();
    }
    return "no error";
  };
  EXPECT_NE(error_of(traindx::Json::array()).find("malformed pipeline document"), std::string::npos);
  EXPECT_NE(error_of({{"version", 2}, {"kind", "image"}}).find("version 2 is not supported"), std::string::npos);
  const std::string no_shape = error_of({{"version", 1}, {"kind", "image"}, {"normalize", true}});
  EXPECT_NE(no_shape.find("'shape'"), std::string::npos) << no_shape;
  traindx::Json zero_scale = {{"version", 1},
                              {"kind", "table"},
                              {"normalize", true},
                              {"columns", {{{"name", "x"}, {"kind", "numeric"}, {"fill", 0}, {"shift", 0},
                                            {"scale", 0}}}}};
  EXPECT_NE(error_of(zero_scale).find("must not be zero"), std::string::npos);
  zero_scale["columns"][0]["scale"] = 2;
  EXPECT_EQ(error_of(zero_scale), "no error");
}

TEST(DataPipelineTest, EmptyTrainingSplitIsAnError) {
  DataOptions o;
  RawData empty = table({numeric("x", {})});
  EXPECT_THROW(Pipeline::fit(empty, o), DataError);
}

}  // namespace
