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
#include "tensor/vec_avx512.h"

namespace dnnd::conv::internal {
namespace {

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
