// Models as data: a TOML model spec builds the same nn objects as C++ code, so
// a controller can ship a model to any node.
//
//   [model]
//   input = [1, 28, 28]          # per-sample shape
//   loss = "cross_entropy"       # cross_entropy | mse | bce
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
// Layer types and their keys:
//   linear    in?, out, bias?          conv2d  in?, out, kernel, stride?, padding?, bias?
//   maxpool2d kernel, stride?          flatten, relu, sigmoid, tanh, softmax
//   dropout   p
// Every error names the layer index and, for values from a file, file:line:col.
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

struct LayerSpec {
  std::string type;
  int64_t in = 0;  // 0: inferred from the previous layer
  int64_t out = 0;
  int64_t kernel = 0, stride = 0, padding = 0;
  float p = 0.0f;
  bool bias = true;
  std::string where;  // "file:line:col" of the layer's table, for errors
};

struct ModelSpec {
  Shape input;
  nn::LossKind loss = nn::LossKind::kCrossEntropy;
  nn::Init init = nn::Init::kDefault;
  std::vector<LayerSpec> layers;
  optim::OptimizerOptions optimizer;
};

// Parses and validates a [model] table (types, required keys, ranges, unknown
// keys). Shapes are checked by BuildModel.
Result<ModelSpec> ParseModelSpec(const toml::table& model);
// Parses TOML text holding a [model] table (e.g. one received over the wire).
Result<ModelSpec> ParseModelSpecText(const std::string& toml_text, const std::string& source_name);
// Canonical TOML text of the spec (a [model] table), parseable by the above.
std::string ModelSpecToToml(const ModelSpec& spec);

// "" when `a` and `b` compute the same function family (input shape, loss,
// and each layer's type and shape-independent settings: activations,
// kernels, strides, padding, dropout); else the first difference, naming the
// layer index. Parameter shapes and the optimizer are not compared (models
// trained with different learning rates are still one architecture).
std::string ArchitectureDifference(const ModelSpec& a, const ModelSpec& b);

// Most [[model.layers]] a spec may have (ParseModelSpec refuses more).
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
Result<std::shared_ptr<nn::Sequential>> BuildModel(const ModelSpec& spec, uint64_t seed,
                                                   const ModelLimits& limits = {});

}  // namespace dnnd
