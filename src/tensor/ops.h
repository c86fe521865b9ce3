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
Tensor Sigmoid(const Tensor& x);
Tensor Tanh(const Tensor& x);
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

// --- convolution and pooling (NCHW) ------------------------------------------
// x [n, c, h, w], weight [oc, c, kh, kw], bias [oc] or undefined.
Tensor Conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t stride,
              int64_t padding);
Tensor MaxPool2d(const Tensor& x, int64_t kernel, int64_t stride);

// --- losses (mean over the batch) ----------------------------------------------
// logits [n, classes], labels n class indices in [0, classes).
Tensor CrossEntropy(const Tensor& logits, std::span<const int32_t> labels);
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
