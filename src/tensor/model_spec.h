// Models as data: a TOML model spec builds the same nn objects as C++ code, so
// a controller can ship a model to any node. Two forms:
//
// The list form, a chain (PyTorch's nn.Sequential; nodes named "0", "1"...):
//   [model]
//   input = [1, 28, 28]          # per-sample shape
//   loss = "cross_entropy"       # cross_entropy | mse | bce
//   label_smoothing = 0.0        # cross_entropy only (optional)
//   init = "default"             # default | xavier_uniform | ... (optional)
//   [[model.layers]]
//   type = "flatten"
//   [[model.layers]]
//   type = "linear"
//   out = 512                    # `in` is optional; when given it must match
//   [model.optimizer]
//   type = "adam"
//   lr = 0.001
//
// The graph form: named nodes, each reading the previous node unless it
// lists `inputs` (node names, or "input" for the model's input); the last
// node is the output. Blocks are node lists instantiated by `type = "block"`
// nodes, `repeat` times with their own parameters; integer values inside a
// block may name one of its `params`:
//   [[model.nodes]]
//   name = "conv1"
//   type = "conv2d"
//   ...
//   [[model.nodes]]
//   name = "layer1"              # nodes layer1.0.conv1 ... layer1.2.relu2
//   type = "block"
//   block = "basic"
//   repeat = 3                   # optional: without it, one copy named "layer1"
//   start = 0                    # optional: index of the first copy
//   args = { planes = 16 }       # optional: overrides the block's params
//   [model.blocks.basic]
//   params = { planes = 16, stride = 1 }
//   [[model.blocks.basic.nodes]]
//   name = "conv1"               # reads the block's input
//   type = "conv2d"
//   out = "planes"
//   ...
//   [[model.blocks.basic.nodes]]
//   name = "add"
//   type = "add"
//   inputs = ["bn2", "in"]       # "in": the block's input
//
// Node types and their keys (all take name and inputs in the graph form):
//   linear      in?, out, bias?
//   conv2d      in?, out, kernel, stride?, padding?, groups?, bias?
//   maxpool2d, avgpool2d   kernel, stride?, padding?
//   global_avgpool2d       ([c, h, w] -> [c])
//   batchnorm1d, batchnorm2d   eps?, momentum?, affine?
//   layernorm   dims? (trailing dimensions normalised, default 1), eps?, affine?
//   add         (two or more inputs of one shape)
//   concat      dim? (torch.cat's, default 1: channels)
//   leaky_relu  slope?
//   flatten, relu, gelu, sigmoid, tanh, softmax
//   dropout     p
// Parsing reports every error it finds, each naming the node and, for values
// from a file, file:line:col; BuildModel then checks shapes.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "tensor/nn.h"
#include "tensor/optim.h"

namespace toml {
inline namespace v3 {
class table;
}
}  // namespace toml

namespace dnnd {

// One node, blocks expanded: names are full ("layer1.0.conv1").
struct LayerSpec {
  std::string name;  // "3" in the list form
  std::string type;
  std::vector<std::string> inputs;  // node names or "input"; always filled
  int64_t in = 0;                   // 0: inferred from the input's shape
  int64_t out = 0;
  int64_t kernel = 0, stride = 0, padding = 0, groups = 1;
  float p = 0.0f;
  float eps = 1e-5f, momentum = 0.1f;  // batchnorm, layernorm
  float slope = 0.01f;                 // leaky_relu
  int64_t dim = 1;                     // concat
  int64_t dims = 1;                    // layernorm
  bool bias = true, affine = true;
  std::string where;  // "file:line:col" of the node's table, for errors
};

// Nodes in topological order (the file's order when it is one).
struct ModelSpec {
  Shape input;
  nn::LossKind loss = nn::LossKind::kCrossEntropy;
  float label_smoothing = 0.0f;
  nn::Init init = nn::Init::kDefault;
  std::vector<LayerSpec> layers;
  optim::OptimizerOptions optimizer;
};

// Parses and validates a [model] table (types, required keys, ranges, unknown
// keys, node names and inputs: duplicates, dangling inputs, cycles, unused
// nodes), reporting every error found, one per line. Shapes are checked by
// BuildModel.
Result<ModelSpec> ParseModelSpec(const toml::table& model);
// Parses TOML text holding a [model] table (e.g. one received over the wire).
Result<ModelSpec> ParseModelSpecText(const std::string& toml_text, const std::string& source_name);
// Canonical TOML text of the spec (a [model] table), parseable by the above.
std::string ModelSpecToToml(const ModelSpec& spec);

// "" when `a` and `b` compute the same function family (input shape, loss,
// and each node's name, inputs, type and shape-independent settings:
// kernels, strides, padding, groups, dropout, normalisation); else the first
// difference, naming the node. Parameter shapes and the optimizer are not compared (models
// trained with different learning rates are still one architecture).
std::string ArchitectureDifference(const ModelSpec& a, const ModelSpec& b);

// Most nodes a spec may have, blocks expanded (ParseModelSpec refuses more).
inline constexpr size_t kMaxModelLayers = 1024;

// What building a model may allocate; specs come from API users.
struct ModelLimits {
  int64_t max_parameters = int64_t{1} << 28;  // 1 GiB of float32
  std::string setting = "controller.max_model_parameters";
};

// Builds the model with seeded initialisation. Fails, naming the layer index
// and both shapes, when a layer does not accept its input shape, and with
// ResourceExhausted naming limits.setting, before the layer is allocated,
// when the parameters so far exceed limits.max_parameters.
Result<std::shared_ptr<nn::Graph>> BuildModel(const ModelSpec& spec, uint64_t seed,
                                              const ModelLimits& limits = {});

}  // namespace dnnd
