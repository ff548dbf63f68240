// Layer stacks built from model.layers: the layer table (validation, names, docs), shape inference, init, and the
// Model implementation over a LayerStack module.
#include <fmt/format.h>
#include <torch/torch.h>

#include <array>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "traindx/core/error.h"
#include "traindx/core/rng.h"
#include "traindx/core/text.h"
#include "traindx/model/model.h"

namespace traindx {
namespace {

using Shape = std::vector<int64_t>;
using Pair = std::array<int64_t, 2>;

constexpr double kInf = std::numeric_limits<double>::infinity();

std::string shape_str(const Shape& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

std::string describe(const Json& v) {
  std::string s = v.dump();
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

// "Did you mean" candidate: a choice that starts with what was typed ("xavier" -> "xavier_uniform") beats raw
// edit distance, which prefers short unrelated words ("normal").
std::string suggest(const std::string& word, const std::vector<std::string>& choices) {
  for (const auto& c : choices) {
    if (!word.empty() && c.rfind(word, 0) == 0) return c;
  }
  return closest_match(word, choices);
}

// First line of a LibTorch message: the rest is a C++ backtrace nobody configuring a network wants to read.
std::string first_line(const std::string& message) { return message.substr(0, message.find('\n')); }

// ---------------------------------------------------------------------------------------------------------------
// The layer table: one declaration per type drives validation, generated names and docs/model.md.

enum class KeyKind { Int, Float, Bool, String, IntPair, LayerList };

const char* kind_text(KeyKind kind) {
  switch (kind) {
    case KeyKind::Int: return "an integer";
    case KeyKind::Float: return "a number";
    case KeyKind::Bool: return "true or false";
    case KeyKind::String: return "a string";
    case KeyKind::IntPair: return "an integer or a pair [h, w]";
    case KeyKind::LayerList: return "an array of layer tables";
  }
  return "?";
}

const char* kind_doc(KeyKind kind) {
  switch (kind) {
    case KeyKind::Int: return "integer";
    case KeyKind::Float: return "number";
    case KeyKind::Bool: return "bool";
    case KeyKind::String: return "string";
    case KeyKind::IntPair: return "integer or [h, w]";
    case KeyKind::LayerList: return "array of tables";
  }
  return "?";
}

struct KeySpec {
  std::string name;
  KeyKind kind = KeyKind::Int;
  std::string default_text;  ///< for docs; "required" marks a key without default
  std::string help;
  double min = -kInf;
  double max = kInf;
  bool exclusive_min = false;
  std::vector<std::string> choices;
  bool required() const { return default_text == "required"; }
};

struct LayerSpec {
  std::string type;
  std::string prefix;  ///< generated names are prefix + per-list counter: fc1, fc2, ...
  std::string help;
  std::vector<KeySpec> keys;  ///< besides `type` and `name`
  bool has_weights = false;   ///< takes the init keys
};

const std::vector<std::string>& bias_schemes() {
  static const std::vector<std::string> schemes = {"default", "zeros", "constant"};
  return schemes;
}

KeySpec key(std::string name, KeyKind kind, std::string default_text, std::string help, double min = -kInf,
            double max = kInf) {
  KeySpec k;
  k.name = std::move(name);
  k.kind = kind;
  k.default_text = std::move(default_text);
  k.help = std::move(help);
  k.min = min;
  k.max = max;
  return k;
}

std::vector<KeySpec> init_keys(const std::string& scope) {
  KeySpec init = key("init", KeyKind::String, "model.init", "Weight init scheme " + scope + ".");
  init.choices = init_schemes();
  KeySpec bias = key("bias_init", KeyKind::String, "model.bias_init",
                     "Bias init " + scope + ": default (LibTorch's), zeros, constant.");
  bias.choices = bias_schemes();
  return {init,
          key("init_std", KeyKind::Float, "model.init_std", "Standard deviation for init = \"normal\".", 0.0),
          key("init_value", KeyKind::Float, "model.init_value", "Value for init = \"constant\"."), bias,
          key("bias_value", KeyKind::Float, "model.bias_value", "Value for bias_init = \"constant\".")};
}

// Every layer with parameters can be frozen: a fault the monitor must catch (unchanged_parameter), and the usual
// way to fine-tune only part of a network.
KeySpec trainable_key(const std::string& scope) {
  return key("trainable", KeyKind::Bool, "true",
             "false freezes the parameters " + scope + " (requires_grad false): they get no gradient and never "
             "change.");
}

LayerSpec spec(std::string type, std::string prefix, std::string help, std::vector<KeySpec> keys = {},
               bool has_weights = false) {
  LayerSpec s{std::move(type), std::move(prefix), std::move(help), std::move(keys), has_weights};
  if (has_weights) {
    const std::string scope = s.type == "residual" ? "for the block's layers and projection" : "for this layer";
    for (auto& k : init_keys(scope)) s.keys.push_back(std::move(k));
    s.keys.push_back(trainable_key(s.type == "residual" ? "of the whole block" : "of this layer"));
  }
  return s;
}

std::vector<KeySpec> norm_keys(bool momentum) {
  KeySpec eps = key("eps", KeyKind::Float, "1e-5", "Added to the variance for numerical stability.", 0.0);
  eps.exclusive_min = true;
  std::vector<KeySpec> keys = {eps};
  if (momentum) {
    keys.push_back(
        key("momentum", KeyKind::Float, "0.1", "Weight of the newest batch in the running statistics.", 0.0, 1.0));
  }
  keys.push_back(trainable_key("of this layer"));
  return keys;
}

std::vector<KeySpec> pool_keys() {
  return {key("kernel", KeyKind::IntPair, "2", "Window size.", 1),
          key("stride", KeyKind::IntPair, "kernel", "Step between windows.", 1),
          key("padding", KeyKind::IntPair, "0", "Padding added to each side; at most half the kernel.", 0)};
}

const std::vector<LayerSpec>& layer_specs() {
  static const std::vector<LayerSpec> specs = [] {
    std::vector<LayerSpec> s;
    s.push_back(spec("linear", "fc", "Fully connected layer y = x W^T + b on flat input [features].",
                     {key("out", KeyKind::Int, "`outputs` on the last linear layer, else required",
                          "Output features.", 1),
                      key("bias", KeyKind::Bool, "true", "Learn an additive bias.")},
                     true));
    s.push_back(spec("conv2d", "conv", "2-D convolution on image input [channels, height, width].",
                     {key("out", KeyKind::Int, "required", "Output channels.", 1),
                      key("kernel", KeyKind::IntPair, "3", "Kernel size.", 1),
                      key("stride", KeyKind::IntPair, "1", "Step of the kernel.", 1),
                      key("padding", KeyKind::IntPair, "0", "Zero padding added to each side.", 0),
                      key("bias", KeyKind::Bool, "true", "Learn an additive bias per output channel.")},
                     true));
    s.push_back(spec("batchnorm", "bn",
                     "Batch normalisation that picks batchnorm1d for [features] or [channels, length] input and "
                     "batchnorm2d for [channels, height, width] input.",
                     norm_keys(true)));
    s.push_back(spec("batchnorm1d", "bn", "Batch normalisation of [features] or [channels, length] input.",
                     norm_keys(true)));
    s.push_back(spec("batchnorm2d", "bn", "Batch normalisation of the channels of [channels, height, width] input.",
                     norm_keys(true)));
    s.push_back(spec("layernorm", "ln",
                     "Layer normalisation over the whole per-example shape, with a learned weight and bias of "
                     "that shape.",
                     norm_keys(false)));
    s.push_back(spec("dropout", "drop",
                     "Zeroes each element with probability p in training mode and scales the rest by 1/(1-p); "
                     "the identity in eval mode.",
                     {key("p", KeyKind::Float, "0.5", "Drop probability.", 0.0, 1.0)}));
    s.push_back(spec("relu", "relu", "max(x, 0)."));
    s.push_back(spec("leaky_relu", "lrelu", "x for x > 0, slope * x otherwise.",
                     {key("slope", KeyKind::Float, "0.01", "Slope for negative inputs.")}));
    s.push_back(spec("gelu", "gelu", "Gaussian error linear unit (exact erf form)."));
    s.push_back(spec("tanh", "tanh", "Hyperbolic tangent."));
    s.push_back(spec("sigmoid", "sigmoid", "Logistic sigmoid."));
    s.push_back(spec("log_softmax", "logsoftmax",
                     "log(softmax(x)) over dimension 1 of the batch (the features); pair it with "
                     "train.loss = \"nll\"."));
    s.push_back(spec("maxpool2d", "pool", "Max pooling on image input.", pool_keys()));
    s.push_back(spec("avgpool2d", "avgpool", "Average pooling on image input (padding counts as zeros).",
                     pool_keys()));
    s.push_back(spec("adaptive_avgpool2d", "gap",
                     "Average pooling to a fixed output size on image input; size = 1 is global average pooling.",
                     {key("size", KeyKind::IntPair, "1", "Output height and width.", 1)}));
    s.push_back(spec("flatten", "flatten",
                     "Flattens each example to [features]; goes between image layers and linear layers."));
    s.push_back(spec("residual", "res",
                     "output = input + f(input), where f is the sub-list `layers`. When f changes the shape, the "
                     "shortcut gets a learned projection `<block>.proj` without bias: a 1x1 conv2d (strided to "
                     "match a spatial change) for images, a linear layer for vectors.",
                     {key("layers", KeyKind::LayerList, "required",
                          "The layers of f; their names are qualified by the block's name.")},
                     true));
    return s;
  }();
  return specs;
}

const LayerSpec* find_spec(const std::string& type) {
  for (const auto& s : layer_specs()) {
    if (s.type == type) return &s;
  }
  return nullptr;
}

const KeySpec* find_key(const LayerSpec& spec, const std::string& name) {
  for (const auto& k : spec.keys) {
    if (k.name == name) return &k;
  }
  return nullptr;
}

std::vector<std::string> key_names(const LayerSpec& spec) {
  std::vector<std::string> names = {"name"};
  for (const auto& k : spec.keys) names.push_back(k.name);
  return names;
}

std::string format_number(double v) { return fmt::format("{}", v); }

// ---------------------------------------------------------------------------------------------------------------
// One validated entry of a layer list.

class Entry {
 public:
  Entry(const Json& json, std::string where) : json_(&json), where_(std::move(where)) { validate(); }

  const LayerSpec& spec() const { return *spec_; }
  const std::string& type() const { return spec_->type; }
  const std::string& where() const { return where_; }
  const Json& json() const { return *json_; }
  /// "model.layers[3] (conv2d)": how messages name the entry.
  std::string label() const { return fmt::format("{} ({})", where_, spec_->type); }
  bool has(const std::string& k) const { return json_->contains(k); }

  int64_t get_int(const std::string& k, int64_t fallback) const {
    return has(k) ? json_->at(k).get<int64_t>() : fallback;
  }
  double get_double(const std::string& k, double fallback) const {
    return has(k) ? json_->at(k).get<double>() : fallback;
  }
  bool get_bool(const std::string& k, bool fallback) const { return has(k) ? json_->at(k).get<bool>() : fallback; }
  std::string get_string(const std::string& k, const std::string& fallback) const {
    return has(k) ? json_->at(k).get<std::string>() : fallback;
  }
  Pair get_pair(const std::string& k, Pair fallback) const {
    if (!has(k)) return fallback;
    const Json& v = json_->at(k);
    if (v.is_array()) return {v[0].get<int64_t>(), v[1].get<int64_t>()};
    return {v.get<int64_t>(), v.get<int64_t>()};
  }

 private:
  void validate() {
    const std::string types = fmt::format("{}", fmt::join(layer_types(), ", "));
    TRAINDX_CHECK(json_->is_object(), ModelError,
                  "{}: must be a table like {{type = \"linear\", out = 10}}, got {}", where_, describe(*json_));
    TRAINDX_CHECK(json_->contains("type"), ModelError, "{}: missing key 'type' (one of: {})", where_, types);
    const Json& t = json_->at("type");
    TRAINDX_CHECK(t.is_string(), ModelError, "{}: key 'type' must be a string (one of: {}), got {}", where_, types,
                  describe(t));
    const std::string type = t.get<std::string>();
    spec_ = find_spec(type);
    TRAINDX_CHECK(spec_ != nullptr, ModelError, "{}: unknown layer type '{}'; did you mean '{}'? (one of: {})",
                  where_, type, suggest(type, layer_types()), types);

    for (const auto& [k, v] : json_->items()) {
      if (k == "type") continue;
      if (k == "name") {
        check_name(v);
        continue;
      }
      const KeySpec* ks = find_key(*spec_, k);
      if (ks == nullptr) unknown_key(k);
      check_value(*ks, v);
    }
    for (const auto& ks : spec_->keys) {
      if (ks.required() && !has(ks.name)) {
        std::string what = to_lower(ks.help);
        if (!what.empty() && what.back() == '.') what.pop_back();
        TRAINDX_FAIL(ModelError, "{}: missing required key '{}' ({})", label(), ks.name, what);
      }
    }
  }

  [[noreturn]] void unknown_key(const std::string& k) const {
    const std::vector<std::string> valid = key_names(*spec_);
    const std::string list = fmt::format("{}", fmt::join(valid, ", "));
    if (!spec_->has_weights && (k == "init" || k == "init_std" || k == "init_value" || k == "bias_init" ||
                                k == "bias_value")) {
      TRAINDX_FAIL(ModelError, "{}: unknown key '{}'; {} has no weights to initialise (it takes: {})", label(), k,
                   spec_->type, list);
    }
    const std::string best = suggest(k, valid);
    // Only suggest a key that is plausibly a misspelling; otherwise the list of valid keys says more.
    if (edit_distance(to_lower(k), to_lower(best)) <= std::max<size_t>(2, k.size() / 3)) {
      TRAINDX_FAIL(ModelError, "{}: unknown key '{}'; did you mean '{}'? ({} takes: {})", label(), k, best,
                   spec_->type, list);
    }
    TRAINDX_FAIL(ModelError, "{}: unknown key '{}' ({} takes: {})", label(), k, spec_->type, list);
  }

  void check_name(const Json& v) const {
    TRAINDX_CHECK(v.is_string(), ModelError, "{}: key 'name' must be a string, got {}", label(), describe(v));
    const std::string name = v.get<std::string>();
    bool ok = !name.empty();
    for (char c : name) {
      ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_');
    }
    TRAINDX_CHECK(ok, ModelError,
                  "{}: name '{}' may contain only letters, digits and '_' (a '.' separates a residual block's name "
                  "from its layers' names)",
                  label(), name);
  }

  void check_value(const KeySpec& ks, const Json& v) const {
    auto wrong_type = [&] {
      TRAINDX_FAIL(ModelError, "{}: key '{}' must be {}, got {}", label(), ks.name, kind_text(ks.kind),
                   describe(v));
    };
    std::vector<double> numbers;
    switch (ks.kind) {
      case KeyKind::Int:
        if (!v.is_number_integer()) wrong_type();
        numbers.push_back(static_cast<double>(v.get<int64_t>()));
        break;
      case KeyKind::Float:
        if (!v.is_number()) wrong_type();
        numbers.push_back(v.get<double>());
        break;
      case KeyKind::Bool:
        if (!v.is_boolean()) wrong_type();
        break;
      case KeyKind::String:
        if (!v.is_string()) wrong_type();
        if (!ks.choices.empty()) {
          const std::string s = v.get<std::string>();
          bool known = false;
          for (const auto& c : ks.choices) known = known || c == s;
          TRAINDX_CHECK(known, ModelError, "{}: key '{}' has unknown value '{}'; did you mean '{}'? (one of: {})",
                        label(), ks.name, s, suggest(s, ks.choices), fmt::join(ks.choices, ", "));
        }
        break;
      case KeyKind::IntPair:
        if (v.is_number_integer()) {
          numbers.push_back(static_cast<double>(v.get<int64_t>()));
        } else if (v.is_array() && v.size() == 2 && v[0].is_number_integer() && v[1].is_number_integer()) {
          numbers.push_back(static_cast<double>(v[0].get<int64_t>()));
          numbers.push_back(static_cast<double>(v[1].get<int64_t>()));
        } else {
          wrong_type();
        }
        break;
      case KeyKind::LayerList:
        if (!v.is_array()) wrong_type();
        TRAINDX_CHECK(!v.empty(), ModelError, "{}: key '{}' must hold at least one layer", label(), ks.name);
        break;
    }
    for (double x : numbers) {
      if (ks.exclusive_min) {
        TRAINDX_CHECK(x > ks.min, ModelError, "{}: key '{}' must be > {}, got {}", label(), ks.name,
                      format_number(ks.min), describe(v));
      } else {
        TRAINDX_CHECK(x >= ks.min, ModelError, "{}: key '{}' must be >= {}, got {}", label(), ks.name,
                      format_number(ks.min), describe(v));
      }
      TRAINDX_CHECK(x <= ks.max, ModelError, "{}: key '{}' must be <= {}, got {}", label(), ks.name,
                    format_number(ks.max), describe(v));
    }
  }

  const Json* json_;
  std::string where_;
  const LayerSpec* spec_ = nullptr;
};

// ---------------------------------------------------------------------------------------------------------------
// The module: an ordered list of named layers. A residual block is a LayerStack too, so its layers register
// directly under the block's name ("res1.conv1.weight").

class LayerStack : public torch::nn::Module {
 public:
  explicit LayerStack(bool residual)
      : torch::nn::Module(residual ? "traindx::Residual" : "traindx::LayerStack"), residual_(residual) {}

  void add_layer(const std::string& name, const std::string& type, torch::nn::AnyModule layer) {
    register_module(name, layer.ptr());
    layers_.push_back({name, type, std::move(layer), nullptr});
  }

  void add_block(const std::string& name, std::shared_ptr<LayerStack> block) {
    register_module(name, block);
    layers_.push_back({name, "residual", {}, std::move(block)});
  }

  void set_projection(torch::nn::AnyModule projection) {
    register_module("proj", projection.ptr());
    projection_ = std::move(projection);
  }

  /// Runs the layers; with a tap, reports every layer's output under `prefix`-qualified names.
  torch::Tensor forward(const torch::Tensor& input, const std::string& prefix = "", const LayerTap* tap = nullptr) {
    torch::Tensor x = input;
    for (auto& layer : layers_) {
      if (tap == nullptr) {
        x = layer.block ? layer.block->forward(x) : layer.module.forward(x);
        continue;
      }
      const std::string name = qualify(prefix, layer.name);
      x = layer.block ? layer.block->forward(x, name, tap) : layer.module.forward(x);
      (*tap)(name, x);
    }
    if (!residual_) return x;
    torch::Tensor shortcut = input;
    if (!projection_.is_empty()) {
      shortcut = projection_.forward(input);
      if (tap != nullptr) (*tap)(qualify(prefix, "proj"), shortcut);
    }
    return x + shortcut;
  }

 private:
  struct Layer {
    std::string name;
    std::string type;
    torch::nn::AnyModule module;        // leaf layers
    std::shared_ptr<LayerStack> block;  // residual blocks
  };

  static std::string qualify(const std::string& prefix, const std::string& name) {
    return prefix.empty() ? name : prefix + "." + name;
  }

  bool residual_;
  std::vector<Layer> layers_;
  torch::nn::AnyModule projection_;
};

// ---------------------------------------------------------------------------------------------------------------
// Building.

struct InitSettings {
  std::string init;
  double std_dev = 0.0;
  double value = 0.0;
  std::string bias_init;
  double bias_value = 0.0;

  InitSettings overridden_by(const Entry& e) const {
    return {e.get_string("init", init), e.get_double("init_std", std_dev), e.get_double("init_value", value),
            e.get_string("bias_init", bias_init), e.get_double("bias_value", bias_value)};
  }
};

void apply_init(torch::nn::Module& module, const InitSettings& s) {
  for (auto& item : module.named_parameters(/*recurse=*/false)) {
    if (item.key() == "weight") {
      init_tensor(item.value(), s.init, s.std_dev, s.value);
    } else if (item.key() == "bias") {
      init_tensor(item.value(), s.bias_init, 0.0, s.bias_value);
    }
  }
}

// `trainable = false`: the optimizer may still hold these tensors, but without requires_grad they get no
// gradient, so no optimizer moves them.
void freeze(torch::nn::Module& module) {
  for (auto& p : module.parameters()) p.set_requires_grad(false);
}

int64_t count_parameters(const torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters()) n += p.numel();
  return n;
}

Shape batch_of_two(const Shape& per_example) {
  // Two examples, not one: batch norm in training mode rejects a batch of one.
  Shape s = {2};
  s.insert(s.end(), per_example.begin(), per_example.end());
  return s;
}

// Runs zeros through `module` in eval mode to learn the per-example output shape (exact for every layer type,
// including LibTorch's rounding rules for pools).
Shape probe(torch::nn::Module& module, const std::function<torch::Tensor(const torch::Tensor&)>& forward,
            const Shape& in, const std::string& label) {
  torch::NoGradGuard no_grad;
  const bool was_training = module.is_training();
  module.eval();
  torch::Tensor y;
  try {
    y = forward(torch::zeros(batch_of_two(in)));
  } catch (const c10::Error& e) {
    module.train(was_training);
    TRAINDX_FAIL(ModelError, "{}: cannot take input of shape {} per example: {}", label, shape_str(in),
                 first_line(e.what_without_backtrace()));
  }
  module.train(was_training);
  Shape out(y.sizes().begin() + 1, y.sizes().end());
  for (int64_t d : out) {
    TRAINDX_CHECK(d > 0, ModelError, "{}: turns input {} into an empty output {}; make it smaller or move it later",
                  label, shape_str(in), shape_str(out));
  }
  return out;
}

void require_image(const Entry& e, const Shape& in) {
  if (in.size() == 3) return;
  if (in.size() == 1) {
    TRAINDX_FAIL(ModelError,
                 "{}: needs image input [channels, height, width], but gets flat input {} per example; put {} "
                 "layers before any flatten or linear layer (or use linear layers for tabular data)",
                 e.label(), shape_str(in), e.type());
  }
  TRAINDX_FAIL(ModelError, "{}: needs image input [channels, height, width], but gets {} per example", e.label(),
               shape_str(in));
}

// The window must fit the padded image, or LibTorch fails with an opaque size error.
void require_fit(const Entry& e, const Shape& in, const Pair& kernel, const Pair& padding) {
  for (int d = 0; d < 2; ++d) {
    TRAINDX_CHECK(in[1 + d] + 2 * padding[d] >= kernel[d], ModelError,
                  "{}: the {}x{} kernel does not fit the {}x{} input (padding {}x{}); use a smaller kernel, more "
                  "padding, or fewer pooling or strided layers before it",
                  e.label(), kernel[0], kernel[1], in[1], in[2], padding[0], padding[1]);
  }
}

torch::ExpandingArray<2> arr(const Pair& p) { return torch::ExpandingArray<2>({p[0], p[1]}); }

struct Leaf {
  torch::nn::AnyModule module;
  std::string type;  ///< batchnorm resolves to batchnorm1d or batchnorm2d
};

// `final_out` > 0: this is the last linear layer of the network, whose `out` defaults to the number of outputs.
Leaf make_leaf(const Entry& e, const Shape& in, int64_t final_out, bool in_block) {
  namespace nn = torch::nn;
  const std::string& type = e.type();
  if (type == "linear") {
    TRAINDX_CHECK(in.size() == 1, ModelError,
                  "{}: needs flat input [features], but gets {} per example; add {{type = \"flatten\"}} before it",
                  e.label(), shape_str(in));
    int64_t out = e.get_int("out", final_out);
    if (out <= 0) {
      TRAINDX_FAIL(ModelError, "{}: missing key 'out' (the number of output features; {})", e.label(),
                   in_block ? "required inside a residual block"
                            : "only the last linear layer may omit it, and then gets the number of outputs");
    }
    return {nn::AnyModule(nn::Linear(nn::LinearOptions(in[0], out).bias(e.get_bool("bias", true)))), type};
  }
  if (type == "conv2d") {
    require_image(e, in);
    const Pair kernel = e.get_pair("kernel", {3, 3});
    const Pair padding = e.get_pair("padding", {0, 0});
    require_fit(e, in, kernel, padding);
    nn::Conv2dOptions o(in[0], e.get_int("out", 0), arr(kernel));
    o.stride(arr(e.get_pair("stride", {1, 1}))).padding(arr(padding)).bias(e.get_bool("bias", true));
    return {nn::AnyModule(nn::Conv2d(o)), type};
  }
  if (type == "batchnorm" || type == "batchnorm1d" || type == "batchnorm2d") {
    const bool flat = in.size() == 1 || in.size() == 2;
    std::string resolved = type;
    if (type == "batchnorm") {
      TRAINDX_CHECK(flat || in.size() == 3, ModelError,
                    "{}: needs input [features], [channels, length] or [channels, height, width], but gets {} "
                    "per example",
                    e.label(), shape_str(in));
      resolved = flat ? "batchnorm1d" : "batchnorm2d";
    } else if (type == "batchnorm1d") {
      TRAINDX_CHECK(flat, ModelError,
                    "{}: needs input [features] or [channels, length], but gets {} per example; use batchnorm2d "
                    "for images (or batchnorm, which picks the right one)",
                    e.label(), shape_str(in));
    } else {
      TRAINDX_CHECK(in.size() == 3, ModelError,
                    "{}: needs image input [channels, height, width], but gets {} per example; use batchnorm1d "
                    "(or batchnorm, which picks the right one)",
                    e.label(), shape_str(in));
    }
    const double eps = e.get_double("eps", 1e-5);
    const double momentum = e.get_double("momentum", 0.1);
    if (resolved == "batchnorm1d") {
      return {nn::AnyModule(nn::BatchNorm1d(nn::BatchNorm1dOptions(in[0]).eps(eps).momentum(momentum))), resolved};
    }
    return {nn::AnyModule(nn::BatchNorm2d(nn::BatchNorm2dOptions(in[0]).eps(eps).momentum(momentum))), resolved};
  }
  if (type == "layernorm") {
    return {nn::AnyModule(nn::LayerNorm(nn::LayerNormOptions(in).eps(e.get_double("eps", 1e-5)))), type};
  }
  if (type == "dropout") return {nn::AnyModule(nn::Dropout(nn::DropoutOptions(e.get_double("p", 0.5)))), type};
  if (type == "relu") return {nn::AnyModule(nn::ReLU()), type};
  if (type == "leaky_relu") {
    return {nn::AnyModule(nn::LeakyReLU(nn::LeakyReLUOptions().negative_slope(e.get_double("slope", 0.01)))), type};
  }
  if (type == "gelu") return {nn::AnyModule(nn::GELU()), type};
  if (type == "tanh") return {nn::AnyModule(nn::Tanh()), type};
  if (type == "sigmoid") return {nn::AnyModule(nn::Sigmoid()), type};
  if (type == "log_softmax") return {nn::AnyModule(nn::LogSoftmax(nn::LogSoftmaxOptions(1))), type};
  if (type == "maxpool2d" || type == "avgpool2d") {
    require_image(e, in);
    const Pair kernel = e.get_pair("kernel", {2, 2});
    const Pair stride = e.get_pair("stride", kernel);
    const Pair padding = e.get_pair("padding", {0, 0});
    for (int d = 0; d < 2; ++d) {
      TRAINDX_CHECK(2 * padding[d] <= kernel[d], ModelError,
                    "{}: padding {} is more than half the kernel {}; use padding <= {}", e.label(), padding[d],
                    kernel[d], kernel[d] / 2);
    }
    require_fit(e, in, kernel, padding);
    if (type == "maxpool2d") {
      return {nn::AnyModule(nn::MaxPool2d(nn::MaxPool2dOptions(arr(kernel)).stride(arr(stride)).padding(arr(padding)))),
              type};
    }
    return {nn::AnyModule(nn::AvgPool2d(nn::AvgPool2dOptions(arr(kernel)).stride(arr(stride)).padding(arr(padding)))),
            type};
  }
  if (type == "adaptive_avgpool2d") {
    require_image(e, in);
    const Pair size = e.get_pair("size", {1, 1});
    return {nn::AnyModule(nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions({size[0], size[1]}))), type};
  }
  if (type == "flatten") return {nn::AnyModule(nn::Flatten()), type};
  TRAINDX_ASSERT(false, "layer type '{}' is in the table but has no builder", type);
  return {};
}

class Builder {
 public:
  explicit Builder(int64_t outputs) : outputs_(outputs) {}

  /// Appends the layers of `entries` to `stack` and returns the per-example output shape.
  /// `where` names the list in messages ("model.layers"); `scope` qualifies layer names ("" or "res1").
  Shape build(LayerStack& stack, const Json& entries, const Shape& input, const std::string& where,
              const std::string& scope, const InitSettings& init) {
    TRAINDX_CHECK(entries.is_array(), ModelError, "{} must be an array of layer tables, got {}", where,
                  describe(entries));
    std::vector<Entry> parsed;
    parsed.reserve(entries.size());
    for (size_t i = 0; i < entries.size(); ++i) parsed.emplace_back(entries[i], fmt::format("{}[{}]", where, i));

    const std::vector<std::string> names = assign_names(parsed, scope);
    const bool top_level = scope.empty();
    size_t last_linear = parsed.size();
    if (top_level) {
      for (size_t i = 0; i < parsed.size(); ++i) {
        if (parsed[i].type() == "linear") last_linear = i;
      }
    }

    Shape shape = input;
    for (size_t i = 0; i < parsed.size(); ++i) {
      const Entry& e = parsed[i];
      const std::string qualified = scope.empty() ? names[i] : scope + "." + names[i];
      if (e.type() == "residual") {
        shape = build_residual(stack, e, names[i], qualified, shape, init.overridden_by(e));
        continue;
      }
      Leaf leaf = make_leaf(e, shape, i == last_linear ? outputs_ : 0, !top_level);
      if (e.spec().has_weights) apply_init(*leaf.module.ptr(), init.overridden_by(e));
      if (!e.get_bool("trainable", true)) freeze(*leaf.module.ptr());
      const Shape out =
          probe(*leaf.module.ptr(), [&](const torch::Tensor& x) { return leaf.module.forward(x); }, shape, e.label());
      rows_.push_back({qualified, leaf.type, out, count_parameters(*leaf.module.ptr())});
      stack.add_layer(names[i], leaf.type, std::move(leaf.module));
      shape = out;
    }
    return shape;
  }

  std::vector<LayerSummary> take_rows() { return std::move(rows_); }

 private:
  // Explicit names first, then generated ones that skip explicit names, so that naming one layer never renames
  // another layer that is already named.
  static std::vector<std::string> assign_names(const std::vector<Entry>& parsed, const std::string& scope) {
    std::vector<std::string> names(parsed.size());
    std::map<std::string, std::string> taken;  // name -> where it was given
    if (!scope.empty()) taken["proj"] = "reserved for the block's projection";
    for (size_t i = 0; i < parsed.size(); ++i) {
      const Entry& e = parsed[i];
      if (!e.has("name")) continue;
      const std::string name = e.get_string("name", "");
      auto it = taken.find(name);
      TRAINDX_CHECK(it == taken.end(), ModelError, "{}: duplicate layer name '{}' (already {}); names must be unique",
                    e.label(), name, it == taken.end() ? "" : it->second);
      taken[name] = "used by " + e.where();
      names[i] = name;
    }
    std::map<std::string, int> counters;
    for (size_t i = 0; i < parsed.size(); ++i) {
      if (!names[i].empty()) continue;
      const std::string& prefix = parsed[i].spec().prefix;
      std::string name;
      do {
        name = prefix + std::to_string(++counters[prefix]);
      } while (taken.count(name) != 0);
      taken[name] = "used by " + parsed[i].where();
      names[i] = name;
    }
    return names;
  }

  Shape build_residual(LayerStack& stack, const Entry& e, const std::string& name, const std::string& qualified,
                       const Shape& in, const InitSettings& init) {
    auto block = std::make_shared<LayerStack>(/*residual=*/true);
    const Shape inner = build(*block, e.json().at("layers"), in, e.where() + ".layers", qualified, init);
    if (inner != in) {
      torch::nn::AnyModule projection;
      std::string projection_type;
      if (in.size() == 3 && inner.size() == 3) {
        // A 1x1 kernel with stride s maps size n to (n - 1) / s + 1; find the s that gives the block's output size.
        int64_t stride = 0;
        for (int64_t s = 1; s <= std::max(in[1], in[2]) && stride == 0; ++s) {
          if ((in[1] - 1) / s + 1 == inner[1] && (in[2] - 1) / s + 1 == inner[2]) stride = s;
        }
        TRAINDX_CHECK(stride > 0, ModelError,
                      "{}: the block turns {}x{} images into {}x{}, which no strided 1x1 projection of the shortcut "
                      "can match; keep the size (padding = kernel / 2) or shrink it by a whole stride",
                      e.label(), in[1], in[2], inner[1], inner[2]);
        projection = torch::nn::AnyModule(
            torch::nn::Conv2d(torch::nn::Conv2dOptions(in[0], inner[0], 1).stride(stride).bias(false)));
        projection_type = "conv2d";
      } else if (in.size() == 1 && inner.size() == 1) {
        projection = torch::nn::AnyModule(torch::nn::Linear(torch::nn::LinearOptions(in[0], inner[0]).bias(false)));
        projection_type = "linear";
      } else {
        TRAINDX_FAIL(ModelError,
                     "{}: the block turns {} into {}; a residual block must keep the kind of input (images stay "
                     "images, vectors stay vectors) so the shortcut can be added; move flatten out of the block",
                     e.label(), shape_str(in), shape_str(inner));
      }
      apply_init(*projection.ptr(), init);
      const Shape projected = probe(
          *projection.ptr(), [&](const torch::Tensor& x) { return projection.forward(x); }, in, e.label() + " proj");
      TRAINDX_ASSERT(projected == inner, "projection gives {} for block output {}", shape_str(projected),
                     shape_str(inner));
      rows_.push_back({qualified + ".proj", projection_type, inner, count_parameters(*projection.ptr())});
      block->set_projection(std::move(projection));
    }
    const Shape out =
        probe(*block, [&](const torch::Tensor& x) { return block->forward(x); }, in, e.label());
    TRAINDX_ASSERT(out == inner, "block output {} differs from its layers' output {}", shape_str(out),
                   shape_str(inner));
    // The block's own row counts no parameters: its layers' and projection's rows already do, so rows sum to the
    // model's total.
    rows_.push_back({qualified, "residual", out, 0});
    if (!e.get_bool("trainable", true)) freeze(*block);
    stack.add_block(name, std::move(block));
    return out;
  }

  int64_t outputs_;
  std::vector<LayerSummary> rows_;
};

// ---------------------------------------------------------------------------------------------------------------
// The Model over a LayerStack.

// Like Python's Module.to(dtype): floating parameters and buffers change dtype, integer buffers
// (num_batches_tracked) keep theirs. LibTorch's C++ Module::to would turn num_batches_tracked into a double.
// set_data keeps the tensors' identity, so optimizers and handles taken earlier see the converted data.
void convert(torch::nn::Module& module, torch::Device device, torch::Dtype dtype) {
  torch::NoGradGuard no_grad;
  auto move = [&](torch::Tensor& t) {
    const torch::Dtype target = t.is_floating_point() ? dtype : t.scalar_type();
    if (t.device() != device || t.scalar_type() != target) t.set_data(t.to(device, target));
  };
  for (auto& p : module.parameters()) move(p);
  for (auto& b : module.buffers()) move(b);
}

class LayerStackModel final : public Model {
 public:
  LayerStackModel(std::shared_ptr<LayerStack> stack, Shape input_shape, std::vector<LayerSummary> rows,
                  ModelOptions options, int64_t outputs)
      : stack_(std::move(stack)),
        input_shape_(std::move(input_shape)),
        rows_(std::move(rows)),
        options_(std::move(options)),
        outputs_(outputs) {
    const auto params = stack_->parameters();
    // to() replaces a parameter's data in place (set_data), so this handle always shows the current dtype.
    if (!params.empty()) reference_ = params.front();
  }

  torch::Tensor forward(const torch::Tensor& input) override { return stack_->forward(prepare(input)); }

  torch::Tensor forward_with_taps(const torch::Tensor& input, const LayerTap& tap) override {
    if (!tap) return forward(input);
    return stack_->forward(prepare(input), "", &tap);
  }

  std::vector<NamedTensor> named_parameters() const override {
    std::vector<NamedTensor> out;
    for (const auto& item : stack_->named_parameters(/*recurse=*/true)) out.emplace_back(item.key(), item.value());
    return out;
  }

  std::vector<NamedTensor> named_buffers() const override {
    std::vector<NamedTensor> out;
    for (const auto& item : stack_->named_buffers(/*recurse=*/true)) out.emplace_back(item.key(), item.value());
    return out;
  }

  void train(bool on) override { stack_->train(on); }
  bool is_training() const override { return stack_->is_training(); }
  void to(torch::Device device, torch::Dtype dtype) override { convert(*stack_, device, dtype); }
  std::vector<LayerSummary> summary() const override { return rows_; }
  std::shared_ptr<torch::nn::Module> module() override { return stack_; }

  std::shared_ptr<Model> clone() const override {
    // Rebuilt from the options, which draws initial weights from the global generator: its state is put back so
    // that a clone taken during training (a background checkpoint) does not change the random numbers training
    // sees next. The initial weights are then overwritten.
    std::shared_ptr<Model> copy;
    {
      const CpuRngScope keep_rng;
      copy = build_model(options_, input_shape_, outputs_);
    }
    if (reference_.defined()) copy->to(reference_.device(), reference_.scalar_type());
    torch::NoGradGuard no_grad;
    auto copy_values = [](const std::vector<NamedTensor>& to, const std::vector<NamedTensor>& from) {
      TRAINDX_ASSERT(to.size() == from.size(), "a rebuilt model has {} tensors where the original has {}",
                     to.size(), from.size());
      for (size_t i = 0; i < to.size(); ++i) to[i].second.copy_(from[i].second);
    };
    copy_values(copy->named_parameters(), named_parameters());
    copy_values(copy->named_buffers(), named_buffers());
    copy->train(is_training());
    return copy;
  }

 private:
  // A wrong example shape would otherwise surface as a LibTorch error deep inside some layer.
  torch::Tensor prepare(const torch::Tensor& input) const {
    TRAINDX_CHECK(input.defined(), ModelError, "model input: the tensor is undefined");
    bool ok = input.dim() == static_cast<int64_t>(input_shape_.size()) + 1;
    for (size_t d = 0; ok && d < input_shape_.size(); ++d) {
      ok = input.size(static_cast<int64_t>(d) + 1) == input_shape_[d];
    }
    TRAINDX_CHECK(ok, ModelError,
                  "model input: expected a batch [B, {}] (the model was built for examples of shape {}), got a "
                  "tensor of shape {}",
                  fmt::join(input_shape_, ", "), shape_str(input_shape_), shape_str(input.sizes().vec()));
    // model.dtype is the parameter and input dtype: float data meets float64 parameters without a caller cast.
    if (reference_.defined() && input.is_floating_point() && input.scalar_type() != reference_.scalar_type()) {
      return input.to(reference_.scalar_type());
    }
    return input;
  }

  std::shared_ptr<LayerStack> stack_;
  Shape input_shape_;
  std::vector<LayerSummary> rows_;
  ModelOptions options_;  // what clone() rebuilds from
  int64_t outputs_;
  torch::Tensor reference_;
};

std::string checked_choice(const std::string& key, const std::string& value, const std::vector<std::string>& choices) {
  for (const auto& c : choices) {
    if (c == value) return value;
  }
  TRAINDX_FAIL(ModelError, "{}: unknown value '{}'; did you mean '{}'? (one of: {})", key, value,
               suggest(value, choices), fmt::join(choices, ", "));
}

}  // namespace

const std::vector<std::string>& layer_types() {
  static const std::vector<std::string> types = [] {
    std::vector<std::string> t;
    for (const auto& s : layer_specs()) t.push_back(s.type);
    return t;
  }();
  return types;
}

std::shared_ptr<Model> build_model(const ModelOptions& options, const std::vector<int64_t>& input_shape,
                                   int64_t outputs) {
  TRAINDX_CHECK(!input_shape.empty(), ModelError,
                "cannot build a model for examples without dimensions; the input shape must be [features] or "
                "[channels, height, width]");
  for (int64_t d : input_shape) {
    TRAINDX_CHECK(d > 0, ModelError, "cannot build a model for examples of shape {}: every dimension must be > 0",
                  shape_str(input_shape));
  }
  TRAINDX_CHECK(outputs >= 1, ModelError, "the model must have at least one output, got {}", outputs);
  TRAINDX_CHECK(options.layers.is_array() && !options.layers.empty(), ModelError,
                "model.layers is empty: describe the network as an array of tables, e.g. layers = [{{type = "
                "\"flatten\"}}, {{type = \"linear\", out = 64}}, {{type = \"relu\"}}, {{type = \"linear\"}}] "
                "(see docs/model.md), or set model.torchscript");
  InitSettings init{checked_choice("model.init", options.init, init_schemes()), options.init_std, options.init_value,
                    checked_choice("model.bias_init", options.bias_init, bias_schemes()), options.bias_value};
  TRAINDX_CHECK(options.init_std >= 0.0, ModelError, "model.init_std must be >= 0, got {}", options.init_std);
  const std::string dtype = checked_choice("model.dtype", options.dtype, {"float32", "float64"});

  auto stack = std::make_shared<LayerStack>(/*residual=*/false);
  Builder builder(outputs);
  const Shape out = builder.build(*stack, options.layers, input_shape, "model.layers", "", init);
  if (out.size() == 1) {
    TRAINDX_CHECK(out[0] == outputs, ModelError,
                  "the network outputs {} features per example, but the data has {} outputs (classes or targets); "
                  "set out = {} on the last linear layer or omit it",
                  out[0], outputs, outputs);
  } else {
    TRAINDX_FAIL(ModelError,
                 "the network outputs {} per example, but the data needs [{}] (one value per class or target); end "
                 "with {{type = \"flatten\"}} and a linear layer",
                 shape_str(out), outputs);
  }
  if (dtype == "float64") convert(*stack, torch::kCPU, torch::kDouble);
  stack->train(true);
  return std::make_shared<LayerStackModel>(stack, input_shape, builder.take_rows(), options, outputs);
}

std::string layer_reference_markdown() {
  std::string md;
  for (const auto& s : layer_specs()) {
    md += fmt::format("### {}\n\n{} Generated names: `{}1`, `{}2`, ...\n\n", s.type, s.help, s.prefix, s.prefix);
    if (s.keys.empty()) {
      md += "No keys besides `type` and `name`.\n\n";
      continue;
    }
    md += "| key | type | default | meaning |\n|---|---|---|---|\n";
    for (const auto& k : s.keys) {
      std::string meaning = k.help;
      if (!k.choices.empty()) meaning += fmt::format(" One of: {}.", fmt::join(k.choices, ", "));
      std::string range;
      if (k.min > -kInf) range = fmt::format("{} {}", k.exclusive_min ? ">" : ">=", format_number(k.min));
      if (k.max < kInf) range += fmt::format("{}<= {}", range.empty() ? "" : ", ", format_number(k.max));
      if (!range.empty()) meaning += " Must be " + range + ".";
      const std::string def = k.required() || k.default_text.find(' ') != std::string::npos
                                  ? k.default_text
                                  : fmt::format("`{}`", k.default_text);
      md += fmt::format("| `{}` | {} | {} | {} |\n", k.name, kind_doc(k.kind), def, meaning);
    }
    md += "\n";
  }
  return md;
}

}  // namespace traindx
