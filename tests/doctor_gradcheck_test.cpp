// The doctor's gradient check: every layer type of a built model passes, a custom autograd::Function with a wrong
// backward is caught and named, the caller's model is left exactly as it was, and the verdicts agree with
// torch.autograd.gradcheck on the same TorchScript functions (fixtures from tests/reference/
// make_gradcheck_fixtures.py, run with Debian's python3-torch at test time).
#include <gtest/gtest.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <set>
#include <sstream>

#include "test_support.h"
#include "traindx/checkpoint/checkpoint.h"
#include "traindx/core/error.h"
#include "traindx/doctor/gradcheck.h"
#include "traindx/model/model.h"

using traindx::GradcheckMode;
using traindx::GradcheckOptions;
using traindx::GradcheckResult;
using traindx::Json;
using traindx::LossKind;

namespace {

std::shared_ptr<traindx::Model> build(const std::string& layers, const std::vector<int64_t>& input, int64_t outputs,
                                      uint64_t seed = 1) {
  traindx::ModelOptions o;
  o.layers = Json::parse(layers);
  torch::manual_seed(seed);
  return traindx::build_model(o, input, outputs);
}

std::string failures(const GradcheckResult& r) {
  std::string s;
  for (const auto& row : r.rows)
    if (!row.passed) s += "\n  " + row.to_json().dump();
  return s;
}

// The layer types a layer list uses, residual sub-lists included.
void collect_types(const Json& layers, std::set<std::string>& out) {
  for (const auto& l : layers) {
    out.insert(l.at("type").get<std::string>());
    if (l.contains("layers")) collect_types(l.at("layers"), out);
  }
}

const char* kImageLayers = R"([
  {"type": "conv2d", "out": 3, "kernel": 3, "padding": 1},
  {"type": "batchnorm2d"},
  {"type": "relu"},
  {"type": "residual", "layers": [{"type": "conv2d", "out": 4, "stride": 2, "padding": 1}, {"type": "batchnorm"},
                                  {"type": "leaky_relu", "slope": 0.1}]},
  {"type": "maxpool2d", "kernel": 2},
  {"type": "conv2d", "out": 4, "kernel": 1},
  {"type": "avgpool2d", "kernel": 1},
  {"type": "adaptive_avgpool2d", "size": [1, 1]},
  {"type": "flatten"},
  {"type": "dropout", "p": 0.3},
  {"type": "linear", "out": 5},
  {"type": "gelu"},
  {"type": "linear"}
])";

const char* kFlatLayers = R"([
  {"type": "linear", "out": 6},
  {"type": "batchnorm"},
  {"type": "tanh"},
  {"type": "residual", "layers": [{"type": "layernorm"}, {"type": "linear", "out": 6}, {"type": "sigmoid"}]},
  {"type": "batchnorm1d"},
  {"type": "residual", "layers": [{"type": "linear", "out": 4}, {"type": "relu"}]},
  {"type": "dropout", "p": 0.5},
  {"type": "linear"},
  {"type": "log_softmax"}
])";

// ---- a custom layer: y = tanh(x) * scale, with a backward that is right or deliberately wrong ----------------------

template <bool kWrong>
struct ScaledTanh : public torch::autograd::Function<ScaledTanh<kWrong>> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor x, torch::Tensor scale) {
    ctx->save_for_backward({x, scale});
    return torch::tanh(x) * scale;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor t = torch::tanh(saved[0]);
    const torch::Tensor dx = grad[0] * (1 - t * t) * saved[1];
    // d/d scale is grad * tanh(x); the wrong version forgets the tanh (a plausible slip when writing it by hand).
    const torch::Tensor dscale = (grad[0] * (kWrong ? saved[0] : t)).sum(0);
    return {dx, dscale};
  }
};

// fc1 -> custom (ScaledTanh) -> fc2, a Model the way a user would wrap their own module.
class CustomLayerModel final : public traindx::Model {
 public:
  explicit CustomLayerModel(bool wrong) : wrong_(wrong) {
    torch::manual_seed(3);
    scale_ = torch::rand({3}) + 0.5;
    scale_.set_requires_grad(true);
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    const torch::Tensor h = fc1_->forward(x);
    const torch::Tensor y = wrong_ ? ScaledTanh<true>::apply(h, scale_) : ScaledTanh<false>::apply(h, scale_);
    return fc2_->forward(y);
  }
  torch::Tensor forward_with_taps(const torch::Tensor& x, const traindx::LayerTap&) override { return forward(x); }
  std::vector<traindx::NamedTensor> named_parameters() const override {
    return {{"fc1.weight", fc1_->weight}, {"fc1.bias", fc1_->bias}, {"custom.scale", scale_},
            {"fc2.weight", fc2_->weight}, {"fc2.bias", fc2_->bias}};
  }
  std::vector<traindx::NamedTensor> named_buffers() const override { return {}; }
  void train(bool on) override { training_ = on; }
  bool is_training() const override { return training_; }
  void to(torch::Device device, torch::Dtype dtype) override {
    torch::NoGradGuard no_grad;
    for (auto& [name, t] : named_parameters()) t.set_data(t.to(device, dtype));
  }
  std::vector<traindx::LayerSummary> summary() const override { return {}; }

 private:
  bool wrong_;
  bool training_ = true;
  torch::nn::Linear fc1_{4, 3};
  torch::Tensor scale_;
  torch::nn::Linear fc2_{3, 2};
};

}  // namespace

TEST(DoctorGradcheckTest, EveryLayerTypeOfABuiltModelPasses) {
  std::set<std::string> used;
  collect_types(Json::parse(kImageLayers), used);
  collect_types(Json::parse(kFlatLayers), used);
  for (const auto& type : traindx::layer_types()) EXPECT_TRUE(used.count(type)) << type << " is not covered";

  torch::manual_seed(7);
  auto image = build(kImageLayers, {2, 6, 6}, 3);
  const GradcheckResult r = traindx::gradient_check(*image, torch::randn({4, 2, 6, 6}), torch::tensor({0, 1, 2, 1}),
                                                    LossKind::CrossEntropy);
  EXPECT_TRUE(r.passed) << failures(r);
  EXPECT_TRUE(r.findings.empty());
  EXPECT_EQ(r.rows.size(), image->named_parameters().size());
  EXPECT_EQ(r.batch_size, 2);
  for (const auto& row : r.rows) {
    EXPECT_EQ(row.checked_outputs, 1) << row.name;  // a scalar loss
    EXPECT_EQ(row.checked_elements, std::min<int64_t>(row.elements, 32)) << row.name;
    EXPECT_EQ(row.sampled, row.elements > 32) << row.name;
    EXPECT_LE(row.max_error_ratio, 1.0) << row.name;
  }

  auto flat = build(kFlatLayers, {5}, 3);
  torch::manual_seed(8);
  const GradcheckResult f =
      traindx::gradient_check(*flat, torch::randn({6, 5}), torch::tensor({0, 1, 2, 1, 0, 2}), LossKind::Nll,
                              GradcheckOptions().set_batch_size(0).set_check_input(true));
  EXPECT_TRUE(f.passed) << failures(f);
  EXPECT_EQ(f.batch_size, 6);
  ASSERT_FALSE(f.rows.empty());
  EXPECT_EQ(f.rows.front().name, "input");
  EXPECT_EQ(f.rows.front().checked_elements, 30);
}

TEST(DoctorGradcheckTest, EvalModeAndEveryElementPassToo) {
  auto image = build(kImageLayers, {2, 6, 6}, 3, 2);
  torch::manual_seed(9);
  const GradcheckResult r = traindx::gradient_check(
      *image, torch::randn({3, 2, 6, 6}), torch::tensor({2, 0, 1}), LossKind::CrossEntropy,
      GradcheckOptions().set_mode(GradcheckMode::Eval).set_max_elements_per_tensor(0));
  EXPECT_TRUE(r.passed) << failures(r);
  for (const auto& row : r.rows) {
    EXPECT_EQ(row.checked_elements, row.elements) << row.name;
    EXPECT_FALSE(row.sampled) << row.name;
  }
  EXPECT_EQ(r.to_json()["options"]["mode"], "eval");
}

TEST(DoctorGradcheckTest, LeavesTheCallersModelExactlyAsItWas) {
  auto model = build(kImageLayers, {2, 6, 6}, 3);
  model->train(false);
  std::vector<std::pair<torch::Tensor, torch::Tensor>> before;  // (handle, copy of its values)
  std::vector<const void*> storage;
  for (const auto& [name, t] : model->named_parameters()) {
    before.emplace_back(t, t.detach().clone());
    storage.push_back(t.data_ptr());
  }
  for (const auto& [name, t] : model->named_buffers()) {
    before.emplace_back(t, t.detach().clone());
    storage.push_back(t.data_ptr());
  }
  torch::manual_seed(11);
  const torch::Tensor x = torch::randn({4, 2, 6, 6});
  const torch::Tensor rng = traindx::cpu_rng_state();
  // TrainFixedSeed re-seeds the generator and runs batch norm in training mode (which updates running stats).
  traindx::gradient_check(*model, x, torch::tensor({0, 1, 2, 0}), LossKind::CrossEntropy);

  EXPECT_FALSE(model->is_training());
  EXPECT_TRUE(torch::equal(traindx::cpu_rng_state(), rng));
  for (size_t i = 0; i < before.size(); ++i) {
    const auto& [handle, copy] = before[i];
    EXPECT_EQ(handle.scalar_type(), copy.scalar_type());
    EXPECT_TRUE(torch::equal(handle, copy)) << i;
    EXPECT_EQ(handle.data_ptr(), storage[i]) << i;  // the original storage, not a copy
    EXPECT_FALSE(handle.grad().defined()) << i;
  }
  // The named tensors the model hands out are still the ones it computes with.
  const auto params = model->named_parameters();
  EXPECT_TRUE(params.front().second.is_same(before.front().first));
}

TEST(DoctorGradcheckTest, CatchesACustomLayersWrongBackwardAndNamesTheLayer) {
  torch::manual_seed(5);
  const torch::Tensor x = torch::randn({4, 4});
  const torch::Tensor y = torch::tensor({0, 1, 1, 0});

  CustomLayerModel right(/*wrong=*/false);
  const GradcheckResult ok = traindx::gradient_check(right, x, y, LossKind::CrossEntropy);
  EXPECT_TRUE(ok.passed) << failures(ok);

  CustomLayerModel wrong(/*wrong=*/true);
  const GradcheckResult r = traindx::gradient_check(wrong, x, y, LossKind::CrossEntropy);
  EXPECT_FALSE(r.passed);
  for (const auto& row : r.rows) EXPECT_EQ(row.passed, row.name != "custom.scale") << row.to_json().dump();
  ASSERT_EQ(r.findings.size(), 1u);
  const traindx::Finding& f = r.findings.front();
  EXPECT_EQ(f.rule, "gradient_check");
  EXPECT_EQ(f.severity, traindx::Severity::Critical);
  EXPECT_EQ(f.layer, "custom");
  EXPECT_NE(f.message.find("backward of layer custom disagrees with finite differences"), std::string::npos)
      << f.message;
  EXPECT_EQ(f.evidence["failing"], Json::array({"custom.scale"}));
  EXPECT_FALSE(f.fixes.empty());

  // The function form catches it too, on the layer alone.
  const traindx::TensorFunction layer = [](const std::vector<torch::Tensor>& in) {
    return ScaledTanh<true>::apply(in[0], in[1]);
  };
  const GradcheckResult alone = traindx::gradient_check_function(
      layer, {torch::randn({3, 3}).requires_grad_(true), (torch::rand({3}) + 0.5).requires_grad_(true)});
  ASSERT_EQ(alone.rows.size(), 2u);
  EXPECT_TRUE(alone.rows[0].passed);
  EXPECT_FALSE(alone.rows[1].passed);
  EXPECT_EQ(alone.rows[1].checked_outputs, 9);
}

TEST(DoctorGradcheckTest, KinksFailLikeTorchUnlessExcused) {
  torch::Tensor x = torch::tensor({0.5, -1.0, 2e-7, 3.0}, torch::kDouble).requires_grad_(true);
  const traindx::TensorFunction abs_fn = [](const std::vector<torch::Tensor>& in) { return torch::abs(in[0]); };
  const GradcheckResult strict = traindx::gradient_check_function(abs_fn, {x});
  EXPECT_FALSE(strict.passed);
  EXPECT_EQ(strict.rows[0].failed_entries, 1);
  EXPECT_EQ(strict.rows[0].worst_element, 2);
  const GradcheckResult excused =
      traindx::gradient_check_function(abs_fn, {x}, GradcheckOptions().set_excuse_kinks(true));
  EXPECT_TRUE(excused.passed);
  EXPECT_EQ(excused.rows[0].kink_entries, 1);
  // A wrong backward on a smooth function is not a kink: both one-sided differences agree, with each other only.
  const traindx::TensorFunction square = [](const std::vector<torch::Tensor>& in) { return in[0] * in[0].detach(); };
  EXPECT_FALSE(traindx::gradient_check_function(square, {x}, GradcheckOptions().set_excuse_kinks(true)).passed);
}

TEST(DoctorGradcheckTest, DoesNotModifyTheCallersInputsAndSamplesLargeTensors) {
  torch::manual_seed(2);
  const torch::Tensor a = torch::randn({20, 10}).requires_grad_(true);  // float32: checked as a float64 copy
  const torch::Tensor a_copy = a.detach().clone();
  const traindx::TensorFunction f = [](const std::vector<torch::Tensor>& in) { return torch::sin(in[0]).sum(1); };
  const GradcheckResult r =
      traindx::gradient_check_function(f, {a}, GradcheckOptions().set_max_elements_per_tensor(16));
  EXPECT_TRUE(r.passed) << failures(r);
  EXPECT_EQ(r.rows[0].elements, 200);
  EXPECT_EQ(r.rows[0].checked_elements, 16);
  EXPECT_EQ(r.rows[0].checked_outputs, 16);
  EXPECT_TRUE(r.rows[0].sampled);
  EXPECT_EQ(r.evaluations, 32);
  EXPECT_EQ(a.scalar_type(), torch::kFloat);
  EXPECT_TRUE(torch::equal(a.detach(), a_copy));
  // The same seed samples the same elements.
  const GradcheckResult again =
      traindx::gradient_check_function(f, {a}, GradcheckOptions().set_max_elements_per_tensor(16));
  EXPECT_EQ(again.rows[0].worst_element, r.rows[0].worst_element);
}

TEST(DoctorGradcheckTest, RefusesBadInputAndReportsANonFiniteLoss) {
  const traindx::TensorFunction f = [](const std::vector<torch::Tensor>& in) { return in[0] * 2; };
  EXPECT_THROW(traindx::gradient_check_function(f, {torch::randn({3})}), traindx::ConfigError);  // no requires_grad
  EXPECT_THROW(traindx::gradient_check_function(f, {torch::randn({3}).requires_grad_(true)},
                                                GradcheckOptions().set_eps(0)),
               traindx::ConfigError);
  auto model = build(R"([{"type": "linear"}])", {3}, 2);
  EXPECT_THROW(traindx::gradient_check(*model, torch::randn({4, 3}), torch::tensor({0, 1}), LossKind::CrossEntropy),
               traindx::DataError);

  torch::Tensor x = torch::randn({2, 3});
  x[0][0] = std::numeric_limits<float>::infinity();
  const GradcheckResult r = traindx::gradient_check(*model, x, torch::tensor({0, 1}), LossKind::CrossEntropy);
  EXPECT_FALSE(r.passed);
  EXPECT_TRUE(r.rows.empty());
  EXPECT_FALSE(r.skip_reason.empty());
  ASSERT_EQ(r.findings.size(), 1u);
  EXPECT_EQ(r.findings[0].rule, "gradient_check_skipped");
  EXPECT_EQ(r.findings[0].severity, traindx::Severity::Warning);
  EXPECT_TRUE(r.to_json()["loss"].is_null());
}

TEST(DoctorGradcheckTest, SkipsWhenRoundOffWouldDecideTheVerdict) {
  // Two layers with weights scaled by 1e6 give logits, and a loss, of ~1e12: the central differences' round-off,
  // 2.2e-16 * |loss| / 1e-6, is ~1e2, far above atol. A correct backward would "fail" on rounding, so the check
  // says it cannot judge instead of blaming a layer.
  auto model = build(R"([{"type": "linear", "out": 4}, {"type": "linear"}])", {3}, 2);
  for (auto& [name, p] : model->named_parameters()) {
    torch::NoGradGuard no_grad;
    p.mul_(1e6);
  }
  const GradcheckResult r = traindx::gradient_check(*model, torch::randn({4, 3}), torch::tensor({0, 1, 1, 0}),
                                                    LossKind::CrossEntropy);
  EXPECT_GT(r.loss, 1e6);
  EXPECT_FALSE(r.passed);
  EXPECT_TRUE(r.rows.empty());
  EXPECT_NE(r.skip_reason.find("round-off"), std::string::npos) << r.skip_reason;
  ASSERT_EQ(r.findings.size(), 1u);
  EXPECT_EQ(r.findings[0].rule, "gradient_check_skipped");
}

TEST(DoctorGradcheckTest, FrozenParametersAreSkipped) {
  auto model = build(R"([{"type": "linear", "out": 4, "trainable": false}, {"type": "tanh"}, {"type": "linear"}])",
                     {3}, 2);
  const GradcheckResult r = traindx::gradient_check(*model, torch::randn({4, 3}), torch::tensor({0, 1, 1, 0}),
                                                    LossKind::CrossEntropy);
  EXPECT_TRUE(r.passed) << failures(r);
  EXPECT_EQ(r.skipped, (std::vector<std::string>{"fc1.weight", "fc1.bias"}));
  EXPECT_EQ(r.rows.size(), 2u);
}

// ---- agreement with torch.autograd.gradcheck ----------------------------------------------------------------------

namespace {

std::map<std::string, torch::Tensor> load_dict(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::map<std::string, torch::Tensor> out;
  for (const auto& item : torch::pickle_load(bytes).toGenericDict())
    out[item.key().toStringRef()] = item.value().toTensor();
  return out;
}

class DoctorGradcheckPythonTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (std::system("/usr/bin/python3 -c 'import torch' > /dev/null 2>&1") != 0) return;
    dir_ = std::make_unique<traindx::testing::TempDir>();
    const std::string cmd = "/usr/bin/python3 " + traindx::testing::source_dir() +
                            "/tests/reference/make_gradcheck_fixtures.py " + dir_->path() + " > " +
                            dir_->file("python.log") + " 2>&1";
    generated_ = std::system(cmd.c_str()) == 0;
  }
  static void TearDownTestSuite() { dir_.reset(); }
  void SetUp() override {
    if (!dir_) GTEST_SKIP() << "/usr/bin/python3 has no torch (Debian's python3-torch)";
    ASSERT_TRUE(generated_) << "make_gradcheck_fixtures.py failed; see " << dir_->file("python.log");
  }
  static std::unique_ptr<traindx::testing::TempDir> dir_;
  static bool generated_;
};

std::unique_ptr<traindx::testing::TempDir> DoctorGradcheckPythonTest::dir_;
bool DoctorGradcheckPythonTest::generated_ = false;

}  // namespace

TEST_F(DoctorGradcheckPythonTest, SameVerdictAsTorchAutogradGradcheckOnEveryFunction) {
  std::ifstream verdicts(dir_->file("verdicts.txt"));
  int cases = 0, fails = 0;
  std::ostringstream table;
  table << "| function | torch.autograd.gradcheck | traindx | max error ratio |\n|---|---|---|---|\n";
  for (std::string line; std::getline(verdicts, line);) {
    std::istringstream fields(line);
    std::string name, verdict, flags;
    fields >> name >> verdict >> flags;
    if (name.empty()) continue;
    torch::jit::Module module = torch::jit::load(dir_->file(name + ".pt"));
    const auto stored = load_dict(dir_->file(name + "_inputs.pt"));
    ASSERT_EQ(stored.at("count").item<int64_t>(), static_cast<int64_t>(flags.size())) << name;
    std::vector<torch::Tensor> inputs;
    for (size_t i = 0; i < flags.size(); ++i) {
      inputs.push_back(stored.at(std::to_string(i)).requires_grad_(flags[i] == '1'));
    }
    const traindx::TensorFunction f = [&module](const std::vector<torch::Tensor>& in) {
      return module.forward(std::vector<torch::IValue>(in.begin(), in.end())).toTensor();
    };
    // Every element, as torch's gradcheck: a sample could miss the one element sitting on a kink.
    const GradcheckResult r =
        traindx::gradient_check_function(f, inputs, GradcheckOptions().set_max_elements_per_tensor(0));
    double worst = 0;
    for (const auto& row : r.rows) worst = std::max(worst, row.max_error_ratio);
    EXPECT_EQ(r.passed ? "pass" : "fail", verdict) << name << failures(r);
    table << "| " << name << " | " << verdict << " | " << (r.passed ? "pass" : "fail") << " | " << worst << " |\n";
    ++cases;
    fails += verdict == "fail";
  }
  std::cout << table.str();
  EXPECT_EQ(cases, 11);
  EXPECT_EQ(fails, 4);  // the fixtures cover both verdicts
}
