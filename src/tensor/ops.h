// Differentiable operations. Each op computes its forward result through
// src/tensor/kernels.h and, when grad mode is on and an input requires grad,
// records a GradNode whose backward turns the output gradient into input
// gradients. Shapes are checked; a mismatch throws std::invalid_argument
// naming both shapes.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "tensor/tensor.h"

namespace dnnd::ops {

// --- linear algebra --------------------------------------------------------
Tensor MatMul(const Tensor& a, const Tensor& b);  // [m,k] x [k,n] -> [m,n]
// x [n, in], weight [out, in] (PyTorch layout), bias [out] or undefined.
Tensor Linear(const Tensor& x, const Tensor& weight, const Tensor& bias);

// --- element-wise ------------------------------------------------------------
// b's shape must equal a's, or be a suffix of it (broadcast over leading dims,
// e.g. a bias [c] added to [n, c]), or be a scalar.
Tensor Add(const Tensor& a, const Tensor& b);
Tensor Sub(const Tensor& a, const Tensor& b);
Tensor Mul(const Tensor& a, const Tensor& b);  // same shapes
Tensor MulScalar(const Tensor& a, float s);
Tensor Relu(const Tensor& x);
// Relu(Add(a, b)) for a and b of one shape, as one op: one pass over memory
// forward, and one masked gradient shared by both inputs backward.
Tensor AddRelu(const Tensor& a, const Tensor& b);
Tensor Sigmoid(const Tensor& x);
Tensor Tanh(const Tensor& x);
// max(x, 0) + slope * min(x, 0).
Tensor LeakyRelu(const Tensor& x, float slope);
// Exact GELU, x * Phi(x) with the erf form (PyTorch's approximate="none").
Tensor Gelu(const Tensor& x);
// Row-wise over the last dimension.
Tensor Softmax(const Tensor& x);
Tensor LogSoftmax(const Tensor& x);
// Zeroes each element with probability p and scales survivors by 1/(1-p).
Tensor Dropout(const Tensor& x, float p, Rng& rng);

// --- reductions --------------------------------------------------------------
Tensor Sum(const Tensor& x);   // -> scalar
Tensor Mean(const Tensor& x);  // -> scalar

// --- shape -------------------------------------------------------------------
Tensor Flatten(const Tensor& x);  // [n, ...] -> [n, prod(...)]
// Joins tensors along dimension `dim` (other dimensions equal), e.g. the
// channels of [n, c_i, h, w] feature maps with dim = 1.
Tensor Concat(const std::vector<Tensor>& xs, int dim);

// --- normalisation -------------------------------------------------------------
// Batch normalisation over x [n, c] or [n, c, h, w], PyTorch semantics.
// weight/bias [c] (undefined: no affine). In training, normalises with the
// batch statistics (biased variance) and updates running_mean/running_var in
// place: r = (1 - momentum) * r + momentum * batch (unbiased variance for
// running_var); in evaluation, normalises with the running statistics.
// running_* are plain tensors [c] (no grad), updated under no graph.
Tensor BatchNorm(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& running_mean,
                 Tensor& running_var, bool training, float momentum, float eps);
// Relu(BatchNorm(...)) in one op: the ReLU applied as the output is written
// and its backward folded into the batch norm's (nn::Graph fuses the pair).
Tensor BatchNormRelu(const Tensor& x, const Tensor& weight, const Tensor& bias,
                     Tensor& running_mean, Tensor& running_var, bool training, float momentum,
                     float eps);
// Layer normalisation over the trailing dimensions whose element count is
// `normalized` (x.numel() / rows rows of `normalized` elements); weight/bias
// [normalized] or undefined.
Tensor LayerNorm(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t normalized,
                 float eps);

// --- convolution and pooling (NCHW) ------------------------------------------
// x [n, c, h, w], weight [oc, c, kh, kw], bias [oc] or undefined.
// With groups > 1, weight is [oc, c / groups, kh, kw] and each group of
// c / groups input channels feeds oc / groups outputs (groups == c: depthwise).
Tensor Conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t stride,
              int64_t padding, int64_t groups = 1);
// Padding pads with -inf (as PyTorch): a window always holds an input element.
Tensor MaxPool2d(const Tensor& x, int64_t kernel, int64_t stride, int64_t padding = 0);
// Average over each window; padded zeros count (PyTorch's
// count_include_pad=True).
Tensor AvgPool2d(const Tensor& x, int64_t kernel, int64_t stride, int64_t padding = 0);
// [n, c, h, w] -> [n, c]: the mean of each plane.
Tensor GlobalAvgPool2d(const Tensor& x);

// --- losses (mean over the batch) ----------------------------------------------
// logits [n, classes], labels n class indices in [0, classes).
// label_smoothing eps mixes the one-hot target with the uniform distribution:
// target = (1 - eps) * onehot + eps / classes (PyTorch's label_smoothing).
Tensor CrossEntropy(const Tensor& logits, std::span<const int32_t> labels,
                    float label_smoothing = 0.0f);
Tensor MseLoss(const Tensor& pred, const Tensor& target);
// pred are probabilities in [0,1] (clamped log as in PyTorch: log >= -100).
Tensor BceLoss(const Tensor& pred, const Tensor& target);

// --- operations computed elsewhere -------------------------------------------
// Makes `out` (computed outside this library, e.g. by layers on a layer
// server) part of the graph: backward calls `backward(inputs, grad_out)`,
// which accumulates into whichever inputs need it. It is called even when no
// input requires grad, for the side effects (remote parameter gradients).
void RecordExternal(
    Tensor& out, const char* name, std::vector<Tensor> inputs,
    std::function<void(std::vector<Tensor>& inputs, const Tensor& grad_out)> backward);

}  // namespace dnnd::ops
