// Node ranges of a graph model placed on layer servers (worker.placement):
// what both ends of a session agree on -- where a range may start and end,
// the shapes crossing its ends, and the tensors (parameters and buffers) it
// holds.
#pragma once

#include <string>
#include <vector>

#include "core/status.h"
#include "tensor/nn.h"

namespace dnnd::layers {

// "" when the graph can be cut before node `i` (nn::Graph::IsCut); else why
// not, naming a connection that crosses there: "node 'layer1.0.add' reads
// 'relu'" (a residual block's skip connection).
std::string CutCrossing(const nn::Graph& graph, size_t i);

// Nodes [first, last) as a range a layer server can host: in bounds and cut
// at both ends, or InvalidArgument naming the node and the crossing
// connection. `what` introduces the message ("worker.placement: nodes = ...").
Status CheckRange(const nn::Graph& graph, size_t first, size_t last, const std::string& what);

// Every node's per-sample output shape for a per-sample `input`.
Result<std::vector<Shape>> NodeShapes(const nn::Graph& graph, const Shape& input);

// The parameters then the buffers of nodes [first, last), by their model
// names ("layer1.0.bn1.running_mean"), sharing the model's tensors.
nn::NamedTensors RangeState(const nn::Graph& graph, size_t first, size_t last);
// Only the parameters (what the range's optimizer steps).
nn::NamedTensors RangeParameters(const nn::Graph& graph, size_t first, size_t last);

// "conv1-layer1.2.add" for nodes [first, last), or the one name.
std::string RangeNames(const nn::Graph& graph, size_t first, size_t last);

}  // namespace dnnd::layers
