// Kernels of the layers real models need beyond an MLP/LeNet: LeakyReLU, GELU,
// batch and layer normalisation (declared in kernels.h).
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <vector>

#include "tensor/isa.h"
#include "tensor/kernels.h"
#include "tensor/norm_simd.h"
#include "tensor/parallel.h"

namespace dnnd::kernels {

const internal::NormIsa* internal::CurrentNorm() {
#if defined(__x86_64__)
  // Built once: isa::AvailableSets() lists a set only once the CPU has it.
  static const NormIsa avx512 = Avx512Norm(), avx2 = Avx2Norm();
  switch (isa::Current()) {
    case isa::KernelSet::kAvx512:
      return &avx512;
    case isa::KernelSet::kAvx2:
      return &avx2;
    case isa::KernelSet::kPortable:
      break;
  }
#endif
  return nullptr;
}

namespace {

using Vec = Eigen::Map<Eigen::ArrayXf>;
using CVec = Eigen::Map<const Eigen::ArrayXf>;

// As in kernels.cc: below this many elements a parallel hand-off costs more
// than it saves.
constexpr int64_t kElementwiseGrain = 1 << 16;

template <typename Body>
void Elementwise(int64_t n, Body body) {
  if (n < 2 * kElementwiseGrain) {
    body(0, n);
    return;
  }
  ParallelFor(n, kElementwiseGrain, [&](int64_t b, int64_t e) { body(b, e - b); });
}

// Channels (or rows) per parallel chunk so that a chunk holds at least
// kElementwiseGrain elements: a [128, 512] batch norm (64k elements, ~50 us)
// runs inline, a [128, 64, 7, 7] one splits.
int64_t ChannelGrain(int64_t per_channel) {
  return std::max<int64_t>(1, kElementwiseGrain / std::max<int64_t>(1, per_channel));
}

// Calls fn(offset, length) over [0, len) in blocks: Eigen's float reduction
// of a long run (a 224x224 plane) would lose digits, so runs are summed in
// blocks folded into double.
constexpr int64_t kSumBlock = internal::kNormSumBlock;
template <typename Fn>
void ForBlocks(int64_t len, Fn fn) {
  for (int64_t o = 0; o < len; o += kSumBlock) fn(o, std::min(kSumBlock, len - o));
}

// Runs fn(chunk, begin, end) over [0, n) in a fixed split of GetThreads()
// chunks (at least `grain` items each), so per-chunk partial sums can be
// folded in chunk order: results do not depend on thread timing.
template <typename Fn>
int64_t FixedChunks(int64_t n, int64_t grain, Fn fn) {
  const int64_t chunks =
      std::max<int64_t>(1, std::min<int64_t>(GetThreads(), n / std::max<int64_t>(1, grain)));
  const int64_t per = (n + chunks - 1) / chunks;
  ParallelFor(chunks, 1, [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) fn(k, k * per, std::min(n, (k + 1) * per));
  });
  return chunks;
}

__attribute__((noinline)) void LeakyReluRange(int64_t n, const float* __restrict x, float slope,
                                              float* __restrict y) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.0f ? x[i] : x[i] * slope;
}

__attribute__((noinline)) void LeakyReluBackwardRange(int64_t n, const float* __restrict x,
                                                      float slope, const float* __restrict gy,
                                                      float* __restrict gx) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gy[i];  // unconditional loads: the select vectorises
    gx[i] = x[i] > 0.0f ? g : g * slope;
  }
}

constexpr float kSqrtHalf = 0.70710678118654752440f;    // 1 / sqrt(2)
constexpr float kInvSqrt2Pi = 0.39894228040143267794f;  // 1 / sqrt(2 pi)

}  // namespace

void LeakyRelu(int64_t n, const float* x, float slope, float* y) {
  Elementwise(n, [&](int64_t o, int64_t c) { LeakyReluRange(c, x + o, slope, y + o); });
}

void LeakyReluBackward(int64_t n, const float* x, float slope, const float* gy, float* gx) {
  Elementwise(
      n, [&](int64_t o, int64_t c) { LeakyReluBackwardRange(c, x + o, slope, gy + o, gx + o); });
}

void Gelu(int64_t n, const float* x, float* y) {
  Elementwise(n, [&](int64_t o, int64_t c) {
    for (int64_t i = o; i < o + c; ++i) y[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * kSqrtHalf));
  });
}

void GeluBackward(int64_t n, const float* x, const float* gy, float* gx) {
  Elementwise(n, [&](int64_t o, int64_t c) {
    for (int64_t i = o; i < o + c; ++i) {
      const float cdf = 0.5f * (1.0f + std::erf(x[i] * kSqrtHalf));
      const float pdf = kInvSqrt2Pi * std::exp(-0.5f * x[i] * x[i]);
      gx[i] = gy[i] * (cdf + x[i] * pdf);
    }
  });
}

// Batch norm has two layouts. With plane > 1 ([n, c, h, w]) each channel is
// n contiguous runs of `plane` floats: a chunk handles whole channels one at a
// time; forward reads a channel once for its statistics and once to write the
// output (from cache when the channel fits), backward once for its sums and
// once for dx. Sums within a run are Eigen float reductions of up to 1024
// elements, folded into double. With plane == 1 ([n, c]) a channel is a strided column: a
// chunk handles a range of columns row by row, which vectorises across
// channels (mean, then deviations, then output).

void BatchNormTrainForward(int64_t n, int64_t c, int64_t plane, const float* x, const float* weight,
                           const float* bias, float eps, bool relu, float* y, float* mean,
                           float* var, float* invstd) {
  const int64_t stride = c * plane;
  const double m = static_cast<double>(n * plane);
  if (plane > 1) {
    const internal::NormIsa* simd = internal::CurrentNorm();
    const internal::NormChannel run{n, plane, stride};
    ParallelFor(c, ChannelGrain(n * plane), [&](int64_t cb, int64_t ce) {
      for (int64_t ch = cb; ch < ce; ++ch) {
        const float* xc = x + ch * plane;
        // One pass over memory for the statistics, on data shifted by k, the
        // channel's first run's mean: deviations from a value near the mean
        // are small, so their float sums keep their digits far from zero
        // (sum of squares minus squared mean of raw x would not), and the
        // mean's offset from k is corrected exactly from s1.
        const float k =
            (simd ? simd->run_sum(xc, plane) : CVec(xc, plane).sum()) / static_cast<float>(plane);
        double s1 = 0, s2 = 0;
        if (simd) {
          simd->stats(run, xc, k, &s1, &s2);
        } else {
          for (int64_t i = 0; i < n; ++i)
            ForBlocks(plane, [&](int64_t o, int64_t len) {
              CVec seg(xc + i * stride + o, len);
              const auto d = seg - k;  // an expression over seg, evaluated twice
              s1 += d.sum();
              s2 += d.square().sum();
            });
        }
        const double shift_mean = s1 / m;
        const float mu = static_cast<float>(k + shift_mean);
        const double v = std::max(0.0, s2 / m - shift_mean * shift_mean);
        mean[ch] = mu;
        var[ch] = static_cast<float>(v);
        invstd[ch] = static_cast<float>(1.0 / std::sqrt(v + eps));
        const float scale = weight ? weight[ch] * invstd[ch] : invstd[ch];
        const float shift = bias ? bias[ch] : 0.0f;
        float* yc = y + ch * plane;
        if (simd) {
          simd->normalize(run, xc, mu, scale, shift, relu, yc);
          continue;
        }
        for (int64_t i = 0; i < n; ++i) {
          const auto out = (CVec(xc + i * stride, plane) - mu) * scale + shift;
          if (relu)  // as kernels::Relu would on the output
            Vec(yc + i * stride, plane) = out.max(0.0f);
          else
            Vec(yc + i * stride, plane) = out;
        }
      }
    });
    return;
  }
  ParallelFor(c, ChannelGrain(n), [&](int64_t cb, int64_t ce) {
    const int64_t w = ce - cb;
    std::vector<double> acc(w, 0.0);
    for (int64_t i = 0; i < n; ++i) {
      const float* row = x + i * c + cb;
      for (int64_t j = 0; j < w; ++j) acc[j] += row[j];
    }
    std::vector<float> mu(w), scale(w), shift(w);
    for (int64_t j = 0; j < w; ++j) mu[j] = static_cast<float>(acc[j] / m);
    std::fill(acc.begin(), acc.end(), 0.0);
    for (int64_t i = 0; i < n; ++i) {
      const float* row = x + i * c + cb;
      for (int64_t j = 0; j < w; ++j) {
        const double d = row[j] - mu[j];
        acc[j] += d * d;
      }
    }
    for (int64_t j = 0; j < w; ++j) {
      const double v = acc[j] / m;
      mean[cb + j] = mu[j];
      var[cb + j] = static_cast<float>(v);
      invstd[cb + j] = static_cast<float>(1.0 / std::sqrt(v + eps));
      scale[j] = weight ? weight[cb + j] * invstd[cb + j] : invstd[cb + j];
      shift[j] = bias ? bias[cb + j] : 0.0f;
    }
    for (int64_t i = 0; i < n; ++i) {
      const float* row = x + i * c + cb;
      float* out = y + i * c + cb;
      for (int64_t j = 0; j < w; ++j) out[j] = (row[j] - mu[j]) * scale[j] + shift[j];
      if (relu) Vec(out, w) = Vec(out, w).max(0.0f);
    }
  });
}

void ChannelAffine(int64_t n, int64_t c, int64_t plane, const float* x, const float* scale,
                   const float* shift, float* y) {
  const int64_t rows = n * c;  // (sample, channel) runs of `plane` floats
  if (plane > 1) {
    ParallelFor(rows, ChannelGrain(plane), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const int64_t ch = r % c;
        Vec(y + r * plane, plane) =
            CVec(x + r * plane, plane) * scale[ch] + (shift ? shift[ch] : 0.0f);
      }
    });
    return;
  }
  ParallelFor(n, ChannelGrain(c), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      if (shift)
        Vec(y + i * c, c) = CVec(x + i * c, c) * CVec(scale, c) + CVec(shift, c);
      else
        Vec(y + i * c, c) = CVec(x + i * c, c) * CVec(scale, c);
    }
  });
}

namespace {

// One channel of BatchNormBackward with [n, c, plane] layout. With a fused
// ReLU (yc not null) the gradient reaching the batch norm is ReLU's backward
// of g, computed block by block into a buffer (for the sums) and into dx
// itself (for dx, then updated in place).
void BatchNormBackwardChannel(int64_t n, int64_t plane, int64_t stride, const float* xc,
                              const float* gc, const float* yc, float mu, float is, float k,
                              float shift, double m, bool need_sums, bool batch_stats, float* dc,
                              float* dweight, float* dbias) {
  double sg = 0, sgx = 0;
  const internal::NormIsa* simd = internal::CurrentNorm();
  const internal::NormChannel run{n, plane, stride};
  // With batch statistics the vector kernels wrote yc as max(fma(x - mu, k,
  // shift), 0) (k = weight * invstd, the forward's scale): its mask is
  // recomputed from x, which both passes read anyway.
  internal::NormRelu relu;
  if (yc && batch_stats)
    relu = {nullptr, true, k, shift};
  else
    relu.y = yc;
  if (need_sums && simd) {
    simd->backward_sums(run, xc, gc, relu, mu, &sg, &sgx);
  } else if (need_sums) {
    float masked[kSumBlock];
    for (int64_t i = 0; i < n; ++i)
      ForBlocks(plane, [&](int64_t o, int64_t len) {
        const float* g = gc + i * stride + o;
        if (yc) g = (ReluBackward(len, yc + i * stride + o, g, masked), masked);
        CVec gi(g, len);
        sg += gi.sum();
        sgx += (gi * (CVec(xc + i * stride + o, len) - mu)).sum();
      });
  }
  if (dweight) *dweight = static_cast<float>(is * sgx);
  if (dbias) *dbias = static_cast<float>(sg);
  if (!dc) return;
  const float a = batch_stats ? static_cast<float>(sg / m) : 0.0f;
  const float b = batch_stats ? static_cast<float>(double(is) * is * sgx / m) : 0.0f;
  if (simd) {
    simd->backward_dx(run, xc, gc, relu, mu, k, a, b, batch_stats, dc);
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    const float* g = gc + i * stride;
    float* d = dc + i * stride;
    if (yc) {  // in blocks: ReluBackward below its parallel grain runs inline
      ForBlocks(plane, [&](int64_t o, int64_t len) {
        ReluBackward(len, yc + i * stride + o, g + o, d + o);
      });
      g = d;
    }
    if (batch_stats)
      Vec(d, plane) = k * (CVec(g, plane) - a - (CVec(xc + i * stride, plane) - mu) * b);
    else
      Vec(d, plane) = k * CVec(g, plane);
  }
}

}  // namespace

void BatchNormBackward(int64_t n, int64_t c, int64_t plane, const float* x, const float* g,
                       const float* relu_y, const float* mean, const float* invstd,
                       const float* weight, const float* bias, bool batch_stats, float* dx,
                       float* dweight, float* dbias) {
  const int64_t stride = c * plane;
  const double m = static_cast<double>(n * plane);
  // The sums are needed for the parameter gradients and for dx with batch
  // statistics (the mean and variance depend on every x).
  const bool need_sums = dweight || dbias || (dx && batch_stats);
  if (plane > 1) {
    ParallelFor(c, ChannelGrain(n * plane), [&](int64_t cb, int64_t ce) {
      for (int64_t ch = cb; ch < ce; ++ch) {
        const float is = invstd[ch];
        const float k = weight ? weight[ch] * is : is;
        float* dc = dx ? dx + ch * plane : nullptr;
        float* dw = dweight ? dweight + ch : nullptr;
        float* db = dbias ? dbias + ch : nullptr;
        BatchNormBackwardChannel(n, plane, stride, x + ch * plane, g + ch * plane,
                                 relu_y ? relu_y + ch * plane : nullptr, mean[ch], is, k,
                                 bias ? bias[ch] : 0.0f, m, need_sums, batch_stats, dc, dw, db);
      }
    });
    return;
  }
  // The ReLU-masked gradient of element (i, j) of a [n, c] batch.
  auto grad = [&](int64_t i, int64_t j) {
    return relu_y && !(relu_y[i * c + j] > 0.0f) ? 0.0f : g[i * c + j];
  };
  ParallelFor(c, ChannelGrain(n), [&](int64_t cb, int64_t ce) {
    const int64_t w = ce - cb;
    std::vector<double> sg(w, 0.0), sgx(w, 0.0);
    if (need_sums) {
      for (int64_t i = 0; i < n; ++i) {
        const float* xr = x + i * c + cb;
        for (int64_t j = 0; j < w; ++j) {
          const float gv = grad(i, cb + j);
          sg[j] += gv;
          sgx[j] += double(gv) * (xr[j] - mean[cb + j]);
        }
      }
    }
    std::vector<float> k(w), a(w), b(w);
    for (int64_t j = 0; j < w; ++j) {
      const float is = invstd[cb + j];
      if (dweight) dweight[cb + j] = static_cast<float>(is * sgx[j]);
      if (dbias) dbias[cb + j] = static_cast<float>(sg[j]);
      k[j] = weight ? weight[cb + j] * is : is;
      a[j] = batch_stats ? static_cast<float>(sg[j] / m) : 0.0f;
      b[j] = batch_stats ? static_cast<float>(double(is) * is * sgx[j] / m) : 0.0f;
    }
    if (!dx) return;
    for (int64_t i = 0; i < n; ++i) {
      const float* xr = x + i * c + cb;
      float* out = dx + i * c + cb;
      for (int64_t j = 0; j < w; ++j)
        out[j] = k[j] * (grad(i, cb + j) - a[j] - (xr[j] - mean[cb + j]) * b[j]);
    }
  });
}

void LayerNormForward(int64_t rows, int64_t cols, const float* x, const float* weight,
                      const float* bias, float eps, float* y, float* mean, float* invstd) {
  ParallelFor(rows, ChannelGrain(cols), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      CVec xr(x + r * cols, cols);
      const float mu = static_cast<float>(xr.cast<double>().sum() / cols);
      const double v = (xr - mu).cast<double>().square().sum() / cols;
      const float is = static_cast<float>(1.0 / std::sqrt(v + eps));
      mean[r] = mu;
      invstd[r] = is;
      Vec yr(y + r * cols, cols);
      yr = (xr - mu) * is;
      if (weight) yr *= CVec(weight, cols);
      if (bias) yr += CVec(bias, cols);
    }
  });
}

void LayerNormBackward(int64_t rows, int64_t cols, const float* x, const float* g,
                       const float* mean, const float* invstd, const float* weight, float* dx,
                       float* dweight, float* dbias) {
  const bool params = dweight || dbias;
  // Per-chunk partial parameter sums, folded in chunk order afterwards.
  std::vector<std::vector<float>> pw(GetThreads()), pb(GetThreads());
  const int64_t chunks =
      FixedChunks(rows, ChannelGrain(cols), [&](int64_t k, int64_t b, int64_t e) {
        Eigen::ArrayXf xhat(cols), gh(cols);
        if (params) {
          pw[k].assign(dweight ? cols : 0, 0.0f);
          pb[k].assign(dbias ? cols : 0, 0.0f);
        }
        for (int64_t r = b; r < e; ++r) {
          CVec gr(g + r * cols, cols);
          xhat = (CVec(x + r * cols, cols) - mean[r]) * invstd[r];
          if (dweight) Vec(pw[k].data(), cols) += gr * xhat;
          if (dbias) Vec(pb[k].data(), cols) += gr;
          if (!dx) continue;
          if (weight)
            gh = gr * CVec(weight, cols);
          else
            gh = gr;
          const float a = static_cast<float>(gh.cast<double>().sum() / cols);
          const float bb = static_cast<float>((gh * xhat).cast<double>().sum() / cols);
          Vec(dx + r * cols, cols) = invstd[r] * (gh - a - xhat * bb);
        }
      });
  for (int64_t k = 0; k < chunks; ++k) {
    if (dweight) Vec(dweight, cols) += Vec(pw[k].data(), cols);
    if (dbias) Vec(dbias, cols) += Vec(pb[k].data(), cols);
  }
}

}  // namespace dnnd::kernels
