// The convolution GEMM micro-kernel, written once against a vector type V and
// compiled once per instruction set: conv_avx2.cc and conv_avx512.cc include
// this after their target pragma (GCC's or clang's), so every function here takes that
// file's target. Include nothing from the standard library here (a template
// instantiated under a target pragma could be merged with the portable one by
// the linker); everything is in an anonymous namespace for the same reason.
//
// V provides: T (the vector), kWidth, Zero(), Load(p), Store(p, v),
// Broadcast(s), Fma(a, b, acc) = a * b + acc, LoadRange(p, lo, hi) (lanes
// [lo, hi) from p[lane], the others zero and never read; lo >= hi gives
// zeros), StoreN(p, v, n) (the first n lanes), Sum(v) (of the lanes), and
// Mask, Lanes(lo, hi) (the mask of lanes [lo, hi)) and StoreMasked(p, v, m)
// (p[lane] = v's lane where m has it, other lanes untouched, never faulting).
#pragma once

#include "tensor/conv.h"

namespace dnnd::conv::internal {
namespace {

// Where a tile's columns go when they are not one contiguous run: for each
// of its NV vectors, masked stores of the vector at `off` from the start of
// the output row, one per run of lanes contiguous in the output (lane l of
// the vector lands at off + l; the masked-off lanes are not touched).
template <class V, int NV>
struct TileScatter {
  struct Store {
    int64_t off;
    typename V::Mask mask;
  };
  Store stores[NV][V::kWidth];
  int count[NV];

  // Columns [j0, j0 + cols) of g; col_off < 0 drops a column.
  TileScatter(const GemmArgs& g, int64_t j0, int64_t cols) {
    const int64_t* off = g.col_off + j0;
    for (int v = 0; v < NV; ++v) count[v] = 0;
    for (int64_t j = 0; j < cols;) {
      if (off[j] < 0) {
        ++j;
        continue;
      }
      int64_t e = j + 1;
      while (e < cols && off[e] == off[e - 1] + 1) ++e;
      for (int v = 0; v < NV; ++v) {  // the run's part in each vector
        const int64_t lo = j > v * V::kWidth ? j : v * V::kWidth;
        const int64_t hi = e < (v + 1) * V::kWidth ? e : (v + 1) * V::kWidth;
        if (lo >= hi) continue;
        stores[v][count[v]++] = {
            off[j] - j + v * V::kWidth,
            V::Lanes(static_cast<int>(lo - v * V::kWidth), static_cast<int>(hi - v * V::kWidth))};
      }
      j = e;
    }
  }
};

// Stores tile rows acc[r][*] (NV vectors) to their places: straight when the
// columns are one contiguous run of the output (scatter null), else by the
// scatter's masked stores, from the registers.
template <class V, int MR, int NV>
__attribute__((always_inline)) inline void StoreTile(const GemmArgs& g, int64_t i0, int64_t j0,
                                                     const TileScatter<V, NV>* scatter,
                                                     typename V::T (&acc)[MR][NV]) {
  const int64_t rows = g.m - i0 < MR ? g.m - i0 : MR;
  float* out = g.out + i0 * g.row_stride;
  if (!scatter) {
    float* dst = out + g.col_off[j0];
    for (int r = 0; r < MR; ++r) {
      if (r >= rows) break;
      for (int v = 0; v < NV; ++v) V::Store(dst + r * g.row_stride + v * V::kWidth, acc[r][v]);
    }
    return;
  }
  for (int v = 0; v < NV; ++v)
    for (int q = 0; q < scatter->count[v]; ++q) {
      const auto& st = scatter->stores[v][q];
      for (int r = 0; r < MR; ++r) {
        if (r >= rows) break;
        V::StoreMasked(out + r * g.row_stride + st.off, acc[r][v], st.mask);
      }
    }
}

// Whether the kNr columns from j0 are all stored, to consecutive places.
template <int kNr>
bool ContiguousColumns(const GemmArgs& g, int64_t j0) {
  if (g.n - j0 < kNr || g.col_off[j0] < 0) return false;
  for (int q = 1; q < kNr; ++q)
    if (g.col_off[j0 + q] != g.col_off[j0] + q) return false;
  return true;
}

// C = A B (+ bias) over the whole of g (see GemmArgs), tile by tile.
template <class V, int MR, int NV>
void GemmTiles(const GemmArgs& g) {
  constexpr int kNr = NV * V::kWidth;
  using T = typename V::T;
  for (int64_t j0 = 0; j0 < g.n; j0 += kNr) {
    const float* bp = g.b + j0;
    const bool contiguous = ContiguousColumns<kNr>(g, j0);
    const TileScatter<V, NV> scatter =
        contiguous ? TileScatter<V, NV>(g, j0, 0)
                   : TileScatter<V, NV>(g, j0, g.n - j0 < kNr ? g.n - j0 : kNr);
    for (int64_t i0 = 0; i0 < g.m; i0 += MR) {
      const float* ap = g.a + i0 * g.k;  // packed [k][MR] block of rows i0..
      T acc[MR][NV];
      for (int r = 0; r < MR; ++r) {
        const T init = g.bias ? V::Broadcast(i0 + r < g.m ? g.bias[i0 + r] : 0.0f) : V::Zero();
        for (int v = 0; v < NV; ++v) acc[r][v] = init;
      }
      for (int64_t k = 0; k < g.k; ++k, ap += MR) {
        const float* brow = bp + g.b_row[k];
        T bv[NV];
        for (int v = 0; v < NV; ++v) bv[v] = V::Load(brow + v * V::kWidth);
        for (int r = 0; r < MR; ++r) {
          const T a = V::Broadcast(ap[r]);
          for (int v = 0; v < NV; ++v) acc[r][v] = V::Fma(a, bv[v], acc[r][v]);
        }
      }
      StoreTile<V, MR, NV>(g, i0, j0, contiguous ? nullptr : &scatter, acc);
    }
  }
}

// C[i, j] += sum_p A[i, p] B[j, p] (see DotArgs): tiles of MR x NB
// accumulators, each a vector of partial sums over p, reduced once at the end.
template <class V, int MR, int NB>
void DotTiles(const DotArgs& d) {
  using T = typename V::T;
  for (int64_t i0 = 0; i0 < d.m; i0 += MR) {
    const float* arow[MR];
    for (int r = 0; r < MR; ++r) arow[r] = d.a + (i0 + r < d.m ? i0 + r : i0) * d.lda;
    for (int64_t j0 = 0; j0 < d.n; j0 += NB) {
      const float* brow[NB];
      for (int j = 0; j < NB; ++j) brow[j] = d.b + d.b_row[j0 + j < d.n ? j0 + j : j0];
      T acc[MR][NB];
      for (int r = 0; r < MR; ++r)
        for (int j = 0; j < NB; ++j) acc[r][j] = V::Zero();
      for (int64_t p = 0; p < d.p; p += V::kWidth) {
        T a[MR];
        for (int r = 0; r < MR; ++r) a[r] = V::Load(arow[r] + p);
        for (int j = 0; j < NB; ++j) {
          const T b = V::Load(brow[j] + p);
          for (int r = 0; r < MR; ++r) acc[r][j] = V::Fma(a[r], b, acc[r][j]);
        }
      }
      for (int r = 0; r < MR && i0 + r < d.m; ++r)
        for (int j = 0; j < NB && j0 + j < d.n; ++j)
          d.c[(i0 + r) * d.ldc + j0 + j] += V::Sum(acc[r][j]);
    }
  }
}

// The grid's stride-1 rows (conv.cc's FillGrid): h rows of w floats,
// contiguous from src, copied to dst as rows of `pad` zeros and then the w
// values (pad <= the vector width). One or two vector copies per row where a
// library call per row (and one more for its padding) cost more than the copy
// on 7- to 32-wide rows. Returns whether every value copied is finite (v * 0
// is 0 for those, NaN for Inf and NaN), so the weight gradient needs no
// separate pass over its input for that.
template <class V>
bool PadRowsT(const float* src, int64_t h, int64_t w, int pad, float* dst) {
  constexpr int W = V::kWidth;
  const typename V::T zero = V::Zero();
  typename V::T probe = zero, probe_tail = zero;  // two chains of adds
  const int tail = static_cast<int>(w % W);
  for (int64_t r = 0; r < h; ++r, src += w, dst += pad + w) {
    V::StoreN(dst, zero, pad);
    float* const d = dst + pad;
    int64_t j = 0;
    for (; j + W <= w; j += W) {
      const typename V::T v = V::Load(src + j);
      probe = V::Add(probe, V::Mul(v, zero));
      V::Store(d + j, v);
    }
    if (tail > 0) {
      const typename V::T v = V::LoadRange(src + j, 0, tail);
      probe_tail = V::Add(probe_tail, V::Mul(v, zero));
      V::StoreN(d + j, v, tail);
    }
  }
  return V::Sum(V::Add(probe, probe_tail)) == 0.0f;
}

// kernels::Im2Col with vector copies: a stride-1 row is the input row shifted,
// with zeros where it runs into the padding.
template <class V>
void Im2ColT(const kernels::Conv2dGeometry& g, const float* image, float* cols, int64_t ld) {
  constexpr int W = V::kWidth;
  const int64_t oh = g.out_h(), ow = g.out_w();
  if (g.stride == 1 && oh == g.height && ow == g.width) {
    // "Same" convolution: row (c, ky, kx) of cols is the whole plane shifted
    // by (ky - padding) rows and (kx - padding) columns. One copy, then zeros
    // where the shift leaves the plane: whole rows at the top or bottom, and
    // the columns that wrapped around from the neighbouring row.
    const int64_t hw = g.height * g.width;
    for (int64_t c = 0; c < g.channels; ++c) {
      const float* plane = image + c * hw;
      for (int64_t ky = 0; ky < g.kernel_h; ++ky)
        for (int64_t kx = 0; kx < g.kernel_w; ++kx) {
          float* row = cols + ((c * g.kernel_h + ky) * g.kernel_w + kx) * ld;
          const int64_t dy = ky - g.padding, dx = kx - g.padding, shift = dy * g.width + dx;
          const int64_t r0 = dy < 0 ? -dy : 0, r1 = g.height - dy < oh ? g.height - dy : oh;
          if (r1 <= r0) {
            __builtin_memset(row, 0, sizeof(float) * hw);
            continue;
          }
          int64_t t0 = r0 * g.width, t1 = r1 * g.width;
          if (t0 + shift < 0) t0 = -shift;
          if (t1 + shift > hw) t1 = hw - shift;
          __builtin_memset(row, 0, sizeof(float) * t0);
          __builtin_memcpy(row + t0, plane + t0 + shift, sizeof(float) * (t1 - t0));
          __builtin_memset(row + t1, 0, sizeof(float) * (hw - t1));
          const int64_t x0 = dx < 0 ? -dx : 0, x1 = g.width - dx < ow ? g.width - dx : ow;
          for (int64_t oy = r0; oy < r1; ++oy) {
            float* r = row + oy * ow;
            for (int64_t x = 0; x < x0; ++x) r[x] = 0.0f;
            for (int64_t x = x1 > x0 ? x1 : x0; x < ow; ++x) r[x] = 0.0f;
          }
        }
    }
    return;
  }
  for (int64_t c = 0; c < g.channels; ++c) {
    const float* plane = image + c * g.height * g.width;
    for (int64_t ky = 0; ky < g.kernel_h; ++ky) {
      for (int64_t kx = 0; kx < g.kernel_w; ++kx) {
        float* row = cols + ((c * g.kernel_h + ky) * g.kernel_w + kx) * ld;
        const int64_t shift = kx - g.padding;
        // Output columns [lo, hi) read inside the input row.
        int64_t lo, hi;
        if (g.stride == 1) {
          lo = -shift > 0 ? -shift : 0;
          hi = g.width - shift < ow ? g.width - shift : ow;
        } else {
          lo = shift < 0 ? (-shift + g.stride - 1) / g.stride : 0;
          hi = (g.width - 1 - shift) / g.stride + 1;
          if (g.width - 1 - shift < 0) hi = 0;
          if (hi > ow) hi = ow;
        }
        for (int64_t oy = 0; oy < oh; ++oy) {
          const int64_t iy = oy * g.stride - g.padding + ky;
          float* dst = row + oy * ow;
          if (iy < 0 || iy >= g.height) {
            for (int64_t x = 0; x < ow; x += W)
              V::StoreN(dst + x, V::Zero(), ow - x < W ? static_cast<int>(ow - x) : W);
            continue;
          }
          const float* src = plane + iy * g.width + shift;
          if (g.stride == 1) {
            for (int64_t x = 0; x < ow; x += W) {
              const int64_t a = lo - x > 0 ? lo - x : 0, b = hi - x < W ? hi - x : W;
              V::StoreN(dst + x, V::LoadRange(src + x, static_cast<int>(a), static_cast<int>(b)),
                        ow - x < W ? static_cast<int>(ow - x) : W);
            }
          } else {
            for (int64_t x = 0; x < lo; ++x) dst[x] = 0.0f;
            for (int64_t x = lo; x < hi; ++x) dst[x] = src[x * g.stride];
            for (int64_t x = hi > lo ? hi : lo; x < ow; ++x) dst[x] = 0.0f;
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace dnnd::conv::internal
