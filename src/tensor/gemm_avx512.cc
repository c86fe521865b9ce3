// dnnd's AVX-512 SGEMM (see gemm.h). Only called when the CPU has AVX-512
// F/DQ/BW/VL (tensor/isa.h checks at run time).
//
// The classic Goto/BLIS structure, in row-major terms:
//   for each depth block of kc <= kKc (k split evenly):
//     for each column block of B sized so the packed block stays in L2:
//       pack B's block as kNr-column micro-panels [kc][kNr]
//       for each kMr rows of A:
//         pack them as one micro-panel [kc][kMr] (it stays in L1)
//         for each B micro-panel: the kMr x kNr micro-kernel, whose
//           accumulators live in zmm registers for the whole depth
// The micro-kernel is 12 x 32: 24 accumulators, 2 vector loads of B and 12
// broadcasts of A per 24 FMAs, the shape BLIS uses on Skylake-X (its 32 x 12,
// column-major). 8 x 48, 6 x 64 and 14 x 32, and depth blocks of 128 to 512,
// measured within the VM's noise of it on the MLP's products (per CPU-second,
// one thread), so the common choice stayed. What did matter: the 16 x 16
// transposes must be inlined (out of line, their registers went through the
// stack and packing cost a quarter of an NT product); unrolling the depth
// loop or prefetching C did not help. Edges are computed on zero-padded
// panels and written with masked stores; packing reads with masked loads, so
// nothing outside the operands is touched.
#if defined(__x86_64__)
#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <new>

#include "tensor/gemm.h"  // before the pragma: it includes the standard library

// GCC honours `#pragma GCC target`; clang ignores it and needs its attribute
// pragma (the fuzz build compiles every source with clang).
#if defined(__clang__)
#pragma clang attribute push( \
    __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")
// GCC 12's AVX-512 headers trip these on their own _mm512_undefined_ps()
// (a self-initialised variable); fixed in GCC 13.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace dnnd::kernels::internal {
namespace {

constexpr int kWidth = 16;            // floats per zmm register
constexpr int kMr = kAvx512TileRows;  // rows of C per micro-tile (broadcast from A)
constexpr int kNr = kAvx512TileCols;  // columns of C per micro-tile (loaded from B)
constexpr int kNv = kNr / kWidth;     // zmm vectors per micro-tile row
static_assert(kNr % kWidth == 0 && kMr <= kWidth);
constexpr int64_t kKc = 384;                 // deepest packed block: A's micro-panel 18 KB (L1)
constexpr int64_t kBBlockBytes = 640 << 10;  // packed B block: most of the 1 MB L2

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t RoundUp(int64_t a, int64_t b) { return CeilDiv(a, b) * b; }

// Lanes [0, n) of a vector, n clamped to [0, 16].
__mmask16 Lanes(int64_t n) {
  if (n <= 0) return 0;
  if (n >= kWidth) return 0xFFFF;
  return static_cast<__mmask16>((1u << n) - 1u);
}

// A 64-byte aligned float buffer that only grows; one per thread and use.
class Buffer {
 public:
  Buffer() = default;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { std::free(data_); }
  float* Get(int64_t n) {
    if (n > size_) {
      std::free(data_);
      data_ = static_cast<float*>(std::aligned_alloc(64, RoundUp(n * sizeof(float), 64)));
      size_ = data_ ? n : 0;
      if (!data_) throw std::bad_alloc();
    }
    return data_;
  }

 private:
  float* data_ = nullptr;
  int64_t size_ = 0;
};

struct Scratch {
  Buffer a, b, x;
  Buffer a_pairs, b_pairs;  // bf16 products: the panels as pairs (floats' bits)
};
Scratch& ThreadScratch() {
  thread_local Scratch s;
  return s;
}

// --- packing ---------------------------------------------------------------------

// In-register transpose of a 16 x 16 block: r[i] lane t <- r[t] lane i.
// Four rounds: 32-bit interleave, 64-bit interleave, then two of 128-bit lane
// shuffles (each r[4g + c] holds column 4L + c of rows 4g..4g+3 in lane L
// after the second round).
// Always inlined (as TransposeBlock): called out of line, the 16 registers go
// through memory and packing costs a quarter of an NT product.
[[gnu::always_inline]] inline void Transpose16x16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int g = 0; g < 16; g += 4) {
    const __m512d t0 = _mm512_castps_pd(t[g]), t1 = _mm512_castps_pd(t[g + 1]);
    const __m512d t2 = _mm512_castps_pd(t[g + 2]), t3 = _mm512_castps_pd(t[g + 3]);
    r[g] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
    r[g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
    r[g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
    r[g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
  }
  for (int c = 0; c < 4; ++c) {
    t[c] = _mm512_shuffle_f32x4(r[c], r[c + 4], 0x88);
    t[c + 4] = _mm512_shuffle_f32x4(r[c], r[c + 4], 0xdd);
    t[c + 8] = _mm512_shuffle_f32x4(r[c + 8], r[c + 12], 0x88);
    t[c + 12] = _mm512_shuffle_f32x4(r[c + 8], r[c + 12], 0xdd);
  }
  for (int c = 0; c < 8; ++c) {
    r[c] = _mm512_shuffle_f32x4(t[c], t[c + 8], 0x88);
    r[c + 8] = _mm512_shuffle_f32x4(t[c], t[c + 8], 0xdd);
  }
}

// dst[t * dst_ld + i] = src[i * ld + t] for i < rows, t < cols (both <= 16);
// lanes [rows, width) of each written row are zero. Writes `width` floats
// of each of the `cols` destination rows; reads only the source block.
[[gnu::always_inline]] inline void TransposeBlock(const float* src, int64_t ld, int rows, int cols,
                                                  float* dst, int64_t dst_ld, int width) {
  __m512 r[16];
  const __mmask16 in = Lanes(cols);
  for (int i = 0; i < 16; ++i)
    r[i] = i < rows ? _mm512_maskz_loadu_ps(in, src + i * ld) : _mm512_setzero_ps();
  Transpose16x16(r);
  const __mmask16 out = Lanes(width);
  for (int t = 0; t < cols; ++t) _mm512_mask_storeu_ps(dst + t * dst_ld, out, r[t]);
}

// One micro-panel of A: rows [i0, i0 + rows) (rows <= kMr), depth
// [p0, p0 + kc), as dst[p * kMr + r]; rows past `rows` are zero.
void PackA(const SgemmArgs& g, int64_t i0, int rows, int64_t p0, int64_t kc, float* dst) {
  if (g.trans_a) {
    // op(A)[i, p] = a[p * lda + i]: the panel's rows sit side by side.
    const float* src = g.a + p0 * g.lda + i0;
    const __mmask16 in = Lanes(rows), out = Lanes(kMr);
    for (int64_t p = 0; p < kc; ++p)
      _mm512_mask_storeu_ps(dst + p * kMr, out, _mm512_maskz_loadu_ps(in, src + p * g.lda));
    return;
  }
  const float* src = g.a + i0 * g.lda + p0;
  for (int64_t p = 0; p < kc; p += kWidth)
    TransposeBlock(src + p, g.lda, rows, static_cast<int>(std::min<int64_t>(kWidth, kc - p)),
                   dst + p * kMr, kMr, kMr);
}

// Columns [j0, j0 + nc) of op(B), depth [p0, p0 + kc), as micro-panels of
// kNr columns: panel q at dst + q * kc * kNr, element [p][c]; columns past
// nc are zero.
void PackB(const SgemmArgs& g, int64_t j0, int64_t nc, int64_t p0, int64_t kc, float* dst) {
  for (int64_t jp = 0; jp < nc; jp += kNr) {
    const int64_t cols = std::min<int64_t>(kNr, nc - jp);
    float* panel = dst + jp * kc;
    if (!g.trans_b) {
      const float* src = g.b + p0 * g.ldb + j0 + jp;
      for (int64_t p = 0; p < kc; ++p)
        for (int v = 0; v < kNv; ++v)
          _mm512_store_ps(
              panel + p * kNr + v * kWidth,
              _mm512_maskz_loadu_ps(Lanes(cols - v * kWidth), src + p * g.ldb + v * kWidth));
      continue;
    }
    // op(B)[p, j] = b[j * ldb + p]: 16 columns at a time, transposed.
    for (int v = 0; v < kNv; ++v) {
      const int rows = static_cast<int>(std::clamp<int64_t>(cols - v * kWidth, 0, kWidth));
      const float* src = rows > 0 ? g.b + (j0 + jp + v * kWidth) * g.ldb + p0 : nullptr;
      for (int64_t p = 0; p < kc; p += kWidth)
        TransposeBlock(rows > 0 ? src + p : nullptr, g.ldb, rows,
                       static_cast<int>(std::min<int64_t>(kWidth, kc - p)),
                       panel + p * kNr + v * kWidth, kNr, kWidth);
    }
  }
}

// --- the micro-kernel ----------------------------------------------------------

// Writes the accumulators as C[rows, cols] = alpha * acc + beta * C.
__attribute__((always_inline)) inline void StoreC(__m512 (&acc)[kMr][kNv], float* c, int64_t ldc,
                                                  int rows, int cols, float alpha, float beta) {
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  if (rows == kMr && cols == kNr) {
#pragma GCC unroll 16
    for (int r = 0; r < kMr; ++r)
#pragma GCC unroll 4
      for (int v = 0; v < kNv; ++v) {
        float* out = c + r * ldc + v * kWidth;
        __m512 x = _mm512_mul_ps(acc[r][v], va);
        // beta == 0 must not read C (it may hold NaN), as in BLAS.
        if (beta != 0.0f) x = _mm512_fmadd_ps(vb, _mm512_loadu_ps(out), x);
        _mm512_storeu_ps(out, x);
      }
    return;
  }
  __mmask16 mask[kNv];
  for (int v = 0; v < kNv; ++v) mask[v] = Lanes(cols - v * kWidth);
#pragma GCC unroll 16
  for (int r = 0; r < kMr; ++r) {
    if (r >= rows) break;
#pragma GCC unroll 4
    for (int v = 0; v < kNv; ++v) {
      float* out = c + r * ldc + v * kWidth;
      __m512 x = _mm512_mul_ps(acc[r][v], va);
      if (beta != 0.0f) x = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mask[v], out), x);
      _mm512_mask_storeu_ps(out, mask[v], x);
    }
  }
}

// C[rows, cols] tile at c = alpha * (a-panel x b-panel) + beta * C, over
// depth kc. a: [kc][kMr], b: [kc][kNr] (64-byte aligned), both zero-padded.
// All loops over r and v have constant bounds, so the accumulators stay in
// registers; edges only change how the tile is written.
void MicroKernel(int64_t kc, const float* __restrict a, const float* __restrict b, float* c,
                 int64_t ldc, int rows, int cols, float alpha, float beta) {
  __m512 acc[kMr][kNv];
#pragma GCC unroll 16
  for (int r = 0; r < kMr; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < kNv; ++v) acc[r][v] = _mm512_setzero_ps();
  for (int64_t p = 0; p < kc; ++p) {
    __m512 bv[kNv];
#pragma GCC unroll 4
    for (int v = 0; v < kNv; ++v) bv[v] = _mm512_load_ps(b + p * kNr + v * kWidth);
#pragma GCC unroll 16
    for (int r = 0; r < kMr; ++r) {
      const __m512 av = _mm512_set1_ps(a[p * kMr + r]);
#pragma GCC unroll 4
      for (int v = 0; v < kNv; ++v) acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
    }
  }
  StoreC(acc, c, ldc, rows, cols, alpha, beta);
}

// --- bfloat16 products (isa.h's Precision) -----------------------------------------
//
// The same panels, converted once per panel to pairs along the depth: pair
// p of a row holds depth 2p (low half) and 2p+1 (high half) as bf16, kept in
// the panel's float buffers as bit patterns. vdpbf16ps then adds both
// products of a pair into one float32 lane: the depth loop halves.

#define DNND_BF16_TARGET \
  __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma,avx512bf16")))

// src [kc][lanes] floats to dst [ceil(kc / 2)][lanes] pairs (lanes <= 32).
DNND_BF16_TARGET void PairPanel(const float* src, int64_t kc, int lanes, float* dst) {
  for (int64_t p = 0; p < kc; p += 2) {
    const float* even = src + p * lanes;
    const float* odd = p + 1 < kc ? even + lanes : nullptr;
    float* out = dst + p / 2 * lanes;
    for (int l = 0; l < lanes; l += kWidth) {
      const __mmask16 m = Lanes(lanes - l);
      const __m512 e = _mm512_maskz_loadu_ps(m, even + l);
      const __m512 o = odd ? _mm512_maskz_loadu_ps(m, odd + l) : _mm512_setzero_ps();
      const __m512i lo = _mm512_cvtepu16_epi32(reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(e)));
      const __m512i hi = _mm512_slli_epi32(
          _mm512_cvtepu16_epi32(reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(o))), 16);
      _mm512_mask_storeu_ps(out + l, m, _mm512_castsi512_ps(_mm512_or_si512(lo, hi)));
    }
  }
}

// MicroKernel on pair panels: a [kp][kMr], b [kp][kNr] pairs, kp = ceil(kc / 2).
DNND_BF16_TARGET void MicroKernelBf16(int64_t kp, const float* __restrict a,
                                      const float* __restrict b, float* c, int64_t ldc, int rows,
                                      int cols, float alpha, float beta) {
  __m512 acc[kMr][kNv];
#pragma GCC unroll 16
  for (int r = 0; r < kMr; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < kNv; ++v) acc[r][v] = _mm512_setzero_ps();
  for (int64_t p = 0; p < kp; ++p) {
    __m512bh bv[kNv];
#pragma GCC unroll 4
    for (int v = 0; v < kNv; ++v)
      bv[v] = reinterpret_cast<__m512bh>(_mm512_load_ps(b + p * kNr + v * kWidth));
#pragma GCC unroll 16
    for (int r = 0; r < kMr; ++r) {
      const __m512bh av = reinterpret_cast<__m512bh>(_mm512_set1_ps(a[p * kMr + r]));
#pragma GCC unroll 4
      for (int v = 0; v < kNv; ++v) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], av, bv[v]);
    }
  }
  StoreC(acc, c, ldc, rows, cols, alpha, beta);
}

#undef DNND_BF16_TARGET

// --- special shapes --------------------------------------------------------------

// C = beta * C (alpha == 0 or k == 0): A and B are not read.
void ScaleC(const SgemmArgs& g) {
  for (int64_t i = 0; i < g.m; ++i) {
    float* row = g.c + i * g.ldc;
    for (int64_t j = 0; j < g.n; ++j) row[j] = g.beta == 0.0f ? 0.0f : g.beta * row[j];
  }
}

// y[j] = alpha * sum_p x[p] * B[p * ldb + j] + beta * y[j], j < n: B's rows
// streamed once, 128 columns of accumulators at a time.
void GemvRows(int64_t n, int64_t k, float alpha, const float* x, const float* b, int64_t ldb,
              float beta, float* y) {
  constexpr int kVecs = 8;
  for (int64_t j0 = 0; j0 < n; j0 += kVecs * kWidth) {
    __mmask16 mask[kVecs];
    for (int v = 0; v < kVecs; ++v) mask[v] = Lanes(n - j0 - v * kWidth);
    __m512 acc[kVecs];
    for (int v = 0; v < kVecs; ++v) acc[v] = _mm512_setzero_ps();
    for (int64_t p = 0; p < k; ++p) {
      const __m512 xv = _mm512_set1_ps(x[p]);
      const float* row = b + p * ldb + j0;
#pragma GCC unroll 8
      for (int v = 0; v < kVecs; ++v)
        acc[v] = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(mask[v], row + v * kWidth), acc[v]);
    }
    for (int v = 0; v < kVecs; ++v) {
      float* out = y + j0 + v * kWidth;
      __m512 r = _mm512_mul_ps(acc[v], _mm512_set1_ps(alpha));
      if (beta != 0.0f)
        r = _mm512_fmadd_ps(_mm512_set1_ps(beta), _mm512_maskz_loadu_ps(mask[v], out), r);
      _mm512_mask_storeu_ps(out, mask[v], r);
    }
  }
}

// y[j] = alpha * dot(x, B[j * ldb, +k)) + beta * y[j] for R consecutive j.
template <int R>
void DotRows(int64_t k, float alpha, const float* x, const float* b, int64_t ldb, float beta,
             float* y) {
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  for (int64_t p = 0; p < k; p += kWidth) {
    const __mmask16 mask = Lanes(k - p);
    const __m512 xv = _mm512_maskz_loadu_ps(mask, x + p);
    for (int r = 0; r < R; ++r)
      acc[r] = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(mask, b + r * ldb + p), acc[r]);
  }
  for (int r = 0; r < R; ++r) {
    const float dot = alpha * _mm512_reduce_add_ps(acc[r]);
    y[r] = beta == 0.0f ? dot : dot + beta * y[r];
  }
}

// C has one row: a matrix-vector product reads B once, where packing would
// copy all of B for a single use.
void Gemv(const SgemmArgs& g) {
  const float* x = g.a;
  if (g.trans_a && g.lda != 1) {  // op(A)'s one row is A's column: gather it
    float* packed = ThreadScratch().x.Get(g.k);
    for (int64_t p = 0; p < g.k; ++p) packed[p] = g.a[p * g.lda];
    x = packed;
  }
  if (!g.trans_b) {
    GemvRows(g.n, g.k, g.alpha, x, g.b, g.ldb, g.beta, g.c);
    return;
  }
  int64_t j = 0;
  for (; j + 4 <= g.n; j += 4) DotRows<4>(g.k, g.alpha, x, g.b + j * g.ldb, g.ldb, g.beta, g.c + j);
  for (; j < g.n; ++j) DotRows<1>(g.k, g.alpha, x, g.b + j * g.ldb, g.ldb, g.beta, g.c + j);
}

}  // namespace

void SgemmAvx512(const SgemmArgs& g) {
  if (g.m <= 0 || g.n <= 0) return;
  if (g.k <= 0 || g.alpha == 0.0f) {
    ScaleC(g);
    return;
  }
  if (g.m == 1) {
    Gemv(g);
    return;
  }
  // Depth split evenly (784 -> 2 x 392, not 384 + 384 + 16); the B block
  // then as wide as fits the L2 budget, split evenly in whole micro-panels.
  const int64_t kc_step = CeilDiv(g.k, CeilDiv(g.k, kKc));
  const int64_t b_cols = std::max<int64_t>(kNr, kBBlockBytes / (kc_step * sizeof(float)));
  const int64_t nc_step = RoundUp(CeilDiv(g.n, CeilDiv(g.n, b_cols)), kNr);
  Scratch& scratch = ThreadScratch();
  const int64_t b_floats = kc_step * std::min(nc_step, RoundUp(g.n, kNr));
  float* packed_b = scratch.b.Get(b_floats);
  float* packed_a = scratch.a.Get(kc_step * kMr);
  float* pairs_b = g.bf16 ? scratch.b_pairs.Get(b_floats) : nullptr;
  float* pairs_a = g.bf16 ? scratch.a_pairs.Get(kc_step * kMr) : nullptr;
  for (int64_t p0 = 0; p0 < g.k; p0 += kc_step) {
    const int64_t kc = std::min(kc_step, g.k - p0);
    // Later depth blocks add to what the first one wrote.
    const float beta = p0 == 0 ? g.beta : 1.0f;
    for (int64_t j0 = 0; j0 < g.n; j0 += nc_step) {
      const int64_t nc = std::min(nc_step, g.n - j0);
      PackB(g, j0, nc, p0, kc, packed_b);
      const int64_t kp = CeilDiv(kc, 2);  // pairs per panel row (bf16)
      if (g.bf16)
        for (int64_t jp = 0; jp < nc; jp += kNr)
          PairPanel(packed_b + jp * kc, kc, kNr, pairs_b + jp * kp);
      for (int64_t i0 = 0; i0 < g.m; i0 += kMr) {
        const int rows = static_cast<int>(std::min<int64_t>(kMr, g.m - i0));
        PackA(g, i0, rows, p0, kc, packed_a);
        if (g.bf16) PairPanel(packed_a, kc, kMr, pairs_a);
        float* c_row = g.c + i0 * g.ldc + j0;
        for (int64_t jp = 0; jp < nc; jp += kNr) {
          const int cols = static_cast<int>(std::min<int64_t>(kNr, nc - jp));
          if (g.bf16)
            MicroKernelBf16(kp, pairs_a, pairs_b + jp * kp, c_row + jp, g.ldc, rows, cols, g.alpha,
                            beta);
          else
            MicroKernel(kc, packed_a, packed_b + jp * kc, c_row + jp, g.ldc, rows, cols, g.alpha,
                        beta);
        }
      }
    }
  }
}

}  // namespace dnnd::kernels::internal

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif

#endif  // __x86_64__
