// The convolution tile kernel for AVX-512F (see conv_tile.h). Only called
// when the CPU has it (conv.cc checks at run time).
#if defined(__x86_64__)
#include <immintrin.h>

#include "tensor/conv.h"  // before the pragma: it includes the standard library

// GCC honours `#pragma GCC target`; clang ignores it and needs its attribute
// pragma (the fuzz build compiles every source with clang).
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
#endif

#include "tensor/conv_tile.h"

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
};

// 8 rows x 3 vectors: 24 accumulators of the 32 registers.
constexpr int kMr = 8, kNv = 3;
void Gemm(const GemmArgs& g) { GemmTiles<VecAvx512, kMr, kNv>(g); }
// 4 x 6 dot tiles: 24 accumulators.
void Dot(const DotArgs& d) { DotTiles<VecAvx512, 4, 6>(d); }
void Im2Col(const kernels::Conv2dGeometry& g, const float* image, float* cols, int64_t ld) {
  Im2ColT<VecAvx512>(g, image, cols, ld);
}

}  // namespace

Isa Avx512Isa() {
  return {"avx512", kMr, kNv * VecAvx512::kWidth, &Gemm, &Im2Col, &Dot, VecAvx512::kWidth};
}

}  // namespace dnnd::conv::internal

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#endif  // __x86_64__
