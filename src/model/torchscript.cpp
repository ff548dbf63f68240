// TorchScript models (torch.jit.save from Python) behind the Model interface, with taps on the outputs of the
// submodules that forward calls.
#include <fmt/format.h>
#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/passes/inliner.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "traindx/core/error.h"
#include "traindx/core/text.h"
#include "traindx/model/model.h"

namespace traindx {
namespace {

std::string first_line(const std::string& message) { return message.substr(0, message.find('\n')); }

// "__torch__.torch.nn.modules.conv.Conv2d" -> "Conv2d"; user classes keep their own name ("Net").
std::string short_type_name(const torch::jit::Module& module) {
  const auto& name = module.type()->name();
  return name ? name->name() : "module";
}

// "blocks.0" when `value` is self.blocks[0], i.e. a chain of prim::GetAttr starting at `self`; "" otherwise.
std::string attribute_path(const torch::jit::Value* value, const torch::jit::Value* self) {
  std::vector<std::string> parts;
  while (value != self) {
    const torch::jit::Node* node = value->node();
    if (node->kind() != torch::jit::prim::GetAttr) return "";
    parts.push_back(node->s(torch::jit::attr::name));
    value = node->inputs().at(0);
  }
  std::reverse(parts.begin(), parts.end());
  return fmt::format("{}", fmt::join(parts, "."));
}

/// forward() rewritten to also return the output of every submodule call made directly by forward.
///
/// C++ modules have no forward hooks, so the values are taken from the graph instead: in the forward graph of
/// a scripted or traced module, each submodule call is a `prim::CallMethod` on a `prim::GetAttr` chain from
/// `self` (`self.fc`, or `self.blocks.0` for a ModuleList that TorchScript unrolled). Those outputs (tensors only)
/// are added, with the original output first, to one tuple that becomes the graph's single output. Inlining
/// afterwards replaces every use of a call's output by the callee's result, including our tuple, so the
/// correspondence survives; inlining also makes the graph runnable on its own. Calls inside loops, branches or
/// other methods of the module are not in forward's top-level block and are not tapped.
class TapProgram {
 public:
  explicit TapProgram(const torch::jit::Module& module) {
    namespace jit = torch::jit;
    const jit::Method method = module.get_method("forward");
    std::shared_ptr<jit::Graph> graph = jit::toGraphFunction(method.function()).graph()->copy();
    const jit::Value* self = graph->inputs().at(0);
    TRAINDX_ASSERT(graph->outputs().size() == 1, "a TorchScript method has one output, found {}",
                   graph->outputs().size());
    std::vector<jit::Value*> values = {graph->outputs().at(0)};
    for (jit::Node* node : graph->nodes()) {
      if (node->kind() != jit::prim::CallMethod || node->outputs().size() != 1) continue;
      if (!node->output()->type()->isSubtypeOf(*c10::TensorType::get())) continue;
      std::string path = attribute_path(node->inputs().at(0), self);
      if (path.empty()) continue;  // a method of self, not of a submodule
      names_.push_back(std::move(path));
      values.push_back(node->output());
    }
    graph->setInsertPoint(graph->return_node());
    jit::Node* tuple = graph->insertNode(graph->createTuple(values));
    graph->eraseOutput(0);
    graph->registerOutput(tuple->output());
    jit::Inline(*graph);
    function_ = std::make_unique<jit::GraphFunction>(c10::QualifiedName("traindx.forward_with_taps"), graph,
                                                     nullptr);
  }

  /// Submodule paths in call order (a submodule called twice appears twice).
  const std::vector<std::string>& names() const { return names_; }

  /// Runs the rewritten forward; `stack` holds self, the input and defaults of any further arguments.
  torch::Tensor run(torch::jit::Stack stack, const LayerTap& tap) {
    function_->run(stack);
    TRAINDX_ASSERT(stack.size() == 1 && stack.back().isTuple(), "tapped forward returned {} values",
                   stack.size());
    const auto tuple = stack.back().toTuple();
    const auto& elements = tuple->elements();
    TRAINDX_ASSERT(elements.size() == names_.size() + 1, "tapped forward returned {} values for {} taps",
                   elements.size(), names_.size());
    for (size_t i = 0; i < names_.size(); ++i) tap(names_[i], elements[i + 1].toTensor());
    return elements[0].toTensor();
  }

 private:
  std::vector<std::string> names_;
  std::unique_ptr<torch::jit::GraphFunction> function_;
};

class TorchScriptModel final : public Model {
 public:
  TorchScriptModel(torch::jit::Module module, const std::string& path) : module_(std::move(module)), path_(path) {
    const torch::jit::Method method = module_.get_method("forward");
    const c10::FunctionSchema& schema = method.function().getSchema();
    const auto& args = schema.arguments();
    TRAINDX_CHECK(args.size() >= 2, ModelError,
                  "model.torchscript: '{}': forward takes no input; traindx calls forward(x) with a batch", path);
    for (size_t i = 2; i < args.size(); ++i) {
      TRAINDX_CHECK(args[i].default_value().has_value(), ModelError,
                    "model.torchscript: '{}': forward needs argument '{}' besides the input; traindx calls "
                    "forward(x) only, so give it a default value",
                    path, args[i].name());
      extra_args_.push_back(*args[i].default_value());
    }
    const bool one_tensor =
        schema.returns().size() == 1 && schema.returns()[0].type()->isSubtypeOf(*c10::TensorType::get());
    TRAINDX_CHECK(one_tensor, ModelError,
                  "model.torchscript: '{}': forward returns {}; traindx needs forward(x) to return one tensor", path,
                  schema.returns().empty() ? std::string("nothing") : schema.returns()[0].type()->str());
    try {
      taps_ = std::make_unique<TapProgram>(module_);
    } catch (const c10::Error& e) {
      TRAINDX_FAIL(ModelError, "model.torchscript: '{}': cannot prepare layer taps on its forward graph: {}", path,
                   first_line(e.what_without_backtrace()));
    }
    build_summary();
  }

  torch::Tensor forward(const torch::Tensor& input) override {
    std::vector<torch::jit::IValue> inputs = {input};
    inputs.insert(inputs.end(), extra_args_.begin(), extra_args_.end());
    return module_.forward(std::move(inputs)).toTensor();
  }

  torch::Tensor forward_with_taps(const torch::Tensor& input, const LayerTap& tap) override {
    if (!tap) return forward(input);
    torch::jit::Stack stack = {torch::jit::IValue(module_._ivalue()), input};
    stack.insert(stack.end(), extra_args_.begin(), extra_args_.end());
    return taps_->run(std::move(stack), tap);
  }

  std::vector<NamedTensor> named_parameters() const override {
    std::vector<NamedTensor> out;
    for (const auto& p : module_.named_parameters(/*recurse=*/true)) out.emplace_back(p.name, p.value);
    return out;
  }

  std::vector<NamedTensor> named_buffers() const override {
    std::vector<NamedTensor> out;
    for (const auto& b : module_.named_buffers(/*recurse=*/true)) out.emplace_back(b.name, b.value);
    return out;
  }

  void train(bool on) override { module_.train(on); }
  bool is_training() const override { return module_.is_training(); }
  // Like Python's Module.to(dtype): integer buffers (num_batches_tracked) keep their dtype.
  void to(torch::Device device, torch::Dtype dtype) override {
    torch::NoGradGuard no_grad;
    auto move = [&](torch::Tensor t) {
      const torch::Dtype target = t.is_floating_point() ? dtype : t.scalar_type();
      if (t.device() != device || t.scalar_type() != target) t.set_data(t.to(device, target));
    };
    for (const auto& p : module_.parameters(/*recurse=*/true)) move(p);
    for (const auto& b : module_.buffers(/*recurse=*/true)) move(b);
  }
  std::vector<LayerSummary> summary() const override { return rows_; }
  // jit::Module::clone() copies parameters, buffers and attributes (the training flag among them).
  std::shared_ptr<Model> clone() const override { return std::make_shared<TorchScriptModel>(module_.clone(), path_); }

 private:
  // One row per tapped submodule, in the order forward first calls them, then the top-level children that
  // forward never calls and that contain no tapped submodule (a ModuleList whose items have rows is left out, so
  // rows never count a parameter twice). Shapes stay empty: they depend on an input the file does not record.
  void build_summary() {
    std::vector<std::string> order;
    std::set<std::string> seen;
    for (const auto& path : taps_->names()) {
      if (seen.insert(path).second) order.push_back(path);
    }
    for (const auto& child : module_.named_children()) {
      bool covered = false;
      for (const auto& path : seen) covered = covered || path == child.name || path.rfind(child.name + ".", 0) == 0;
      if (!covered) order.push_back(child.name);
    }
    for (const auto& path : order) {
      torch::jit::Module sub = module_;
      for (const auto& part : split(path, '.')) sub = sub.attr(part).toModule();
      int64_t params = 0;
      for (const auto& p : sub.parameters(/*recurse=*/true)) params += p.numel();
      rows_.push_back({path, short_type_name(sub), {}, params});
    }
  }

  torch::jit::Module module_;
  std::string path_;
  std::vector<torch::jit::IValue> extra_args_;
  std::unique_ptr<TapProgram> taps_;
  std::vector<LayerSummary> rows_;
};

}  // namespace

std::shared_ptr<Model> load_torchscript_model(const std::string& path) {
  TRAINDX_CHECK(!path.empty(), ModelError, "model.torchscript: no file given");
  std::error_code ec;
  TRAINDX_CHECK(std::filesystem::is_regular_file(path, ec), ModelError,
                "model.torchscript: cannot read '{}': no such file", path);
  torch::jit::Module module;
  try {
    module = torch::jit::load(path);
  } catch (const c10::Error& e) {
    TRAINDX_FAIL(ModelError,
                 "model.torchscript: cannot load '{}' as a TorchScript module ({}); export it from Python with "
                 "torch.jit.save(torch.jit.script(model), path)",
                 path, first_line(e.what_without_backtrace()));
  } catch (const std::exception& e) {
    TRAINDX_FAIL(ModelError,
                 "model.torchscript: cannot load '{}' as a TorchScript module ({}); export it from Python with "
                 "torch.jit.save(torch.jit.script(model), path)",
                 path, first_line(e.what()));
  }
  TRAINDX_CHECK(module.find_method("forward").has_value(), ModelError,
                "model.torchscript: '{}' has no forward method; script or trace the model's forward", path);
  return std::make_shared<TorchScriptModel>(std::move(module), path);
}

}  // namespace traindx
