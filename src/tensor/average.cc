#include "tensor/average.h"

#include <cmath>
#include <map>

namespace dnnd {
namespace {

// "" when `m` has exactly `ref`'s names and shapes, else every difference.
std::string Differences(const WeightedModel& ref, const WeightedModel& m) {
  std::map<std::string, const Tensor*> theirs;
  for (const auto& [name, t] : m.tensors) theirs[name] = &t;
  std::string diff;
  auto add = [&diff](const std::string& s) { diff += (diff.empty() ? "" : "; ") + s; };
  for (const auto& [name, t] : ref.tensors) {
    auto it = theirs.find(name);
    if (it == theirs.end()) {
      add("tensor " + name + " is in " + ref.source + " " + ShapeToString(t.shape()) +
          " but missing from " + m.source);
      continue;
    }
    if (it->second->shape() != t.shape())
      add("tensor " + name + " has shape " + ShapeToString(t.shape()) + " in " + ref.source +
          " but " + ShapeToString(it->second->shape()) + " in " + m.source);
    theirs.erase(it);
  }
  for (const auto& [name, t] : theirs)
    add("tensor " + name + " " + ShapeToString(t->shape()) + " is in " + m.source + " but not in " +
        ref.source);
  return diff;
}

}  // namespace

Result<nn::NamedTensors> WeightedAverage(const std::vector<WeightedModel>& models) {
  if (models.empty()) return InvalidArgument("no models to average");
  double total = 0;
  for (const auto& m : models) {
    if (!(m.weight > 0) || !std::isfinite(m.weight))
      return InvalidArgument(m.source + ": weight " + std::to_string(m.weight) +
                             " is not a positive number");
    total += m.weight;
  }
  std::string problems;
  for (size_t k = 1; k < models.size(); ++k) {
    const std::string d = Differences(models[0], models[k]);
    if (!d.empty()) problems += (problems.empty() ? "" : "; ") + d;
  }
  if (!problems.empty())
    return InvalidArgument("the models do not have the same parameters: " + problems);

  nn::NamedTensors out;
  for (const auto& [name, first] : models[0].tensors) {
    std::vector<double> sum(static_cast<size_t>(first.numel()), 0.0);
    for (const auto& m : models) {
      const Tensor* t = nullptr;
      for (const auto& [n, candidate] : m.tensors)
        if (n == name) t = &candidate;
      const double w = m.weight / total;
      const float* p = t->data();
      for (size_t i = 0; i < sum.size(); ++i) sum[i] += w * p[i];
    }
    Tensor avg = Tensor::Empty(first.shape());
    float* a = avg.data();
    for (size_t i = 0; i < sum.size(); ++i) a[i] = static_cast<float>(sum[i]);
    out.emplace_back(name, std::move(avg));
  }
  return out;
}

}  // namespace dnnd
