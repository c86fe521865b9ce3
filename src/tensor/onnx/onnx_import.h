// Models exported by torch.onnx.export, as dnnd graph models: the ONNX graph
// becomes a ModelSpec (graph form) and its initializers the initial weights.
//
// Names: a node with parameters takes its name from its weight initializer
// ("layer1.0.conv1.weight" -> node "layer1.0.conv1"), so the parameters and
// buffers dnnd trains carry the exported module's state_dict names and load
// back into it with load_state_dict(strict=True). BatchNorm's
// num_batches_tracked, which ONNX drops, starts at 0. Export in training mode
// (training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False):
// in eval mode the exporter may fold BatchNorm into the convolution before it.
//
// Supported (default domain, opsets kMinOpset..kMaxOpset): Conv (2-D, square
// kernels, symmetric padding, groups), BatchNormalization, Relu, LeakyRelu,
// Gelu and the Div/Erf/Add/Mul/Mul expansion PyTorch exports for it, Sigmoid,
// Tanh, Softmax (last axis), Add of two tensors, Concat, MaxPool, AveragePool,
// GlobalAveragePool, Flatten, Reshape and Squeeze that flatten, Gemm, MatMul
// (+ Add of a bias), Dropout, Identity, and the shape arithmetic that feeds a
// Reshape (Constant, Shape, Gather, Unsqueeze, Squeeze, Concat, Slice, Cast),
// folded to constants. Anything else is an InvalidArgument naming the node,
// its op type and this list; malformed or truncated files are Corruption.
//
// Thread-safety: pure functions of their arguments.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "tensor/model_spec.h"
#include "tensor/nn.h"

namespace dnnd::onnx {

inline constexpr int kMinOpset = 9;
inline constexpr int kMaxOpset = 17;
// Largest ONNX file read (protobuf's own limit is 2 GiB).
inline constexpr size_t kMaxOnnxBytes = size_t{1} << 31;

struct ImportedModel {
  // The graph (input shape from the ONNX input, cross-entropy loss, default
  // optimizer: the caller sets loss and optimizer from its own config).
  ModelSpec spec;
  // Every parameter and buffer of BuildModel(spec), under dnnd's names.
  nn::NamedTensors weights;
  // Initializers whose names could not be kept (no ".weight" to name a node
  // after, or a MatMul weight stored transposed): "onnx name -> dnnd name".
  std::vector<std::string> renamed;
};

// `source` names the bytes in errors ("model.onnx"). The model is built once
// to check shapes, under `limits` (ResourceExhausted past them).
Result<ImportedModel> ImportOnnx(std::string_view bytes, const std::string& source,
                                 const ModelLimits& limits = {});
Result<ImportedModel> ImportOnnxFile(const std::string& path, const ModelLimits& limits = {});

// What ImportOnnx supports, for error messages and docs.
std::string SupportedOps();

}  // namespace dnnd::onnx
