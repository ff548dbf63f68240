// Loss functions: name resolution and shape/dtype normalisation in front of torch::nn::functional, so that a
// wrong target shape fails with a message naming both shapes instead of a LibTorch broadcast warning or a silent
// [B, B] broadcast.
#include <torch/torch.h>

#include <algorithm>
#include <iterator>
#include <string>

#include "traindx/core/error.h"
#include "traindx/train/objective.h"

namespace traindx {
namespace {

namespace F = torch::nn::functional;

std::string shape_of(const torch::Tensor& t) {
  std::string s = "[";
  for (int64_t d = 0; d < t.dim(); ++d) {
    s += (d == 0 ? "" : ", ") + std::to_string(t.size(d));
  }
  return s + "]";
}

/// [B] stays, [B, 1] becomes [B]; anything else is returned undefined so the caller can report both shapes.
torch::Tensor as_vector(const torch::Tensor& t) {
  if (t.dim() == 1) return t;
  if (t.dim() == 2 && t.size(1) == 1) return t.squeeze(1);
  return {};
}

/// Class-index targets for logits [B, C]: int64 [B] on the output's device, each in [0, C).
torch::Tensor class_targets(LossKind kind, const torch::Tensor& output, const torch::Tensor& target) {
  TRAINDX_CHECK(output.dim() == 2, DataError,
                "loss {}: expected outputs [batch, classes], got outputs {} and targets {}", loss_name(kind),
                shape_of(output), shape_of(target));
  torch::Tensor t = as_vector(target);
  TRAINDX_CHECK(t.defined() && t.size(0) == output.size(0), DataError,
                "loss {}: outputs {} and targets {} do not match; expected targets [{}] of class indices",
                loss_name(kind), shape_of(output), shape_of(target), output.size(0));
  if (t.is_floating_point()) {
    // Float labels are accepted when they hold whole numbers; truncating 0.5 to class 0 would hide a data bug.
    TRAINDX_CHECK(t.numel() == 0 || torch::equal(t, t.round()), DataError,
                  "loss {}: targets must be class indices, got non-integer values", loss_name(kind));
  }
  t = t.to(output.device(), torch::kInt64);
  if (t.numel() > 0) {
    const int64_t lo = t.min().item<int64_t>();
    const int64_t hi = t.max().item<int64_t>();
    TRAINDX_CHECK(lo >= 0 && hi < output.size(1), DataError,
                  "loss {}: class targets range over [{}, {}] but the outputs have {} classes (indices 0..{})",
                  loss_name(kind), lo, hi, output.size(1), output.size(1) - 1);
  }
  return t;
}

torch::Tensor bce_loss(const torch::Tensor& output, const torch::Tensor& target) {
  const auto dtype = output.scalar_type();
  if (output.dim() == 2 && output.size(1) > 1) {
    if (target.sizes() == output.sizes()) {  // multi-label targets given as they are
      return F::binary_cross_entropy_with_logits(output, target.to(output.device(), dtype));
    }
    const torch::Tensor classes = class_targets(LossKind::BceWithLogits, output, target);
    return F::binary_cross_entropy_with_logits(output, F::one_hot(classes, output.size(1)).to(dtype));
  }
  const torch::Tensor out = as_vector(output);
  const torch::Tensor t = as_vector(target);
  TRAINDX_CHECK(out.defined() && t.defined() && out.size(0) == t.size(0), DataError,
                "loss bce_with_logits: outputs {} and targets {} do not match; expected outputs [batch] or "
                "[batch, 1] with binary targets [batch], or outputs [batch, classes] with class targets [batch]",
                shape_of(output), shape_of(target));
  const torch::Tensor tf = t.to(output.device(), dtype);
  if (tf.numel() > 0) {
    const double lo = tf.min().item<double>();
    const double hi = tf.max().item<double>();
    TRAINDX_CHECK(lo >= 0.0 && hi <= 1.0, DataError,
                  "loss bce_with_logits: binary targets must lie in [0, 1], got values in [{}, {}]", lo, hi);
  }
  return F::binary_cross_entropy_with_logits(out, tf);
}

}  // namespace

LossKind resolve_loss(const std::string& name, Task task) {
  if (name == "auto") return task == Task::Classification ? LossKind::CrossEntropy : LossKind::Mse;
  const LossKind kinds[] = {LossKind::CrossEntropy, LossKind::Nll, LossKind::Mse, LossKind::Huber,
                            LossKind::BceWithLogits};
  const LossKind* found = std::find_if(std::begin(kinds), std::end(kinds),
                                       [&](LossKind k) { return name == loss_name(k); });
  TRAINDX_CHECK(found != std::end(kinds), ConfigError,
                "train.loss = \"{}\" is not a known loss; use one of auto, cross_entropy, nll, mse, huber, "
                "bce_with_logits",
                name);
  const LossKind kind = *found;
  // bce_with_logits serves both tasks (0/1 regression targets are common); the others need their own task.
  const bool class_loss = kind == LossKind::CrossEntropy || kind == LossKind::Nll;
  const bool regression_loss = kind == LossKind::Mse || kind == LossKind::Huber;
  TRAINDX_CHECK(!(class_loss && task == Task::Regression), ConfigError,
                "train.loss = \"{}\" needs class targets but the task is regression; use mse or huber (or set "
                "data.task = \"classification\")",
                name);
  TRAINDX_CHECK(!(regression_loss && task == Task::Classification), ConfigError,
                "train.loss = \"{}\" is a regression loss but the task is classification; use cross_entropy (or "
                "set data.task = \"regression\")",
                name);
  return kind;
}

const char* loss_name(LossKind kind) {
  switch (kind) {
    case LossKind::CrossEntropy: return "cross_entropy";
    case LossKind::Nll: return "nll";
    case LossKind::Mse: return "mse";
    case LossKind::Huber: return "huber";
    case LossKind::BceWithLogits: return "bce_with_logits";
  }
  return "unknown";
}

torch::Tensor compute_loss(LossKind kind, const torch::Tensor& output, const torch::Tensor& target,
                           double huber_delta) {
  TRAINDX_CHECK(output.defined() && target.defined(), DataError, "loss {}: outputs or targets are undefined",
                loss_name(kind));
  TRAINDX_CHECK(output.is_floating_point(), DataError, "loss {}: outputs must be floating point, got {}",
                loss_name(kind), std::string(c10::toString(output.scalar_type())));
  switch (kind) {
    case LossKind::CrossEntropy:
      return F::cross_entropy(output, class_targets(kind, output, target));
    case LossKind::Nll:
      return F::nll_loss(output, class_targets(kind, output, target));
    case LossKind::BceWithLogits:
      return bce_loss(output, target);
    case LossKind::Mse:
    case LossKind::Huber: {
      const torch::Tensor out = as_vector(output);
      const torch::Tensor t = as_vector(target);
      TRAINDX_CHECK(out.defined() && t.defined() && out.size(0) == t.size(0), DataError,
                    "loss {}: outputs {} and targets {} do not match; regression expects outputs [batch] or "
                    "[batch, 1] and targets [batch]",
                    loss_name(kind), shape_of(output), shape_of(target));
      const torch::Tensor tf = t.to(output.device(), output.scalar_type());
      if (kind == LossKind::Mse) return F::mse_loss(out, tf);
      TRAINDX_CHECK(huber_delta > 0.0, ConfigError, "train.huber_delta = {} must be > 0 for the huber loss",
                    huber_delta);
      return F::huber_loss(out, tf, F::HuberLossFuncOptions().delta(huber_delta));
    }
  }
  TRAINDX_ASSERT(false, "unhandled LossKind {}", static_cast<int>(kind));
  return {};
}

}  // namespace traindx
