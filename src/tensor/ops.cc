#include "tensor/ops.h"

#include <cmath>
#include <mutex>
#include <stdexcept>

#include "tensor/conv.h"
#include "tensor/kernels.h"
#include "tensor/ops_internal.h"
#include "tensor/parallel.h"

namespace dnnd::ops {
namespace {

using internal::AnyRequiresGrad;
using internal::Needs;
using internal::Record;
using internal::ShapeError;

// Element-wise unary op with a backward expressed through the output.
template <typename Fwd, typename Bwd>
Tensor UnaryFromOutput(const Tensor& x, const char* name, Fwd fwd, Bwd bwd) {
  Tensor y = Tensor::Empty(x.shape());
  fwd(x.numel(), x.data(), y.data());
  if (AnyRequiresGrad({&x})) {
    Tensor saved = y.detach();
    Record(y, name, {x}, [saved, bwd](std::vector<Tensor>& in, const Tensor& g) {
      Tensor gx = Tensor::Empty(saved.shape());
      bwd(saved.numel(), saved.data(), g.data(), gx.data());
      in[0].AccumulateGrad(std::move(gx));
    });
  }
  return y;
}

enum class Bcast { kSame, kRow, kScalar };
Bcast Broadcast(const char* op, const Tensor& a, const Tensor& b) {
  if (a.shape() == b.shape()) return Bcast::kSame;
  if (b.numel() == 1 && b.ndim() <= 1) return Bcast::kScalar;
  const Shape& as = a.shape();
  const Shape& bs = b.shape();
  if (bs.size() < as.size() && std::equal(bs.rbegin(), bs.rend(), as.rbegin())) return Bcast::kRow;
  ShapeError(op, a, b);
}

// Reduces a gradient shaped like `a` to the shape of broadcast operand `b`.
Tensor ReduceTo(const Tensor& g, const Tensor& b, Bcast mode, float sign) {
  Tensor gb = Tensor::Empty(b.shape());
  if (mode == Bcast::kScalar) {
    gb.data()[0] = sign * kernels::Sum(g.numel(), g.data());
  } else {
    kernels::ColumnSum(g.numel() / b.numel(), b.numel(), g.data(), gb.data(), false);
    if (sign != 1.0f) kernels::Scale(gb.numel(), sign, gb.data());
  }
  return gb;
}

Tensor AddSub(const Tensor& a, const Tensor& b, float sign, const char* name) {
  Bcast mode = Broadcast(name, a, b);
  Tensor y = Tensor::Empty(a.shape());
  if (mode == Bcast::kSame) {
    if (sign > 0)
      kernels::Add(a.numel(), a.data(), b.data(), y.data());
    else
      kernels::Sub(a.numel(), a.data(), b.data(), y.data());
  } else if (mode == Bcast::kScalar) {
    Tensor row = Tensor::Full({1}, sign * b.data()[0]);
    kernels::AddRowVector(a.numel(), 1, a.data(), row.data(), y.data());
  } else {
    Tensor row = b;
    if (sign < 0) row = MulScalar(b.detach(), -1.0f);
    kernels::AddRowVector(a.numel() / b.numel(), b.numel(), a.data(), row.data(), y.data());
  }
  if (AnyRequiresGrad({&a, &b})) {
    Record(y, name, {a, b}, [mode, sign](std::vector<Tensor>& in, Tensor g) {
      if (Needs(in[1])) {
        if (mode != Bcast::kSame) {
          in[1].AccumulateGrad(ReduceTo(g, in[1], mode, sign));
        } else if (sign != 1.0f) {
          Tensor gb = Tensor::Empty(g.shape());
          kernels::AddScalarMul(g.numel(), g.data(), sign, gb.data());
          in[1].AccumulateGrad(std::move(gb));
        } else {
          in[1].AccumulateGrad(g);  // shared, not copied, when in[1] is not a leaf
        }
      }
      if (Needs(in[0])) in[0].AccumulateGrad(std::move(g));
    });
  }
  return y;
}

}  // namespace

Tensor MatMul(const Tensor& a, const Tensor& b) {
  if (a.ndim() != 2 || b.ndim() != 2 || a.size(1) != b.size(0)) ShapeError("MatMul", a, b);
  const int64_t m = a.size(0), k = a.size(1), n = b.size(1);
  Tensor y = Tensor::Empty({m, n});
  kernels::LayerGemm(false, false, m, n, k, 1.0f, a.data(), b.data(), 0.0f, y.data());
  if (AnyRequiresGrad({&a, &b})) {
    Record(y, "MatMul", {a, b}, [m, k, n](std::vector<Tensor>& in, const Tensor& g) {
      if (Needs(in[0])) {  // ga[m,k] = g[m,n] b^T
        Tensor ga = Tensor::Empty({m, k});
        kernels::LayerGemm(false, true, m, k, n, 1.0f, g.data(), in[1].data(), 0.0f, ga.data());
        in[0].AccumulateGrad(std::move(ga));
      }
      if (Needs(in[1])) {  // gb[k,n] = a^T g
        Tensor gb = Tensor::Empty({k, n});
        kernels::LayerGemm(true, false, k, n, m, 1.0f, in[0].data(), g.data(), 0.0f, gb.data());
        in[1].AccumulateGrad(std::move(gb));
      }
    });
  }
  return y;
}

Tensor Linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  if (x.ndim() != 2 || weight.ndim() != 2 || x.size(1) != weight.size(1))
    ShapeError("Linear", x, weight);
  const int64_t n = x.size(0), in = x.size(1), out = weight.size(0);
  if (bias.defined() && (bias.ndim() != 1 || bias.size(0) != out))
    ShapeError("Linear", weight, bias);
  Tensor y = Tensor::Empty({n, out});
  float beta = 0.0f;
  if (bias.defined()) {  // y = bias broadcast, then y += x W^T in one GEMM
    for (int64_t r = 0; r < n; ++r) std::copy_n(bias.data(), out, y.data() + r * out);
    beta = 1.0f;
  }
  kernels::LayerGemm(false, true, n, out, in, 1.0f, x.data(), weight.data(), beta, y.data());
  if (AnyRequiresGrad({&x, &weight, &bias})) {
    Record(y, "Linear", {x, weight, bias}, [n, in, out](std::vector<Tensor>& t, const Tensor& g) {
      if (Needs(t[0])) {  // gx[n,in] = g[n,out] W[out,in]
        Tensor gx = Tensor::Empty({n, in});
        kernels::LayerGemm(false, false, n, in, out, 1.0f, g.data(), t[1].data(), 0.0f, gx.data());
        t[0].AccumulateGrad(std::move(gx));
      }
      if (Needs(t[1])) {  // gW[out,in] = g^T x, accumulated in place when a grad exists
        Tensor existing = t[1].grad();
        if (existing.defined()) {
          kernels::LayerGemm(true, false, out, in, n, 1.0f, g.data(), t[0].data(), 1.0f,
                             existing.data());
        } else {
          Tensor gw = Tensor::Empty({out, in});
          kernels::LayerGemm(true, false, out, in, n, 1.0f, g.data(), t[0].data(), 0.0f, gw.data());
          t[1].AccumulateGrad(std::move(gw));
        }
      }
      if (Needs(t[2])) {
        Tensor existing = t[2].grad();
        if (existing.defined()) {
          kernels::ColumnSum(n, out, g.data(), existing.data(), true);
        } else {
          Tensor gb = Tensor::Empty({out});
          kernels::ColumnSum(n, out, g.data(), gb.data(), false);
          t[2].AccumulateGrad(std::move(gb));
        }
      }
    });
  }
  return y;
}

Tensor Add(const Tensor& a, const Tensor& b) { return AddSub(a, b, 1.0f, "Add"); }

Tensor AddRelu(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape()) ShapeError("AddRelu", a, b);
  Tensor y = Tensor::Empty(a.shape());
  kernels::AddRelu(a.numel(), a.data(), b.data(), y.data());
  if (AnyRequiresGrad({&a, &b})) {
    Tensor saved = y.detach();  // the mask; kept anyway by whatever reads y
    Record(y, "AddRelu", {a, b}, [saved](std::vector<Tensor>& in, const Tensor& g) {
      Tensor gm = Tensor::Empty(g.shape());
      kernels::ReluBackward(g.numel(), saved.data(), g.data(), gm.data());
      // As Add: one gradient for both inputs, shared when in[1] is not a leaf.
      if (Needs(in[1])) in[1].AccumulateGrad(Needs(in[0]) ? gm : std::move(gm));
      if (Needs(in[0])) in[0].AccumulateGrad(std::move(gm));
    });
  }
  return y;
}
Tensor Sub(const Tensor& a, const Tensor& b) { return AddSub(a, b, -1.0f, "Sub"); }

Tensor Mul(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape()) ShapeError("Mul", a, b);
  Tensor y = Tensor::Empty(a.shape());
  kernels::Mul(a.numel(), a.data(), b.data(), y.data());
  if (AnyRequiresGrad({&a, &b})) {
    Record(y, "Mul", {a, b}, [](std::vector<Tensor>& in, const Tensor& g) {
      for (int i = 0; i < 2; ++i) {
        if (!Needs(in[i])) continue;
        Tensor gi = Tensor::Empty(g.shape());
        kernels::Mul(g.numel(), g.data(), in[1 - i].data(), gi.data());
        in[i].AccumulateGrad(std::move(gi));
      }
    });
  }
  return y;
}

Tensor MulScalar(const Tensor& a, float s) {
  Tensor y = Tensor::Empty(a.shape());
  kernels::AddScalarMul(a.numel(), a.data(), s, y.data());
  if (AnyRequiresGrad({&a})) {
    Record(y, "MulScalar", {a}, [s](std::vector<Tensor>& in, const Tensor& g) {
      Tensor gx = Tensor::Empty(g.shape());
      kernels::AddScalarMul(g.numel(), g.data(), s, gx.data());
      in[0].AccumulateGrad(std::move(gx));
    });
  }
  return y;
}

Tensor Relu(const Tensor& x) {
  return UnaryFromOutput(x, "Relu", kernels::Relu, kernels::ReluBackward);
}
Tensor Sigmoid(const Tensor& x) {
  return UnaryFromOutput(x, "Sigmoid", kernels::Sigmoid, kernels::SigmoidBackward);
}
Tensor Tanh(const Tensor& x) {
  return UnaryFromOutput(x, "Tanh", kernels::Tanh, kernels::TanhBackward);
}

Tensor Softmax(const Tensor& x) {
  if (x.ndim() < 1) throw std::invalid_argument("Softmax of a scalar");
  const int64_t cols = x.size(-1), rows = x.numel() / std::max<int64_t>(1, cols);
  Tensor y = Tensor::Empty(x.shape());
  kernels::SoftmaxRows(rows, cols, x.data(), y.data());
  if (AnyRequiresGrad({&x})) {
    Tensor saved = y.detach();
    Record(y, "Softmax", {x}, [saved, rows, cols](std::vector<Tensor>& in, const Tensor& g) {
      // gx = y * (g - sum(g * y)) per row
      Tensor gx = Tensor::Empty(saved.shape());
      for (int64_t r = 0; r < rows; ++r) {
        const float* yr = saved.data() + r * cols;
        const float* gr = g.data() + r * cols;
        float dot = kernels::Dot(cols, gr, yr);
        float* out = gx.data() + r * cols;
        for (int64_t c = 0; c < cols; ++c) out[c] = yr[c] * (gr[c] - dot);
      }
      in[0].AccumulateGrad(std::move(gx));
    });
  }
  return y;
}

Tensor LogSoftmax(const Tensor& x) {
  if (x.ndim() < 1) throw std::invalid_argument("LogSoftmax of a scalar");
  const int64_t cols = x.size(-1), rows = x.numel() / std::max<int64_t>(1, cols);
  Tensor y = Tensor::Empty(x.shape());
  kernels::LogSoftmaxRows(rows, cols, x.data(), y.data());
  if (AnyRequiresGrad({&x})) {
    Tensor saved = y.detach();
    Record(y, "LogSoftmax", {x}, [saved, rows, cols](std::vector<Tensor>& in, const Tensor& g) {
      // gx = g - softmax * sum(g) per row
      Tensor gx = Tensor::Empty(saved.shape());
      for (int64_t r = 0; r < rows; ++r) {
        const float* yr = saved.data() + r * cols;
        const float* gr = g.data() + r * cols;
        float s = kernels::Sum(cols, gr);
        float* out = gx.data() + r * cols;
        for (int64_t c = 0; c < cols; ++c) out[c] = gr[c] - std::exp(yr[c]) * s;
      }
      in[0].AccumulateGrad(std::move(gx));
    });
  }
  return y;
}

Tensor Dropout(const Tensor& x, float p, Rng& rng) {
  if (p < 0.0f || p >= 1.0f) throw std::invalid_argument("Dropout p must be in [0, 1)");
  if (p == 0.0f) return x;
  Tensor mask = Tensor::Empty(x.shape());
  std::bernoulli_distribution keep(1.0 - p);
  const float scale = 1.0f / (1.0f - p);
  float* m = mask.data();
  for (int64_t i = 0; i < mask.numel(); ++i) m[i] = keep(rng) ? scale : 0.0f;
  return Mul(x, mask);
}

Tensor Sum(const Tensor& x) {
  Tensor y = Tensor::Scalar(kernels::Sum(x.numel(), x.data()));
  if (AnyRequiresGrad({&x})) {
    Record(y, "Sum", {x}, [](std::vector<Tensor>& in, const Tensor& g) {
      in[0].AccumulateGrad(Tensor::Full(in[0].shape(), g.item()));
    });
  }
  return y;
}

Tensor Mean(const Tensor& x) {
  if (x.numel() == 0) throw std::invalid_argument("Mean of an empty tensor");
  return MulScalar(Sum(x), 1.0f / static_cast<float>(x.numel()));
}

Tensor Flatten(const Tensor& x) {
  if (x.ndim() < 1) throw std::invalid_argument("Flatten of a scalar");
  const int64_t n = x.size(0);
  return x.Reshape({n, n == 0 ? 0 : x.numel() / n});
}

Tensor Conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t stride,
              int64_t padding, int64_t groups) {
  // Kernels and their layout: src/tensor/conv.h.
  if (x.ndim() != 4 || weight.ndim() != 4 || groups < 1 || x.size(1) % groups != 0 ||
      weight.size(0) % groups != 0 || x.size(1) / groups != weight.size(1) ||
      (bias.defined() && (bias.ndim() != 1 || bias.size(0) != weight.size(0))))
    ShapeError("Conv2d", x, weight);
  const conv::Params p{x.size(0),      x.size(1),      x.size(2), x.size(3), weight.size(0),
                       weight.size(2), weight.size(3), stride,    padding,   groups};
  if (stride < 1 || padding < 0 || p.h + 2 * padding < p.kh || p.w + 2 * padding < p.kw)
    ShapeError("Conv2d", x, weight);
  Tensor y = Tensor::Empty({p.n, p.oc, p.oh(), p.ow()});
  conv::Forward(p, x.data(), weight.data(), bias.defined() ? bias.data() : nullptr, y.data());
  if (AnyRequiresGrad({&x, &weight, &bias})) {
    Record(y, "Conv2d", {x, weight, bias}, [p](std::vector<Tensor>& t, const Tensor& g) {
      const bool need_x = Needs(t[0]), need_w = Needs(t[1]), need_b = Needs(t[2]);
      Tensor gw = need_w ? Tensor::Empty(t[1].shape()) : Tensor();
      Tensor gb = need_b ? Tensor::Empty(t[2].shape()) : Tensor();
      Tensor gx = need_x ? Tensor::Empty(t[0].shape()) : Tensor();
      conv::Backward(p, t[0].data(), g.data(), t[1].data(), need_x ? gx.data() : nullptr,
                     need_w ? gw.data() : nullptr, need_b ? gb.data() : nullptr);
      if (need_x) t[0].AccumulateGrad(std::move(gx));
      if (need_w) t[1].AccumulateGrad(std::move(gw));
      if (need_b) t[2].AccumulateGrad(std::move(gb));
    });
  }
  return y;
}

Tensor MaxPool2d(const Tensor& x, int64_t kernel, int64_t stride, int64_t padding) {
  if (x.ndim() != 4)
    throw std::invalid_argument("MaxPool2d expects [n, c, h, w], got " + ShapeToString(x.shape()));
  // As PyTorch: padding at most half the window, so every window covers an
  // input element (padding is -inf and never wins).
  if (kernel < 1 || stride < 1 || padding < 0 || padding > kernel / 2 ||
      x.size(2) + 2 * padding < kernel || x.size(3) + 2 * padding < kernel)
    throw std::invalid_argument("MaxPool2d: kernel " + std::to_string(kernel) + ", stride " +
                                std::to_string(stride) + ", padding " + std::to_string(padding) +
                                " do not fit input " + ShapeToString(x.shape()));
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  const int64_t oh = kernels::PoolOut(h, kernel, stride, padding);
  const int64_t ow = kernels::PoolOut(w, kernel, stride, padding);
  Tensor y = Tensor::Empty({n, c, oh, ow});
  auto argmax = std::make_shared<std::vector<int32_t>>(static_cast<size_t>(n * c * oh * ow));
  const int64_t planes = n * c;
  ParallelFor(planes, 16, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p)
      kernels::MaxPool2dPlane(h, w, kernel, stride, padding, x.data() + p * h * w,
                              y.data() + p * oh * ow, argmax->data() + p * oh * ow);
  });
  if (AnyRequiresGrad({&x})) {
    Record(y, "MaxPool2d", {x},
           [argmax, planes, h, w, oh, ow](std::vector<Tensor>& in, const Tensor& g) {
             Tensor gx = Tensor::Zeros(in[0].shape());
             ParallelFor(planes, 16, [&](int64_t b, int64_t e) {
               for (int64_t p = b; p < e; ++p)
                 kernels::MaxPool2dPlaneBackward(oh * ow, argmax->data() + p * oh * ow,
                                                 g.data() + p * oh * ow, gx.data() + p * h * w);
             });
             in[0].AccumulateGrad(std::move(gx));
           });
  }
  return y;
}

Tensor CrossEntropy(const Tensor& logits, std::span<const int32_t> labels, float label_smoothing) {
  if (logits.ndim() != 2 || logits.size(0) != static_cast<int64_t>(labels.size()))
    throw std::invalid_argument("CrossEntropy: logits " + ShapeToString(logits.shape()) + " for " +
                                std::to_string(labels.size()) + " labels");
  const int64_t n = logits.size(0), k = logits.size(1);
  if (n == 0) throw std::invalid_argument("CrossEntropy of an empty batch");
  for (int32_t l : labels)
    if (l < 0 || l >= k)
      throw std::invalid_argument("CrossEntropy: label " + std::to_string(l) + " outside [0, " +
                                  std::to_string(k) + ")");
  if (!(label_smoothing >= 0.0f && label_smoothing <= 1.0f))
    throw std::invalid_argument("CrossEntropy: label_smoothing " + std::to_string(label_smoothing) +
                                " outside [0, 1]");
  // Fused log-softmax + NLL: stable, and backward is softmax - target, with
  // target = (1 - eps) * onehot + eps / k (it sums to 1). The loss per sample
  // is PyTorch's (1 - eps) * nll + eps * mean_over_classes(-logp).
  const double eps = label_smoothing;
  Tensor logp = Tensor::Empty(logits.shape());
  kernels::LogSoftmaxRows(n, k, logits.data(), logp.data());
  double total = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float* row = logp.data() + i * k;
    double nll = -row[labels[i]];
    if (eps != 0.0) {
      double all = 0;
      for (int64_t j = 0; j < k; ++j) all -= row[j];
      nll = (1.0 - eps) * nll + eps * all / static_cast<double>(k);
    }
    total += nll;
  }
  Tensor y = Tensor::Scalar(static_cast<float>(total / n));
  if (AnyRequiresGrad({&logits})) {
    std::vector<int32_t> lab(labels.begin(), labels.end());
    Record(y, "CrossEntropy", {logits},
           [logp, lab = std::move(lab), n, k, eps](std::vector<Tensor>& in, const Tensor& g) {
             const float scale = g.item() / static_cast<float>(n);
             const float uniform = static_cast<float>(eps / static_cast<double>(k)) * scale;
             const float hit = static_cast<float>(1.0 - eps) * scale;
             Tensor gx = Tensor::Empty(logp.shape());
             const float* lp = logp.data();
             float* out = gx.data();
             for (int64_t i = 0; i < n * k; ++i) out[i] = std::exp(lp[i]) * scale - uniform;
             for (int64_t i = 0; i < n; ++i) out[i * k + lab[i]] -= hit;
             in[0].AccumulateGrad(std::move(gx));
           });
  }
  return y;
}

Tensor MseLoss(const Tensor& pred, const Tensor& target) {
  if (pred.numel() != target.numel()) ShapeError("MseLoss", pred, target);
  Tensor diff = Tensor::Empty(pred.shape());
  kernels::Sub(pred.numel(), pred.data(), target.data(), diff.data());
  const float n = static_cast<float>(pred.numel());
  Tensor y = Tensor::Scalar(kernels::Dot(diff.numel(), diff.data(), diff.data()) / n);
  if (AnyRequiresGrad({&pred})) {
    Record(y, "MseLoss", {pred}, [diff, n](std::vector<Tensor>& in, const Tensor& g) {
      Tensor gx = Tensor::Empty(in[0].shape());
      kernels::AddScalarMul(diff.numel(), diff.data(), 2.0f * g.item() / n, gx.data());
      in[0].AccumulateGrad(std::move(gx));
    });
  }
  return y;
}

Tensor BceLoss(const Tensor& pred, const Tensor& target) {
  if (pred.numel() != target.numel()) ShapeError("BceLoss", pred, target);
  const int64_t n = pred.numel();
  double total = 0;
  const float* p = pred.data();
  const float* t = target.data();
  for (int64_t i = 0; i < n; ++i) {
    // PyTorch clamps each log at -100 so p = 0 or 1 gives a finite loss.
    double lp = std::max(std::log(static_cast<double>(p[i])), -100.0);
    double l1p = std::max(std::log1p(-static_cast<double>(p[i])), -100.0);
    total -= t[i] * lp + (1.0 - t[i]) * l1p;
  }
  Tensor y = Tensor::Scalar(static_cast<float>(total / n));
  if (AnyRequiresGrad({&pred})) {
    Tensor tgt = target.detach();
    Record(y, "BceLoss", {pred}, [tgt, n](std::vector<Tensor>& in, const Tensor& g) {
      const float scale = g.item() / static_cast<float>(n);
      Tensor gx = Tensor::Empty(in[0].shape());
      const float* p = in[0].data();
      const float* t = tgt.data();
      constexpr float kEps = 1e-12f;  // PyTorch's clamp of the denominator
      for (int64_t i = 0; i < n; ++i)
        gx.data()[i] = scale * (p[i] - t[i]) / std::max((1.0f - p[i]) * p[i], kEps);
      in[0].AccumulateGrad(std::move(gx));
    });
  }
  return y;
}

void RecordExternal(Tensor& out, const char* name, std::vector<Tensor> inputs,
                    std::function<void(std::vector<Tensor>&, const Tensor&)> backward) {
  Record(out, name, std::move(inputs), std::move(backward));
}

}  // namespace dnnd::ops
