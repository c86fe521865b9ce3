// Training throughput (samples/s) of a ResNet-20-shaped network built from
// ops directly, batch 128, SGD with momentum, on synthetic data:
//
//   build/bench/resnet_bench --benchmark_counters_tabular=true
//
// Arguments: input channels (1: 1x28x28, 3: 3x32x32), threads.
// The network: a 3x3 stem to 16 channels, three stages of three basic blocks
// (3x3 conv, ReLU, 3x3 conv, + shortcut, ReLU) at 16/32/64 channels, stages
// 2 and 3 entered with stride 2 and a 1x1 stride-2 projection shortcut, then
// a linear classifier on the flattened last feature map. Convolutions have no
// bias. There is no batch normalisation yet (ops::BatchNorm is not in this
// tree): bench/torch_reference.py's "resnet20" is the same network without
// it, so the two sides do the same work.
#include <benchmark/benchmark.h>

#include <cmath>
#include <string>
#include <vector>

#include "tensor/conv.h"
#include "tensor/nn.h"
#include "tensor/ops.h"
#include "tensor/optim.h"
#include "tensor/parallel.h"

namespace dnnd {
namespace {

constexpr int64_t kBatch = 128;

struct ResNet20 {
  nn::NamedTensors params;
  Rng rng{3};

  Tensor Param(const std::string& name, Shape shape, int64_t fan_in) {
    // Kaiming-uniform-like scale; the values only need to stay finite.
    const float bound = 1.0f / std::sqrt(static_cast<float>(fan_in));
    Tensor t = Tensor::Uniform(std::move(shape), -bound, bound, rng);
    t.set_requires_grad(true);
    params.emplace_back(name, t);
    return t;
  }
  Tensor ConvWeight(const std::string& name, int64_t in, int64_t out, int64_t k) {
    return Param(name, {out, in, k, k}, in * k * k);
  }

  struct Block {
    Tensor w1, w2, proj;  // proj undefined: identity shortcut
    int64_t stride;
  };
  Tensor stem, fc_w, fc_b;
  std::vector<Block> blocks;

  ResNet20(int64_t in_channels, int64_t hw) {
    stem = ConvWeight("stem", in_channels, 16, 3);
    int64_t c = 16;
    for (int stage = 0; stage < 3; ++stage) {
      const int64_t oc = 16 << stage;
      for (int b = 0; b < 3; ++b) {
        const std::string p = "s" + std::to_string(stage) + "b" + std::to_string(b);
        Block blk;
        blk.stride = (stage > 0 && b == 0) ? 2 : 1;
        blk.w1 = ConvWeight(p + ".w1", c, oc, 3);
        blk.w2 = ConvWeight(p + ".w2", oc, oc, 3);
        if (blk.stride != 1 || c != oc) blk.proj = ConvWeight(p + ".proj", c, oc, 1);
        blocks.push_back(blk);
        c = oc;
      }
    }
    const int64_t last = (hw + 3) / 4;  // 28 -> 7, 32 -> 8
    fc_w = Param("fc.w", {10, 64 * last * last}, 64 * last * last);
    fc_b = Param("fc.b", {10}, 64 * last * last);
  }

  Tensor Forward(const Tensor& x) const {
    Tensor h = ops::Relu(ops::Conv2d(x, stem, Tensor(), 1, 1));
    for (const Block& b : blocks) {
      Tensor y = ops::Relu(ops::Conv2d(h, b.w1, Tensor(), b.stride, 1));
      y = ops::Conv2d(y, b.w2, Tensor(), 1, 1);
      Tensor sc = b.proj.defined() ? ops::Conv2d(h, b.proj, Tensor(), b.stride, 0) : h;
      h = ops::Relu(ops::Add(y, sc));
    }
    return ops::Linear(ops::Flatten(h), fc_w, fc_b);
  }
};

void TrainResNet20(benchmark::State& state) {
  const int64_t channels = state.range(0), hw = channels == 1 ? 28 : 32;
  SetThreads(static_cast<int>(state.range(1)));
  ResNet20 net(channels, hw);
  optim::OptimizerOptions o{.type = "sgd", .lr = 0.01f, .momentum = 0.9f};
  auto opt = ValueOrThrow(optim::MakeOptimizer(o, net.params));
  Rng rng(2);
  Tensor x = Tensor::Uniform({kBatch, channels, hw, hw}, 0.0f, 1.0f, rng);
  std::vector<int32_t> labels;
  for (int64_t i = 0; i < kBatch; ++i) labels.push_back(static_cast<int32_t>(i % 10));
  for (auto _ : state) {
    Tensor loss = ops::CrossEntropy(net.Forward(x), labels);
    loss.backward();
    opt->Step();
    opt->ZeroGrad();
    benchmark::DoNotOptimize(loss.item());
  }
  state.counters["samples_per_s"] = benchmark::Counter(
      static_cast<double>(state.iterations() * kBatch), benchmark::Counter::kIsRate);
  state.SetLabel("conv=" + conv::CurrentIsa() + " blas=" + BlasCoreName());
}

BENCHMARK(TrainResNet20)
    ->Args({1, 1})
    ->Args({1, 2})
    ->Args({3, 1})
    ->Args({3, 2})
    ->UseRealTime()
    ->MinTime(3.0);

}  // namespace
}  // namespace dnnd

BENCHMARK_MAIN();
