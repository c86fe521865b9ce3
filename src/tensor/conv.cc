#include "tensor/conv.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#include "tensor/isa.h"
#include "tensor/kernels.h"
#include "tensor/parallel.h"

namespace dnnd::conv {
namespace {

using internal::GemmArgs;
using internal::Isa;

// --- instruction-set dispatch ------------------------------------------------
// Which kernel set runs is tensor/isa.h's one setting (shared with GEMM); this
// maps each set to convolution's kernels.

Isa RecordFor(isa::KernelSet set) {
#if defined(__x86_64__)
  // Avx512Isa()/Avx2Isa() are compiled for their instruction set: isa.h lists
  // a set only once the CPU is known to have it.
  if (set == isa::KernelSet::kAvx512) return internal::Avx512Isa();
  if (set == isa::KernelSet::kAvx2) return internal::Avx2Isa();
#endif
  return Isa{"portable", 0, 0, nullptr, nullptr, nullptr, 1};
}

// One record per isa::AvailableSets() entry, in the same order.
struct Dispatch {
  std::vector<Isa> all;
  Dispatch() {
    for (isa::KernelSet set : isa::AvailableSets()) all.push_back(RecordFor(set));
  }
};

Dispatch& GetDispatch() {
  static Dispatch* d = new Dispatch;  // leaked: used by static tensors' users
  return *d;
}

Isa CurrentIsaRecord() {
  const Dispatch& d = GetDispatch();
  const std::vector<isa::KernelSet>& sets = isa::AvailableSets();
  const isa::KernelSet current = isa::Current();
  for (size_t i = 0; i < sets.size(); ++i)
    if (sets[i] == current) return d.all[i];
  return d.all.back();  // unreachable: isa::Current() is always available
}

// --- helpers -------------------------------------------------------------------

int64_t RoundUp(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Per-thread scratch, reused across calls (a training step calls conv dozens
// of times with the same sizes).
struct Scratch {
  std::vector<float> cols, aux;
  std::vector<int64_t> col_off;
};
Scratch& ThreadScratch() {
  thread_local Scratch s;
  return s;
}
float* Grow(std::vector<float>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
  return v.data();
}

kernels::Conv2dGeometry GroupGeometry(const Params& p) {
  return {p.c / p.groups, p.h, p.w, p.kh, p.kw, p.stride, p.padding};
}

// Samples per chunk for the tile kernel: the chunk's cols (K x pixels) stay
// within ~512 KB (L2), and among the sizes that fit, the one wasting the least
// of the last column tile; at least one chunk per thread.
int64_t TileChunk(const Params& p, int64_t k, int64_t nr) {
  const int64_t plane = p.oh() * p.ow();
  const int64_t max_px = std::max<int64_t>(plane, (512 << 10) / 4 / k);
  int64_t cap = std::clamp<int64_t>(max_px / plane, 1, p.n);
  cap = std::min(cap, std::max<int64_t>(1, (p.n + GetThreads() - 1) / GetThreads()));
  int64_t best = 1;
  double best_eff = 0;
  for (int64_t gs = 1; gs <= cap; ++gs) {
    const double eff = double(gs * plane) / double(RoundUp(gs * plane, nr));
    if (eff >= best_eff - 1e-9) best = gs, best_eff = std::max(best_eff, eff);
  }
  return best;
}

// A = w's rows of group g, packed [ocg/mr][K][mr] (rows past ocg zero).
std::vector<float> PackWeights(const Params& p, const float* w, int mr) {
  const int64_t ocg = p.oc / p.groups, k = (p.c / p.groups) * p.kh * p.kw;
  const int64_t mp = RoundUp(ocg, mr);
  std::vector<float> a(static_cast<size_t>(p.groups * mp * k), 0.0f);
  for (int64_t g = 0; g < p.groups; ++g)
    for (int64_t i = 0; i < ocg; ++i) {
      const float* src = w + (g * ocg + i) * k;
      float* dst = a.data() + g * mp * k + (i / mr) * k * mr + i % mr;
      for (int64_t j = 0; j < k; ++j) dst[j * mr] = src[j];
    }
  return a;
}

// Forward on the tile kernel.
void ForwardTiles(const Isa& isa, const Params& p, const float* x, const float* w, const float* b,
                  float* y) {
  const int64_t cg = p.c / p.groups, ocg = p.oc / p.groups;
  const int64_t k = cg * p.kh * p.kw, plane = p.oh() * p.ow();
  const int64_t in_sample = p.c * p.h * p.w, mp = RoundUp(ocg, isa.mr);
  const kernels::Conv2dGeometry geo = GroupGeometry(p);
  const std::vector<float> a = PackWeights(p, w, isa.mr);
  const int64_t gs = TileChunk(p, k, isa.nr);
  const int64_t chunks = (p.n + gs - 1) / gs;
  ParallelFor(chunks, 1, [&](int64_t cb, int64_t ce) {
    Scratch& s = ThreadScratch();
    const int64_t ldb = RoundUp(gs * plane, isa.nr);
    float* cols = Grow(s.cols, k * ldb);
    s.col_off.resize(static_cast<size_t>(gs * plane));
    for (int64_t j = 0; j < gs * plane; ++j) s.col_off[j] = (j / plane) * p.oc * plane + j % plane;
    for (int64_t c = cb; c < ce; ++c) {
      const int64_t s0 = c * gs, cnt = std::min(gs, p.n - s0), px = cnt * plane;
      for (int64_t g = 0; g < p.groups; ++g) {
        for (int64_t i = 0; i < cnt; ++i)
          isa.im2col(geo, x + (s0 + i) * in_sample + g * cg * p.h * p.w, cols + i * plane, ldb);
        if (px < ldb)  // the last tile reads past px: keep it finite
          for (int64_t r = 0; r < k; ++r) std::fill(cols + r * ldb + px, cols + (r + 1) * ldb, 0.f);
        GemmArgs args{ocg,
                      px,
                      k,
                      a.data() + g * mp * k,
                      cols,
                      ldb,
                      b ? b + g * ocg : nullptr,
                      y + (s0 * p.oc + g * ocg) * plane,
                      plane,
                      s.col_off.data()};
        isa.gemm(args);
      }
    }
  });
}

// Forward through OpenBLAS (CPUs without AVX2): the same cols, a GEMM into a
// [ocg, pixels] block, then scattered to NCHW with the bias.
void ForwardBlas(const Params& p, const float* x, const float* w, const float* b, float* y) {
  const int64_t cg = p.c / p.groups, ocg = p.oc / p.groups;
  const int64_t k = cg * p.kh * p.kw, plane = p.oh() * p.ow();
  const int64_t in_sample = p.c * p.h * p.w;
  const kernels::Conv2dGeometry geo = GroupGeometry(p);
  const int64_t gs = std::clamp<int64_t>((1 << 17) / (k * plane), 1, 8);
  const int64_t chunks = (p.n + gs - 1) / gs;
  ParallelFor(chunks, 1, [&](int64_t cb, int64_t ce) {
    Scratch& s = ThreadScratch();
    float* cols = Grow(s.cols, k * gs * plane);
    float* out = Grow(s.aux, ocg * gs * plane);
    for (int64_t c = cb; c < ce; ++c) {
      const int64_t s0 = c * gs, cnt = std::min(gs, p.n - s0), px = cnt * plane;
      for (int64_t g = 0; g < p.groups; ++g) {
        for (int64_t i = 0; i < cnt; ++i)
          kernels::Im2Col(geo, x + (s0 + i) * in_sample + g * cg * p.h * p.w, cols + i * plane, px);
        kernels::Gemm(false, false, ocg, px, k, 1.0f, w + g * ocg * k, cols, 0.0f, out);
        for (int64_t i = 0; i < cnt; ++i)
          for (int64_t o = 0; o < ocg; ++o) {
            const float* src = out + o * px + i * plane;
            float* dst = y + ((s0 + i) * p.oc + g * ocg + o) * plane;
            const float bv = b ? b[g * ocg + o] : 0.0f;
            for (int64_t q = 0; q < plane; ++q) dst[q] = src[q] + bv;
          }
      }
    }
  });
}

// Copies the output gradient of samples [s0, s0+cnt) into gm[oc, ld]
// (channel-major, samples side by side, zeros from cnt*plane to ld), the
// layout the products below take.
void GatherChannels(const Params& p, const float* gy, int64_t s0, int64_t cnt, float* gm,
                    int64_t ld) {
  const int64_t plane = p.oh() * p.ow(), px = cnt * plane;
  for (int64_t o = 0; o < p.oc; ++o) {
    for (int64_t i = 0; i < cnt; ++i)
      std::memcpy(gm + o * ld + i * plane, gy + ((s0 + i) * p.oc + o) * plane,
                  sizeof(float) * static_cast<size_t>(plane));
    std::fill(gm + o * ld + px, gm + (o + 1) * ld, 0.0f);
  }
}

}  // namespace

void Forward(const Params& p, const float* x, const float* w, const float* b, float* y) {
  if (p.n == 0 || p.oc == 0) return;
  const Isa isa = CurrentIsaRecord();
  if (isa.gemm)
    ForwardTiles(isa, p, x, w, b, y);
  else
    ForwardBlas(p, x, w, b, y);
}

void BackwardData(const Params& p, const float* gy, const float* w, float* gx) {
  if (p.n == 0) return;
  const int64_t cg = p.c / p.groups, ocg = p.oc / p.groups;
  const int64_t taps = p.kh * p.kw, k = cg * taps;
  if (p.stride == 1 && p.kh == p.kw && p.padding <= p.kh - 1) {
    // gx = conv(gy, w'), stride 1, padding kh-1-padding, with
    // w'[g*cg + ci, o, ky, kx] = w[g*ocg + o, ci, kh-1-ky, kw-1-kx].
    std::vector<float> wt(static_cast<size_t>(p.oc * k));
    for (int64_t g = 0; g < p.groups; ++g)
      for (int64_t o = 0; o < ocg; ++o)
        for (int64_t ci = 0; ci < cg; ++ci)
          for (int64_t t = 0; t < taps; ++t)
            wt[((g * cg + ci) * ocg + o) * taps + (taps - 1 - t)] =
                w[((g * ocg + o) * cg + ci) * taps + t];
    const Params q{p.n, p.oc, p.oh(), p.ow(), p.c, p.kh, p.kw, 1, p.kh - 1 - p.padding, p.groups};
    Forward(q, gy, wt.data(), nullptr, gx);
    return;
  }
  // General stride: gcols = w_g^T gm per group, scattered back by col2im.
  const int64_t plane = p.oh() * p.ow(), in_sample = p.c * p.h * p.w;
  const kernels::Conv2dGeometry geo = GroupGeometry(p);
  const int64_t gs = std::clamp<int64_t>((1 << 17) / (k * plane), 1, 8);
  const int64_t chunks = (p.n + gs - 1) / gs;
  ParallelFor(chunks, 1, [&](int64_t cb, int64_t ce) {
    Scratch& s = ThreadScratch();
    float* gcols = Grow(s.cols, k * gs * plane);
    float* gm = Grow(s.aux, p.oc * gs * plane);
    for (int64_t c = cb; c < ce; ++c) {
      const int64_t s0 = c * gs, cnt = std::min(gs, p.n - s0), px = cnt * plane;
      std::fill(gx + s0 * in_sample, gx + (s0 + cnt) * in_sample, 0.0f);
      GatherChannels(p, gy, s0, cnt, gm, px);
      for (int64_t g = 0; g < p.groups; ++g) {
        kernels::Gemm(true, false, k, px, ocg, 1.0f, w + g * ocg * k, gm + g * ocg * px, 0.0f,
                      gcols);
        for (int64_t i = 0; i < cnt; ++i)
          kernels::Col2Im(geo, gcols + i * plane, px,
                          gx + (s0 + i) * in_sample + g * cg * p.h * p.w);
      }
    }
  });
}

void BackwardWeight(const Params& p, const float* x, const float* gy, float* gw, float* gb) {
  const int64_t cg = p.c / p.groups, ocg = p.oc / p.groups;
  const int64_t k = cg * p.kh * p.kw, plane = p.oh() * p.ow();
  const int64_t in_sample = p.c * p.h * p.w;
  if (gw) std::fill(gw, gw + p.oc * k, 0.0f);
  if (gb) std::fill(gb, gb + p.oc, 0.0f);
  if (p.n == 0) return;
  const kernels::Conv2dGeometry geo = GroupGeometry(p);
  const Isa isa = CurrentIsaRecord();
  const auto im2col = isa.im2col ? isa.im2col : &kernels::Im2Col;
  // Both products reduce over the chunk's pixels: bigger chunks, fewer passes
  // over the [ocg, K] result.
  const int64_t gs = std::clamp<int64_t>((1 << 18) / (k * plane), 1, 16);
  const int64_t chunks = (p.n + gs - 1) / gs;
  std::mutex mu;
  ParallelFor(chunks, 1, [&](int64_t cb, int64_t ce) {
    Scratch& s = ThreadScratch();
    std::vector<float> pw(gw ? static_cast<size_t>(p.oc * k) : 0, 0.0f);
    std::vector<float> pb(gb ? static_cast<size_t>(p.oc) : 0, 0.0f);
    // Rows padded to the vector width with zeros for the dot kernel.
    const int64_t ld = RoundUp(gs * plane, isa.width);
    float* cols = Grow(s.cols, k * ld);
    float* gm = Grow(s.aux, p.oc * ld);
    for (int64_t c = cb; c < ce; ++c) {
      const int64_t s0 = c * gs, cnt = std::min(gs, p.n - s0), px = cnt * plane;
      const int64_t pp = isa.dot ? RoundUp(px, isa.width) : px;
      GatherChannels(p, gy, s0, cnt, gm, pp);
      if (gb) kernels::RowSum(p.oc, pp, gm, pb.data(), true);
      if (!gw) continue;
      for (int64_t g = 0; g < p.groups; ++g) {
        for (int64_t i = 0; i < cnt; ++i)
          im2col(geo, x + (s0 + i) * in_sample + g * cg * p.h * p.w, cols + i * plane, pp);
        if (isa.dot) {
          for (int64_t r = 0; r < k; ++r) std::fill(cols + r * pp + px, cols + (r + 1) * pp, 0.f);
          isa.dot(internal::DotArgs{ocg, k, pp, gm + g * ocg * pp, pp, cols, pp,
                                    pw.data() + g * ocg * k, k});
        } else {
          kernels::Gemm(false, true, ocg, k, px, 1.0f, gm + g * ocg * px, cols, 1.0f,
                        pw.data() + g * ocg * k);
        }
      }
    }
    std::lock_guard lock(mu);
    if (gw) kernels::Axpy(p.oc * k, 1.0f, pw.data(), gw);
    if (gb) kernels::Axpy(p.oc, 1.0f, pb.data(), gb);
  });
}

}  // namespace dnnd::conv
