// 2-D convolution kernels (NCHW), forward and both backward products, with
// groups. ops::Conv2d is the autograd op over these.
//
// Convolution is a GEMM per group: W[oc/g, K] x B[K, pixels], K =
// (c/g)*kh*kw, over a chunk of samples; chunks run in parallel. The GEMM is
// dnnd's own tile kernel, compiled per instruction set (AVX-512, AVX2+FMA)
// and chosen once at run time from the CPU; it writes its tiles straight into
// NCHW (no transposes). B comes in one of three forms:
//  - stride 1 (padding below the kernel size): no im2col. Each channel of the
//    chunk is copied once into a zero-padded grid whose rows and samples
//    share their padding; row (c, ky, kx) of B is then that grid read at the
//    fixed shift ky * row + kx, so B is a table of row offsets into one small
//    buffer. The grid's extra columns (right padding, rows below a sample)
//    produce outputs that are never stored: 7-30 % more multiply-adds than
//    needed on 28x28 to 7x7 planes, against an im2col 9x the input's size.
//  - other strides, on outputs of 14x14 and more: the same on the input's
//    stride x stride phases (by row and column parity), each a grid of its
//    own, so tap (ky, kx) is phase (ky % s, kx % s) shifted; the phases
//    together are the padded input's size.
//  - otherwise: the im2col matrix of the chunk, sized to stay in L2.
// Without AVX2 the portable path calls OpenBLAS on im2col and scatters the
// result. A stride-1 input gradient is itself a convolution (of the output
// gradient with the flipped, transposed weights), so it runs on the same
// kernel; other strides use kernels::Gemm and col2im. The weight gradient is a
// "dot tile" kernel reducing over pixels, on the same forms of B. When
// both gradients of a stride-1 convolution run on the grid, Backward copies
// each chunk of the output gradient once for the two (it is the input
// gradient's grid, and the weight gradient's A read at an offset).
//
// With isa.h's Precision at bf16 (opt-in), Forward and Backward multiply in
// bfloat16 on the stride-1 grid of an ungrouped convolution (conv_bf16.cc
// says how the pairs are laid out); every other path, and BackwardData and
// BackwardWeight called alone, stay float32.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tensor/isa.h"
#include "tensor/kernels.h"

namespace dnnd::conv {

struct Params {
  int64_t n, c, h, w;  // input [n, c, h, w]
  int64_t oc, kh, kw;  // weight [oc, c / groups, kh, kw]
  int64_t stride, padding, groups;
  int64_t oh() const { return (h + 2 * padding - kh) / stride + 1; }
  int64_t ow() const { return (w + 2 * padding - kw) / stride + 1; }
};

// y[n, oc, oh, ow] = conv(x, w) + b (b may be null). y is overwritten.
void Forward(const Params& p, const float* x, const float* w, const float* b, float* y);
// gx[n, c, h, w] = d/dx of <y, gy>; overwritten.
void BackwardData(const Params& p, const float* gy, const float* w, float* gx);
// gw[oc, c/groups, kh, kw] and gb[oc] (either may be null) overwritten.
void BackwardWeight(const Params& p, const float* x, const float* gy, float* gw, float* gb);
// All three gradients (any may be null), as BackwardData and BackwardWeight
// compute them. On the grid (stride 1, tile kernels) one copy of each chunk's
// gy serves both products, where the two calls copy it once each.
void Backward(const Params& p, const float* x, const float* gy, const float* w, float* gx,
              float* gw, float* gb);

// The kernel sets this CPU can run ("avx512", "avx2", "portable"), best first,
// and the one in use: thin wrappers over tensor/isa.h, whose one setting
// (environment variable DNND_KERNELS) picks the kernels of GEMM and
// convolution together. SelectIsa switches (tests and benchmarks run every
// variant); it returns false for a name not in AvailableIsas().
inline std::vector<std::string> AvailableIsas() { return isa::Available(); }
inline std::string CurrentIsa() { return isa::CurrentName(); }
inline bool SelectIsa(const std::string& name) { return isa::Select(name); }

namespace internal {

// One GEMM for the tile kernels: out[map(i, j)] = sum_k A[i, k] B[k, j] + bias[i]
// for i < m, j < n. A is packed in blocks of mr rows, [m/mr][k][mr] (rows past
// m zero); row k of B starts at b + b_row[k] (rows may overlap: see the
// header comment), and its columns up to n rounded up to the kernel's nr are
// readable and finite (the ones past n unused).
// map(i, j) = i * row_stride + col_off[j]; col_off[j] < 0 drops column j.
struct GemmArgs {
  int64_t m, n, k;
  const float* a;
  const float* b;
  const int64_t* b_row;
  const float* bias;  // [m] or null
  float* out;
  int64_t row_stride;
  const int64_t* col_off;
};

// Weight-gradient products: c[i * ldc + j] += sum_{q < p} a[i * lda + q] *
// b[b_row[j] + q] for i < m, j < n; p is a multiple of the vector width (pad
// rows with zeros).
struct DotArgs {
  int64_t m, n, p;
  const float* a;
  int64_t lda;
  const float* b;
  const int64_t* b_row;
  float* c;
  int64_t ldc;
};

struct Isa {
  const char* name;
  int mr, nr;                          // tile rows and columns
  void (*gemm)(const GemmArgs& args);  // null: the portable OpenBLAS path
  // kernels::Im2Col's equivalent (null: use that one).
  void (*im2col)(const kernels::Conv2dGeometry& g, const float* image, float* cols, int64_t ld);
  void (*dot)(const DotArgs& args);  // null: OpenBLAS
  int width;                         // vector width in floats (DotArgs::p's multiple)
  // The grid's stride-1 rows (conv_tile.h's PadRowsT; null: a scalar copy).
  bool (*pad_rows)(const float* src, int64_t h, int64_t w, int pad, float* dst);
};
Isa Avx2Isa();    // conv_avx2.cc (x86-64 only)
Isa Avx512Isa();  // conv_avx512.cc (x86-64 only)

// The bfloat16 products (isa.h's Precision; conv_bf16.cc says where each
// kernel's pairs come from). A pair is a uint32: the bf16 of its even
// member in the low half, the odd one's in the high half.
struct Bf16Isa {
  int mr, nr;  // the GEMM's tile rows and columns
  // GemmArgs with a and b pointing at uint32 pairs (reinterpret_cast): a
  // packed [m/mr][k][mr] over k pair rows, b_row in uint32s.
  void (*gemm)(const GemmArgs& args);
  // DotArgs with a and b pointing at bf16s (uint16): lda, b_row and p in
  // bf16s, p a multiple of 32.
  void (*dot)(const DotArgs& args);
  // The grid's rows (as PadRowsT): channels `even` and `odd` (null: zeros)
  // interleaved as pairs, for the GEMM; or one channel as bf16, for the dot.
  // Both return whether every value read is finite.
  bool (*pair_rows)(const float* even, const float* odd, int64_t h, int64_t w, int pad,
                    uint32_t* dst);
  bool (*rows)(const float* src, int64_t h, int64_t w, int pad, uint16_t* dst);
};
Bf16Isa Avx512Bf16Isa();  // conv_bf16.cc (x86-64 only; CPUs with AVX512-BF16)

}  // namespace internal
}  // namespace dnnd::conv
