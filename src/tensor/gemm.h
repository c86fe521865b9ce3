// dnnd's own single-precision GEMM kernels, per instruction set (internal to
// src/tensor: kernels::Gemm is the public entry point, which splits a product
// across the thread pool and picks the kernel set from tensor/isa.h).
#pragma once

#include <cstdint>

namespace dnnd::kernels::internal {

// C = alpha * op(A) * op(B) + beta * C on strided row-major operands:
//   op(A)[i, p] = trans_a ? a[p * lda + i] : a[i * lda + p]   (i < m, p < k)
//   op(B)[p, j] = trans_b ? b[j * ldb + p] : b[p * ldb + j]   (p < k, j < n)
//   C[i, j]     = c[i * ldc + j]
// BLAS semantics: beta == 0 overwrites C without reading it (old NaNs
// vanish); alpha == 0 scales C by beta without reading A or B. The caller
// owns all buffers; nothing outside them is read or written.
struct SgemmArgs {
  bool trans_a, trans_b;
  int64_t m, n, k;
  float alpha;
  const float* a;
  int64_t lda;
  const float* b;
  int64_t ldb;
  float beta;
  float* c;
  int64_t ldc;
  // Round op(A) and op(B) to bfloat16 and multiply with vdpbf16ps (float32
  // sums): only on a CPU with AVX512-BF16 (isa.h's Precision). A C of one
  // row (a GEMV) stays float32.
  bool bf16 = false;
};

// The AVX-512 kernel's register tile: rows and columns of C per micro-tile.
// Callers that split a product across threads cut at these multiples.
inline constexpr int kAvx512TileRows = 12;
inline constexpr int kAvx512TileCols = 32;

// The AVX-512 kernel (gemm_avx512.cc, x86-64 only). Compiled for AVX-512
// F/DQ/BW/VL: call only when isa::Current() is KernelSet::kAvx512.
// Single-threaded, reentrant (packing buffers are per thread).
void SgemmAvx512(const SgemmArgs& args);

}  // namespace dnnd::kernels::internal
