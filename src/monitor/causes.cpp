#include "traindx/monitor/causes.h"

#include <algorithm>
#include <map>

namespace traindx {
namespace {

// Roots of the table, grouped for the reader (nothing depends on the grouping):
//   setup and data: input_range, target_scale, loss_output_mismatch, labels_not_learnable,
//     regularization_too_strong, optimizer_hyperparameters, batch_lr_mismatch, capacity_bottleneck;
//   initialisation and rates: layer_init_scale, symmetric_weights, poor_initialization, lr_too_high, lr_too_low,
//     unchanged_parameter;
//   mechanisms: exploding_gradient, vanishing_gradient, dead_relu, saturated_activation, weight_update_ratio,
//     nan_or_inf;
//   outcomes: loss_diverging, loss_oscillating, loss_not_decreasing, underfitting, overfit_one_batch,
//     lr_range_no_descent.
std::vector<CauseLink> make_table() {
  const std::vector<std::string> no_learning = {
      "labels_not_learnable", "loss_output_mismatch", "regularization_too_strong", "optimizer_hyperparameters",
      "symmetric_weights",    "unchanged_parameter",  "capacity_bottleneck",       "vanishing_gradient",
      "dead_relu",            "saturated_activation", "layer_init_scale",          "lr_too_low"};
  return {
      {"lr_too_high", {"target_scale", "input_range", "regularization_too_strong", "batch_lr_mismatch",
                       "optimizer_hyperparameters"}},
      {"lr_too_low", {"loss_output_mismatch", "optimizer_hyperparameters", "regularization_too_strong"}},
      {"poor_initialization", {"loss_output_mismatch", "input_range", "regularization_too_strong"}},
      {"symmetric_weights", {"regularization_too_strong"}},
      {"unchanged_parameter", {"symmetric_weights"}},
      {"exploding_gradient", {"target_scale", "input_range", "lr_too_high", "poor_initialization", "layer_init_scale"}},
      {"vanishing_gradient", {"symmetric_weights", "saturated_activation", "layer_init_scale",
                              "regularization_too_strong"}},
      {"dead_relu", {"layer_init_scale", "lr_too_high"}},
      {"saturated_activation", {"input_range", "poor_initialization"}},
      {"weight_update_ratio", {"layer_init_scale", "regularization_too_strong"}},
      {"nan_or_inf", {"input_range", "target_scale", "loss_output_mismatch", "lr_too_high", "poor_initialization",
                      "exploding_gradient"}},
      {"loss_diverging", {"target_scale", "input_range", "loss_output_mismatch", "batch_lr_mismatch", "lr_too_high",
                          "optimizer_hyperparameters", "exploding_gradient"}},
      {"loss_oscillating", {"target_scale", "batch_lr_mismatch", "lr_too_high", "optimizer_hyperparameters"}},
      {"loss_not_decreasing", no_learning},
      {"underfitting", no_learning},
      {"overfit_one_batch", {"loss_output_mismatch", "symmetric_weights", "capacity_bottleneck",
                             "regularization_too_strong", "vanishing_gradient", "dead_relu", "saturated_activation",
                             "layer_init_scale"}},
      {"lr_range_no_descent", {"labels_not_learnable", "loss_output_mismatch", "regularization_too_strong",
                               "layer_init_scale"}},
  };
}

// A cause about one layer explains a symptom there or a symptom of the whole run, not one in another layer.
bool layers_fit(const Finding& cause, const Finding& symptom) {
  return cause.layer.empty() || symptom.layer.empty() || cause.layer == symptom.layer ||
         cause.layer == "input" || symptom.layer == "input";
}

}  // namespace

const std::vector<CauseLink>& known_causes() {
  static const std::vector<CauseLink> table = make_table();
  return table;
}

const std::vector<std::string>& causes_of(const std::string& symptom) {
  static const std::map<std::string, std::vector<std::string>> index = [] {
    std::map<std::string, std::vector<std::string>> m;
    for (const auto& link : known_causes()) m[link.symptom] = link.causes;
    return m;
  }();
  static const std::vector<std::string> none;
  const auto it = index.find(symptom);
  return it == index.end() ? none : it->second;
}

void link_known_causes(std::vector<Finding>& findings) {
  for (auto& symptom : findings) {
    if (!symptom.caused_by.empty()) continue;
    for (const auto& cause_rule : causes_of(symptom.rule)) {
      const auto cause = std::find_if(findings.begin(), findings.end(), [&](const Finding& f) {
        return f.rule == cause_rule && &f != &symptom && layers_fit(f, symptom);
      });
      if (cause == findings.end()) continue;
      symptom.caused_by = finding_key(*cause);
      break;
    }
  }
  // Severities rise along the links, root-wards; the table is acyclic, so as many passes as findings suffice.
  for (size_t pass = 0; pass < findings.size(); ++pass) {
    bool changed = false;
    for (const auto& symptom : findings) {
      if (symptom.caused_by.empty()) continue;
      for (auto& cause : findings)
        if (finding_key(cause) == symptom.caused_by && cause.severity < symptom.severity) {
          cause.severity = symptom.severity;
          cause.evidence["severity_raised_by"] = finding_key(symptom);
          changed = true;
        }
    }
    if (!changed) break;
  }
}

}  // namespace traindx
