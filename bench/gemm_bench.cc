// GFLOP/s of the MLP's matrix products (784-512-256-10 at batch 128), one
// thread: dnnd's AVX-512 kernel against OpenBLAS (whatever core it runs,
// printed in the label; OPENBLAS_CORETYPE=Haswell here), next to the CPU's
// AVX-512 FMA peak measured by a register-only FMA loop.
//
//   build/bench/gemm_bench --benchmark_counters_tabular=true
//
// Rates are per CPU second of the calling thread (Google Benchmark's default),
// which a shared machine disturbs less than wall time. Skipped (with a
// message) on a CPU without AVX-512.
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <immintrin.h>

#include <string>
#include <vector>

#include "tensor/gemm.h"
#include "tensor/isa.h"
#include "tensor/parallel.h"

namespace dnnd {
namespace {

constexpr int64_t kBatch = 128;

struct Product {
  const char* name;
  bool trans_a, trans_b;
  int64_t m, n, k;
};

// One training step's products: forward x W^T, weight gradient gy^T x, input
// gradient gy W (the first layer's is never computed).
constexpr Product kMlpProducts[] = {
    {"fwd1_x.W1T", false, true, kBatch, 512, 784}, {"fwd2_x.W2T", false, true, kBatch, 256, 512},
    {"fwd3_x.W3T", false, true, kBatch, 10, 256},  {"gw1_gyT.x", true, false, 512, 784, kBatch},
    {"gw2_gyT.x", true, false, 256, 512, kBatch},  {"gw3_gyT.x", true, false, 10, 256, kBatch},
    {"gx2_gy.W2", false, false, kBatch, 512, 256}, {"gx3_gy.W3", false, false, kBatch, 256, 10},
    {"predict_1.W1T", false, true, 1, 512, 784},
};

bool HasAvx512() { return isa::AvailableSets().front() == isa::KernelSet::kAvx512; }

void RunProduct(benchmark::State& state, const Product& p, bool ours) {
  if (ours && !HasAvx512()) {
    state.SkipWithError("no AVX-512 on this CPU");
    return;
  }
  SetThreads(1);  // OpenBLAS on the calling thread only
  std::vector<float> a(p.m * p.k, 0.5f), b(p.k * p.n, 0.25f), c(p.m * p.n, 0.0f);
  const int64_t lda = p.trans_a ? p.m : p.k, ldb = p.trans_b ? p.k : p.n;
  for (auto _ : state) {
    if (ours) {
      kernels::internal::SgemmAvx512({p.trans_a, p.trans_b, p.m, p.n, p.k, 1.0f, a.data(), lda,
                                      b.data(), ldb, 0.0f, c.data(), p.n});
    } else if (p.m == 1) {  // what kernels::Gemm calls for one row on OpenBLAS
      cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(p.n), static_cast<int>(p.k), 1.0f,
                  b.data(), static_cast<int>(ldb), a.data(), 1, 0.0f, c.data(), 1);
    } else {
      cblas_sgemm(CblasRowMajor, p.trans_a ? CblasTrans : CblasNoTrans,
                  p.trans_b ? CblasTrans : CblasNoTrans, static_cast<int>(p.m),
                  static_cast<int>(p.n), static_cast<int>(p.k), 1.0f, a.data(),
                  static_cast<int>(lda), b.data(), static_cast<int>(ldb), 0.0f, c.data(),
                  static_cast<int>(p.n));
    }
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP_per_s"] =
      benchmark::Counter(2.0 * p.m * p.n * p.k * static_cast<double>(state.iterations()) / 1e9,
                         benchmark::Counter::kIsRate);
  state.SetLabel(ours ? "dnnd avx512" : "openblas " + BlasCoreName());
}

// 24 independent accumulator chains (more than FMA latency x ports needs),
// no memory operands: 32 flops per FMA. noipa: the compiler must not see
// that the result depends only on the argument and hoist the call.
__attribute__((target("avx512f"), noipa)) float FmaLoop(int64_t iterations) {
  __m512 acc[24];
  for (int i = 0; i < 24; ++i) acc[i] = _mm512_set1_ps(1e-3f * i);
  const __m512 scale = _mm512_set1_ps(0.999999f), shift = _mm512_set1_ps(1e-7f);
  for (int64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 24
    for (int i = 0; i < 24; ++i) acc[i] = _mm512_fmadd_ps(acc[i], scale, shift);
  }
  __m512 sum = acc[0];
  for (int i = 1; i < 24; ++i) sum = _mm512_add_ps(sum, acc[i]);
  float lanes[16];
  _mm512_storeu_ps(lanes, sum);
  return lanes[0] + lanes[15];
}

void BM_Avx512FmaPeak(benchmark::State& state) {
  if (!HasAvx512()) {
    state.SkipWithError("no AVX-512 on this CPU");
    return;
  }
  constexpr int64_t kIterations = 1 << 20;
  for (auto _ : state) benchmark::DoNotOptimize(FmaLoop(kIterations));
  state.counters["GFLOP_per_s"] =
      benchmark::Counter(24.0 * 32 * kIterations * static_cast<double>(state.iterations()) / 1e9,
                         benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Avx512FmaPeak)->MinTime(1.0);

// Registers one benchmark per product and implementation, alternating (dnnd,
// OpenBLAS) so a noisy neighbour hits both alike.
int RegisterProducts() {
  for (const Product& p : kMlpProducts)
    for (bool ours : {true, false})
      benchmark::RegisterBenchmark(
          (std::string("BM_Gemm/") + p.name + (ours ? "/dnnd" : "/openblas")).c_str(),
          [p, ours](benchmark::State& s) { RunProduct(s, p, ours); })
          ->MinTime(0.5);
  return 0;
}
[[maybe_unused]] const int kRegistered = RegisterProducts();

}  // namespace
}  // namespace dnnd

BENCHMARK_MAIN();
