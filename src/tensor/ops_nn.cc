// Differentiable ops for convolutional and transformer-style models:
// LeakyReLU, GELU, Concat, BatchNorm, LayerNorm, AvgPool2d, GlobalAvgPool2d
// (declared in ops.h; MaxPool2d and CrossEntropy live in ops.cc).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "tensor/kernels.h"
#include "tensor/ops.h"
#include "tensor/ops_internal.h"
#include "tensor/parallel.h"

namespace dnnd::ops {
namespace {

using internal::AnyRequiresGrad;
using internal::Needs;
using internal::Record;
using internal::ShapeError;

// Element-wise unary op whose backward needs the input (the output does not
// determine the gradient: LeakyReLU with a negative slope, GELU).
template <typename Fwd, typename Bwd>
Tensor UnaryFromInput(const Tensor& x, const char* name, Fwd fwd, Bwd bwd) {
  Tensor y = Tensor::Empty(x.shape());
  fwd(x.numel(), x.data(), y.data());
  if (AnyRequiresGrad({&x})) {
    Record(y, name, {x}, [bwd](std::vector<Tensor>& in, const Tensor& g) {
      Tensor gx = Tensor::Empty(in[0].shape());
      bwd(in[0].numel(), in[0].data(), g.data(), gx.data());
      in[0].AccumulateGrad(std::move(gx));
    });
  }
  return y;
}

void CheckPerChannel(const char* op, const Tensor& x, const Tensor& p, const char* what) {
  if (p.defined() && (p.ndim() != 1 || p.size(0) != x.size(1)))
    throw std::invalid_argument(std::string(op) + ": " + what + " " + ShapeToString(p.shape()) +
                                " does not match the channels of input " +
                                ShapeToString(x.shape()));
}

// Checks a pooling geometry as PyTorch does (floor mode): the window fits the
// padded input and padding is at most half the window, so every window covers
// at least one input element.
void CheckPool(const char* op, const Tensor& x, int64_t kernel, int64_t stride, int64_t padding) {
  if (x.ndim() != 4)
    throw std::invalid_argument(std::string(op) + " expects [n, c, h, w], got " +
                                ShapeToString(x.shape()));
  if (kernel < 1 || stride < 1 || padding < 0 || padding > kernel / 2 ||
      x.size(2) + 2 * padding < kernel || x.size(3) + 2 * padding < kernel)
    throw std::invalid_argument(std::string(op) + ": kernel " + std::to_string(kernel) +
                                ", stride " + std::to_string(stride) + ", padding " +
                                std::to_string(padding) + " do not fit input " +
                                ShapeToString(x.shape()));
}

}  // namespace

Tensor LeakyRelu(const Tensor& x, float slope) {
  return UnaryFromInput(
      x, "LeakyRelu",
      [slope](int64_t n, const float* in, float* out) { kernels::LeakyRelu(n, in, slope, out); },
      [slope](int64_t n, const float* in, const float* gy, float* gx) {
        kernels::LeakyReluBackward(n, in, slope, gy, gx);
      });
}

Tensor Gelu(const Tensor& x) {
  return UnaryFromInput(x, "Gelu", kernels::Gelu, kernels::GeluBackward);
}

Tensor Concat(const std::vector<Tensor>& xs, int dim) {
  if (xs.empty()) throw std::invalid_argument("Concat of no tensors");
  const Tensor& first = xs[0];
  if (!first.defined() || first.ndim() == 0)
    throw std::invalid_argument("Concat: the first input is undefined or a scalar");
  const int nd = first.ndim();
  const int d = dim < 0 ? dim + nd : dim;
  if (d < 0 || d >= nd)
    throw std::invalid_argument("Concat: dim " + std::to_string(dim) + " out of range for " +
                                ShapeToString(first.shape()));
  std::vector<int64_t> sizes;
  int64_t total = 0;
  for (const Tensor& t : xs) {
    if (!t.defined()) throw std::invalid_argument("Concat: an input is undefined");
    if (t.ndim() != nd) ShapeError("Concat", first, t);
    for (int k = 0; k < nd; ++k)
      if (k != d && t.size(k) != first.size(k))
        throw std::invalid_argument("Concat along dim " + std::to_string(d) +
                                    ": incompatible shapes " + ShapeToString(first.shape()) +
                                    " and " + ShapeToString(t.shape()));
    sizes.push_back(t.size(d));
    total += t.size(d);
  }
  int64_t outer = 1, inner = 1;
  for (int k = 0; k < d; ++k) outer *= first.size(k);
  for (int k = d + 1; k < nd; ++k) inner *= first.size(k);
  Shape shape = first.shape();
  shape[d] = total;
  Tensor y = Tensor::Empty(shape);
  // Copies between the joined layout [outer, total, inner] and each input's
  // [outer, size_i, inner]; `to_inputs` runs it backwards (the gradient split).
  auto copy = [sizes, outer, inner, total](float* joined, const std::vector<float*>& parts,
                                           bool to_parts) {
    const int64_t grain =
        std::max<int64_t>(1, (int64_t{1} << 15) / std::max<int64_t>(1, total * inner));
    ParallelFor(outer, grain, [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) {
        int64_t off = 0;
        for (size_t i = 0; i < sizes.size(); ++i) {
          const int64_t len = sizes[i] * inner;
          float* j = joined + (o * total + off) * inner;
          if (parts[i]) {
            float* p = parts[i] + o * len;
            if (to_parts)
              std::memcpy(p, j, sizeof(float) * len);
            else
              std::memcpy(j, p, sizeof(float) * len);
          }
          off += sizes[i];
        }
      }
    });
  };
  std::vector<float*> parts;
  for (const Tensor& t : xs) parts.push_back(const_cast<float*>(t.data()));
  copy(y.data(), parts, false);
  bool any = false;
  for (const Tensor& t : xs) any = any || AnyRequiresGrad({&t});
  if (any) {
    Record(y, "Concat", xs, [copy](std::vector<Tensor>& in, const Tensor& g) {
      std::vector<Tensor> grads(in.size());
      std::vector<float*> ptrs(in.size(), nullptr);
      for (size_t i = 0; i < in.size(); ++i) {
        if (!Needs(in[i])) continue;
        grads[i] = Tensor::Empty(in[i].shape());
        ptrs[i] = grads[i].data();
      }
      copy(const_cast<float*>(g.data()), ptrs, true);
      for (size_t i = 0; i < in.size(); ++i)
        if (ptrs[i]) in[i].AccumulateGrad(std::move(grads[i]));
    });
  }
  return y;
}

namespace {

// BatchNorm, and with `relu` BatchNormRelu: the ReLU applied as the output is
// written, and its backward folded into the batch norm's.
Tensor BatchNormImpl(const Tensor& x, const Tensor& weight, const Tensor& bias,
                     Tensor& running_mean, Tensor& running_var, bool training, float momentum,
                     float eps, bool relu) {
  if (x.ndim() != 2 && x.ndim() != 4)
    throw std::invalid_argument("BatchNorm expects [n, c] or [n, c, h, w], got " +
                                ShapeToString(x.shape()));
  CheckPerChannel("BatchNorm", x, weight, "weight");
  CheckPerChannel("BatchNorm", x, bias, "bias");
  CheckPerChannel("BatchNorm", x, running_mean, "running_mean");
  CheckPerChannel("BatchNorm", x, running_var, "running_var");
  if (running_mean.defined() != running_var.defined())
    throw std::invalid_argument("BatchNorm: running_mean and running_var must both be given");
  if (!(eps > 0.0f)) throw std::invalid_argument("BatchNorm: eps must be positive");
  const int64_t n = x.size(0), c = x.size(1);
  const int64_t plane = x.ndim() == 4 ? x.size(2) * x.size(3) : 1;
  const int64_t m = n * plane;  // values per channel
  // Without running statistics (PyTorch's track_running_stats=False) the
  // batch's are used in evaluation too.
  const bool batch_stats = training || !running_mean.defined();
  if (batch_stats && m < 2)
    throw std::invalid_argument("BatchNorm: training needs more than 1 value per channel, got " +
                                ShapeToString(x.shape()));
  Tensor y = Tensor::Empty(x.shape());
  Tensor mean = Tensor::Empty({c});
  Tensor invstd = Tensor::Empty({c});
  if (batch_stats) {
    Tensor var = Tensor::Empty({c});
    kernels::BatchNormTrainForward(n, c, plane, x.data(),
                                   weight.defined() ? weight.data() : nullptr,
                                   bias.defined() ? bias.data() : nullptr, eps, relu, y.data(),
                                   mean.data(), var.data(), invstd.data());
    if (training && running_mean.defined()) {
      // The running variance estimates the population: unbiased (m - 1).
      const float unbias = static_cast<float>(double(m) / double(m - 1));
      float* rm = running_mean.data();
      float* rv = running_var.data();
      for (int64_t ch = 0; ch < c; ++ch) {
        rm[ch] = (1.0f - momentum) * rm[ch] + momentum * mean.data()[ch];
        rv[ch] = (1.0f - momentum) * rv[ch] + momentum * var.data()[ch] * unbias;
      }
    }
  } else {
    // Evaluation: a per-channel affine y = x * scale + shift with
    // scale = w / sqrt(rv + eps), shift = b - rm * scale (as PyTorch).
    Tensor scale = Tensor::Empty({c});
    Tensor shift = Tensor::Empty({c});
    for (int64_t ch = 0; ch < c; ++ch) {
      const float is = static_cast<float>(1.0 / std::sqrt(double(running_var.data()[ch]) + eps));
      mean.data()[ch] = running_mean.data()[ch];
      invstd.data()[ch] = is;
      scale.data()[ch] = weight.defined() ? weight.data()[ch] * is : is;
      shift.data()[ch] =
          (bias.defined() ? bias.data()[ch] : 0.0f) - running_mean.data()[ch] * scale.data()[ch];
    }
    kernels::ChannelAffine(n, c, plane, x.data(), scale.data(), shift.data(), y.data());
    if (relu) kernels::Relu(y.numel(), y.data(), y.data());
  }
  if (AnyRequiresGrad({&x, &weight, &bias})) {
    // The fused ReLU's backward reads its output (the mask), kept anyway by
    // whatever consumes it, or recomputes the mask from x, weight and bias
    // (kernels.h). Backward takes weight and bias as this forward used them
    // (c floats each): an optimizer step between the two (a layer server's
    // client may step with micro-batches pending) must not mix the weights
    // into the gradient of one forward.
    Tensor relu_y = relu ? y.detach() : Tensor();
    Tensor w_used = weight.defined() ? weight.detach().clone() : Tensor();
    Tensor b_used = bias.defined() ? bias.detach().clone() : Tensor();
    Record(y, relu ? "BatchNormRelu" : "BatchNorm", {x, weight, bias},
           [mean, invstd, relu_y, w_used, b_used, n, c, plane, batch_stats](std::vector<Tensor>& t,
                                                                            const Tensor& g) {
             Tensor gx = Needs(t[0]) ? Tensor::Empty(t[0].shape()) : Tensor();
             Tensor gw = Needs(t[1]) ? Tensor::Empty({c}) : Tensor();
             Tensor gb = Needs(t[2]) ? Tensor::Empty({c}) : Tensor();
             kernels::BatchNormBackward(
                 n, c, plane, t[0].data(), g.data(), relu_y.defined() ? relu_y.data() : nullptr,
                 mean.data(), invstd.data(), w_used.defined() ? w_used.data() : nullptr,
                 b_used.defined() ? b_used.data() : nullptr, batch_stats,
                 gx.defined() ? gx.data() : nullptr, gw.defined() ? gw.data() : nullptr,
                 gb.defined() ? gb.data() : nullptr);
             if (gx.defined()) t[0].AccumulateGrad(std::move(gx));
             if (gw.defined()) t[1].AccumulateGrad(std::move(gw));
             if (gb.defined()) t[2].AccumulateGrad(std::move(gb));
           });
  }
  return y;
}

}  // namespace

Tensor BatchNorm(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& running_mean,
                 Tensor& running_var, bool training, float momentum, float eps) {
  return BatchNormImpl(x, weight, bias, running_mean, running_var, training, momentum, eps, false);
}

Tensor BatchNormRelu(const Tensor& x, const Tensor& weight, const Tensor& bias,
                     Tensor& running_mean, Tensor& running_var, bool training, float momentum,
                     float eps) {
  return BatchNormImpl(x, weight, bias, running_mean, running_var, training, momentum, eps, true);
}

Tensor LayerNorm(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t normalized,
                 float eps) {
  // `normalized` must be the element count of some trailing dimensions.
  bool trailing = false;
  int64_t count = 1;
  for (int k = x.ndim() - 1; k >= 0 && !trailing && count <= normalized; --k) {
    count *= x.size(k);
    trailing = count == normalized;
  }
  if (normalized < 1 || !trailing)
    throw std::invalid_argument("LayerNorm: " + std::to_string(normalized) +
                                " is not the element count of trailing dimensions of " +
                                ShapeToString(x.shape()));
  for (const Tensor* p : {&weight, &bias})
    if (p->defined() && p->numel() != normalized)
      throw std::invalid_argument("LayerNorm: parameter " + ShapeToString(p->shape()) +
                                  " for normalized size " + std::to_string(normalized) +
                                  " of input " + ShapeToString(x.shape()));
  if (!(eps > 0.0f)) throw std::invalid_argument("LayerNorm: eps must be positive");
  const int64_t rows = x.numel() / normalized, cols = normalized;
  Tensor y = Tensor::Empty(x.shape());
  Tensor mean = Tensor::Empty({rows});
  Tensor invstd = Tensor::Empty({rows});
  kernels::LayerNormForward(rows, cols, x.data(), weight.defined() ? weight.data() : nullptr,
                            bias.defined() ? bias.data() : nullptr, eps, y.data(), mean.data(),
                            invstd.data());
  if (AnyRequiresGrad({&x, &weight, &bias})) {
    Record(y, "LayerNorm", {x, weight, bias},
           [mean, invstd, rows, cols](std::vector<Tensor>& t, const Tensor& g) {
             Tensor gx = Needs(t[0]) ? Tensor::Empty(t[0].shape()) : Tensor();
             Tensor gw = Needs(t[1]) ? Tensor::Zeros(t[1].shape()) : Tensor();
             Tensor gb = Needs(t[2]) ? Tensor::Zeros(t[2].shape()) : Tensor();
             kernels::LayerNormBackward(
                 rows, cols, t[0].data(), g.data(), mean.data(), invstd.data(),
                 t[1].defined() ? t[1].data() : nullptr, gx.defined() ? gx.data() : nullptr,
                 gw.defined() ? gw.data() : nullptr, gb.defined() ? gb.data() : nullptr);
             if (gx.defined()) t[0].AccumulateGrad(std::move(gx));
             if (gw.defined()) t[1].AccumulateGrad(std::move(gw));
             if (gb.defined()) t[2].AccumulateGrad(std::move(gb));
           });
  }
  return y;
}

Tensor AvgPool2d(const Tensor& x, int64_t kernel, int64_t stride, int64_t padding) {
  CheckPool("AvgPool2d", x, kernel, stride, padding);
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  const int64_t oh = kernels::PoolOut(h, kernel, stride, padding);
  const int64_t ow = kernels::PoolOut(w, kernel, stride, padding);
  const int64_t planes = n * c;
  Tensor y = Tensor::Empty({n, c, oh, ow});
  ParallelFor(planes, 16, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p)
      kernels::AvgPool2dPlane(h, w, kernel, stride, padding, x.data() + p * h * w,
                              y.data() + p * oh * ow);
  });
  if (AnyRequiresGrad({&x})) {
    Record(
        y, "AvgPool2d", {x},
        [planes, h, w, oh, ow, kernel, stride, padding](std::vector<Tensor>& in, const Tensor& g) {
          Tensor gx = Tensor::Zeros(in[0].shape());
          ParallelFor(planes, 16, [&](int64_t b, int64_t e) {
            for (int64_t p = b; p < e; ++p)
              kernels::AvgPool2dPlaneBackward(h, w, kernel, stride, padding, g.data() + p * oh * ow,
                                              gx.data() + p * h * w);
          });
          in[0].AccumulateGrad(std::move(gx));
        });
  }
  return y;
}

Tensor GlobalAvgPool2d(const Tensor& x) {
  if (x.ndim() != 4 || x.size(2) * x.size(3) == 0)
    throw std::invalid_argument("GlobalAvgPool2d expects non-empty [n, c, h, w], got " +
                                ShapeToString(x.shape()));
  const int64_t n = x.size(0), c = x.size(1), hw = x.size(2) * x.size(3);
  Tensor y = Tensor::Empty({n, c});
  const float inv = 1.0f / static_cast<float>(hw);
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 14) / hw);
  ParallelFor(n * c, grain, [&](int64_t b, int64_t e) {
    kernels::RowSum(e - b, hw, x.data() + b * hw, y.data() + b, false);
    kernels::Scale(e - b, inv, y.data() + b);
  });
  if (AnyRequiresGrad({&x})) {
    Record(y, "GlobalAvgPool2d", {x},
           [n, c, hw, inv, grain](std::vector<Tensor>& in, const Tensor& g) {
             Tensor gx = Tensor::Empty(in[0].shape());
             ParallelFor(n * c, grain, [&](int64_t b, int64_t e) {
               for (int64_t p = b; p < e; ++p)
                 std::fill_n(gx.data() + p * hw, hw, g.data()[p] * inv);
             });
             in[0].AccumulateGrad(std::move(gx));
           });
  }
  return y;
}

}  // namespace dnnd::ops
