#include "roles/layers/ranges.h"

namespace dnnd::layers {
namespace {

std::string NodeName(const nn::Graph& graph, int i) {
  return i == nn::Graph::kInput ? std::string("input") : graph.name(static_cast<size_t>(i));
}

}  // namespace

std::string CutCrossing(const nn::Graph& graph, size_t i) {
  if (i == 0 || i >= graph.size()) return "";
  const int before = static_cast<int>(i) - 1;
  for (size_t j = i; j < graph.size(); ++j)
    for (int in : graph.inputs(j))
      if (in != before && in < static_cast<int>(i))
        return "node '" + graph.name(j) + "' reads '" + NodeName(graph, in) + "'";
  return "";
}

Status CheckRange(const nn::Graph& graph, size_t first, size_t last, const std::string& what) {
  if (first >= last || last > graph.size())
    return InvalidArgument(what + ": nodes " + std::to_string(first) + "-" +
                           std::to_string(last - 1) + " are not a range of the model's " +
                           std::to_string(graph.size()) + " nodes");
  for (const size_t at : {first, last}) {
    const std::string crossing = CutCrossing(graph, at);
    if (crossing.empty()) continue;
    const std::string where = at == first ? "start at node '" + graph.name(at) + "'"
                                          : "end after node '" + graph.name(at - 1) + "'";
    return InvalidArgument(what + ": a range cannot " + where +
                           ": more than one tensor crosses there (" + crossing +
                           ", a residual connection); start and end ranges at block "
                           "boundaries, where only the previous node's output crosses");
  }
  return Status::Ok();
}

Result<std::vector<Shape>> NodeShapes(const nn::Graph& graph, const Shape& input) {
  std::vector<Shape> shapes(graph.size());
  std::vector<Shape> args;
  for (size_t i = 0; i < graph.size(); ++i) {
    args.clear();
    for (int in : graph.inputs(i)) args.push_back(in == nn::Graph::kInput ? input : shapes[in]);
    auto r = graph.at(i)->OutputShapeOf(args);
    if (!r.ok())
      return r.status().WithContext("node " + graph.name(i) + " (" + graph.at(i)->Describe() + ")");
    shapes[i] = *r;
  }
  return shapes;
}

namespace {

nn::NamedTensors Collect(const nn::Graph& graph, size_t first, size_t last, bool buffers) {
  nn::NamedTensors out;
  for (int pass = 0; pass < (buffers ? 2 : 1); ++pass)
    for (size_t i = first; i < last && i < graph.size(); ++i)
      for (auto& [name, t] :
           pass == 0 ? graph.at(i)->NamedParameters() : graph.at(i)->NamedBuffers())
        out.emplace_back(graph.name(i) + "." + name, t);
  return out;
}

}  // namespace

nn::NamedTensors RangeState(const nn::Graph& graph, size_t first, size_t last) {
  return Collect(graph, first, last, true);
}

nn::NamedTensors RangeParameters(const nn::Graph& graph, size_t first, size_t last) {
  return Collect(graph, first, last, false);
}

std::string RangeNames(const nn::Graph& graph, size_t first, size_t last) {
  if (first >= last || last > graph.size()) return "";
  if (last - first == 1) return graph.name(first);
  return graph.name(first) + "-" + graph.name(last - 1);
}

}  // namespace dnnd::layers
