// Init schemes: the statistics each one promises, and how build_model applies global and per-layer settings.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <map>

#include "traindx/core/error.h"
#include "traindx/model/model.h"

using traindx::build_model;
using traindx::init_tensor;
using traindx::Json;
using traindx::ModelError;
using traindx::ModelOptions;

namespace {

torch::Tensor initialised(std::vector<int64_t> shape, const std::string& scheme, double std_dev = 0.01,
                          double value = 0.0) {
  torch::Tensor w = torch::full(shape, 123.0);
  init_tensor(w, scheme, std_dev, value);
  return w;
}

double stddev(const torch::Tensor& t) { return t.std().item<double>(); }
double max_abs(const torch::Tensor& t) { return t.abs().max().item<double>(); }

std::map<std::string, torch::Tensor> params(const traindx::Model& model) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& [name, t] : model.named_parameters()) out[name] = t;
  return out;
}

ModelOptions layers(const std::string& json) {
  ModelOptions o;
  o.layers = Json::parse(json);
  return o;
}

}  // namespace

TEST(ModelInitTest, ZerosAndConstant) {
  EXPECT_EQ(max_abs(initialised({40, 30}, "zeros")), 0.0);
  const auto c = initialised({40, 30}, "constant", 0.01, 0.75);
  EXPECT_TRUE(torch::all(c == 0.75).item<bool>());
}

TEST(ModelInitTest, NormalHasTheRequestedStd) {
  torch::manual_seed(1);
  const auto w = initialised({512, 512}, "normal", 0.05);
  EXPECT_NEAR(stddev(w), 0.05, 0.05 * 0.02);
  EXPECT_NEAR(w.mean().item<double>(), 0.0, 0.001);
}

TEST(ModelInitTest, XavierBoundsAndStd) {
  torch::manual_seed(2);
  const double fan_in = 500, fan_out = 300;
  const auto u = initialised({300, 500}, "xavier_uniform");
  const double bound = std::sqrt(6.0 / (fan_in + fan_out));
  EXPECT_LE(max_abs(u), bound);
  EXPECT_GT(max_abs(u), 0.99 * bound);
  EXPECT_NEAR(stddev(u), bound / std::sqrt(3.0), 0.02 * bound);

  const auto n = initialised({300, 500}, "xavier_normal");
  EXPECT_NEAR(stddev(n), std::sqrt(2.0 / (fan_in + fan_out)), 0.03 * std::sqrt(2.0 / (fan_in + fan_out)));
}

TEST(ModelInitTest, KaimingUsesFanInAndReluGain) {
  torch::manual_seed(3);
  const double fan_in = 500;
  const auto u = initialised({300, 500}, "kaiming_uniform");
  const double bound = std::sqrt(6.0 / fan_in);  // gain sqrt(2) * sqrt(3 / fan_in)
  EXPECT_LE(max_abs(u), bound);
  EXPECT_GT(max_abs(u), 0.99 * bound);

  const auto n = initialised({300, 500}, "kaiming_normal");
  EXPECT_NEAR(stddev(n), std::sqrt(2.0 / fan_in), 0.03 * std::sqrt(2.0 / fan_in));

  // Conv weights: fan_in counts the kernel too (8 channels x 3 x 3).
  const auto conv = initialised({64, 8, 3, 3}, "kaiming_uniform");
  EXPECT_LE(max_abs(conv), std::sqrt(6.0 / 72.0));
  EXPECT_GT(max_abs(conv), 0.95 * std::sqrt(6.0 / 72.0));
}

TEST(ModelInitTest, OrthogonalRowsOrColumnsAreOrthonormal) {
  torch::manual_seed(4);
  const auto wide = initialised({64, 128}, "orthogonal");
  EXPECT_LT(max_abs(wide.mm(wide.t()) - torch::eye(64)), 1e-4);
  const auto tall = initialised({128, 64}, "orthogonal");
  EXPECT_LT(max_abs(tall.t().mm(tall) - torch::eye(64)), 1e-4);
  const auto conv = initialised({8, 4, 3, 3}, "orthogonal").view({8, 36});
  EXPECT_LT(max_abs(conv.mm(conv.t()) - torch::eye(8)), 1e-4);
}

TEST(ModelInitTest, DefaultLeavesTheTensorAlone) {
  EXPECT_TRUE(torch::all(initialised({3, 4}, "default") == 123.0).item<bool>());
}

TEST(ModelInitTest, BadSchemesAndShapesThrow) {
  torch::Tensor w = torch::zeros({3, 4});
  try {
    init_tensor(w, "xavier", 0.01, 0.0);
    FAIL() << "expected ModelError";
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("unknown init scheme 'xavier'; did you mean 'xavier_uniform'?"),
              std::string::npos)
        << e.what();
  }
  torch::Tensor bias = torch::zeros({4});
  EXPECT_THROW(init_tensor(bias, "xavier_uniform", 0.01, 0.0), ModelError);
  EXPECT_THROW(init_tensor(bias, "normal", -1.0, 0.0), ModelError);
  EXPECT_NO_THROW(init_tensor(bias, "constant", 0.01, 2.0));
}

TEST(ModelInitTest, InitWorksOnParametersThatRequireGrad) {
  torch::Tensor w = torch::zeros({5, 5}, torch::requires_grad());
  init_tensor(w, "normal", 1.0, 0.0);
  EXPECT_TRUE(w.requires_grad());
  EXPECT_GT(max_abs(w), 0.0);
}

TEST(ModelInitTest, GlobalInitAppliesToLinearAndConvButNotToNorms) {
  ModelOptions o = layers(R"([{"type": "conv2d", "out": 3, "padding": 1}, {"type": "batchnorm"},
                               {"type": "layernorm"}, {"type": "flatten"}, {"type": "linear"}])");
  o.init = "constant";
  o.init_value = 0.5;
  o.bias_init = "constant";
  o.bias_value = -0.25;
  auto p = params(*build_model(o, {2, 3, 3}, 4));
  for (const char* w : {"conv1.weight", "fc1.weight"}) EXPECT_TRUE(torch::all(p.at(w) == 0.5).item<bool>()) << w;
  for (const char* b : {"conv1.bias", "fc1.bias"}) EXPECT_TRUE(torch::all(p.at(b) == -0.25).item<bool>()) << b;
  for (const char* w : {"bn1.weight", "ln1.weight"}) EXPECT_TRUE(torch::all(p.at(w) == 1.0).item<bool>()) << w;
  for (const char* b : {"bn1.bias", "ln1.bias"}) EXPECT_TRUE(torch::all(p.at(b) == 0.0).item<bool>()) << b;
}

TEST(ModelInitTest, PerLayerKeysOverrideTheGlobalOptions) {
  ModelOptions o = layers(R"([
    {"type": "linear", "out": 200, "init": "normal", "init_std": 0.2, "bias_init": "zeros"},
    {"type": "linear", "out": 200},
    {"type": "residual", "init": "constant", "init_value": 0.125, "bias_init": "constant", "bias_value": 3,
     "layers": [{"type": "linear", "out": 100}, {"type": "linear", "out": 50, "init": "zeros"}]},
    {"type": "linear"}])");
  o.init = "xavier_uniform";
  o.bias_init = "constant";
  o.bias_value = 1.0;
  torch::manual_seed(5);
  auto p = params(*build_model(o, {300}, 2));
  EXPECT_NEAR(stddev(p.at("fc1.weight")), 0.2, 0.01);
  EXPECT_EQ(max_abs(p.at("fc1.bias")), 0.0);
  EXPECT_LE(max_abs(p.at("fc2.weight")), std::sqrt(6.0 / 400.0));
  EXPECT_TRUE(torch::all(p.at("fc2.bias") == 1.0).item<bool>());
  // The block's keys are defaults for its layers and its projection; a layer inside can still override them.
  EXPECT_TRUE(torch::all(p.at("res1.fc1.weight") == 0.125).item<bool>());
  EXPECT_TRUE(torch::all(p.at("res1.fc1.bias") == 3.0).item<bool>());
  EXPECT_EQ(max_abs(p.at("res1.fc2.weight")), 0.0);
  EXPECT_TRUE(torch::all(p.at("res1.proj.weight") == 0.125).item<bool>());
  EXPECT_TRUE(torch::all(p.at("fc3.bias") == 1.0).item<bool>());
}

TEST(ModelInitTest, DefaultKeepsLibTorchInitialisation) {
  torch::manual_seed(6);
  auto p = params(*build_model(layers(R"([{"type": "linear", "out": 64}, {"type": "linear"}])"), {100}, 2));
  // LibTorch's Linear: kaiming_uniform with a = sqrt(5), i.e. bound 1 / sqrt(fan_in), for weight and bias.
  EXPECT_LE(max_abs(p.at("fc1.weight")), 1.0 / std::sqrt(100.0));
  EXPECT_GT(max_abs(p.at("fc1.weight")), 0.9 / std::sqrt(100.0));
  EXPECT_LE(max_abs(p.at("fc1.bias")), 1.0 / std::sqrt(100.0));
  EXPECT_GT(max_abs(p.at("fc1.bias")), 0.0);
}

TEST(ModelInitTest, SeededBuildsAreReproducible) {
  ModelOptions o = layers(R"([{"type": "conv2d", "out": 4}, {"type": "flatten"}, {"type": "linear"}])");
  o.init = "kaiming_normal";
  torch::manual_seed(7);
  auto a = params(*build_model(o, {1, 5, 5}, 3));
  torch::manual_seed(7);
  auto b = params(*build_model(o, {1, 5, 5}, 3));
  for (const auto& [name, t] : a) EXPECT_TRUE(torch::equal(t, b.at(name))) << name;
}
