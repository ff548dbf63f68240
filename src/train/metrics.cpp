// Metrics of a split, accumulated batch by batch with bounded state: a confusion matrix and counters for
// classification, error sums and the targets' running mean/deviation for regression. Definitions follow sklearn
// (accuracy_score, top_k_accuracy_score, precision/recall/f1 with average="macro", zero_division=0,
// confusion_matrix, mean_squared_error, mean_absolute_error, r2_score) and are checked against it in
// tests/train_objective_test.cpp.
#include <torch/torch.h>

#include <algorithm>
#include <limits>
#include <string>

#include "traindx/core/error.h"
#include "traindx/train/objective.h"

namespace traindx {
namespace {

std::string shape_of(const torch::Tensor& t) {
  std::string s = "[";
  for (int64_t d = 0; d < t.dim(); ++d) {
    s += (d == 0 ? "" : ", ") + std::to_string(t.size(d));
  }
  return s + "]";
}

/// [B] stays, [B, 1] becomes [B]; anything else is returned undefined.
torch::Tensor as_vector(const torch::Tensor& t) {
  if (t.dim() == 1) return t;
  if (t.dim() == 2 && t.size(1) == 1) return t.squeeze(1);
  return {};
}

double safe_ratio(double num, double den) { return den > 0.0 ? num / den : 0.0; }

}  // namespace

MetricAccumulator::MetricAccumulator(Task task, int64_t num_classes, int64_t topk)
    : task_(task), num_classes_(num_classes), topk_(topk) {
  TRAINDX_CHECK(topk_ >= 1, ConfigError, "train.topk = {} must be >= 1", topk_);
  if (task_ == Task::Classification) {
    TRAINDX_CHECK(num_classes_ >= 1, DataError, "classification metrics need num_classes >= 1, got {}",
                  num_classes_);
    confusion_.assign(static_cast<size_t>(num_classes_ * num_classes_), 0);
  }
}

void MetricAccumulator::add(const torch::Tensor& output, const torch::Tensor& target, double batch_loss) {
  TRAINDX_CHECK(output.defined() && target.defined() && output.dim() >= 1, DataError,
                "metrics: outputs and targets must be defined tensors with a batch dimension");
  const torch::NoGradGuard no_grad;
  const torch::Tensor out = output.detach().to(torch::kCPU);
  const torch::Tensor tgt = as_vector(target.detach().to(torch::kCPU));
  const int64_t batch = out.size(0);
  TRAINDX_CHECK(tgt.defined() && tgt.size(0) == batch, DataError,
                "metrics: outputs {} and targets {} do not match; expected targets [{}]", shape_of(output),
                shape_of(target), batch);
  if (batch == 0) return;

  if (task_ == Task::Classification) {
    TRAINDX_CHECK(!tgt.is_floating_point() || torch::equal(tgt, tgt.round()), DataError,
                  "metrics: classification targets must be class indices, got non-integer values");
    const torch::Tensor y = tgt.to(torch::kInt64);
    const int64_t lo = y.min().item<int64_t>();
    const int64_t hi = y.max().item<int64_t>();
    TRAINDX_CHECK(lo >= 0 && hi < num_classes_, DataError,
                  "metrics: class targets range over [{}, {}] but there are {} classes (indices 0..{})", lo, hi,
                  num_classes_, num_classes_ - 1);
    const int64_t k = std::min(topk_, num_classes_);
    torch::Tensor pred;
    int64_t topk_hits = 0;
    const torch::Tensor single_logit = as_vector(out);
    if (single_logit.defined() && num_classes_ == 2) {
      // One logit per example (bce_with_logits on a binary task): class 1 when the logit is positive.
      pred = (single_logit > 0).to(torch::kInt64);
      topk_hits = k >= 2 ? batch : pred.eq(y).sum().item<int64_t>();
    } else {
      TRAINDX_CHECK(out.dim() == 2 && out.size(1) == num_classes_, DataError,
                    "metrics: outputs {} do not fit {} classes; expected [batch, {}]{}", shape_of(output),
                    num_classes_, num_classes_, num_classes_ == 2 ? " or one logit [batch]" : "");
      pred = out.argmax(1);
      // Rank of the true class as sklearn's top_k_accuracy_score orders ties (stable argsort reversed: the higher
      // class index first): classes scoring above it, plus tied classes with a higher index.
      const torch::Tensor y_col = y.unsqueeze(1);
      const torch::Tensor true_score = out.gather(1, y_col);
      const torch::Tensor higher_index = torch::arange(num_classes_, torch::kInt64).unsqueeze(0) > y_col;
      const torch::Tensor rank = out.gt(true_score).sum(1) + (out.eq(true_score) & higher_index).sum(1);
      topk_hits = rank.lt(k).sum().item<int64_t>();
    }
    correct_ += pred.eq(y).sum().item<int64_t>();
    topk_correct_ += topk_hits;
    const torch::Tensor cells = torch::bincount(y * num_classes_ + pred, {}, num_classes_ * num_classes_);
    const auto counts = cells.accessor<int64_t, 1>();
    for (int64_t i = 0; i < num_classes_ * num_classes_; ++i) {
      confusion_[static_cast<size_t>(i)] += counts[i];
    }
  } else {
    const torch::Tensor pred = as_vector(out);
    TRAINDX_CHECK(pred.defined() && out.is_floating_point(), DataError,
                  "metrics: regression outputs {} must be floating point [batch] or [batch, 1]", shape_of(output));
    const torch::Tensor p = pred.to(torch::kFloat64);
    const torch::Tensor y = tgt.to(torch::kFloat64);
    const torch::Tensor diff = p - y;
    sum_sq_ += diff.square().sum().item<double>();
    sum_abs_ += diff.abs().sum().item<double>();
    // Chan et al.'s merge of (count, mean, M2): exact in exact arithmetic and stable in floating point.
    const double n_a = static_cast<double>(count_);
    const double n_b = static_cast<double>(batch);
    const double mean_b = y.mean().item<double>();
    const double m2_b = (y - mean_b).square().sum().item<double>();
    const double delta = mean_b - mean_y_;
    const double n = n_a + n_b;
    mean_y_ += delta * n_b / n;
    m2_y_ += m2_b + delta * delta * n_a * n_b / n;
  }
  count_ += batch;
  loss_sum_ += batch_loss * static_cast<double>(batch);
}

Json MetricAccumulator::result() const {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double n = static_cast<double>(count_);
  Json r = Json::object();
  r["loss"] = count_ > 0 ? loss_sum_ / n : nan;
  if (task_ == Task::Regression) {
    r["mse"] = count_ > 0 ? sum_sq_ / n : nan;
    r["mae"] = count_ > 0 ? sum_abs_ / n : nan;
    r["r2"] = count_ > 0 ? (m2_y_ > 0.0 ? 1.0 - sum_sq_ / m2_y_ : 0.0) : nan;
    return r;
  }
  r["accuracy"] = count_ > 0 ? static_cast<double>(correct_) / n : nan;
  r["top" + std::to_string(topk_) + "_accuracy"] = count_ > 0 ? static_cast<double>(topk_correct_) / n : nan;

  const auto cell = [&](int64_t t, int64_t p) { return confusion_[static_cast<size_t>(t * num_classes_ + p)]; };
  double precision_sum = 0, recall_sum = 0, f1_sum = 0;
  int64_t labels = 0;
  Json matrix = Json::array();
  for (int64_t c = 0; c < num_classes_; ++c) {
    int64_t support = 0, predicted = 0;
    Json row = Json::array();
    for (int64_t j = 0; j < num_classes_; ++j) {
      support += cell(c, j);
      predicted += cell(j, c);
      row.push_back(cell(c, j));
    }
    matrix.push_back(std::move(row));
    if (support == 0 && predicted == 0) continue;  // sklearn's default labels: classes seen as truth or prediction
    const double tp = static_cast<double>(cell(c, c));
    const double precision = safe_ratio(tp, static_cast<double>(predicted));
    const double recall = safe_ratio(tp, static_cast<double>(support));
    // sklearn's F-score from precision and recall, 0 when both are 0.
    const double f1 = precision + recall > 0.0 ? 2.0 * precision * recall / (precision + recall) : 0.0;
    precision_sum += precision;
    recall_sum += recall;
    f1_sum += f1;
    ++labels;
  }
  const double l = static_cast<double>(labels);
  r["precision_macro"] = labels > 0 ? precision_sum / l : nan;
  r["recall_macro"] = labels > 0 ? recall_sum / l : nan;
  r["f1_macro"] = labels > 0 ? f1_sum / l : nan;
  r["confusion_matrix"] = std::move(matrix);
  return r;
}

}  // namespace traindx
