#include "tensor/conv.h"

#include <Eigen/Core>
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
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
  return Isa{"portable", 0, 0, nullptr, nullptr, nullptr, 1, nullptr};
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
  std::vector<float> cols, grid, aux;
  std::vector<int64_t> b_row, col_off, dot_rows;
  std::vector<uint32_t> pairs;            // the bf16 GEMM's pair grid
  std::vector<uint16_t> bf16_x, bf16_gy;  // the bf16 dot's rows
};
Scratch& ThreadScratch() {
  thread_local Scratch s;
  return s;
}
template <class E>
E* Grow(std::vector<E>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
  return v.data();
}

kernels::Conv2dGeometry GroupGeometry(const Params& p) {
  return {p.c / p.groups, p.h, p.w, p.kh, p.kw, p.stride, p.padding};
}

// Whether n floats are all finite: the weight gradient on the grid multiplies
// input values by the zeros of dropped columns, which is exact only for
// finite values (0 * inf is NaN). Adding 1 to an all-ones exponent carries
// into the sign bit; OR-ing those bits vectorises.
bool AllFinite(const float* x, int64_t n) {
  uint32_t carry = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, x + i, sizeof bits);
    carry |= (bits & 0x7f800000u) + 0x00800000u;
  }
  return (carry & 0x80000000u) == 0;
}

// Samples per chunk when one sample takes per_sample (bytes, columns): as
// many as fit `budget` (at least one), and at least one chunk per thread.
int64_t ChunkSamples(const Params& p, int64_t per_sample, int64_t budget) {
  const int64_t fit = std::clamp<int64_t>(budget / per_sample, 1, p.n);
  return std::min(fit, std::max<int64_t>(1, (p.n + GetThreads() - 1) / GetThreads()));
}

// --- B as im2col ---------------------------------------------------------------

// Samples per chunk for the tile kernel on im2col: the chunk's cols (K x
// pixels) stay within ~512 KB (L2), and among the sizes that fit, the one
// wasting the least of the last column tile; at least one chunk per thread.
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

// Rows of an im2col matrix with leading dimension ld, as GemmArgs::b_row.
void Im2ColRows(int64_t k, int64_t ld, std::vector<int64_t>& rows) {
  rows.resize(static_cast<size_t>(k));
  for (int64_t r = 0; r < k; ++r) rows[r] = r * ld;
}

// Output offsets of im2col's columns: gs samples' planes side by side, each
// sample's plane `sample_stride` after the previous one in the output.
void Im2ColColumns(int64_t gs, int64_t plane, int64_t sample_stride, std::vector<int64_t>& off) {
  off.resize(static_cast<size_t>(gs * plane));
  int64_t* o = off.data();
  for (int64_t s = 0; s < gs; ++s)
    for (int64_t q = 0; q < plane; ++q) *o++ = s * sample_stride + q;
}

// --- B on the padded grid ------------------------------------------------------

// A convolution's input laid out for the GEMM without im2col (see conv.h).
//
// Stride 1: per channel, the chunk's samples follow each other in blocks of
// hs rows of wp floats: `pad` zero rows, then the image's rows, each `pad`
// zeros and then its w values. A row's right padding is the next row's left
// padding and a sample's bottom padding the next sample's top, so point (py,
// px) of sample s's zero-padded image is at s * sample + py * wp + px for
// every py < h + 2 pad, px < w + 2 pad. Output (oy, ox) of sample s is
// virtual column s * sample + oy * wp + ox, and tap (ky, kx) of channel c
// reads it c * chan + ky * wp + kx further on.
//
// Stride S > 1: the zero-padded image is split into its S x S phases by row
// and column parity (fewer when the kernel is smaller than S), each its own
// span of `chan` floats per channel: element (i, j) of phase (a, b) is padded
// point (S i + a, S j + b), in blocks of hs = oh + (kh-1)/S rows of wp = ow +
// (kw-1)/S per sample. Tap (ky, kx) then reads phase (ky % S, kx % S) shifted
// by (ky / S) rows and (kx / S) columns: a shift again, as for stride 1, and
// the phases together are the size of the padded input (im2col: kh kw / S^2
// times the output's).
//
// Either way, columns with ox >= ow or oy >= oh are computed and dropped.
struct Grid {
  int64_t pad, stride, phy, phx, wp, hs, sample, oh, ow;
  // Floats per channel (per phase): the chunk, its bottom padding, the last
  // tile's overrun.
  int64_t chan;
  Grid(const Params& p, int64_t gs, int64_t nr)
      : pad(p.padding),
        stride(p.stride),
        phy(std::min(p.stride, p.kh)),
        phx(std::min(p.stride, p.kw)),
        wp(p.stride == 1 ? p.w + p.padding : p.ow() + (p.kw - 1) / p.stride),
        hs(p.stride == 1 ? p.h + p.padding : p.oh() + (p.kh - 1) / p.stride),
        sample(hs * wp),
        oh(p.oh()),
        ow(p.ow()),
        chan(RoundUp(RoundUp(Columns(gs), nr) + (p.kh - 1) / p.stride * wp + (p.kw - 1) / p.stride,
                     16)) {}
  // Virtual columns of a chunk of cnt samples, up to its last output.
  int64_t Columns(int64_t cnt) const { return (cnt - 1) * sample + (oh - 1) * wp + ow; }
  // Spans of `chan` floats per channel.
  int64_t Spans() const { return phy * phx; }
};

// Stride 1 needs every padded row and column to fall inside the one shared
// padding: padding below the kernel's size (all "same" and "valid" convs).
// The phases of a larger stride hold their own padding; they pay where
// im2col would copy each input point more than once (a kernel wider than 1)
// and the dropped columns are at most a fifth of the output's (14x14 and
// larger outputs of a 3x3 kernel: 225 columns for 196; on 7x7, 64 for 49,
// im2col's copies measured faster).
bool GridApplies(const Params& p) {
  if (p.padding >= p.kh || p.padding >= p.kw) return false;
  if (p.stride == 1) return true;
  const Grid gr(p, 1, 1);
  return p.kh * p.kw > 1 && 5 * gr.sample <= 6 * gr.oh * gr.ow;
}

int64_t GridSampleBytes(const Params& p, int64_t channels) {
  const Grid gr(p, 1, 1);
  return channels * gr.Spans() * gr.sample * int64_t{sizeof(float)};
}

// GemmArgs::b_row on the grid: row (c, ky, kx) of B is the grid (its phase
// (ky % S, kx % S)) shifted.
void GridRows(const Grid& gr, const Params& p, std::vector<int64_t>& rows) {
  const int64_t cg = p.c / p.groups, s = gr.stride;
  rows.resize(static_cast<size_t>(cg * p.kh * p.kw));
  for (int64_t c = 0, r = 0; c < cg; ++c)
    for (int64_t ky = 0; ky < p.kh; ++ky)
      for (int64_t kx = 0; kx < p.kw; ++kx)
        rows[r++] = (c * gr.Spans() + ky % s * gr.phx + kx % s) * gr.chan + ky / s * gr.wp + kx / s;
}

// GemmArgs::col_off on the grid for gs samples (-1: dropped column).
void GridColumns(const Grid& gr, int64_t gs, int64_t sample_stride, std::vector<int64_t>& off) {
  off.resize(static_cast<size_t>(gs * gr.sample));
  int64_t* o = off.data();
  for (int64_t s = 0; s < gs; ++s)
    for (int64_t oy = 0; oy < gr.hs; ++oy)
      for (int64_t ox = 0; ox < gr.wp; ++ox)
        *o++ = oy < gr.oh && ox < gr.ow ? s * sample_stride + oy * gr.ow + ox : -1;
}

// Row i of phase (a, b) at stride S (a compile-time 2 lets the copy
// vectorise; 0: `stride`): dst[j] = the image row's point S j + b - pad,
// zeros where that is outside the row.
template <int64_t S>
float* FillPhaseRow(const float* row, int64_t w, int64_t b, int64_t pad, int64_t wp, int64_t stride,
                    float* dst) {
  const int64_t s = S > 0 ? S : stride, off = b - pad;
  const int64_t j0 = std::min(wp, off >= 0 ? 0 : (-off + s - 1) / s);
  const int64_t j1 = std::max(j0, std::min(wp, w - 1 - off < 0 ? 0 : (w - 1 - off) / s + 1));
  std::fill(dst, dst + j0, 0.0f);
  for (int64_t j = j0; j < j1; ++j) dst[j] = row[s * j + off];
  std::fill(dst + j1, dst + wp, 0.0f);
  return dst + wp;
}

// The stride-1 grid's frame, for any element type (float, or the bf16
// paths' pairs and halves): for each sample (outer: x is read in order, as
// a chunk's planes come from L3 or memory, where a jump of c*h*w floats per
// plane defeats the prefetcher on small planes) and each of `spans` spans
// `chan` elements apart, the top padding rows, then rows(s, span, dst)
// writes the image's rows from dst on and says whether they were finite;
// then zeros to the end of each span. Returns whether all rows were finite.
template <class E, class Rows>
bool FillFrame(const Grid& gr, int64_t spans, int64_t chan, int64_t cnt, E* buf, Rows&& rows) {
  bool finite = true;
  for (int64_t s = 0; s < cnt; ++s)
    for (int64_t c = 0; c < spans; ++c)
      finite &= rows(s, c, std::fill_n(buf + c * chan + s * gr.sample, gr.pad * gr.wp, E{0}));
  for (int64_t c = 0; c < spans; ++c)
    std::fill(buf + c * chan + cnt * gr.sample, buf + (c + 1) * chan, E{0});
  return finite;
}

// Copies cnt samples of x [cnt, c, h, w] into the grid, zeros in the padding
// and up to the end of each channel's (phase's) span. With `finite`, also
// says whether all of those samples' values are finite (AllFinite's answer;
// on stride 1 the row copies find it on the way).
void FillGrid(const Isa& isa, const Grid& gr, const Params& p, const float* x, int64_t cnt,
              float* buf, bool* finite = nullptr) {
  const bool vector_rows = gr.stride == 1 && isa.pad_rows && gr.pad <= isa.width;
  if (finite && !vector_rows) *finite = AllFinite(x, cnt * p.c * p.h * p.w);
  if (gr.stride > 1) {
    for (int64_t c = 0; c < p.c; ++c)
      for (int64_t a = 0; a < gr.phy; ++a)
        for (int64_t b = 0; b < gr.phx; ++b) {
          float* const span = buf + (c * gr.Spans() + a * gr.phx + b) * gr.chan;
          float* dst = span;
          for (int64_t s = 0; s < cnt; ++s) {
            const float* img = x + (s * p.c + c) * p.h * p.w;
            for (int64_t i = 0; i < gr.hs; ++i) {
              const int64_t iy = gr.stride * i + a - gr.pad;
              if (iy < 0 || iy >= p.h)
                dst = std::fill_n(dst, gr.wp, 0.0f);
              else if (gr.stride == 2)
                dst = FillPhaseRow<2>(img + iy * p.w, p.w, b, gr.pad, gr.wp, 2, dst);
              else
                dst = FillPhaseRow<0>(img + iy * p.w, p.w, b, gr.pad, gr.wp, gr.stride, dst);
            }
          }
          std::fill(dst, span + gr.chan, 0.0f);
        }
    return;
  }
  const bool all_finite =
      FillFrame(gr, p.c, gr.chan, cnt, buf, [&](int64_t s, int64_t c, float* dst) {
        const float* src = x + (s * p.c + c) * p.h * p.w;
        if (vector_rows) return isa.pad_rows(src, p.h, p.w, static_cast<int>(gr.pad), dst);
        for (int64_t iy = 0; iy < p.h; ++iy) {
          dst = std::fill_n(dst, gr.pad, 0.0f);
          dst = std::copy_n(src + iy * p.w, p.w, dst);
        }
        return true;  // not checked: AllFinite answered above
      });
  if (finite && vector_rows) *finite = all_finite;
}

// Copies the output gradient of samples [s0, s0+cnt) into gm[oc, ld] at the
// grid's virtual columns, zeros in the dropped ones and on to `zero_to`: the
// weight-gradient product's A on the grid.
void GatherGrid(const Grid& gr, const Params& p, const float* gy, int64_t s0, int64_t cnt,
                float* gm, int64_t ld, int64_t zero_to) {
  const int64_t plane = gr.oh * gr.ow;
  for (int64_t o = 0; o < p.oc; ++o) {
    float* dst = gm + o * ld;
    for (int64_t s = 0; s < cnt; ++s) {
      const float* src = gy + ((s0 + s) * p.oc + o) * plane;
      for (int64_t oy = 0; oy < gr.hs; ++oy)
        if (oy < gr.oh) {
          dst = std::copy_n(src + oy * gr.ow, gr.ow, dst);
          dst = std::fill_n(dst, gr.wp - gr.ow, 0.0f);
        } else {
          dst = std::fill_n(dst, gr.wp, 0.0f);
        }
    }
    if (dst < gm + o * ld + zero_to) std::fill(dst, gm + o * ld + zero_to, 0.0f);
  }
}

// --- forward -------------------------------------------------------------------

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

// Whether Forward takes its B on the grid: with few rows of B (a 1- or
// 3-channel stem) the grid's scattered stores of short output rows cost more
// than the small im2col they save.
bool ForwardOnGrid(const Params& p) {
  return GridApplies(p) && (p.c / p.groups) * p.kh * p.kw >= 32;
}

// Forward on the tile kernel, B on the grid (stride 1) or as im2col.
void ForwardTiles(const Isa& isa, const Params& p, const float* x, const float* w, const float* b,
                  float* y) {
  const int64_t cg = p.c / p.groups, ocg = p.oc / p.groups;
  const int64_t k = cg * p.kh * p.kw, plane = p.oh() * p.ow();
  const int64_t in_sample = p.c * p.h * p.w, mp = RoundUp(ocg, isa.mr);
  const kernels::Conv2dGeometry geo = GroupGeometry(p);
  const std::vector<float> a = PackWeights(p, w, isa.mr);
  // A grid chunk's input stays within 256 KB: a tile's B rows (the
  // channels' grid rows around it) then come from L1/L2.
  const bool on_grid = ForwardOnGrid(p);
  const int64_t gs =
      on_grid ? ChunkSamples(p, GridSampleBytes(p, p.c), 256 << 10) : TileChunk(p, k, isa.nr);
  const Grid gr(p, gs, isa.nr);
  const int64_t chunks = (p.n + gs - 1) / gs;
  ParallelWorkers(chunks, [&](WorkItems& items) {
    Scratch& s = ThreadScratch();
    const int64_t ldb = RoundUp(gs * plane, isa.nr);
    float* buf = on_grid ? Grow(s.grid, p.c * gr.Spans() * gr.chan) : Grow(s.cols, k * ldb);
    if (on_grid) {
      GridRows(gr, p, s.b_row);
      GridColumns(gr, gs, p.oc * plane, s.col_off);
    } else {
      Im2ColRows(k, ldb, s.b_row);
      Im2ColColumns(gs, plane, p.oc * plane, s.col_off);
    }
    for (int64_t c; items.Next(c);) {
      const int64_t s0 = c * gs, cnt = std::min(gs, p.n - s0);
      const int64_t n_cols = on_grid ? gr.Columns(cnt) : cnt * plane;
      if (on_grid) FillGrid(isa, gr, p, x + s0 * in_sample, cnt, buf);
      for (int64_t g = 0; g < p.groups; ++g) {
        if (!on_grid) {
          for (int64_t i = 0; i < cnt; ++i)
            isa.im2col(geo, x + (s0 + i) * in_sample + g * cg * p.h * p.w, buf + i * plane, ldb);
          if (n_cols < ldb)  // the last tile reads past n_cols: keep it finite
            for (int64_t r = 0; r < k; ++r)
              std::fill(buf + r * ldb + n_cols, buf + (r + 1) * ldb, 0.f);
        }
        GemmArgs args{ocg,
                      n_cols,
                      k,
                      a.data() + g * mp * k,
                      on_grid ? buf + g * cg * gr.Spans() * gr.chan : buf,
                      s.b_row.data(),
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

// --- the input gradient as a convolution -----------------------------------------

// A stride-1 input gradient is the convolution of the output gradient with
// the flipped, transposed weights, stride 1, padding kh-1-padding.
bool DataAsConvolution(const Params& p) {
  return p.stride == 1 && p.kh == p.kw && p.padding <= p.kh - 1;
}
Params DataParams(const Params& p) {
  return {p.n, p.oc, p.oh(), p.ow(), p.c, p.kh, p.kw, 1, p.kh - 1 - p.padding, p.groups};
}
// w'[g*cg + ci, o, ky, kx] = w[g*ocg + o, ci, kh-1-ky, kw-1-kx].
std::vector<float> FlipWeights(const Params& p, const float* w) {
  const int64_t cg = p.c / p.groups, ocg = p.oc / p.groups, taps = p.kh * p.kw;
  std::vector<float> wt(static_cast<size_t>(p.oc * cg * taps));
  for (int64_t g = 0; g < p.groups; ++g)
    for (int64_t o = 0; o < ocg; ++o)
      for (int64_t ci = 0; ci < cg; ++ci)
        for (int64_t t = 0; t < taps; ++t)
          wt[((g * cg + ci) * ocg + o) * taps + (taps - 1 - t)] =
              w[((g * ocg + o) * cg + ci) * taps + t];
  return wt;
}

// --- the weight gradient ---------------------------------------------------------

// Chunks are claimed by whichever thread is free, so the weight and bias
// gradients' sums go into fixed slots of consecutive chunks, each summed in
// chunk order, and the slots are added in slot order: the same result
// whichever thread ran what. Up to 8 slots (a thread that falls behind leaves
// the rest to the other), fewer for wide layers, whose sums are large
// (ResNet-18's last convs: 9 MB each), but never fewer than threads.
struct WeightSlots {
  int64_t chunks, count, per_slot, wk, bk;
  std::vector<float> sums;
  WeightSlots(const Params& p, int64_t gs, bool weight, bool bias)
      : chunks((p.n + gs - 1) / gs),
        wk(weight ? p.oc * (p.c / p.groups) * p.kh * p.kw : 0),
        bk(bias ? p.oc : 0) {
    const int64_t fit =
        (int64_t{16} << 20) / (int64_t{sizeof(float)} * std::max<int64_t>(1, wk + bk));
    count = std::min(chunks, std::max<int64_t>(GetThreads(), std::min<int64_t>(fit, 8)));
    per_slot = (chunks + count - 1) / count;
    sums.assign(static_cast<size_t>(count * (wk + bk)), 0.0f);
  }
  int64_t First(int64_t slot) const { return slot * per_slot; }
  int64_t End(int64_t slot) const { return std::min(chunks, (slot + 1) * per_slot); }
  float* Weight(int64_t slot) { return wk ? sums.data() + slot * (wk + bk) : nullptr; }
  float* Bias(int64_t slot) { return bk ? sums.data() + slot * (wk + bk) + wk : nullptr; }
  // Runs f(pw, pb, s0, cnt) for each chunk (its first sample and count, of
  // gs-sample chunks of n) of every slot `items` hands this thread, pw and pb
  // being the slot's sums (null where not wanted), chunks in order.
  template <class F>
  void ForEachChunk(WorkItems& items, int64_t gs, int64_t n, F&& f) {
    for (int64_t slot; items.Next(slot);)
      for (int64_t c = First(slot); c < End(slot); ++c)
        f(Weight(slot), Bias(slot), c * gs, std::min(gs, n - c * gs));
  }
  // gw, gb (either may be null) = the slots' sums, added in slot order.
  void Reduce(float* gw, float* gb) {
    if (gw) std::fill(gw, gw + wk, 0.0f);
    if (gb) std::fill(gb, gb + bk, 0.0f);
    for (int64_t slot = 0; slot < count; ++slot) {
      if (gw) kernels::Axpy(wk, 1.0f, Weight(slot), gw);
      if (gb) kernels::Axpy(bk, 1.0f, Bias(slot), gb);
    }
  }
};

// Adds samples [s0, s0+cnt)'s weight and bias gradients (pw, pb; either may
// be null) to a slot through im2col: the path for strides above 1, for the
// portable set, and for a grid chunk with a non-finite input. gm holds the
// chunk's output gradient ([oc, RoundUp(cnt * plane, width)] floats).
void WeightChunkIm2Col(const Isa& isa, const Params& p, const float* x, const float* gy, int64_t s0,
                       int64_t cnt, Scratch& s, float* gm, float* pw, float* pb) {
  const int64_t cg = p.c / p.groups, ocg = p.oc / p.groups;
  const int64_t k = cg * p.kh * p.kw, plane = p.oh() * p.ow(), px = cnt * plane;
  const int64_t in_sample = p.c * p.h * p.w;
  const kernels::Conv2dGeometry geo = GroupGeometry(p);
  const auto im2col = isa.im2col ? isa.im2col : &kernels::Im2Col;
  const int64_t pp = isa.dot ? RoundUp(px, isa.width) : px;
  GatherChannels(p, gy, s0, cnt, gm, pp);
  if (pb) kernels::RowSum(p.oc, pp, gm, pb, true);
  if (!pw) return;
  float* cols = Grow(s.cols, k * pp);
  Im2ColRows(k, pp, s.dot_rows);
  for (int64_t g = 0; g < p.groups; ++g) {
    for (int64_t i = 0; i < cnt; ++i)
      im2col(geo, x + (s0 + i) * in_sample + g * cg * p.h * p.w, cols + i * plane, pp);
    if (isa.dot) {
      for (int64_t r = 0; r < k; ++r) std::fill(cols + r * pp + px, cols + (r + 1) * pp, 0.f);
      isa.dot(internal::DotArgs{ocg, k, pp, gm + g * ocg * pp, pp, cols, s.dot_rows.data(),
                                pw + g * ocg * k, k});
    } else {
      kernels::Gemm(false, true, ocg, k, px, 1.0f, gm + g * ocg * px, cols, 1.0f, pw + g * ocg * k);
    }
  }
}

// --- both gradients on one grid ----------------------------------------------------

// Columns per dot-kernel call: its 4 rows of A stay in L1 (see BackwardWeight).
constexpr int64_t kDotColumns = 2048;

// Backward's fused path: a stride-1 convolution whose input gradient runs on
// the grid (as Forward of DataParams) and whose weight gradient does too.
bool FusedBackwardApplies(const Isa& isa, const Params& p) {
  if (!isa.gemm || !isa.dot || !DataAsConvolution(p) || !GridApplies(p)) return false;
  const Params q = DataParams(p);
  return ForwardOnGrid(q);
}

// Samples per chunk of the fused backward (q = DataParams(p)): as Forward
// chunks the input-gradient convolution (its grid within 256 KB), but with
// at least ~2048 columns for the dot kernel (see BackwardWeight) while the
// grid stays within 512 KB of L2.
int64_t FusedChunk(const Params& p, const Params& q) {
  const int64_t q_bytes = GridSampleBytes(q, q.c);
  const int64_t gs_gemm = ChunkSamples(q, q_bytes, 256 << 10);
  const int64_t gs_dot = ChunkSamples(p, Grid(p, 1, 1).sample, 2048);
  return std::max(gs_gemm, std::min(gs_dot, ChunkSamples(q, q_bytes, 512 << 10)));
}

// Per chunk of samples, gy is copied once into the input-gradient
// convolution's grid (padding kh-1-padding), and that one copy is both the
// GEMM's B for gx and, read kh-1-padding rows and columns further on, the dot
// kernel's A for gw (GatherGrid's layout: the two grids have the same row
// and sample pitch, w + padding and h + padding), and its rows' sums are gb.
// Separately, BackwardData and BackwardWeight copy gy once each.
void BackwardFused(const Isa& isa, const Params& p, const float* x, const float* gy, const float* w,
                   float* gx, float* gw, float* gb) {
  const int64_t cg = p.c / p.groups, ocg = p.oc / p.groups, taps = p.kh * p.kw;
  const int64_t k = cg * taps, in_plane = p.h * p.w, in_sample = p.c * in_plane;
  const int64_t out_sample = p.oc * p.oh() * p.ow();
  const Params q = DataParams(p);
  const int64_t kq = ocg * taps, mpq = RoundUp(cg, isa.mr);
  const std::vector<float> wt = FlipWeights(p, w);
  const std::vector<float> a = PackWeights(q, wt.data(), isa.mr);
  const int64_t gs = FusedChunk(p, q);
  Grid gq(q, gs, isa.nr);                         // gy's: the GEMM's B, the dot's A
  const Grid gp(p, gs, isa.nr);                   // x's: the dot's B
  const int64_t shift = q.padding * (gq.wp + 1);  // gy(0, 0) in gq, from GatherGrid's place
  // The dot reads A up to the chunk's columns rounded to the vector width.
  gq.chan = RoundUp(std::max(gq.chan, shift + RoundUp(gp.Columns(gs), isa.width)), 16);
  WeightSlots slots(p, gs, gw != nullptr, gb != nullptr);
  ParallelWorkers(slots.count, [&](WorkItems& items) {
    Scratch& s = ThreadScratch();
    float* gbuf = Grow(s.aux, p.oc * gq.chan);
    float* xbuf = Grow(s.grid, p.c * gp.Spans() * gp.chan);
    GridRows(gq, q, s.b_row);
    GridColumns(gq, gs, in_sample, s.col_off);
    std::vector<int64_t> x_rows;
    GridRows(gp, p, x_rows);
    std::vector<float> fallback;  // gm of WeightChunkIm2Col, for non-finite inputs
    slots.ForEachChunk(items, gs, p.n, [&](float* pw, float* pb, int64_t s0, int64_t cnt) {
      FillGrid(isa, gq, q, gy + s0 * out_sample, cnt, gbuf);
      for (int64_t g = 0; g < p.groups; ++g)
        isa.gemm(GemmArgs{cg, gq.Columns(cnt), kq, a.data() + g * mpq * kq,
                          gbuf + g * ocg * gq.chan, s.b_row.data(), nullptr,
                          gx + (s0 * p.c + g * cg) * in_plane, in_plane, s.col_off.data()});
      bool finite = true;
      if (pw) FillGrid(isa, gp, p, x + s0 * in_sample, cnt, xbuf, &finite);
      if (!finite) {
        // 0 * inf in the dropped columns would be NaN: im2col for this chunk.
        WeightChunkIm2Col(isa, p, x, gy, s0, cnt, s,
                          Grow(fallback, p.oc * RoundUp(cnt * p.oh() * p.ow(), isa.width)), pw, pb);
        return;
      }
      if (pb) kernels::RowSum(p.oc, gq.chan, gbuf, pb, true);
      if (!pw) return;
      const int64_t pp = RoundUp(gp.Columns(cnt), isa.width);
      for (int64_t g = 0; g < p.groups; ++g)
        for (int64_t q0 = 0; q0 < pp; q0 += kDotColumns)
          isa.dot(internal::DotArgs{ocg, k, std::min(kDotColumns, pp - q0),
                                    gbuf + g * ocg * gq.chan + shift + q0, gq.chan,
                                    xbuf + g * cg * gp.Spans() * gp.chan + q0, x_rows.data(),
                                    pw + g * ocg * k, k});
    });
  });
  slots.Reduce(gw, gb);
}

// --- bfloat16 products (isa.h's Precision) -------------------------------------------
//
// A stride-1, ungrouped convolution on the grid, when Bf16Active(): the same
// chunks and grids as the float path, in bf16 (conv_bf16.cc). The GEMM's
// grid pairs channels (2c, 2c+1), one uint32 per point, and its A pairs the
// two channels' weights of each tap (K halves); the dot kernel's rows are
// plain bf16 grids (pairs of neighbouring pixels). Results, bias sums and
// the weight-gradient slots stay float32.

const internal::Bf16Isa* Bf16Record() {
#if defined(__x86_64__)
  static const internal::Bf16Isa* const record =
      isa::Cpu().avx512_bf16 ? new internal::Bf16Isa(internal::Avx512Bf16Isa()) : nullptr;
  return isa::Bf16Active() ? record : nullptr;
#else
  return nullptr;
#endif
}

bool Bf16Applies(const Params& p) {
  return p.groups == 1 && p.stride == 1 && GridApplies(p) && p.padding <= 16;
}

// float to bf16 by Eigen's reference conversion (round to nearest even, as
// vcvtneps2bf16; NaN stays NaN), as the wire's bf16 codec does.
uint16_t Bf16Of(float f) { return Eigen::numext::bit_cast<uint16_t>(Eigen::bfloat16(f)); }

// PackWeights for the pair GEMM: row i's pair row (c/2, ky, kx) holds the
// weights of channels c and c+1 at that tap (c+1 past the end: 0).
std::vector<uint32_t> PackWeightPairs(const Params& p, const float* w, int mr) {
  const int64_t taps = p.kh * p.kw, pairs = (p.c + 1) / 2, kp = pairs * taps;
  const int64_t mp = RoundUp(p.oc, mr);
  std::vector<uint32_t> a(static_cast<size_t>(mp * kp), 0u);
  for (int64_t i = 0; i < p.oc; ++i)
    for (int64_t c = 0; c < p.c; ++c)
      for (int64_t t = 0; t < taps; ++t) {
        const uint32_t half = Bf16Of(w[(i * p.c + c) * taps + t]);
        const int64_t r = (c / 2) * taps + t;
        a[static_cast<size_t>((i / mr) * kp * mr + r * mr + i % mr)] |= half << (16 * (c % 2));
      }
  return a;
}

// GemmArgs::b_row on the pair grid: row (c/2, ky, kx) is the pair span
// shifted.
void PairGridRows(const Grid& gr, const Params& p, std::vector<int64_t>& rows) {
  const int64_t pairs = (p.c + 1) / 2;
  rows.resize(static_cast<size_t>(pairs * p.kh * p.kw));
  for (int64_t c = 0, r = 0; c < pairs; ++c)
    for (int64_t ky = 0; ky < p.kh; ++ky)
      for (int64_t kx = 0; kx < p.kw; ++kx) rows[r++] = c * gr.chan + ky * gr.wp + kx;
}

// FillGrid (stride 1) into the pair grid: span c/2 holds channels c and c+1.
// Returns whether the chunk's values are all finite.
bool FillPairGrid(const internal::Bf16Isa& bi, const Grid& gr, const Params& p, const float* x,
                  int64_t cnt, uint32_t* buf) {
  const int64_t plane = p.h * p.w;
  return FillFrame(gr, (p.c + 1) / 2, gr.chan, cnt, buf, [&](int64_t s, int64_t c, uint32_t* dst) {
    const float* even = x + (s * p.c + 2 * c) * plane;
    return bi.pair_rows(even, 2 * c + 1 < p.c ? even + plane : nullptr, p.h, p.w,
                        static_cast<int>(gr.pad), dst);
  });
}

// FillGrid (stride 1) into bf16 rows, `chan` bf16s per channel. Returns
// whether the chunk's values are all finite.
bool FillBf16Grid(const internal::Bf16Isa& bi, const Grid& gr, const Params& p, const float* x,
                  int64_t cnt, int64_t chan, uint16_t* buf) {
  return FillFrame(gr, p.c, chan, cnt, buf, [&](int64_t s, int64_t c, uint16_t* dst) {
    return bi.rows(x + (s * p.c + c) * p.h * p.w, p.h, p.w, static_cast<int>(gr.pad), dst);
  });
}

void ForwardBf16(const internal::Bf16Isa& bi, const Params& p, const float* x, const float* w,
                 const float* b, float* y) {
  const int64_t pairs = (p.c + 1) / 2, kp = pairs * p.kh * p.kw;
  const int64_t plane = p.oh() * p.ow(), in_sample = p.c * p.h * p.w;
  const std::vector<uint32_t> a = PackWeightPairs(p, w, bi.mr);
  const int64_t gs = ChunkSamples(p, GridSampleBytes(p, p.c), 256 << 10);  // as ForwardTiles
  const Grid gr(p, gs, bi.nr);
  ParallelWorkers((p.n + gs - 1) / gs, [&](WorkItems& items) {
    Scratch& s = ThreadScratch();
    uint32_t* buf = Grow(s.pairs, pairs * gr.chan);
    PairGridRows(gr, p, s.b_row);
    GridColumns(gr, gs, p.oc * plane, s.col_off);
    for (int64_t c; items.Next(c);) {
      const int64_t s0 = c * gs, cnt = std::min(gs, p.n - s0);
      FillPairGrid(bi, gr, p, x + s0 * in_sample, cnt, buf);
      bi.gemm(GemmArgs{p.oc, gr.Columns(cnt), kp, reinterpret_cast<const float*>(a.data()),
                       reinterpret_cast<const float*>(buf), s.b_row.data(), b,
                       y + s0 * p.oc * plane, plane, s.col_off.data()});
    }
  });
}

// BackwardFused in bf16: per chunk, gy into the pair grid (the GEMM for gx)
// and into bf16 rows (the dot's A), x into bf16 rows (the dot's B); the bias
// sums from gy itself, in float32. A chunk with a non-finite input falls back
// to the float im2col path for its weight gradient, as on the float grid.
void BackwardFusedBf16(const internal::Bf16Isa& bi, const Isa& isa, const Params& p, const float* x,
                       const float* gy, const float* w, float* gx, float* gw, float* gb) {
  constexpr int64_t kPair = 32;  // the dot's p multiple: one vector of bf16
  const int64_t taps = p.kh * p.kw, k = p.c * taps, in_plane = p.h * p.w;
  const int64_t in_sample = p.c * in_plane, out_plane = p.oh() * p.ow();
  const int64_t out_sample = p.oc * out_plane;
  const Params q = DataParams(p);
  const int64_t kq = (q.c + 1) / 2 * taps;
  const std::vector<float> wt = FlipWeights(p, w);
  const std::vector<uint32_t> a = PackWeightPairs(q, wt.data(), bi.mr);
  const int64_t gs = FusedChunk(p, q);
  const Grid gq(q, gs, bi.nr);  // gy's pair grid (the GEMM's B) and bf16 rows (the dot's A)
  const Grid gp(p, gs, bi.nr);  // x's bf16 rows (the dot's B)
  const int64_t shift = q.padding * (gq.wp + 1);  // gy(0, 0) in gq, as in BackwardFused
  const int64_t pp_max = RoundUp(gp.Columns(gs), kPair);
  const int64_t gy_chan = RoundUp(std::max(gq.chan, shift + pp_max), kPair);
  const int64_t x_chan = RoundUp(pp_max + (p.kh - 1) * gp.wp + p.kw - 1, kPair);
  WeightSlots slots(p, gs, gw != nullptr, gb != nullptr);
  ParallelWorkers(slots.count, [&](WorkItems& items) {
    Scratch& s = ThreadScratch();
    uint32_t* pair_buf = Grow(s.pairs, (q.c + 1) / 2 * gq.chan);
    uint16_t* gy_buf = Grow(s.bf16_gy, p.oc * gy_chan);
    uint16_t* x_buf = Grow(s.bf16_x, p.c * x_chan);
    PairGridRows(gq, q, s.b_row);
    GridColumns(gq, gs, in_sample, s.col_off);
    Grid gx_rows = gp;  // x's rows for the dot, `x_chan` apart
    gx_rows.chan = x_chan;
    std::vector<int64_t> x_rows;
    GridRows(gx_rows, p, x_rows);
    std::vector<float> fallback;  // gm of WeightChunkIm2Col, for non-finite inputs
    slots.ForEachChunk(items, gs, p.n, [&](float* pw, float* pb, int64_t s0, int64_t cnt) {
      FillPairGrid(bi, gq, q, gy + s0 * out_sample, cnt, pair_buf);
      bi.gemm(GemmArgs{p.c, gq.Columns(cnt), kq, reinterpret_cast<const float*>(a.data()),
                       reinterpret_cast<const float*>(pair_buf), s.b_row.data(), nullptr,
                       gx + s0 * in_sample, in_plane, s.col_off.data()});
      if (pw && !FillBf16Grid(bi, gp, p, x + s0 * in_sample, cnt, x_chan, x_buf)) {
        // 0 * inf in the dropped columns would be NaN: im2col for this chunk.
        WeightChunkIm2Col(isa, p, x, gy, s0, cnt, s,
                          Grow(fallback, p.oc * RoundUp(cnt * out_plane, isa.width)), pw, pb);
        return;
      }
      if (pb)
        for (int64_t i = 0; i < cnt; ++i)
          kernels::RowSum(p.oc, out_plane, gy + (s0 + i) * out_sample, pb, true);
      if (!pw) return;
      FillBf16Grid(bi, gq, q, gy + s0 * out_sample, cnt, gy_chan, gy_buf);
      const int64_t pp = RoundUp(gp.Columns(cnt), kPair);
      for (int64_t q0 = 0; q0 < pp; q0 += kDotColumns)
        bi.dot(internal::DotArgs{p.oc, k, std::min(kDotColumns, pp - q0),
                                 reinterpret_cast<const float*>(gy_buf + shift + q0), gy_chan,
                                 reinterpret_cast<const float*>(x_buf + q0), x_rows.data(), pw, k});
    });
  });
  slots.Reduce(gw, gb);
}

}  // namespace

void Forward(const Params& p, const float* x, const float* w, const float* b, float* y) {
  if (p.n == 0 || p.oc == 0) return;
  const Isa isa = CurrentIsaRecord();
  const internal::Bf16Isa* bi = Bf16Record();
  if (bi && Bf16Applies(p) && ForwardOnGrid(p))
    ForwardBf16(*bi, p, x, w, b, y);
  else if (isa.gemm)
    ForwardTiles(isa, p, x, w, b, y);
  else
    ForwardBlas(p, x, w, b, y);
}

void BackwardData(const Params& p, const float* gy, const float* w, float* gx) {
  if (p.n == 0) return;
  const int64_t cg = p.c / p.groups, ocg = p.oc / p.groups;
  const int64_t taps = p.kh * p.kw, k = cg * taps;
  if (DataAsConvolution(p)) {
    const std::vector<float> wt = FlipWeights(p, w);
    Forward(DataParams(p), gy, wt.data(), nullptr, gx);
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
  const Isa isa = CurrentIsaRecord();
  // Both products reduce over the chunk's pixels: bigger chunks, fewer passes
  // over the [ocg, K] result. On the grid a chunk holds its input and output
  // gradient there; a chunk with a non-finite input falls back to im2col.
  // The dot kernel ends every tile with a horizontal sum per accumulator, so
  // its rows should be long, but its 4 rows of A should stay in L1 while it
  // runs through B: about 2048 columns (a 7x7 plane's chunk would otherwise
  // spend a third of its time in those sums).
  const bool grid_ok = isa.dot && GridApplies(p);
  const int64_t grid_sample = Grid(p, 1, 1).sample;
  const int64_t gs = grid_ok ? ChunkSamples(p, grid_sample, 2048)
                             : std::clamp<int64_t>((1 << 18) / (k * plane), 1, 16);
  const Grid gr(p, gs, std::max(isa.nr, 1));
  WeightSlots slots(p, gs, gw != nullptr, gb != nullptr);
  ParallelWorkers(slots.count, [&](WorkItems& items) {
    Scratch& s = ThreadScratch();
    // Rows padded to the vector width with zeros for the dot kernel.
    const int64_t ld = RoundUp(gs * plane, isa.width);
    const int64_t ld_grid = RoundUp(gs * gr.sample, isa.width);
    float* gm = Grow(s.aux, p.oc * (grid_ok ? std::max(ld, ld_grid) : ld));
    if (grid_ok) GridRows(gr, p, s.b_row);
    slots.ForEachChunk(items, gs, p.n, [&](float* pw, float* pb, int64_t s0, int64_t cnt) {
      bool on_grid = grid_ok;
      float* buf = nullptr;
      if (on_grid && pw) {
        buf = Grow(s.grid, p.c * gr.Spans() * gr.chan);
        FillGrid(isa, gr, p, x + s0 * in_sample, cnt, buf, &on_grid);
      }
      if (!on_grid) {
        WeightChunkIm2Col(isa, p, x, gy, s0, cnt, s, gm, pw, pb);
        return;
      }
      const int64_t pp = RoundUp(gr.Columns(cnt), isa.width);
      GatherGrid(gr, p, gy, s0, cnt, gm, ld_grid, ld_grid);
      if (pb) kernels::RowSum(p.oc, ld_grid, gm, pb, true);
      if (!pw) return;
      for (int64_t g = 0; g < p.groups; ++g)
        isa.dot(internal::DotArgs{ocg, k, pp, gm + g * ocg * ld_grid, ld_grid,
                                  buf + g * cg * gr.Spans() * gr.chan, s.b_row.data(),
                                  pw + g * ocg * k, k});
    });
  });
  slots.Reduce(gw, gb);
}

void Backward(const Params& p, const float* x, const float* gy, const float* w, float* gx,
              float* gw, float* gb) {
  const Isa isa = CurrentIsaRecord();
  if (p.n > 0 && gx && (gw || gb) && FusedBackwardApplies(isa, p)) {
    const internal::Bf16Isa* bi = Bf16Record();
    if (bi && Bf16Applies(p) && Bf16Applies(DataParams(p)))
      BackwardFusedBf16(*bi, isa, p, x, gy, w, gx, gw, gb);
    else
      BackwardFused(isa, p, x, gy, w, gx, gw, gb);
    return;
  }
  if (gw || gb) BackwardWeight(p, x, gy, gw, gb);
  if (gx) BackwardData(p, gy, w, gx);
}

}  // namespace dnnd::conv
