// Sample-weighted averaging of models that share their parameters' names and
// shapes: FedAvg's aggregation step (McMahan et al. 2017),
//   w = sum_k n_k * w_k / sum_k n_k
// where n_k is the number of training samples behind model k. It is only
// meaningful for models trained from the same initial weights (same seed).
#pragma once

#include <string>
#include <vector>

#include "core/status.h"
#include "tensor/nn.h"

namespace dnnd {

struct WeightedModel {
  std::string source;  // names the model in errors, e.g. its file
  nn::NamedTensors tensors;
  double weight = 1.0;  // > 0, e.g. its training samples
};

// The weighted average, in the first model's tensor order. Fails unless
// every model has exactly the first one's tensor names and shapes; the error
// lists each difference with the tensor's name, both sources and both shapes.
// Sums are accumulated in double, so the result does not depend on the
// order of the inputs beyond the final rounding to float.
Result<nn::NamedTensors> WeightedAverage(const std::vector<WeightedModel>& models);

}  // namespace dnnd
