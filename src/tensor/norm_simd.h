// Batch norm's per-channel passes ([n, c, plane] layout, plane > 1) with
// explicit AVX-512 / AVX2 vectors, chosen by tensor/isa.h like the
// convolution kernels. The binary's baseline is x86-64-v2, so the Eigen
// expressions in kernels_nn.cc run 4 floats wide and pay a horizontal sum
// per sample's run of a channel (49 floats on a 7x7 plane); these kernels
// keep vector partial sums across each block of up to kSumBlock floats and
// fold them into double once per block, as the Eigen path does per run.
// kernels_nn.cc falls back to its Eigen code on the portable set.
#pragma once

#include <cstdint>

namespace dnnd::kernels::internal {

// Floats summed in float before a fold into double (as kernels_nn.cc).
constexpr int64_t kNormSumBlock = 1024;

// One channel: n runs of `plane` floats, run i at i * stride.
struct NormChannel {
  int64_t n, plane, stride;
};

// How a ReLU fused after the batch norm is undone in backward: not at all
// (neither set), from its saved output (g passes where y > 0), or from x
// (affine: g passes where (x - mu) * scale + shift > 0, the value normalize
// computed before its max, recomputed bit for bit). The last reads one
// stream less per pass: x is read anyway.
struct NormRelu {
  const float* y = nullptr;
  bool affine = false;
  float scale = 0, shift = 0;
};

struct NormIsa {
  // Sum over the channel of (x - k) and (x - k)^2.
  void (*stats)(const NormChannel& ch, const float* x, float k, double* s1, double* s2);
  // Sum of x's first run (k above is its mean).
  float (*run_sum)(const float* x, int64_t len);
  // y = fma(x - mu, scale, shift), then max(y, 0) when relu (NaN stays NaN).
  void (*normalize)(const NormChannel& ch, const float* x, float mu, float scale, float shift,
                    bool relu, float* y);
  // With gm = g masked by `relu` (above): sums of gm and gm * (x - mu).
  void (*backward_sums)(const NormChannel& ch, const float* x, const float* g, const NormRelu& relu,
                        float mu, double* sg, double* sgx);
  // dx = k * (gm - a - (x - mu) * b); without batch_stats dx = k * gm.
  void (*backward_dx)(const NormChannel& ch, const float* x, const float* g, const NormRelu& relu,
                      float mu, float k, float a, float b, bool batch_stats, float* dx);
};

NormIsa Avx2Norm();    // conv_avx2.cc (x86-64 only)
NormIsa Avx512Norm();  // conv_avx512.cc (x86-64 only)
// The current kernel set's (tensor/isa.h); nullptr on the portable set.
const NormIsa* CurrentNorm();

}  // namespace dnnd::kernels::internal
