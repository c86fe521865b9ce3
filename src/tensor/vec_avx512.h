// The AVX-512F vector type of the tile kernels (conv_tile.h, norm_tile.h):
// included, like conv_tile.h, only after a file's target pragma for AVX-512
// (conv_avx512.cc, conv_bf16.cc), and, for the same reason, nothing from the
// standard library and everything in an anonymous namespace.
#pragma once

#include <immintrin.h>

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

}  // namespace
}  // namespace dnnd::conv::internal
