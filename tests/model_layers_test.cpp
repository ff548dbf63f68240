// Layer stacks built from model.layers: every type's shapes, stable names, taps, messages for bad input.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>

#include "test_support.h"
#include "traindx/core/config.h"
#include "traindx/core/error.h"
#include "traindx/model/model.h"

using traindx::build_model;
using traindx::Json;
using traindx::Model;
using traindx::ModelError;
using traindx::ModelOptions;
using Shape = std::vector<int64_t>;

namespace {

ModelOptions layers(const std::string& json) {
  ModelOptions o;
  o.layers = Json::parse(json);
  return o;
}

std::vector<std::string> names_of(const std::vector<traindx::NamedTensor>& tensors) {
  std::vector<std::string> out;
  for (const auto& [name, t] : tensors) out.push_back(name);
  return out;
}

std::vector<std::string> summary_names(const Model& model) {
  std::vector<std::string> out;
  for (const auto& row : model.summary()) out.push_back(row.name);
  return out;
}

Shape with_batch(int64_t batch, const Shape& shape) {
  Shape s = {batch};
  s.insert(s.end(), shape.begin(), shape.end());
  return s;
}

// The message of the ModelError that building throws (fails the test when nothing is thrown).
std::string build_error(const std::string& json, const Shape& input, int64_t outputs) {
  try {
    build_model(layers(json), input, outputs);
  } catch (const ModelError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected ModelError for " << json;
  return "";
}

struct ShapeCase {
  std::string layer;      // one layer table
  Shape input;            // per example
  Shape expected;         // per example output of that layer
  std::string row_type;   // type in the summary
};

}  // namespace

TEST(ModelLayersTest, EveryLayerTypeBuildsWithTheRightShape) {
  const std::multimap<std::string, ShapeCase> cases = {
      {"linear", {R"({"type": "linear", "out": 7})", {5}, {7}, "linear"}},
      {"linear", {R"({"type": "linear", "out": 7, "bias": false})", {5}, {7}, "linear"}},
      {"conv2d", {R"({"type": "conv2d", "out": 4})", {3, 8, 8}, {4, 6, 6}, "conv2d"}},
      {"conv2d", {R"({"type": "conv2d", "out": 4, "kernel": 3, "stride": 2, "padding": 1})", {3, 8, 8}, {4, 4, 4},
                  "conv2d"}},
      {"conv2d", {R"({"type": "conv2d", "out": 2, "kernel": [3, 1], "padding": [1, 0]})", {1, 5, 6}, {2, 5, 6},
                  "conv2d"}},
      {"batchnorm", {R"({"type": "batchnorm"})", {5}, {5}, "batchnorm1d"}},
      {"batchnorm", {R"({"type": "batchnorm", "eps": 1e-3, "momentum": 0.2})", {3, 4, 4}, {3, 4, 4}, "batchnorm2d"}},
      {"batchnorm1d", {R"({"type": "batchnorm1d"})", {3, 6}, {3, 6}, "batchnorm1d"}},
      {"batchnorm2d", {R"({"type": "batchnorm2d"})", {2, 3, 3}, {2, 3, 3}, "batchnorm2d"}},
      {"layernorm", {R"({"type": "layernorm", "eps": 1e-6})", {3, 4, 4}, {3, 4, 4}, "layernorm"}},
      {"dropout", {R"({"type": "dropout", "p": 0.2})", {6}, {6}, "dropout"}},
      {"relu", {R"({"type": "relu"})", {2, 3, 3}, {2, 3, 3}, "relu"}},
      {"leaky_relu", {R"({"type": "leaky_relu", "slope": 0.2})", {6}, {6}, "leaky_relu"}},
      {"gelu", {R"({"type": "gelu"})", {6}, {6}, "gelu"}},
      {"tanh", {R"({"type": "tanh"})", {6}, {6}, "tanh"}},
      {"sigmoid", {R"({"type": "sigmoid"})", {6}, {6}, "sigmoid"}},
      {"log_softmax", {R"({"type": "log_softmax"})", {6}, {6}, "log_softmax"}},
      {"maxpool2d", {R"({"type": "maxpool2d"})", {2, 8, 8}, {2, 4, 4}, "maxpool2d"}},
      {"maxpool2d", {R"({"type": "maxpool2d", "kernel": 3, "stride": 2, "padding": 1})", {2, 7, 7}, {2, 4, 4},
                     "maxpool2d"}},
      {"avgpool2d", {R"({"type": "avgpool2d"})", {2, 9, 8}, {2, 4, 4}, "avgpool2d"}},
      {"avgpool2d", {R"({"type": "avgpool2d", "kernel": [2, 1]})", {2, 8, 8}, {2, 4, 8}, "avgpool2d"}},
      {"adaptive_avgpool2d", {R"({"type": "adaptive_avgpool2d"})", {5, 7, 7}, {5, 1, 1}, "adaptive_avgpool2d"}},
      {"adaptive_avgpool2d", {R"({"type": "adaptive_avgpool2d", "size": [2, 3]})", {5, 7, 7}, {5, 2, 3},
                              "adaptive_avgpool2d"}},
      {"flatten", {R"({"type": "flatten"})", {2, 3, 4}, {24}, "flatten"}},
      {"flatten", {R"({"type": "flatten"})", {6}, {6}, "flatten"}},
      {"residual", {R"({"type": "residual", "layers": [{"type": "conv2d", "out": 3, "padding": 1}, {"type": "relu"}]})",
                    {3, 6, 6}, {3, 6, 6}, "residual"}},
      {"residual", {R"({"type": "residual", "layers": [{"type": "conv2d", "out": 8, "stride": 2, "padding": 1}]})",
                    {3, 7, 7}, {8, 4, 4}, "residual"}},
      {"residual", {R"({"type": "residual", "layers": [{"type": "linear", "out": 9}, {"type": "tanh"}]})", {5}, {9},
                    "residual"}},
  };
  for (const auto& type : traindx::layer_types()) EXPECT_GT(cases.count(type), 0u) << "no case for " << type;

  torch::manual_seed(0);
  for (const auto& [type, c] : cases) {
    SCOPED_TRACE(c.layer);
    const int64_t outputs = 3;
    const std::string json = "[" + c.layer + R"(, {"type": "flatten"}, {"type": "linear"}])";
    auto model = build_model(layers(json), c.input, outputs);
    model->train(false);
    // Rows end with the appended flatten and linear; the row before them is the layer under test.
    const auto rows = model->summary();
    const auto& row = rows.at(rows.size() - 3);
    EXPECT_EQ(row.type, c.row_type);
    EXPECT_EQ(row.output_shape, c.expected);
    EXPECT_EQ(row.name.find('.'), std::string::npos);

    // Shape inference agrees with what the layer really does on a batch.
    Shape seen;
    const auto x = torch::randn(with_batch(4, c.input));
    auto y = model->forward_with_taps(x, [&](const std::string& name, const torch::Tensor& out) {
      if (name == row.name) seen = Shape(out.sizes().begin() + 1, out.sizes().end());
    });
    EXPECT_EQ(seen, c.expected);
    EXPECT_EQ(y.sizes().vec(), (Shape{4, outputs}));
  }
}

TEST(ModelLayersTest, ListOfTypesMatchesTheDocumentedOnes) {
  const std::vector<std::string> expected = {"linear",     "conv2d",      "batchnorm",  "batchnorm1d",
                                             "batchnorm2d", "layernorm",  "dropout",    "relu",
                                             "leaky_relu", "gelu",        "tanh",       "sigmoid",
                                             "log_softmax", "maxpool2d",  "avgpool2d",  "adaptive_avgpool2d",
                                             "flatten",    "residual"};
  EXPECT_EQ(traindx::layer_types(), expected);
}

TEST(ModelLayersTest, NamesAreStableAndQualifiedInsideResidualBlocks) {
  const std::string json = R"([
    {"type": "conv2d", "out": 4, "padding": 1}, {"type": "relu"},
    {"type": "conv2d", "out": 4, "padding": 1}, {"type": "batchnorm"},
    {"type": "residual", "layers": [{"type": "conv2d", "out": 4, "padding": 1}, {"type": "relu"},
                                    {"type": "residual", "layers": [{"type": "relu"}]}]},
    {"type": "maxpool2d"}, {"type": "flatten"}, {"type": "dropout"},
    {"type": "linear", "out": 8}, {"type": "leaky_relu"}, {"type": "linear"}, {"type": "log_softmax"}])";
  auto model = build_model(layers(json), {1, 6, 6}, 5);
  const std::vector<std::string> expected_rows = {
      "conv1",    "relu1", "conv2",    "bn1",   "res1.conv1", "res1.relu1", "res1.res1.relu1", "res1.res1",
      "res1",     "pool1", "flatten1", "drop1", "fc1",        "lrelu1",     "fc2",             "logsoftmax1"};
  EXPECT_EQ(summary_names(*model), expected_rows);

  EXPECT_EQ(names_of(model->named_parameters()),
            (std::vector<std::string>{"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "bn1.weight",
                                      "bn1.bias", "res1.conv1.weight", "res1.conv1.bias", "fc1.weight", "fc1.bias",
                                      "fc2.weight", "fc2.bias"}));
  EXPECT_EQ(names_of(model->named_buffers()),
            (std::vector<std::string>{"bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked"}));

  // The names are the module's own state names, so torch::save of module() uses them too.
  std::vector<std::string> module_names;
  for (const auto& item : model->module()->named_parameters()) module_names.push_back(item.key());
  EXPECT_EQ(module_names, names_of(model->named_parameters()));

  // Building twice gives the same names: they are a function of the config only.
  EXPECT_EQ(summary_names(*build_model(layers(json), {1, 6, 6}, 5)), expected_rows);
}

TEST(ModelLayersTest, ExplicitNamesWinAndGeneratedNamesSkipThem) {
  auto model = build_model(layers(R"([
    {"type": "linear", "out": 4, "name": "stem"}, {"type": "linear", "out": 4},
    {"type": "linear", "out": 4, "name": "fc1"}, {"type": "relu", "name": "Act_2"}, {"type": "linear"}])"),
                           {3}, 2);
  EXPECT_EQ(summary_names(*model), (std::vector<std::string>{"stem", "fc2", "fc1", "Act_2", "fc3"}));
  EXPECT_EQ(model->named_parameters().front().first, "stem.weight");
}

TEST(ModelLayersTest, DuplicateOrMalformedNamesAreRejected) {
  const std::string dup = build_error(R"([{"type": "linear", "out": 4, "name": "a"}, {"type": "relu", "name": "a"},
                                          {"type": "linear"}])",
                                      {3}, 2);
  EXPECT_NE(dup.find("model.layers[1] (relu): duplicate layer name 'a'"), std::string::npos) << dup;
  EXPECT_NE(dup.find("model.layers[0]"), std::string::npos) << dup;

  const std::string dotted = build_error(R"([{"type": "linear", "name": "a.b"}])", {3}, 2);
  EXPECT_NE(dotted.find("model.layers[0] (linear): name 'a.b'"), std::string::npos) << dotted;
  EXPECT_NE(build_error(R"([{"type": "linear", "name": ""}])", {3}, 2).find("name ''"), std::string::npos);
  EXPECT_NE(build_error(R"([{"type": "linear", "name": 3}])", {3}, 2).find("key 'name' must be a string"),
            std::string::npos);

  const std::string proj = build_error(
      R"([{"type": "residual", "layers": [{"type": "relu", "name": "proj"}]}, {"type": "linear"}])", {3}, 2);
  EXPECT_NE(proj.find("model.layers[0].layers[0] (relu): duplicate layer name 'proj'"), std::string::npos) << proj;
}

TEST(ModelLayersTest, ResidualProjectionIsNamedAfterItsBlockAndTapped) {
  auto model = build_model(layers(R"([
    {"type": "residual", "name": "block1",
     "layers": [{"type": "conv2d", "out": 6, "stride": 2, "padding": 1}, {"type": "relu"}]},
    {"type": "residual", "layers": [{"type": "conv2d", "out": 6, "padding": 1}]},
    {"type": "flatten"}, {"type": "residual", "layers": [{"type": "linear", "out": 5}]}, {"type": "linear"}])"),
                           {3, 8, 8}, 2);
  EXPECT_EQ(summary_names(*model),
            (std::vector<std::string>{"block1.conv1", "block1.relu1", "block1.proj", "block1", "res1.conv1", "res1",
                                      "flatten1", "res2.fc1", "res2.proj", "res2", "fc1"}));
  std::map<std::string, Shape> shapes;
  for (const auto& [name, t] : model->named_parameters()) shapes[name] = t.sizes().vec();
  EXPECT_EQ(shapes.at("block1.proj.weight"), (Shape{6, 3, 1, 1}));
  EXPECT_EQ(shapes.count("block1.proj.bias"), 0u);
  EXPECT_EQ(shapes.count("res1.proj.weight"), 0u);  // same shape: identity shortcut
  EXPECT_EQ(shapes.at("res2.proj.weight"), (Shape{5, 96}));

  // output = input + f(input), checked against the tapped pieces.
  model->train(false);
  std::map<std::string, torch::Tensor> taps;
  const auto x = torch::randn({2, 3, 8, 8});
  model->forward_with_taps(x, [&](const std::string& n, const torch::Tensor& t) { taps[n] = t; });
  EXPECT_TRUE(torch::allclose(taps.at("block1"), taps.at("block1.relu1") + taps.at("block1.proj")));
  EXPECT_TRUE(torch::allclose(taps.at("res1"), taps.at("res1.conv1") + taps.at("block1")));
  EXPECT_TRUE(torch::allclose(taps.at("res2"), taps.at("res2.fc1") + taps.at("res2.proj")));
}

TEST(ModelLayersTest, ResidualThatChangesTheKindOfInputIsRejected) {
  const std::string msg = build_error(
      R"([{"type": "residual", "layers": [{"type": "flatten"}]}, {"type": "linear"}])", {2, 3, 3}, 2);
  EXPECT_NE(msg.find("model.layers[0] (residual): the block turns [2, 3, 3] into [18]"), std::string::npos) << msg;
}

TEST(ModelLayersTest, TapsSeeEveryLayerInOrderAndTheLastTapIsTheOutput) {
  torch::manual_seed(3);
  auto model = build_model(layers(R"([
    {"type": "conv2d", "out": 3, "padding": 1}, {"type": "batchnorm"}, {"type": "gelu"},
    {"type": "residual", "layers": [{"type": "conv2d", "out": 3, "padding": 1}, {"type": "tanh"}]},
    {"type": "avgpool2d"}, {"type": "flatten"}, {"type": "dropout", "p": 0.3}, {"type": "linear"},
    {"type": "sigmoid"}])"),
                           {2, 4, 4}, 4);
  for (bool training : {false, true}) {
    model->train(training);
    std::vector<std::string> order;
    torch::Tensor last;
    const auto x = torch::randn({3, 2, 4, 4});
    torch::manual_seed(11);  // same dropout mask for both passes
    const auto tapped = model->forward_with_taps(x, [&](const std::string& name, const torch::Tensor& out) {
      order.push_back(name);
      last = out;
    });
    torch::manual_seed(11);
    const auto plain = model->forward(x);
    EXPECT_EQ(order, summary_names(*model));
    EXPECT_TRUE(torch::equal(last, tapped));
    EXPECT_TRUE(torch::allclose(tapped, plain)) << "training=" << training;
  }
}

TEST(ModelLayersTest, FinalLinearGetsTheNumberOfOutputs) {
  auto model = build_model(layers(R"([{"type": "flatten"}, {"type": "linear", "out": 16}, {"type": "relu"},
                                      {"type": "linear"}, {"type": "log_softmax"}])"),
                           {1, 4, 4}, 10);
  std::map<std::string, Shape> shapes;
  for (const auto& [name, t] : model->named_parameters()) shapes[name] = t.sizes().vec();
  EXPECT_EQ(shapes.at("fc1.weight"), (Shape{16, 16}));
  EXPECT_EQ(shapes.at("fc2.weight"), (Shape{10, 16}));
  const auto y = model->forward(torch::randn({2, 1, 4, 4}));
  EXPECT_EQ(y.sizes().vec(), (Shape{2, 10}));
  // log_softmax over the features: probabilities sum to one.
  EXPECT_TRUE(torch::allclose(y.exp().sum(1), torch::ones({2})));
}

TEST(ModelLayersTest, OnlyTheLastLinearMayOmitOut) {
  const std::string msg = build_error(R"([{"type": "linear"}, {"type": "linear"}])", {3}, 2);
  EXPECT_NE(msg.find("model.layers[0] (linear): missing key 'out'"), std::string::npos) << msg;
  const std::string in_block =
      build_error(R"([{"type": "residual", "layers": [{"type": "linear"}]}])", {2}, 2);
  EXPECT_NE(in_block.find("model.layers[0].layers[0] (linear): missing key 'out'"), std::string::npos) << in_block;
  EXPECT_NE(build_error(R"([{"type": "conv2d"}])", {1, 4, 4}, 2).find("(conv2d): missing required key 'out'"),
            std::string::npos);
  EXPECT_NE(build_error(R"([{"type": "residual"}])", {2}, 2).find("(residual): missing required key 'layers'"),
            std::string::npos);
}

TEST(ModelLayersTest, OutputSizeMismatchSaysWhatToChange) {
  const std::string msg = build_error(R"([{"type": "linear", "out": 5}])", {3}, 10);
  EXPECT_NE(msg.find("the network outputs 5 features per example, but the data has 10"), std::string::npos) << msg;
  EXPECT_NE(msg.find("set out = 10 on the last linear layer or omit it"), std::string::npos) << msg;

  const std::string image = build_error(R"([{"type": "conv2d", "out": 2}])", {1, 4, 4}, 10);
  EXPECT_NE(image.find("the network outputs [2, 2, 2] per example"), std::string::npos) << image;
  EXPECT_NE(image.find("flatten"), std::string::npos) << image;
}

TEST(ModelLayersTest, UnknownTypeAndKeyNameTheEntryAndTheClosestValid) {
  const std::string type = build_error(R"([{"type": "linear", "out": 3}, {"type": "conv"}])", {3}, 2);
  EXPECT_NE(type.find("model.layers[1]: unknown layer type 'conv'; did you mean 'conv2d'?"), std::string::npos)
      << type;

  const std::string key = build_error(R"([{"type": "relu"}, {"type": "relu"}, {"type": "relu"},
                                          {"type": "conv2d", "out": 4, "kernal": 3}])",
                                      {1, 5, 5}, 2);
  EXPECT_NE(key.find("model.layers[3] (conv2d): unknown key 'kernal'; did you mean 'kernel'?"), std::string::npos)
      << key;

  const std::string nested = build_error(
      R"([{"type": "residual", "layers": [{"type": "relu"}, {"type": "dropout", "rate": 0.1}]}, {"type": "linear"}])",
      {3}, 2);
  EXPECT_NE(nested.find("model.layers[0].layers[1] (dropout): unknown key 'rate'"), std::string::npos) << nested;
  EXPECT_NE(nested.find("dropout takes: name, p"), std::string::npos) << nested;

  const std::string weightless = build_error(R"([{"type": "relu", "init": "zeros"}, {"type": "linear"}])", {3}, 2);
  EXPECT_NE(weightless.find("model.layers[0] (relu): unknown key 'init'; relu has no weights"), std::string::npos)
      << weightless;

  EXPECT_NE(build_error(R"([{"out": 3}])", {3}, 2).find("model.layers[0]: missing key 'type'"), std::string::npos);
  EXPECT_NE(build_error(R"([3])", {3}, 2).find("model.layers[0]: must be a table"), std::string::npos);
}

TEST(ModelLayersTest, WrongValueTypesAndRangesNameTheKey) {
  auto expect_error = [](const std::string& json, const Shape& in, const std::string& needle) {
    const std::string msg = build_error(json, in, 2);
    EXPECT_NE(msg.find(needle), std::string::npos) << msg;
  };
  expect_error(R"([{"type": "linear", "out": "8"}, {"type": "linear"}])", {3},
               "model.layers[0] (linear): key 'out' must be an integer, got \"8\"");
  expect_error(R"([{"type": "linear", "out": 2.5}])", {3}, "key 'out' must be an integer");
  expect_error(R"([{"type": "linear", "bias": 1}])", {3}, "key 'bias' must be true or false");
  expect_error(R"([{"type": "conv2d", "out": 2, "kernel": [3]}])", {1, 5, 5},
               "key 'kernel' must be an integer or a pair [h, w], got [3]");
  expect_error(R"([{"type": "conv2d", "out": 0}])", {1, 5, 5}, "key 'out' must be >= 1, got 0");
  expect_error(R"([{"type": "dropout", "p": 1.5}, {"type": "linear"}])", {3}, "key 'p' must be <= 1, got 1.5");
  expect_error(R"([{"type": "batchnorm", "eps": 0}, {"type": "linear"}])", {3}, "key 'eps' must be > 0");
  expect_error(R"([{"type": "linear", "init": "xavier"}])", {3},
               "key 'init' has unknown value 'xavier'; did you mean 'xavier_uniform'?");
  expect_error(R"([{"type": "residual", "layers": []}, {"type": "linear"}])", {3},
               "key 'layers' must hold at least one layer");
  expect_error(R"([{"type": 3}])", {3}, "key 'type' must be a string");
}

TEST(ModelLayersTest, ShapesALayerCannotTakeAreExplained) {
  const std::string conv = build_error(R"([{"type": "conv2d", "out": 4}, {"type": "linear"}])", {784}, 2);
  EXPECT_NE(conv.find("model.layers[0] (conv2d): needs image input [channels, height, width], but gets flat input "
                      "[784] per example"),
            std::string::npos)
      << conv;

  const std::string linear = build_error(R"([{"type": "conv2d", "out": 4}, {"type": "linear"}])", {1, 5, 5}, 2);
  EXPECT_NE(linear.find("model.layers[1] (linear): needs flat input [features], but gets [4, 3, 3] per example; add "
                        "{type = \"flatten\"} before it"),
            std::string::npos)
      << linear;

  const std::string big = build_error(R"([{"type": "conv2d", "out": 4, "kernel": 5}])", {1, 3, 3}, 2);
  EXPECT_NE(big.find("model.layers[0] (conv2d): the 5x5 kernel does not fit the 3x3 input"), std::string::npos)
      << big;

  const std::string pool = build_error(R"([{"type": "maxpool2d"}, {"type": "maxpool2d"}, {"type": "maxpool2d"}])",
                                       {1, 4, 4}, 2);
  EXPECT_NE(pool.find("model.layers[2] (maxpool2d): the 2x2 kernel does not fit the 1x1 input"), std::string::npos)
      << pool;

  EXPECT_NE(build_error(R"([{"type": "batchnorm2d"}, {"type": "linear"}])", {6}, 2).find("use batchnorm1d"),
            std::string::npos);
  EXPECT_NE(build_error(R"([{"type": "maxpool2d", "kernel": 2, "padding": 2}])", {1, 8, 8}, 2)
                .find("padding 2 is more than half the kernel 2"),
            std::string::npos);
}

TEST(ModelLayersTest, OptionsAndInputsAreValidated) {
  EXPECT_NE(build_error("[]", {3}, 2).find("model.layers is empty"), std::string::npos);
  ModelOptions o = layers(R"([{"type": "linear"}])");
  o.init = "xavier";
  EXPECT_THROW(build_model(o, {3}, 2), ModelError);
  o.init = "zeros";
  o.dtype = "float16";
  EXPECT_THROW(build_model(o, {3}, 2), ModelError);
  o.dtype = "float32";
  EXPECT_THROW(build_model(o, {}, 2), ModelError);
  EXPECT_THROW(build_model(o, {0}, 2), ModelError);
  EXPECT_THROW(build_model(o, {3}, 0), ModelError);

  auto model = build_model(o, {3}, 2);
  try {
    model->forward(torch::zeros({4, 5}));
    FAIL() << "expected ModelError";
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("expected a batch [B, 3]"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("[4, 5]"), std::string::npos) << e.what();
  }
}

TEST(ModelLayersTest, TrainAndEvalSwitchDropout) {
  auto model = build_model(layers(R"([{"type": "dropout", "p": 0.5}])"), {1000}, 1000);
  const auto x = torch::ones({2, 1000});
  EXPECT_TRUE(model->is_training());
  const auto trained = model->forward(x);
  const double zeros = (trained == 0).sum().item<double>() / trained.numel();
  EXPECT_GT(zeros, 0.4);
  EXPECT_LT(zeros, 0.6);
  EXPECT_TRUE(torch::all((trained == 0) | (trained == 2)).item<bool>());  // survivors scaled by 1 / (1 - p)

  model->train(false);
  EXPECT_FALSE(model->is_training());
  EXPECT_TRUE(torch::equal(model->forward(x), x));
}

TEST(ModelLayersTest, BatchNormUpdatesRunningStatisticsOnlyInTraining) {
  auto model = build_model(layers(R"([{"type": "batchnorm"}])"), {3}, 3);
  std::map<std::string, torch::Tensor> buffers;
  for (const auto& [name, t] : model->named_buffers()) buffers[name] = t;
  const auto x = torch::randn({8, 3}) + 5.0;
  model->train(false);
  model->forward(x);
  EXPECT_EQ(buffers.at("bn1.num_batches_tracked").item<int64_t>(), 0);
  model->train(true);
  model->forward(x);
  EXPECT_EQ(buffers.at("bn1.num_batches_tracked").item<int64_t>(), 1);
  EXPECT_GT(buffers.at("bn1.running_mean").mean().item<double>(), 0.3);  // 0.1 * ~5
}

TEST(ModelLayersTest, Float64ModelsHaveDoubleParametersAndAcceptFloatInput) {
  ModelOptions o = layers(R"([{"type": "conv2d", "out": 2, "padding": 1}, {"type": "batchnorm"}, {"type": "flatten"},
                               {"type": "linear"}])");
  o.dtype = "float64";
  auto model = build_model(o, {1, 3, 3}, 2);
  for (const auto& [name, t] : model->named_parameters()) EXPECT_EQ(t.scalar_type(), torch::kDouble) << name;
  // As in Python's Module.to(dtype), the integer batch counter stays an integer.
  for (const auto& [name, t] : model->named_buffers()) {
    EXPECT_EQ(t.scalar_type(), name == "bn1.num_batches_tracked" ? torch::kLong : torch::kDouble) << name;
  }
  EXPECT_EQ(model->forward(torch::randn({2, 1, 3, 3})).scalar_type(), torch::kDouble);
  model->to(torch::kCPU, torch::kFloat);
  EXPECT_EQ(model->forward(torch::randn({2, 1, 3, 3}, torch::kDouble)).scalar_type(), torch::kFloat);
}

TEST(ModelLayersTest, SummaryTableIsAlignedAndTotalsTheParameters) {
  auto model = build_model(layers(R"([{"type": "conv2d", "out": 4, "padding": 1}, {"type": "relu"},
                                      {"type": "residual", "layers": [{"type": "conv2d", "out": 8, "padding": 1}]},
                                      {"type": "flatten"}, {"type": "linear"}])"),
                           {1, 4, 4}, 3);
  int64_t sum = 0;
  for (const auto& row : model->summary()) sum += row.parameters;
  EXPECT_EQ(sum, model->parameter_count());
  EXPECT_EQ(model->parameter_count(), (4 * 9 + 4) + (8 * 4 * 9 + 8) + (8 * 4) + (3 * 128 + 3));
  EXPECT_EQ(model->parameters().size(), model->named_parameters().size());

  const std::string table = model->summary_table();
  std::istringstream lines(table);
  std::string line;
  std::vector<std::string> all;
  while (std::getline(lines, line)) all.push_back(line);
  ASSERT_EQ(all.size(), model->summary().size() + 3);  // header, rows, rule, total
  for (const auto& l : all) EXPECT_EQ(l.size(), all.front().size()) << l;
  EXPECT_EQ(all.front().rfind("layer", 0), 0u);
  EXPECT_NE(table.find("res1.proj"), std::string::npos);
  EXPECT_NE(table.find("[8, 4, 4]"), std::string::npos);
  EXPECT_NE(all.back().find(std::to_string(model->parameter_count())), std::string::npos);
}

TEST(ModelLayersTest, BuildsFromTomlInlineTables) {
  const auto config = traindx::Config::from_string(R"([model]
layers = [
  {type = "conv2d", out = 4, kernel = 3, padding = 1},
  {type = "residual", name = "block", layers = [{type = "conv2d", out = 4, padding = 1}, {type = "relu"}]},
  {type = "adaptive_avgpool2d", size = [2, 2]},
  {type = "flatten"},
  {type = "dropout", p = 0.25},
  {type = "linear"},
]
init = "kaiming_normal"
)",
                                                   "model.toml");
  auto model = build_model(ModelOptions::from_config(config), {1, 6, 6}, 7);
  EXPECT_EQ(summary_names(*model), (std::vector<std::string>{"conv1", "block.conv1", "block.relu1", "block", "gap1",
                                                             "flatten1", "drop1", "fc1"}));
  EXPECT_EQ(model->forward(torch::randn({2, 1, 6, 6})).sizes().vec(), (Shape{2, 7}));
}

// docs/model.md embeds the generated layer reference; regenerate with TRAINDX_UPDATE_GOLDEN=1.
TEST(ModelLayersTest, DocsLayerReferenceMatchesTheCode) {
  const std::string path = traindx::testing::source_dir() + "/docs/model.md";
  const std::string begin = "<!-- BEGIN generated layer reference: traindx::layer_reference_markdown() -->\n";
  const std::string end = "<!-- END generated layer reference -->";
  std::ifstream in(path);
  ASSERT_TRUE(in) << path;
  std::stringstream ss;
  ss << in.rdbuf();
  std::string doc = ss.str();
  const size_t b = doc.find(begin);
  const size_t e = doc.find(end);
  ASSERT_NE(b, std::string::npos);
  ASSERT_NE(e, std::string::npos);
  const std::string current = doc.substr(b + begin.size(), e - b - begin.size());
  const std::string generated = "\n" + traindx::layer_reference_markdown();
  if (current != generated && std::getenv("TRAINDX_UPDATE_GOLDEN") != nullptr) {
    doc.replace(b + begin.size(), e - b - begin.size(), generated);
    std::ofstream(path) << doc;
    return;
  }
  EXPECT_EQ(current, generated) << "run with TRAINDX_UPDATE_GOLDEN=1 to update docs/model.md";
}
