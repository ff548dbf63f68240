// Finite-difference gradient checks: autograd's gradients of every parametrised layer type, built through
// build_model in float64, against central differences.
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "traindx/model/model.h"

using traindx::build_model;
using traindx::Json;
using traindx::ModelOptions;

namespace {

constexpr double kEps = 1e-6;     // central-difference step
constexpr double kRelTol = 1e-4;  // relative tolerance between autograd and the difference quotient
// Absolute floor for gradients that are ~0: central differences in float64 carry ~1e-16 * |loss| / eps of
// round-off, far below this.
constexpr double kAbsTol = 1e-7;

// Checks d loss / d t for the input and every parameter, where loss = sum(model(x) * r) with a fixed random r
// (a plain sum would make the gradient through normalisation layers vanish identically).
void expect_gradients_match(traindx::Model& model, torch::Tensor input) {
  torch::manual_seed(42);
  torch::Tensor x = input.to(torch::kDouble).detach().requires_grad_(true);
  const torch::Tensor r = torch::randn_like(model.forward(x).detach());

  std::vector<std::pair<std::string, torch::Tensor>> wrt = {{"input", x}};
  for (const auto& named : model.named_parameters()) wrt.push_back(named);
  std::vector<torch::Tensor> tensors;
  for (const auto& [name, t] : wrt) tensors.push_back(t);
  const torch::Tensor loss = (model.forward(x) * r).sum();
  const auto grads = torch::autograd::grad({loss}, tensors);

  auto loss_value = [&] {
    torch::NoGradGuard no_grad;
    return (model.forward(x) * r).sum().item<double>();
  };
  for (size_t k = 0; k < wrt.size(); ++k) {
    const auto& [name, t] = wrt[k];
    ASSERT_EQ(t.scalar_type(), torch::kDouble) << name;
    ASSERT_TRUE(t.is_contiguous()) << name;
    const torch::Tensor analytic = grads[k].contiguous();
    double* data = t.data_ptr<double>();
    int64_t failures = 0;
    std::string first_failures;
    for (int64_t i = 0; i < t.numel(); ++i) {
      const double original = data[i];
      data[i] = original + kEps;
      const double plus = loss_value();
      data[i] = original - kEps;
      const double minus = loss_value();
      data[i] = original;
      const double numeric = (plus - minus) / (2 * kEps);
      const double a = analytic.data_ptr<double>()[i];
      const double err = std::abs(a - numeric);
      if (err > kAbsTol && err > kRelTol * std::max(std::abs(a), std::abs(numeric))) {
        if (++failures <= 5) {
          first_failures += "\n  " + name + "[" + std::to_string(i) + "]: autograd " + std::to_string(a) +
                            ", numeric " + std::to_string(numeric);
        }
      }
    }
    EXPECT_EQ(failures, 0) << name << " of " << t.numel() << " elements differ:" << first_failures;
  }
}

std::shared_ptr<traindx::Model> build(const std::string& json, const std::vector<int64_t>& input, int64_t outputs) {
  ModelOptions o;
  o.layers = Json::parse(json);
  o.dtype = "float64";
  torch::manual_seed(1);
  return build_model(o, input, outputs);
}

// y = x in value but with gradient 2: the checker must catch it.
class WrongGradientModel final : public traindx::Model {
 public:
  torch::Tensor forward(const torch::Tensor& x) override { return x + (x - x.detach()); }
  torch::Tensor forward_with_taps(const torch::Tensor& x, const traindx::LayerTap&) override { return forward(x); }
  std::vector<traindx::NamedTensor> named_parameters() const override { return {}; }
  std::vector<traindx::NamedTensor> named_buffers() const override { return {}; }
  void train(bool) override {}
  bool is_training() const override { return false; }
  void to(torch::Device, torch::Dtype) override {}
  std::vector<traindx::LayerSummary> summary() const override { return {}; }
};

}  // namespace

TEST(ModelGradcheckTest, CheckerCatchesAWrongGradient) {
  WrongGradientModel model;
  EXPECT_NONFATAL_FAILURE(expect_gradients_match(model, torch::randn({2, 3})), "autograd");
}

TEST(ModelGradcheckTest, Linear) {
  auto model = build(R"([{"type": "linear", "out": 3}])", {4}, 3);
  expect_gradients_match(*model, torch::randn({3, 4}));
}

TEST(ModelGradcheckTest, Conv2dWithStrideAndPadding) {
  auto model = build(R"([{"type": "conv2d", "out": 2, "kernel": 3, "stride": 2, "padding": 1}, {"type": "flatten"}])",
                     {2, 5, 5}, 2 * 3 * 3);
  expect_gradients_match(*model, torch::randn({2, 2, 5, 5}));
}

TEST(ModelGradcheckTest, BatchNormInTrainingMode) {
  auto flat = build(R"([{"type": "batchnorm"}])", {4}, 4);
  ASSERT_TRUE(flat->is_training());
  expect_gradients_match(*flat, torch::randn({5, 4}));
  auto image = build(R"([{"type": "batchnorm2d"}, {"type": "flatten"}])", {3, 3, 3}, 27);
  expect_gradients_match(*image, torch::randn({3, 3, 3, 3}));
}

TEST(ModelGradcheckTest, LayerNorm) {
  auto model = build(R"([{"type": "layernorm"}, {"type": "flatten"}])", {3, 2, 2}, 12);
  // Non-trivial affine parameters, so their gradients are checked away from the identity.
  for (auto& [name, t] : model->named_parameters()) {
    torch::NoGradGuard no_grad;
    t.uniform_(0.5, 1.5);
  }
  expect_gradients_match(*model, torch::randn({2, 3, 2, 2}));
}

TEST(ModelGradcheckTest, ResidualWithConvProjection) {
  auto model = build(R"([{"type": "residual", "layers": [{"type": "conv2d", "out": 3, "stride": 2, "padding": 1},
                                                         {"type": "tanh"}]},
                         {"type": "flatten"}])",
                     {2, 4, 4}, 3 * 2 * 2);
  ASSERT_EQ(model->named_parameters().back().first, "res1.proj.weight");
  expect_gradients_match(*model, torch::randn({2, 2, 4, 4}));
}

TEST(ModelGradcheckTest, ResidualWithLinearProjection) {
  auto model = build(R"([{"type": "residual", "layers": [{"type": "linear", "out": 5}, {"type": "gelu"}]}])", {3}, 5);
  ASSERT_EQ(model->named_parameters().back().first, "res1.proj.weight");
  expect_gradients_match(*model, torch::randn({4, 3}));
}

TEST(ModelGradcheckTest, SmoothActivationsAndPoolsInANetwork) {
  auto model = build(R"([{"type": "conv2d", "out": 2, "padding": 1}, {"type": "sigmoid"}, {"type": "avgpool2d"},
                         {"type": "residual", "layers": [{"type": "conv2d", "out": 2, "padding": 1},
                                                         {"type": "leaky_relu", "slope": 0.1}]},
                         {"type": "adaptive_avgpool2d", "size": [1, 2]}, {"type": "flatten"},
                         {"type": "linear", "out": 4}, {"type": "gelu"}, {"type": "linear"},
                         {"type": "log_softmax"}])",
                     {1, 4, 4}, 3);
  expect_gradients_match(*model, torch::randn({2, 1, 4, 4}));
}
