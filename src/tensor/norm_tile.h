// Batch norm's channel passes (norm_simd.h) written once against a vector
// type V and compiled per instruction set: conv_avx2.cc and conv_avx512.cc
// include this after their target pragma, next to conv_tile.h, and reuse its
// vector types. As there, nothing from the standard library is included here
// and everything is in an anonymous namespace.
//
// Beyond conv_tile.h's operations V provides Add, Sub, Mul, Relu(v) =
// max(v, 0) keeping NaN, ReluMask(y, g) = y > 0 ? g : 0 per lane, and
// Keep(v, n) (the first n lanes of v, the others zero).
#pragma once

#include "tensor/norm_simd.h"

namespace dnnd::kernels::internal {
namespace {

template <class V>
struct NormTiles {
  using T = typename V::T;
  static constexpr int W = V::kWidth;

  // Lanes [0, n) from p (all of them for n >= W), zeros past n, never read.
  static T LoadN(const float* p, int64_t n) {
    return n >= W ? V::Load(p) : V::LoadRange(p, 0, static_cast<int>(n));
  }
  static void StoreN(float* p, T v, int64_t n) {
    if (n >= W)
      V::Store(p, v);
    else
      V::StoreN(p, v, static_cast<int>(n));
  }
  // g masked by the fused ReLU (norm_simd.h's NormRelu), d = x - mu: the
  // mask is y > 0 for a saved output y, fma(d, scale, shift) > 0 recomputed
  // (as Normalize computed it) for an affine one. Lanes past n load as 0.
  static T Grad(const float* g, const NormRelu& relu, int64_t at, T d, T sv, T hv, int64_t n) {
    const T gv = LoadN(g + at, n);
    if (relu.y) return V::ReluMask(LoadN(relu.y + at, n), gv);
    if (relu.affine) return V::ReluMask(V::Fma(d, sv, hv), gv);
    return gv;
  }

  static float RunSum(const float* x, int64_t len) {
    T a = V::Zero(), b = V::Zero();
    int64_t j = 0;
    for (; j + 2 * W <= len; j += 2 * W) {
      a = V::Add(a, V::Load(x + j));
      b = V::Add(b, V::Load(x + j + W));
    }
    for (; j < len; j += W) a = V::Add(a, LoadN(x + j, len - j));
    return V::Sum(V::Add(a, b));
  }

  static void Stats(const NormChannel& ch, const float* x, float k, double* s1, double* s2) {
    const T kv = V::Broadcast(k);
    double d1 = 0, d2 = 0;
    for (int64_t i = 0; i < ch.n; ++i)
      for (int64_t o = 0; o < ch.plane; o += kNormSumBlock) {
        const float* r = x + i * ch.stride + o;
        const int64_t len = ch.plane - o < kNormSumBlock ? ch.plane - o : kNormSumBlock;
        T a1 = V::Zero(), a2 = V::Zero(), b1 = V::Zero(), b2 = V::Zero();
        int64_t j = 0;
        for (; j + 2 * W <= len; j += 2 * W) {
          const T d = V::Sub(V::Load(r + j), kv), e = V::Sub(V::Load(r + j + W), kv);
          a1 = V::Add(a1, d);
          a2 = V::Fma(d, d, a2);
          b1 = V::Add(b1, e);
          b2 = V::Fma(e, e, b2);
        }
        for (; j < len; j += W) {
          const T d = V::Keep(V::Sub(LoadN(r + j, len - j), kv), len - j);
          a1 = V::Add(a1, d);
          a2 = V::Fma(d, d, a2);
        }
        d1 += V::Sum(V::Add(a1, b1));
        d2 += V::Sum(V::Add(a2, b2));
      }
    *s1 = d1;
    *s2 = d2;
  }

  static void Normalize(const NormChannel& ch, const float* x, float mu, float scale, float shift,
                        bool relu, float* y) {
    const T mv = V::Broadcast(mu), sv = V::Broadcast(scale), hv = V::Broadcast(shift);
    for (int64_t i = 0; i < ch.n; ++i) {
      const float* r = x + i * ch.stride;
      float* out = y + i * ch.stride;
      for (int64_t j = 0; j < ch.plane; j += W) {
        // One fused multiply-add: BackwardSums/Dx recompute it for the mask.
        T v = V::Fma(V::Sub(LoadN(r + j, ch.plane - j), mv), sv, hv);
        if (relu) v = V::Relu(v);
        StoreN(out + j, v, ch.plane - j);
      }
    }
  }

  static void BackwardSums(const NormChannel& ch, const float* x, const float* g,
                           const NormRelu& relu, float mu, double* sg, double* sgx) {
    const T mv = V::Broadcast(mu), sv = V::Broadcast(relu.scale), hv = V::Broadcast(relu.shift);
    double d1 = 0, d2 = 0;
    for (int64_t i = 0; i < ch.n; ++i)
      for (int64_t o = 0; o < ch.plane; o += kNormSumBlock) {
        const int64_t at = i * ch.stride + o;
        const int64_t len = ch.plane - o < kNormSumBlock ? ch.plane - o : kNormSumBlock;
        // Two chains of sums: one would wait on the add's latency each step.
        T a1 = V::Zero(), a2 = V::Zero(), b1 = V::Zero(), b2 = V::Zero();
        int64_t j = 0;
        for (; j + 2 * W <= len; j += 2 * W) {
          const T d = V::Sub(V::Load(x + at + j), mv), e = V::Sub(V::Load(x + at + j + W), mv);
          const T gm = Grad(g, relu, at + j, d, sv, hv, W);
          const T gn = Grad(g, relu, at + j + W, e, sv, hv, W);
          a1 = V::Add(a1, gm);
          a2 = V::Fma(gm, d, a2);
          b1 = V::Add(b1, gn);
          b2 = V::Fma(gn, e, b2);
        }
        for (; j < len; j += W) {
          // Past len g loads as zeros: gm * (0 - mu) adds 0.
          const T d = V::Sub(LoadN(x + at + j, len - j), mv);
          const T gm = Grad(g, relu, at + j, d, sv, hv, len - j);
          a1 = V::Add(a1, gm);
          a2 = V::Fma(gm, d, a2);
        }
        d1 += V::Sum(V::Add(a1, b1));
        d2 += V::Sum(V::Add(a2, b2));
      }
    *sg = d1;
    *sgx = d2;
  }

  static void BackwardDx(const NormChannel& ch, const float* x, const float* g,
                         const NormRelu& relu, float mu, float k, float a, float b,
                         bool batch_stats, float* dx) {
    const T mv = V::Broadcast(mu), kv = V::Broadcast(k), av = V::Broadcast(a), bv = V::Broadcast(b);
    const T sv = V::Broadcast(relu.scale), hv = V::Broadcast(relu.shift);
    const bool need_d = batch_stats || relu.affine;
    for (int64_t i = 0; i < ch.n; ++i) {
      const int64_t at = i * ch.stride;
      for (int64_t j = 0; j < ch.plane; j += W) {
        const int64_t left = ch.plane - j;
        const T d = need_d ? V::Sub(LoadN(x + at + j, left), mv) : V::Zero();
        const T gm = Grad(g, relu, at + j, d, sv, hv, left);
        const T out =
            batch_stats ? V::Mul(kv, V::Sub(V::Sub(gm, av), V::Mul(d, bv))) : V::Mul(kv, gm);
        StoreN(dx + at + j, out, left);
      }
    }
  }

  static NormIsa Record() { return {&Stats, &RunSum, &Normalize, &BackwardSums, &BackwardDx}; }
};

}  // namespace
}  // namespace dnnd::kernels::internal
