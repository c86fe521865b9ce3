// The convolution tile kernel for AVX-512F (see conv_tile.h). Only called
// when the CPU has it (conv.cc checks at run time).
#if defined(__x86_64__)
#include <immintrin.h>

#include "tensor/conv.h"  // before the pragma: it includes the standard library
#include "tensor/norm_simd.h"

// GCC honours `#pragma GCC target`; clang ignores it and needs its attribute
// pragma (the fuzz build compiles every source with clang).
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
#endif

#include "tensor/conv_tile.h"
#include "tensor/norm_tile.h"

namespace dnnd::conv::internal {
namespace {

struct VecAvx512 {
  using T = __m512;
  static constexpr int kWidth = 16;
  static T Zero() { return _mm512_setzero_ps(); }
  static T Load(const float* p) { return _mm512_loadu_ps(p); }
  static void Store(float* p, T v) { _mm512_storeu_ps(p, v); }
  static T Broadcast(float s) { return _mm512_set1_ps(s); }
  static T Fma(T a, T b, T acc) { return _mm512_fmadd_ps(a, b, acc); }
  static float Sum(T v) { return _mm512_reduce_add_ps(v); }
  using Mask = __mmask16;
  static Mask Lanes(int lo, int hi) {  // lanes [lo, hi), 0 <= lo, hi <= 16
    if (hi <= lo) return 0;
    return static_cast<__mmask16>(((1u << hi) - 1u) & ~((1u << lo) - 1u));
  }
  static T LoadRange(const float* p, int lo, int hi) {
    if (lo == 0 && hi == kWidth) return Load(p);
    return _mm512_maskz_loadu_ps(Lanes(lo, hi), p);
  }
  static void StoreN(float* p, T v, int n) { _mm512_mask_storeu_ps(p, Lanes(0, n), v); }
  static void StoreMasked(float* p, T v, Mask m) { _mm512_mask_storeu_ps(p, m, v); }
  // For norm_tile.h.
  static T Add(T a, T b) { return _mm512_add_ps(a, b); }
  static T Sub(T a, T b) { return _mm512_sub_ps(a, b); }
  static T Mul(T a, T b) { return _mm512_mul_ps(a, b); }
  static T Relu(T v) { return _mm512_max_ps(Zero(), v); }  // v when v is NaN
  static T ReluMask(T y, T g) {
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(y, Zero(), _CMP_GT_OQ), g);
  }
  static T Keep(T v, int64_t n) {
    return n >= kWidth ? v : _mm512_maskz_mov_ps(Lanes(0, static_cast<int>(n)), v);
  }
};

// 8 rows x 3 vectors: 24 accumulators of the 32 registers.
constexpr int kMr = 8, kNv = 3;
void Gemm(const GemmArgs& g) { GemmTiles<VecAvx512, kMr, kNv>(g); }
// 4 x 6 dot tiles: 24 accumulators.
void Dot(const DotArgs& d) { DotTiles<VecAvx512, 4, 6>(d); }
void Im2Col(const kernels::Conv2dGeometry& g, const float* image, float* cols, int64_t ld) {
  Im2ColT<VecAvx512>(g, image, cols, ld);
}
bool PadRows(const float* src, int64_t h, int64_t w, int pad, float* dst) {
  return PadRowsT<VecAvx512>(src, h, w, pad, dst);
}

}  // namespace

Isa Avx512Isa() {
  return {"avx512", kMr,  kNv * VecAvx512::kWidth, &Gemm,
          &Im2Col,  &Dot, VecAvx512::kWidth,       &PadRows};
}

}  // namespace dnnd::conv::internal

namespace dnnd::kernels::internal {
NormIsa Avx512Norm() { return NormTiles<conv::internal::VecAvx512>::Record(); }
}  // namespace dnnd::kernels::internal

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#endif  // __x86_64__
