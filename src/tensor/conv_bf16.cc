// The convolution's bfloat16 products for AVX512-BF16 (isa.h's Precision):
// vdpbf16ps multiplies 16 pairs of bf16 and adds each pair's two products
// into one float32 lane, twice the multiply-adds of an FMA per instruction.
// Only called when the CPU has AVX512-BF16 and the avx512 set runs (conv.cc
// checks at run time).
//
// Where the pairs come from (conv.h's Bf16Isa):
// - the tile GEMM (forward and input gradient) reduces over input channels
//   and taps, so a lane's pair is two channels at the same tap and column:
//   its grid holds channels 2c and 2c+1 interleaved, one uint32 per point,
//   and its packed A the two channels' weights of each tap;
// - the dot kernel (weight gradient) reduces over a chunk's pixels, so a
//   lane's pair is two neighbouring pixels: its grids are plain bf16 rows,
//   and both operands pair the same pixels however far the tap shifts B.
#if defined(__x86_64__)
#include <immintrin.h>

#include "tensor/conv.h"  // before the pragma: it includes the standard library

#if defined(__clang__)
#pragma clang attribute push(                                                          \
    __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16,avx2,fma"))), \
    apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16,avx2,fma")
#endif

#include "tensor/conv_tile.h"
#include "tensor/vec_avx512.h"

namespace dnnd::conv::internal {
namespace {

using V = VecAvx512;

__m512bh AsBf16(__m512i v) { return reinterpret_cast<__m512bh>(v); }

// Round-to-nearest-even bf16 of 16 floats (NaN stays NaN, Inf stays Inf).
__m256i ToBf16(__m512 v) { return reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(v)); }

// out = A B (+ bias) as GemmTiles, with a and b holding uint32 pairs of bf16
// (a packed [m/MR][k][MR], k counting pair rows; b's rows at b_row, in
// uint32s). Stores go through conv_tile.h's StoreTile, as the float kernel's.
template <int MR, int NV>
void GemmTilesBf16(const GemmArgs& g) {
  constexpr int kNr = NV * V::kWidth;
  const uint32_t* const a = reinterpret_cast<const uint32_t*>(g.a);
  const uint32_t* const b = reinterpret_cast<const uint32_t*>(g.b);
  for (int64_t j0 = 0; j0 < g.n; j0 += kNr) {
    const bool contiguous = ContiguousColumns<kNr>(g, j0);
    const TileScatter<V, NV> scatter =
        contiguous ? TileScatter<V, NV>(g, j0, 0)
                   : TileScatter<V, NV>(g, j0, g.n - j0 < kNr ? g.n - j0 : kNr);
    for (int64_t i0 = 0; i0 < g.m; i0 += MR) {
      const uint32_t* ap = a + i0 * g.k;
      __m512 acc[MR][NV];
      for (int r = 0; r < MR; ++r) {
        const __m512 init = g.bias ? V::Broadcast(i0 + r < g.m ? g.bias[i0 + r] : 0.0f) : V::Zero();
        for (int v = 0; v < NV; ++v) acc[r][v] = init;
      }
      for (int64_t k = 0; k < g.k; ++k, ap += MR) {
        const uint32_t* brow = b + j0 + g.b_row[k];
        __m512bh bv[NV];
        for (int v = 0; v < NV; ++v) bv[v] = AsBf16(_mm512_loadu_si512(brow + v * V::kWidth));
        for (int r = 0; r < MR; ++r) {
          const __m512bh av = AsBf16(_mm512_set1_epi32(static_cast<int>(ap[r])));
          for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], av, bv[v]);
        }
      }
      StoreTile<V, MR, NV>(g, i0, j0, contiguous ? nullptr : &scatter, acc);
    }
  }
}

// c[i, j] += sum_q a[i, q] b[b_row[j] + q] as DotTiles, a and b holding bf16
// (lda, b_row and p counted in bf16s; p a multiple of 32).
template <int MR, int NB>
void DotTilesBf16(const DotArgs& d) {
  const uint16_t* const a = reinterpret_cast<const uint16_t*>(d.a);
  const uint16_t* const b = reinterpret_cast<const uint16_t*>(d.b);
  for (int64_t i0 = 0; i0 < d.m; i0 += MR) {
    const uint16_t* arow[MR];
    for (int r = 0; r < MR; ++r) arow[r] = a + (i0 + r < d.m ? i0 + r : i0) * d.lda;
    for (int64_t j0 = 0; j0 < d.n; j0 += NB) {
      const uint16_t* brow[NB];
      for (int j = 0; j < NB; ++j) brow[j] = b + d.b_row[j0 + j < d.n ? j0 + j : j0];
      __m512 acc[MR][NB];
      for (int r = 0; r < MR; ++r)
        for (int j = 0; j < NB; ++j) acc[r][j] = V::Zero();
      for (int64_t p = 0; p < d.p; p += 2 * V::kWidth) {
        __m512bh av[MR];
        for (int r = 0; r < MR; ++r) av[r] = AsBf16(_mm512_loadu_si512(arow[r] + p));
        for (int j = 0; j < NB; ++j) {
          const __m512bh bv = AsBf16(_mm512_loadu_si512(brow[j] + p));
          for (int r = 0; r < MR; ++r) acc[r][j] = _mm512_dpbf16_ps(acc[r][j], av[r], bv);
        }
      }
      for (int r = 0; r < MR && i0 + r < d.m; ++r)
        for (int j = 0; j < NB && j0 + j < d.n; ++j)
          d.c[(i0 + r) * d.ldc + j0 + j] += V::Sum(acc[r][j]);
    }
  }
}

// Accumulates v * 0 (0 for a finite v, NaN otherwise) into probe.
__m512 Probe(__m512 probe, __m512 v) { return V::Add(probe, V::Mul(v, V::Zero())); }

// PadRowsT's pair-grid twin: h rows of w floats from `even` and `odd` (null:
// zeros) to rows of `pad` zero pairs and then w uint32 pairs (even's bf16 in
// the low half). Returns whether every value read is finite.
bool PairRows(const float* even, const float* odd, int64_t h, int64_t w, int pad, uint32_t* dst) {
  __m512 probe = V::Zero();
  for (int64_t r = 0; r < h; ++r, dst += pad + w) {
    _mm512_mask_storeu_epi32(dst, V::Lanes(0, pad), _mm512_setzero_si512());
    uint32_t* const d = dst + pad;
    for (int64_t j = 0; j < w; j += V::kWidth) {
      const int n = w - j < V::kWidth ? static_cast<int>(w - j) : V::kWidth;
      const __m512 e = V::LoadRange(even + r * w + j, 0, n);
      const __m512 o = odd ? V::LoadRange(odd + r * w + j, 0, n) : V::Zero();
      probe = Probe(Probe(probe, e), o);
      const __m512i lo = _mm512_cvtepu16_epi32(ToBf16(e));
      const __m512i hi = _mm512_slli_epi32(_mm512_cvtepu16_epi32(ToBf16(o)), 16);
      _mm512_mask_storeu_epi32(d + j, V::Lanes(0, n), _mm512_or_si512(lo, hi));
    }
  }
  return V::Sum(probe) == 0.0f;
}

// PadRowsT to bf16: h rows of w floats to rows of `pad` zeros and then the w
// values as bf16. Returns whether every value read is finite.
bool Rows(const float* src, int64_t h, int64_t w, int pad, uint16_t* dst) {
  __m512 probe = V::Zero();
  for (int64_t r = 0; r < h; ++r, src += w, dst += pad + w) {
    _mm256_mask_storeu_epi16(dst, static_cast<__mmask16>(V::Lanes(0, pad)), _mm256_setzero_si256());
    for (int64_t j = 0; j < w; j += V::kWidth) {
      const int n = w - j < V::kWidth ? static_cast<int>(w - j) : V::kWidth;
      const __m512 v = V::LoadRange(src + j, 0, n);
      probe = Probe(probe, v);
      _mm256_mask_storeu_epi16(dst + pad + j, static_cast<__mmask16>(V::Lanes(0, n)), ToBf16(v));
    }
  }
  return V::Sum(probe) == 0.0f;
}

void Gemm(const GemmArgs& g) { GemmTilesBf16<8, 3>(g); }
void Dot(const DotArgs& d) { DotTilesBf16<4, 6>(d); }

}  // namespace

Bf16Isa Avx512Bf16Isa() { return {8, 3 * V::kWidth, &Gemm, &Dot, &PairRows, &Rows}; }

}  // namespace dnnd::conv::internal

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#endif  // __x86_64__
