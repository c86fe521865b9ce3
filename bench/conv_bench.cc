// ops::Conv2d on the convolution shapes of ResNet-20 at batch 128, forward
// alone (no graph) and forward + backward (data, weight and bias gradients),
// at 1 and 2 threads. bench/conv_compare.py runs it next to PyTorch.
//
//   build/bench/conv_bench --benchmark_counters_tabular=true
//
// Arguments: shape index (kShapes), threads.
#include <benchmark/benchmark.h>

#include <string>

#include "tensor/conv.h"
#include "tensor/ops.h"
#include "tensor/parallel.h"

namespace dnnd {
namespace {

constexpr int64_t kBatch = 128;

struct ConvShape {
  const char* name;
  int64_t c, oc, hw, k, stride, pad, groups;
  bool input_grad;  // false for a network's first layer
};

// 1x28x28 (Fashion-MNIST) and 3x32x32 (CIFAR) ResNet-20: the stem, then
// 16/32/64 channels with a stride-2 entry to stages 2 and 3, plus the 1x1
// stride-2 projection shortcut, and a depthwise conv for groups == c.
const ConvShape kShapes[] = {
    {"stem28_1x16", 1, 16, 28, 3, 1, 1, 1, false},
    {"s1_28_16x16", 16, 16, 28, 3, 1, 1, 1, true},
    {"s2in_28_16x32", 16, 32, 28, 3, 2, 1, 1, true},
    {"s2_14_32x32", 32, 32, 14, 3, 1, 1, 1, true},
    {"s3in_14_32x64", 32, 64, 14, 3, 2, 1, 1, true},
    {"s3_7_64x64", 64, 64, 7, 3, 1, 1, 1, true},
    {"proj_28_16x32_1x1", 16, 32, 28, 1, 2, 0, 1, true},
    {"stem32_3x16", 3, 16, 32, 3, 1, 1, 1, false},
    {"s1_32_16x16", 16, 16, 32, 3, 1, 1, 1, true},
    {"s2in_32_16x32", 16, 32, 32, 3, 2, 1, 1, true},
    {"s2_16_32x32", 32, 32, 16, 3, 1, 1, 1, true},
    {"s3in_16_32x64", 32, 64, 16, 3, 2, 1, 1, true},
    {"s3_8_64x64", 64, 64, 8, 3, 1, 1, 1, true},
    {"dw_14_32", 32, 32, 14, 3, 1, 1, 32, true},
};
constexpr int kNumShapes = sizeof(kShapes) / sizeof(kShapes[0]);

double ForwardFlops(const ConvShape& s) {
  const int64_t o = (s.hw + 2 * s.pad - s.k) / s.stride + 1;
  return 2.0 * kBatch * s.oc * o * o * (s.c / s.groups) * s.k * s.k;
}

struct Inputs {
  Tensor x, w, b, g;
  explicit Inputs(const ConvShape& s) {
    Rng rng(7);
    const int64_t o = (s.hw + 2 * s.pad - s.k) / s.stride + 1;
    x = Tensor::Uniform({kBatch, s.c, s.hw, s.hw}, -1.0f, 1.0f, rng);
    w = Tensor::Uniform({s.oc, s.c / s.groups, s.k, s.k}, -0.2f, 0.2f, rng);
    b = Tensor::Uniform({s.oc}, -0.1f, 0.1f, rng);
    g = Tensor::Uniform({kBatch, s.oc, o, o}, -1.0f, 1.0f, rng);
  }
};

void ConvForward(benchmark::State& state) {
  const ConvShape& s = kShapes[state.range(0)];
  SetThreads(static_cast<int>(state.range(1)));
  Inputs in(s);
  NoGradGuard no_grad;
  for (auto _ : state) {
    Tensor y = ops::Conv2d(in.x, in.w, in.b, s.stride, s.pad, s.groups);
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GFLOP_per_s"] = benchmark::Counter(
      ForwardFlops(s) * static_cast<double>(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
  state.SetLabel(s.name);
}

void ConvForwardBackward(benchmark::State& state) {
  const ConvShape& s = kShapes[state.range(0)];
  SetThreads(static_cast<int>(state.range(1)));
  Inputs in(s);
  in.x.set_requires_grad(s.input_grad);
  in.w.set_requires_grad(true);
  in.b.set_requires_grad(true);
  for (auto _ : state) {
    Tensor y = ops::Conv2d(in.x, in.w, in.b, s.stride, s.pad, s.groups);
    y.backward(in.g);
    in.w.zero_grad();
    in.b.zero_grad();
    if (s.input_grad) in.x.zero_grad();
  }
  const double flops = ForwardFlops(s) * (s.input_grad ? 3 : 2);
  state.counters["GFLOP_per_s"] = benchmark::Counter(
      flops * static_cast<double>(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
  state.SetLabel(s.name);
}

// The two backward products alone, on the kernels (no autograd).
conv::Params ParamsOf(const ConvShape& s) {
  return {kBatch, s.c, s.hw, s.hw, s.oc, s.k, s.k, s.stride, s.pad, s.groups};
}

void ConvBackwardData(benchmark::State& state) {
  const ConvShape& s = kShapes[state.range(0)];
  SetThreads(static_cast<int>(state.range(1)));
  Inputs in(s);
  Tensor gx = Tensor::Empty(in.x.shape());
  for (auto _ : state) conv::BackwardData(ParamsOf(s), in.g.data(), in.w.data(), gx.data());
  state.counters["GFLOP_per_s"] = benchmark::Counter(
      ForwardFlops(s) * static_cast<double>(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
  state.SetLabel(s.name);
}

void ConvBackwardWeight(benchmark::State& state) {
  const ConvShape& s = kShapes[state.range(0)];
  SetThreads(static_cast<int>(state.range(1)));
  Inputs in(s);
  Tensor gw = Tensor::Empty(in.w.shape()), gb = Tensor::Empty(in.b.shape());
  for (auto _ : state)
    conv::BackwardWeight(ParamsOf(s), in.x.data(), in.g.data(), gw.data(), gb.data());
  state.counters["GFLOP_per_s"] = benchmark::Counter(
      ForwardFlops(s) * static_cast<double>(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
  state.SetLabel(s.name);
}

// All three gradients through conv::Backward (one copy of gy on the grid
// serving both products); GFLOP/s counts the two products.
void ConvBackward(benchmark::State& state) {
  const ConvShape& s = kShapes[state.range(0)];
  SetThreads(static_cast<int>(state.range(1)));
  Inputs in(s);
  Tensor gx = Tensor::Empty(in.x.shape());
  Tensor gw = Tensor::Empty(in.w.shape()), gb = Tensor::Empty(in.b.shape());
  for (auto _ : state)
    conv::Backward(ParamsOf(s), in.x.data(), in.g.data(), in.w.data(), gx.data(), gw.data(),
                   gb.data());
  state.counters["GFLOP_per_s"] =
      benchmark::Counter(2 * ForwardFlops(s) * static_cast<double>(state.iterations()) / 1e9,
                         benchmark::Counter::kIsRate);
  state.SetLabel(s.name);
}

void Args(benchmark::internal::Benchmark* b) {
  for (int t = 1; t <= 2; ++t)
    for (int i = 0; i < kNumShapes; ++i) b->Args({i, t});
}

BENCHMARK(ConvForward)->Apply(Args)->UseRealTime();
BENCHMARK(ConvForwardBackward)->Apply(Args)->UseRealTime();
BENCHMARK(ConvBackwardData)->Apply(Args)->UseRealTime();
BENCHMARK(ConvBackwardWeight)->Apply(Args)->UseRealTime();
BENCHMARK(ConvBackward)->Apply(Args)->UseRealTime();

}  // namespace
}  // namespace dnnd

BENCHMARK_MAIN();
