#pragma once
/// Models: built from `model.layers` with shape inference and stable layer names, or loaded from TorchScript.
/// Both are used through traindx::Model, which the trainer, monitor and checkpoints share.
#include <torch/nn/module.h>
#include <torch/types.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "traindx/core/config.h"

namespace torch::jit {
struct Module;
}

namespace traindx {

/// Options of the model module; fields mirror the `model.*` config keys.
struct ModelOptions {
  Json layers = Json::array();        ///< array of layer tables, see docs/model.md
  std::string init = "default";       ///< global weight init scheme
  double init_std = 0.01;
  double init_value = 0.0;
  std::string bias_init = "default";  ///< default, zeros, constant
  double bias_value = 0.0;
  std::string torchscript;            ///< path; when set, layers is ignored
  std::string dtype = "float32";
  static ModelOptions from_config(const Config& config);
};

/// Called with (layer name, output of that layer) during a tapped forward pass.
using LayerTap = std::function<void(const std::string& layer, const torch::Tensor& output)>;

/// A named tensor ("conv1.weight").
using NamedTensor = std::pair<std::string, torch::Tensor>;

/// One row of a model summary.
struct LayerSummary {
  std::string name;                 ///< stable name, e.g. "conv1", "block1.relu2"
  std::string type;                 ///< "conv2d", "relu", ...
  std::vector<int64_t> output_shape;///< per example
  int64_t parameters = 0;
};

/// A trainable network. Implementations: layer stacks built from config, TorchScript modules.
class Model {
 public:
  virtual ~Model() = default;
  /// Forward pass on a batch [B, input_shape...].
  virtual torch::Tensor forward(const torch::Tensor& input) = 0;
  /// Forward pass that calls `tap` with the output of every named layer, in execution order. For models built
  /// from layers this is exact; for TorchScript it reports the outputs of the top-level submodules.
  virtual torch::Tensor forward_with_taps(const torch::Tensor& input, const LayerTap& tap) = 0;
  /// Parameters by qualified name ("conv1.weight"), in a stable order.
  virtual std::vector<NamedTensor> named_parameters() const = 0;
  /// Buffers by qualified name ("bn1.running_mean", "bn1.num_batches_tracked").
  virtual std::vector<NamedTensor> named_buffers() const = 0;
  /// Switches dropout and batch norm between training and inference behaviour.
  virtual void train(bool on) = 0;
  virtual bool is_training() const = 0;
  /// Moves parameters and buffers.
  virtual void to(torch::Device device, torch::Dtype dtype) = 0;
  /// One row per named layer (the layers that taps report).
  virtual std::vector<LayerSummary> summary() const = 0;
  /// The underlying LibTorch module, for users who want to mix in torch:: calls (null for TorchScript).
  virtual std::shared_ptr<torch::nn::Module> module() { return nullptr; }
  /// A deep copy: same structure, parameter and buffer values, device, dtype and mode, sharing no tensor with this
  /// one, and drawing no random numbers. Null when the model cannot be copied (the default for models defined
  /// outside traindx); background checkpoints then fall back to saving in the training thread.
  virtual std::shared_ptr<Model> clone() const { return nullptr; }

  /// Parameters only, in named_parameters() order (what an optimizer takes).
  std::vector<torch::Tensor> parameters() const;
  /// Total number of parameter elements.
  int64_t parameter_count() const;
  /// A printable table of summary().
  std::string summary_table() const;
};

/// Builds a layer stack from options.layers for examples of `input_shape` (no batch dimension) and `outputs`
/// output features. A final linear layer without `out` gets `outputs`. Throws ModelError naming
/// `model.layers[i]` (and the key) for an unknown type or key, a missing required key, or a shape the layer
/// cannot take; and when the network's output does not have `outputs` features.
/// Initialises weights with torch's global generator (seed it first for reproducible weights).
std::shared_ptr<Model> build_model(const ModelOptions& options, const std::vector<int64_t>& input_shape,
                                   int64_t outputs);

/// Loads a TorchScript module (torch.jit.save from Python). Throws ModelError naming the file if it cannot be read.
std::shared_ptr<Model> load_torchscript_model(const std::string& path);

/// Re-initialises a layer's weight and bias in place: scheme is one of model.init's choices.
/// Throws ModelError on an unknown scheme.
void init_tensor(torch::Tensor& weight, const std::string& scheme, double std_dev, double value);

/// The layer types model.layers accepts, for help and docs.
const std::vector<std::string>& layer_types();

/// The weight init schemes init_tensor, model.init and a layer's `init` key accept, in documentation order.
const std::vector<std::string>& init_schemes();

/// The per-type layer reference of docs/model.md (type, help, generated names, keys with types, defaults and
/// ranges), generated from the same table that validates model.layers so the page cannot drift from the code.
std::string layer_reference_markdown();

}  // namespace traindx
