// Model's non-virtual helpers, shared by layer stacks and TorchScript models.
#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <string>
#include <vector>

#include "traindx/model/model.h"

namespace traindx {

std::vector<torch::Tensor> Model::parameters() const {
  std::vector<torch::Tensor> out;
  for (auto& [name, tensor] : named_parameters()) out.push_back(tensor);
  return out;
}

int64_t Model::parameter_count() const {
  int64_t total = 0;
  for (const auto& [name, tensor] : named_parameters()) total += tensor.numel();
  return total;
}

std::string Model::summary_table() const {
  const std::vector<LayerSummary> rows = summary();
  std::vector<std::array<std::string, 4>> cells;
  cells.push_back({"layer", "type", "output shape", "params"});
  for (const auto& row : rows) {
    // TorchScript rows carry no shape: it is only known once an input has been seen.
    const std::string shape = row.output_shape.empty() ? "?" : fmt::format("[{}]", fmt::join(row.output_shape, ", "));
    cells.push_back({row.name, row.type, shape, std::to_string(row.parameters)});
  }
  // The total comes from the parameters themselves, so it also counts parameters no row owns (a TorchScript
  // module's own attributes).
  cells.push_back({"total", "", "", std::to_string(parameter_count())});

  std::array<size_t, 4> width{};
  for (const auto& r : cells) {
    for (size_t c = 0; c < r.size(); ++c) width[c] = std::max(width[c], r[c].size());
  }
  std::string out;
  for (size_t i = 0; i < cells.size(); ++i) {
    const auto& r = cells[i];
    if (i + 1 == cells.size()) out += std::string(width[0] + width[1] + width[2] + width[3] + 6, '-') + "\n";
    std::string line = fmt::format("{:<{}}  {:<{}}  {:<{}}  {:>{}}", r[0], width[0], r[1], width[1], r[2],
                                   width[2], r[3], width[3]);
    out += line + "\n";
  }
  return out;
}

}  // namespace traindx
