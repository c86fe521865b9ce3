// The convolution GEMM micro-kernel, written once against a vector type V and
// compiled once per instruction set: conv_avx2.cc and conv_avx512.cc include
// this after their `#pragma GCC target`, so every function here takes that
// file's target. Include nothing from the standard library here (a template
// instantiated under a target pragma could be merged with the portable one by
// the linker); everything is in an anonymous namespace for the same reason.
//
// V provides: T (the vector), kWidth, Zero(), Load(p), Store(p, v),
// Broadcast(s), Fma(a, b, acc) = a * b + acc, LoadRange(p, lo, hi) (lanes
// [lo, hi) from p[lane], the others zero and never read; lo >= hi gives
// zeros) and StoreN(p, v, n) (the first n lanes).
#pragma once

#include "tensor/conv.h"

namespace dnnd::conv::internal {
namespace {

// Stores tile rows acc[r][*] (kNr = NV * V::kWidth columns) to their places.
template <class V, int MR, int NV>
__attribute__((always_inline)) inline void StoreTile(const GemmArgs& g, int64_t i0, int64_t j0,
                                                     typename V::T (&acc)[MR][NV]) {
  constexpr int kNr = NV * V::kWidth;
  const int64_t rows = g.m - i0 < MR ? g.m - i0 : MR;
  const int64_t cols = g.n - j0 < kNr ? g.n - j0 : kNr;
  const int64_t* off = g.col_off + j0;
  if (cols == kNr && off[kNr - 1] - off[0] == kNr - 1) {  // one contiguous run
    float* dst = g.out + i0 * g.row_stride + off[0];
    for (int r = 0; r < MR; ++r) {
      if (r >= rows) break;
      for (int v = 0; v < NV; ++v) V::Store(dst + r * g.row_stride + v * V::kWidth, acc[r][v]);
    }
    return;
  }
  alignas(64) float tile[MR][kNr];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) V::Store(&tile[r][v * V::kWidth], acc[r][v]);
  for (int64_t j = 0; j < cols;) {  // runs of columns contiguous in the output
    int64_t e = j + 1;
    while (e < cols && off[e] == off[e - 1] + 1) ++e;
    for (int64_t r = 0; r < rows; ++r) {
      float* dst = g.out + (i0 + r) * g.row_stride + off[j];
      for (int64_t q = j; q < e; ++q) dst[q - j] = tile[r][q];
    }
    j = e;
  }
}

// C = A B (+ bias) over the whole of g (see GemmArgs), tile by tile.
template <class V, int MR, int NV>
void GemmTiles(const GemmArgs& g) {
  constexpr int kNr = NV * V::kWidth;
  using T = typename V::T;
  for (int64_t j0 = 0; j0 < g.n; j0 += kNr) {
    const float* bp = g.b + j0;
    for (int64_t i0 = 0; i0 < g.m; i0 += MR) {
      const float* ap = g.a + i0 * g.k;  // packed [k][MR] block of rows i0..
      T acc[MR][NV];
      for (int r = 0; r < MR; ++r) {
        const T init = g.bias ? V::Broadcast(i0 + r < g.m ? g.bias[i0 + r] : 0.0f) : V::Zero();
        for (int v = 0; v < NV; ++v) acc[r][v] = init;
      }
      const float* brow = bp;
      for (int64_t k = 0; k < g.k; ++k, brow += g.ldb, ap += MR) {
        T bv[NV];
        for (int v = 0; v < NV; ++v) bv[v] = V::Load(brow + v * V::kWidth);
        for (int r = 0; r < MR; ++r) {
          const T a = V::Broadcast(ap[r]);
          for (int v = 0; v < NV; ++v) acc[r][v] = V::Fma(a, bv[v], acc[r][v]);
        }
      }
      StoreTile<V, MR, NV>(g, i0, j0, acc);
    }
  }
}

// kernels::Im2Col with vector copies: a stride-1 row is the input row shifted,
// with zeros where it runs into the padding.
template <class V>
void Im2ColT(const kernels::Conv2dGeometry& g, const float* image, float* cols, int64_t ld) {
  constexpr int W = V::kWidth;
  const int64_t oh = g.out_h(), ow = g.out_w();
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
