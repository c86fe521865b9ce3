// The convolution tile kernel for AVX2 + FMA (see conv_tile.h). Only called
// when the CPU has both (conv.cc checks at run time).
#if defined(__x86_64__)
#include <immintrin.h>

#include "tensor/conv.h"  // before the pragma: it includes the standard library
#include "tensor/norm_simd.h"

// GCC honours `#pragma GCC target`; clang ignores it and needs its attribute
// pragma (the fuzz build compiles every source with clang).
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif

#include "tensor/conv_tile.h"
#include "tensor/norm_tile.h"

namespace dnnd::conv::internal {
namespace {

struct VecAvx2 {
  using T = __m256;
  static constexpr int kWidth = 8;
  static T Zero() { return _mm256_setzero_ps(); }
  static T Load(const float* p) { return _mm256_loadu_ps(p); }
  static void Store(float* p, T v) { _mm256_storeu_ps(p, v); }
  static T Broadcast(float s) { return _mm256_set1_ps(s); }
  static T Fma(T a, T b, T acc) { return _mm256_fmadd_ps(a, b, acc); }
  static float Sum(T v) {
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    return _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)));
  }
  using Mask = __m256i;
  static Mask Lanes(int lo, int hi) {  // all-ones in lanes [lo, hi)
    const __m256i i = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32(lo), i),
                               _mm256_cmpgt_epi32(_mm256_set1_epi32(hi), i));
  }
  static T LoadRange(const float* p, int lo, int hi) {
    if (lo == 0 && hi == kWidth) return Load(p);
    return _mm256_maskload_ps(p, Lanes(lo, hi));
  }
  static void StoreMasked(float* p, T v, Mask m) { _mm256_maskstore_ps(p, m, v); }
  static void StoreN(float* p, T v, int n) {
    if (n == kWidth)
      Store(p, v);
    else
      _mm256_maskstore_ps(p, Lanes(0, n), v);
  }
  // For norm_tile.h.
  static T Add(T a, T b) { return _mm256_add_ps(a, b); }
  static T Sub(T a, T b) { return _mm256_sub_ps(a, b); }
  static T Mul(T a, T b) { return _mm256_mul_ps(a, b); }
  static T Relu(T v) { return _mm256_max_ps(Zero(), v); }  // v when v is NaN
  static T ReluMask(T y, T g) { return _mm256_and_ps(_mm256_cmp_ps(y, Zero(), _CMP_GT_OQ), g); }
  static T Keep(T v, int64_t n) {
    return n >= kWidth ? v : _mm256_and_ps(_mm256_castsi256_ps(Lanes(0, static_cast<int>(n))), v);
  }
};

// 4 rows x 3 vectors: 12 accumulators of the 16 registers.
constexpr int kMr = 4, kNv = 3;
void Gemm(const GemmArgs& g) { GemmTiles<VecAvx2, kMr, kNv>(g); }
// 2 x 6 dot tiles: 12 accumulators.
void Dot(const DotArgs& d) { DotTiles<VecAvx2, 2, 6>(d); }
void Im2Col(const kernels::Conv2dGeometry& g, const float* image, float* cols, int64_t ld) {
  Im2ColT<VecAvx2>(g, image, cols, ld);
}
bool PadRows(const float* src, int64_t h, int64_t w, int pad, float* dst) {
  return PadRowsT<VecAvx2>(src, h, w, pad, dst);
}

}  // namespace

Isa Avx2Isa() {
  return {"avx2", kMr, kNv * VecAvx2::kWidth, &Gemm, &Im2Col, &Dot, VecAvx2::kWidth, &PadRows};
}

}  // namespace dnnd::conv::internal

namespace dnnd::kernels::internal {
NormIsa Avx2Norm() { return NormTiles<conv::internal::VecAvx2>::Record(); }
}  // namespace dnnd::kernels::internal

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#endif  // __x86_64__
