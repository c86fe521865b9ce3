#include "tensor/kernels.h"

#include <cblas.h>

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "tensor/gemm.h"
#include "tensor/isa.h"
#include "tensor/parallel.h"

namespace dnnd::kernels {
namespace {

using Vec = Eigen::Map<Eigen::ArrayXf>;
using CVec = Eigen::Map<const Eigen::ArrayXf>;
using RowMajor = Eigen::Array<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Mat = Eigen::Map<RowMajor>;
using CMat = Eigen::Map<const RowMajor>;

Vec V(float* p, int64_t n) { return Vec(p, n); }
CVec V(const float* p, int64_t n) { return CVec(p, n); }

// Element-wise work on conv-sized tensors (~600k floats) is worth splitting;
// below this many elements the hand-off costs more than it saves.
constexpr int64_t kElementwiseGrain = 1 << 16;

// Runs body(offset, count) over [0, n) in parallel chunks.
template <typename Body>
void Elementwise(int64_t n, Body body) {
  if (n < 2 * kElementwiseGrain) {
    body(0, n);
    return;
  }
  ParallelFor(n, kElementwiseGrain, [&](int64_t b, int64_t e) { body(b, e - b); });
}

}  // namespace

namespace {
void GemmAt(bool bf16, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
            const float* a, const float* b, float beta, float* c) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (beta == 0.0f)
      Fill(c, m * n, 0.0f);
    else
      Scale(m * n, beta, c);
    return;
  }
  const int64_t lda = trans_a ? m : k;
  const int64_t ldb = trans_b ? k : n;
  // Read once per product: a switch (isa::Select) applies to later products.
  const bool own_kernel = isa::Current() == isa::KernelSet::kAvx512;
  auto call = [&](int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    // Sub-block C[m0:m1, n0:n1]: offset A's rows (or columns when transposed)
    // and B's columns (or rows when transposed); leading dimensions unchanged.
    const float* ap = trans_a ? a + m0 : a + m0 * lda;
    const float* bp = trans_b ? b + n0 * ldb : b + n0;
#if defined(__x86_64__)
    if (own_kernel) {
      internal::SgemmAvx512({trans_a, trans_b, m1 - m0, n1 - n0, k, alpha, ap, lda, bp, ldb, beta,
                             c + m0 * n + n0, n, bf16});
      return;
    }
#endif
    if (m1 - m0 == 1) {
      // One row of C (a batch of one: a prediction): sgemm would pack all of
      // B first, which cost 4x the product itself; a GEMV reads B once.
      // C[0, :] = op(B)^T . op(A)[0, :]; A's row is strided when transposed.
      const int inc_a = trans_a ? static_cast<int>(lda) : 1;
      if (trans_b)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(n1 - n0), static_cast<int>(k),
                    alpha, bp, static_cast<int>(ldb), ap, inc_a, beta, c + m0 * n + n0, 1);
      else
        cblas_sgemv(CblasRowMajor, CblasTrans, static_cast<int>(k), static_cast<int>(n1 - n0),
                    alpha, bp, static_cast<int>(ldb), ap, inc_a, beta, c + m0 * n + n0, 1);
      return;
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, static_cast<int>(m1 - m0),
                static_cast<int>(n1 - n0), static_cast<int>(k), alpha, ap, static_cast<int>(lda),
                bp, static_cast<int>(ldb), beta, c + m0 * n + n0, static_cast<int>(n));
  };
  // Split the larger output dimension across the pool when each part still
  // has enough work (~1 MFLOP) to amortise the hand-off: parts of at least 16
  // rows or columns, cut at whole tiles of our kernel (OpenBLAS: any row).
  const int threads = GetThreads();
  const double flops = 2.0 * m * n * k;
  auto split = [&](int64_t extent, int64_t unit, auto&& run) {
    const int64_t units = (extent + unit - 1) / unit;
    const int64_t grain = std::max<int64_t>((16 + unit - 1) / unit, units / threads);
    ParallelFor(units, grain,
                [&](int64_t u0, int64_t u1) { run(u0 * unit, std::min(extent, u1 * unit)); });
  };
  if (threads <= 1 || flops < 2e6 * threads) {
    call(0, m, 0, n);
  } else if (m >= n) {
    split(m, own_kernel ? internal::kAvx512TileRows : 1,
          [&](int64_t m0, int64_t m1) { call(m0, m1, 0, n); });
  } else {
    split(n, own_kernel ? internal::kAvx512TileCols : 1,
          [&](int64_t n0, int64_t n1) { call(0, m, n0, n1); });
  }
}
}  // namespace

void Gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          const float* b, float beta, float* c) {
  GemmAt(false, trans_a, trans_b, m, n, k, alpha, a, b, beta, c);
}

void LayerGemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
               const float* a, const float* b, float beta, float* c) {
  // Bf16Active() implies the avx512 set, so SgemmAvx512 is the kernel.
  GemmAt(isa::Bf16Active(), trans_a, trans_b, m, n, k, alpha, a, b, beta, c);
}

// The element-wise passes below run on conv-sized tensors in backward (a
// residual branch's gradient accumulation, a gradient scaled): in parallel,
// or a second thread waits through them.
void Axpy(int64_t n, float alpha, const float* x, float* y) {
  Elementwise(n, [&](int64_t o, int64_t c) { V(y + o, c) += alpha * V(x + o, c); });
}
void Scale(int64_t n, float alpha, float* x) {
  Elementwise(n, [&](int64_t o, int64_t c) { V(x + o, c) *= alpha; });
}
void Fill(float* x, int64_t n, float value) {
  Elementwise(n, [&](int64_t o, int64_t c) { V(x + o, c).setConstant(value); });
}
float Sum(int64_t n, const float* x) {
  // Pairwise-ish via Eigen's vectorised reduction; accumulate in double for
  // large n to keep losses over whole datasets accurate.
  if (n < (1 << 16)) return V(x, n).sum();
  double s = 0;
  for (int64_t i = 0; i < n; i += 1 << 16) s += V(x + i, std::min<int64_t>(1 << 16, n - i)).sum();
  return static_cast<float>(s);
}
float Dot(int64_t n, const float* x, const float* y) { return (V(x, n) * V(y, n)).sum(); }

void Add(int64_t n, const float* a, const float* b, float* out) {
  Elementwise(n, [&](int64_t o, int64_t c) { V(out + o, c) = V(a + o, c) + V(b + o, c); });
}
void Sub(int64_t n, const float* a, const float* b, float* out) {
  Elementwise(n, [&](int64_t o, int64_t c) { V(out + o, c) = V(a + o, c) - V(b + o, c); });
}
void Mul(int64_t n, const float* a, const float* b, float* out) {
  Elementwise(n, [&](int64_t o, int64_t c) { V(out + o, c) = V(a + o, c) * V(b + o, c); });
}
void MulAdd(int64_t n, const float* a, const float* b, float* out) {
  Elementwise(n, [&](int64_t o, int64_t c) { V(out + o, c) += V(a + o, c) * V(b + o, c); });
}
void AddScalarMul(int64_t n, const float* a, float s, float* out) {
  Elementwise(n, [&](int64_t o, int64_t c) { V(out + o, c) = s * V(a + o, c); });
}

void AddRowVector(int64_t rows, int64_t cols, const float* in, const float* row, float* out) {
  CVec r(row, cols);
  for (int64_t i = 0; i < rows; ++i) V(out + i * cols, cols) = V(in + i * cols, cols) + r;
}

void ColumnSum(int64_t rows, int64_t cols, const float* in, float* out, bool accumulate) {
  Vec o(out, cols);
  if (!accumulate) o.setZero();
  for (int64_t i = 0; i < rows; ++i) o += V(in + i * cols, cols);
}

void RowSum(int64_t rows, int64_t cols, const float* in, float* out, bool accumulate) {
  for (int64_t i = 0; i < rows; ++i) {
    float s = V(in + i * cols, cols).sum();
    out[i] = accumulate ? out[i] + s : s;
  }
}

void Relu(int64_t n, const float* x, float* y) {
  Elementwise(n, [&](int64_t o, int64_t c) { V(y + o, c) = V(x + o, c).max(0.0f); });
}
void AddRelu(int64_t n, const float* a, const float* b, float* out) {
  Elementwise(n,
              [&](int64_t o, int64_t c) { V(out + o, c) = (V(a + o, c) + V(b + o, c)).max(0.0f); });
}
namespace {
// A plain restrict-qualified loop with both loads unconditional: GCC then
// emits compare+blend. Eigen's select() and a conditional load both stayed
// scalar and branchy (mispredicted on ReLU's random signs): 17% of a CNN step.
__attribute__((noinline)) void ReluBackwardRange(int64_t n, const float* __restrict y,
                                                 const float* __restrict gy, float* __restrict gx) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gy[i];  // loaded unconditionally, so the select vectorises
    gx[i] = y[i] > 0.0f ? g : 0.0f;
  }
}
}  // namespace

void ReluBackward(int64_t n, const float* y, const float* gy, float* gx) {
  Elementwise(n, [&](int64_t o, int64_t c) { ReluBackwardRange(c, y + o, gy + o, gx + o); });
}
void Sigmoid(int64_t n, const float* x, float* y) {
  Elementwise(n, [&](int64_t o, int64_t c) { V(y + o, c) = 1.0f / (1.0f + (-V(x + o, c)).exp()); });
}
void SigmoidBackward(int64_t n, const float* y, const float* gy, float* gx) {
  Elementwise(n, [&](int64_t o, int64_t c) {
    V(gx + o, c) = V(gy + o, c) * V(y + o, c) * (1.0f - V(y + o, c));
  });
}
void Tanh(int64_t n, const float* x, float* y) {
  Elementwise(n, [&](int64_t o, int64_t c) { V(y + o, c) = V(x + o, c).tanh(); });
}
void TanhBackward(int64_t n, const float* y, const float* gy, float* gx) {
  Elementwise(n, [&](int64_t o, int64_t c) {
    V(gx + o, c) = V(gy + o, c) * (1.0f - V(y + o, c).square());
  });
}

void SoftmaxRows(int64_t rows, int64_t cols, const float* x, float* y) {
  for (int64_t i = 0; i < rows; ++i) {
    CVec in(x + i * cols, cols);
    Vec out(y + i * cols, cols);
    out = (in - in.maxCoeff()).exp();
    out /= out.sum();
  }
}

void LogSoftmaxRows(int64_t rows, int64_t cols, const float* x, float* y) {
  for (int64_t i = 0; i < rows; ++i) {
    CVec in(x + i * cols, cols);
    Vec out(y + i * cols, cols);
    float mx = in.maxCoeff();
    float lse = mx + std::log((in - mx).exp().sum());
    out = in - lse;
  }
}

void Im2Col(const Conv2dGeometry& g, const float* image, float* cols, int64_t ld) {
  const int64_t oh = g.out_h(), ow = g.out_w();
  for (int64_t c = 0; c < g.channels; ++c) {
    const float* plane = image + c * g.height * g.width;
    for (int64_t ky = 0; ky < g.kernel_h; ++ky) {
      for (int64_t kx = 0; kx < g.kernel_w; ++kx) {
        float* row = cols + ((c * g.kernel_h + ky) * g.kernel_w + kx) * ld;
        for (int64_t oy = 0; oy < oh; ++oy) {
          const int64_t iy = oy * g.stride - g.padding + ky;
          float* dst = row + oy * ow;
          if (iy < 0 || iy >= g.height) {
            std::memset(dst, 0, sizeof(float) * ow);
            continue;
          }
          const float* src = plane + iy * g.width;
          if (g.stride == 1) {
            // Contiguous run: zero the padded ends, copy the middle.
            const int64_t shift = kx - g.padding;
            const int64_t lo = std::max<int64_t>(0, -shift);
            const int64_t hi = std::min<int64_t>(ow, g.width - shift);
            if (lo > 0) std::memset(dst, 0, sizeof(float) * std::min(lo, ow));
            if (hi > lo) std::memcpy(dst + lo, src + lo + shift, sizeof(float) * (hi - lo));
            if (hi < ow)
              std::memset(dst + std::max(hi, lo), 0, sizeof(float) * (ow - std::max(hi, lo)));
          } else {
            for (int64_t ox = 0; ox < ow; ++ox) {
              const int64_t ix = ox * g.stride - g.padding + kx;
              dst[ox] = (ix >= 0 && ix < g.width) ? src[ix] : 0.0f;
            }
          }
        }
      }
    }
  }
}

void Col2Im(const Conv2dGeometry& g, const float* cols, int64_t ld, float* image) {
  const int64_t oh = g.out_h(), ow = g.out_w();
  for (int64_t c = 0; c < g.channels; ++c) {
    float* plane = image + c * g.height * g.width;
    for (int64_t ky = 0; ky < g.kernel_h; ++ky) {
      for (int64_t kx = 0; kx < g.kernel_w; ++kx) {
        const float* row = cols + ((c * g.kernel_h + ky) * g.kernel_w + kx) * ld;
        for (int64_t oy = 0; oy < oh; ++oy) {
          const int64_t iy = oy * g.stride - g.padding + ky;
          if (iy < 0 || iy >= g.height) continue;
          float* dst = plane + iy * g.width;
          const float* src = row + oy * ow;
          for (int64_t ox = 0; ox < ow; ++ox) {
            const int64_t ix = ox * g.stride - g.padding + kx;
            if (ix >= 0 && ix < g.width) dst[ix] += src[ox];
          }
        }
      }
    }
  }
}

void MaxPool2dPlane(int64_t h, int64_t w, int64_t k, int64_t stride, int64_t padding,
                    const float* in, float* out, int32_t* argmax) {
  const int64_t oh = PoolOut(h, k, stride, padding), ow = PoolOut(w, k, stride, padding);
  if (k == 2 && stride == 2 && padding == 0) {
    // The common 2x2 case, branch-free. NaN handling as PyTorch: a NaN wins
    // (x != x is true only for NaN).
    for (int64_t oy = 0; oy < oh; ++oy) {
      const float* r0 = in + 2 * oy * w;
      const float* r1 = r0 + w;
      for (int64_t ox = 0; ox < ow; ++ox) {
        const int64_t i0 = 2 * oy * w + 2 * ox;
        float best = r0[2 * ox];
        int32_t bi = static_cast<int32_t>(i0);
        const float c1 = r0[2 * ox + 1], c2 = r1[2 * ox], c3 = r1[2 * ox + 1];
        bool t;
        t = c1 > best || c1 != c1;
        best = t ? c1 : best;
        bi = t ? static_cast<int32_t>(i0 + 1) : bi;
        t = c2 > best || c2 != c2;
        best = t ? c2 : best;
        bi = t ? static_cast<int32_t>(i0 + w) : bi;
        t = c3 > best || c3 != c3;
        best = t ? c3 : best;
        bi = t ? static_cast<int32_t>(i0 + w + 1) : bi;
        out[oy * ow + ox] = best;
        argmax[oy * ow + ox] = bi;
      }
    }
    return;
  }
  // General case: the window clipped to the plane (padding is -inf, so it
  // never wins); the first maximum in row-major order wins ties, and the
  // initial index is the window's first input element, as in PyTorch.
  for (int64_t oy = 0; oy < oh; ++oy) {
    const int64_t y0 = oy * stride - padding;
    const int64_t ylo = std::max<int64_t>(y0, 0), yhi = std::min(y0 + k, h);
    for (int64_t ox = 0; ox < ow; ++ox) {
      const int64_t x0 = ox * stride - padding;
      const int64_t xlo = std::max<int64_t>(x0, 0), xhi = std::min(x0 + k, w);
      float best = -std::numeric_limits<float>::infinity();
      int32_t best_i = static_cast<int32_t>(ylo * w + xlo);
      for (int64_t iy = ylo; iy < yhi; ++iy) {
        for (int64_t ix = xlo; ix < xhi; ++ix) {
          const int32_t idx = static_cast<int32_t>(iy * w + ix);
          // Branch-free (a data-dependent branch mispredicts on every new
          // maximum). NaN propagates like PyTorch: a NaN input wins.
          const float v = in[idx];
          const bool t = v > best || v != v;
          best = t ? v : best;
          best_i = t ? idx : best_i;
        }
      }
      out[oy * ow + ox] = best;
      argmax[oy * ow + ox] = best_i;
    }
  }
}

void MaxPool2dPlaneBackward(int64_t out_n, const int32_t* argmax, const float* gy, float* gx) {
  for (int64_t i = 0; i < out_n; ++i) gx[argmax[i]] += gy[i];
}

void AvgPool2dPlane(int64_t h, int64_t w, int64_t k, int64_t stride, int64_t padding,
                    const float* in, float* out) {
  const int64_t oh = PoolOut(h, k, stride, padding), ow = PoolOut(w, k, stride, padding);
  // count_include_pad: in floor mode a window never leaves the padded plane,
  // so every divisor is k * k even where the window is clipped.
  const float inv = 1.0f / static_cast<float>(k * k);
  for (int64_t oy = 0; oy < oh; ++oy) {
    const int64_t y0 = oy * stride - padding;
    const int64_t ylo = std::max<int64_t>(y0, 0), yhi = std::min(y0 + k, h);
    for (int64_t ox = 0; ox < ow; ++ox) {
      const int64_t x0 = ox * stride - padding;
      const int64_t xlo = std::max<int64_t>(x0, 0), xhi = std::min(x0 + k, w);
      float s = 0.0f;
      for (int64_t iy = ylo; iy < yhi; ++iy)
        for (int64_t ix = xlo; ix < xhi; ++ix) s += in[iy * w + ix];
      out[oy * ow + ox] = s * inv;
    }
  }
}

void AvgPool2dPlaneBackward(int64_t h, int64_t w, int64_t k, int64_t stride, int64_t padding,
                            const float* gy, float* gx) {
  const int64_t oh = PoolOut(h, k, stride, padding), ow = PoolOut(w, k, stride, padding);
  const float inv = 1.0f / static_cast<float>(k * k);
  for (int64_t oy = 0; oy < oh; ++oy) {
    const int64_t y0 = oy * stride - padding;
    const int64_t ylo = std::max<int64_t>(y0, 0), yhi = std::min(y0 + k, h);
    for (int64_t ox = 0; ox < ow; ++ox) {
      const int64_t x0 = ox * stride - padding;
      const int64_t xlo = std::max<int64_t>(x0, 0), xhi = std::min(x0 + k, w);
      const float g = gy[oy * ow + ox] * inv;
      for (int64_t iy = ylo; iy < yhi; ++iy)
        for (int64_t ix = xlo; ix < xhi; ++ix) gx[iy * w + ix] += g;
    }
  }
}

namespace {

// Optimiser updates stream several arrays the size of the model through
// memory; splitting them across the pool nearly halves a step's non-GEMM time.
constexpr int64_t kUpdateGrain = 1 << 15;

void SgdChunk(int64_t n, float* w, const float* g, float* buf, float lr, float momentum,
              float dampening, float weight_decay, bool nesterov, bool first_step) {
  Vec W(w, n);
  CVec G(g, n);
  if (momentum == 0.0f) {
    if (weight_decay != 0.0f)
      W -= lr * (G + weight_decay * W);
    else
      W -= lr * G;
    return;
  }
  Vec B(buf, n);
  // d = g + wd*w; buf = first ? d : momentum*buf + (1-dampening)*d
  if (first_step)
    B = G + weight_decay * W;
  else
    B = momentum * B + (1.0f - dampening) * (G + weight_decay * W);
  if (nesterov)
    W -= lr * ((G + weight_decay * W) + momentum * B);
  else
    W -= lr * B;
}

void AdamChunk(int64_t n, float* w, const float* g, float* m, float* v, float lr, float beta1,
               float beta2, float eps, float weight_decay, bool decoupled, float bc1, float bc2) {
  Vec W(w, n), M(m, n), Vv(v, n);
  CVec G(g, n);
  const float step_size = lr / bc1;
  const float inv_sqrt_bc2 = 1.0f / std::sqrt(bc2);
  if (decoupled) {
    if (weight_decay != 0.0f) W *= 1.0f - lr * weight_decay;
    M = beta1 * M + (1.0f - beta1) * G;
    Vv = beta2 * Vv + (1.0f - beta2) * G.square();
  } else if (weight_decay != 0.0f) {
    M = beta1 * M + (1.0f - beta1) * (G + weight_decay * W);
    Vv = beta2 * Vv + (1.0f - beta2) * (G + weight_decay * W).square();
  } else {
    M = beta1 * M + (1.0f - beta1) * G;
    Vv = beta2 * Vv + (1.0f - beta2) * G.square();
  }
  W -= step_size * M / (Vv.sqrt() * inv_sqrt_bc2 + eps);
}

}  // namespace

void SgdUpdate(int64_t n, float* w, const float* g, float* buf, float lr, float momentum,
               float dampening, float weight_decay, bool nesterov, bool first_step) {
  ParallelFor(n, kUpdateGrain, [&](int64_t b, int64_t e) {
    SgdChunk(e - b, w + b, g + b, buf ? buf + b : nullptr, lr, momentum, dampening, weight_decay,
             nesterov, first_step);
  });
}

void AdamUpdate(int64_t n, float* w, const float* g, float* m, float* v, float lr, float beta1,
                float beta2, float eps, float weight_decay, bool decoupled, int64_t step) {
  const float bc1 = 1.0f - std::pow(beta1, static_cast<float>(step));
  const float bc2 = 1.0f - std::pow(beta2, static_cast<float>(step));
  ParallelFor(n, kUpdateGrain, [&](int64_t b, int64_t e) {
    AdamChunk(e - b, w + b, g + b, m + b, v + b, lr, beta1, beta2, eps, weight_decay, decoupled,
              bc1, bc2);
  });
}

}  // namespace dnnd::kernels
