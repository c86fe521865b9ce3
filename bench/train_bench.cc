// Training throughput (samples/s) of the benchmark models at batch 128, on
// synthetic Fashion-MNIST-shaped data, plus the GEMM roofline of the MLP:
// exactly the GEMMs one MLP step performs, bare, through kernels::Gemm (on
// the kernel set in the label: OpenBLAS, or dnnd's own with kernels=avx512).
//
//   build/bench/train_bench --benchmark_counters_tabular=true
//
// Thread counts are arguments (1 and 2); dnnd's one budget sizes OpenBLAS and
// its own pool together.
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <cstdio>
#include <string>

#include "tensor/isa.h"
#include "tensor/kernels.h"
#include "tensor/model_spec.h"
#include "tensor/nn.h"
#include "tensor/optim.h"
#include "tensor/parallel.h"

namespace dnnd {
namespace {

constexpr int64_t kBatch = 128;

ModelSpec LoadSpec(const std::string& name) {
  std::string path = std::string(DNND_SOURCE_DIR) + "/configs/models/" + name + ".toml";
  FILE* f = std::fopen(path.c_str(), "rb");
  std::string text;
  char buf[4096];
  size_t n;
  while (f && (n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
  if (f) std::fclose(f);
  return ValueOrThrow(ParseModelSpecText(text, path));
}

// Multiply-adds of one sample's forward pass through the convolutions and
// linear layers (2 FLOP each); a training step costs about three forwards
// (forward, input gradient, weight gradient).
double ForwardMacs(const nn::Graph& model, const Shape& input) {
  std::vector<Shape> shapes;
  double macs = 0;
  for (size_t i = 0; i < model.size(); ++i) {
    std::vector<Shape> in;
    for (int k : model.inputs(i)) in.push_back(k == nn::Graph::kInput ? input : shapes[k]);
    shapes.push_back(ValueOrThrow(model.at(i)->OutputShapeOf(in)));
    if (auto* c = dynamic_cast<const nn::Conv2d*>(model.at(i).get()))
      macs += static_cast<double>(c->weight.numel()) * shapes.back()[1] * shapes.back()[2];
    if (auto* l = dynamic_cast<const nn::Linear*>(model.at(i).get()))
      macs += static_cast<double>(l->weight.numel());
  }
  return macs;
}

// `input` overrides the spec's input shape (ResNet-20 on 1x28x28).
void TrainModel(benchmark::State& state, const std::string& name, bool sgd = false,
                Shape input = {}, int64_t batch = kBatch) {
  SetThreads(static_cast<int>(state.range(0)));
  ModelSpec spec = LoadSpec(name);
  if (sgd) spec.optimizer = {.type = "sgd", .lr = 0.1f, .momentum = 0.9f};
  if (!input.empty()) spec.input = input;
  auto model = ValueOrThrow(BuildModel(spec, 1));
  auto opt = ValueOrThrow(optim::MakeOptimizer(spec.optimizer, model->NamedParameters()));
  Rng rng(2);
  Shape xs = {batch};
  xs.insert(xs.end(), spec.input.begin(), spec.input.end());
  Tensor x = Tensor::Uniform(xs, 0.0f, 1.0f, rng);
  nn::Target target;
  for (int64_t i = 0; i < batch; ++i) target.labels.push_back(static_cast<int32_t>(i % 10));
  for (auto _ : state) {
    Tensor loss = nn::ComputeLoss(spec.loss, model->Forward(x), target);
    loss.backward();
    opt->Step();
    opt->ZeroGrad();
    benchmark::DoNotOptimize(loss.item());
  }
  state.counters["samples_per_s"] = benchmark::Counter(
      static_cast<double>(state.iterations() * batch), benchmark::Counter::kIsRate);
  if (name != "mlp") {
    const double flops = 3 * 2 * ForwardMacs(*model, spec.input) * batch;
    state.counters["GFLOP_per_s"] = benchmark::Counter(
        flops * static_cast<double>(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
  }
  if (name == "mlp" && !sgd) {
    // forward 2*B*(784*512 + 512*256 + 256*10); backward twice that, minus the
    // input gradient of the first layer, which is never computed.
    double macs = 784.0 * 512 + 512.0 * 256 + 256.0 * 10;
    double flops = batch * (2 * macs + 4 * macs - 2 * 784.0 * 512);
    state.counters["GFLOP_per_s"] = benchmark::Counter(
        flops * static_cast<double>(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
  }
  state.SetLabel("blas=" + BlasCoreName() + " kernels=" + isa::CurrentName() +
                 " precision=" + isa::Name(isa::CurrentPrecision()));
}

// The same GEMMs, and only them, with no autograd, allocation or element-wise
// work: the best an MLP step could do on these GEMM kernels.
void MlpGemmRoofline(benchmark::State& state) {
  SetThreads(static_cast<int>(state.range(0)));
  const int64_t dims[] = {784, 512, 256, 10};
  Rng rng(3);
  std::vector<Tensor> w, a, g;
  for (int l = 0; l < 3; ++l) {
    w.push_back(Tensor::Uniform({dims[l + 1], dims[l]}, -0.1f, 0.1f, rng));
    a.push_back(Tensor::Uniform({kBatch, dims[l]}, 0.0f, 1.0f, rng));
    g.push_back(Tensor::Uniform({kBatch, dims[l + 1]}, -0.1f, 0.1f, rng));
  }
  std::vector<Tensor> out, gw, gx;
  for (int l = 0; l < 3; ++l) {
    out.push_back(Tensor::Empty({kBatch, dims[l + 1]}));
    gw.push_back(Tensor::Empty({dims[l + 1], dims[l]}));
    gx.push_back(Tensor::Empty({kBatch, dims[l]}));
  }
  for (auto _ : state) {
    for (int l = 0; l < 3; ++l)
      kernels::Gemm(false, true, kBatch, dims[l + 1], dims[l], 1.0f, a[l].data(), w[l].data(), 0.0f,
                    out[l].data());
    for (int l = 2; l >= 0; --l) {
      kernels::Gemm(true, false, dims[l + 1], dims[l], kBatch, 1.0f, g[l].data(), a[l].data(), 0.0f,
                    gw[l].data());
      if (l > 0)
        kernels::Gemm(false, false, kBatch, dims[l], dims[l + 1], 1.0f, g[l].data(), w[l].data(),
                      0.0f, gx[l].data());
    }
    benchmark::ClobberMemory();
  }
  double macs = 784.0 * 512 + 512.0 * 256 + 256.0 * 10;
  double flops = kBatch * (6 * macs - 2 * 784.0 * 512);
  state.counters["GFLOP_per_s"] = benchmark::Counter(
      flops * static_cast<double>(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
  state.counters["samples_per_s"] = benchmark::Counter(
      static_cast<double>(state.iterations() * kBatch), benchmark::Counter::kIsRate);
  state.SetLabel("blas=" + BlasCoreName() + " kernels=" + isa::CurrentName() +
                 " precision=" + isa::Name(isa::CurrentPrecision()));
}

void BM_TrainMlp(benchmark::State& s) { TrainModel(s, "mlp"); }
void BM_TrainLenet(benchmark::State& s) { TrainModel(s, "lenet"); }
void BM_TrainMlpSgd(benchmark::State& s) { TrainModel(s, "mlp", true); }
// ResNet-20 (configs/models/resnet20.toml) with SGD momentum, on Fashion-MNIST's
// 1x28x28 and CIFAR-10's 3x32x32.
void BM_TrainResnet20Gray(benchmark::State& s) { TrainModel(s, "resnet20", true, {1, 28, 28}); }
// Batch 64: one data-parallel worker's share of batch 128 (scale_compare.py).
void BM_TrainResnet20GrayBatch64(benchmark::State& s) {
  TrainModel(s, "resnet20", true, {1, 28, 28}, 64);
}
void BM_TrainResnet20Rgb(benchmark::State& s) { TrainModel(s, "resnet20", true, {3, 32, 32}); }
BENCHMARK(BM_TrainResnet20Gray)->Arg(1)->Arg(2)->UseRealTime()->MinTime(4.0);
BENCHMARK(BM_TrainResnet20GrayBatch64)->Arg(1)->UseRealTime()->MinTime(4.0);
BENCHMARK(BM_TrainResnet20Rgb)->Arg(1)->Arg(2)->UseRealTime()->MinTime(4.0);
void BM_TrainLenetSgd(benchmark::State& s) { TrainModel(s, "lenet", true); }
BENCHMARK(BM_TrainMlp)->Arg(1)->Arg(2)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_TrainLenet)->Arg(1)->Arg(2)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_TrainMlpSgd)->Arg(1)->Arg(2)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_TrainLenetSgd)->Arg(1)->Arg(2)->UseRealTime()->MinTime(2.0);
BENCHMARK(MlpGemmRoofline)->Arg(1)->Arg(2)->UseRealTime()->MinTime(2.0);

}  // namespace
}  // namespace dnnd

BENCHMARK_MAIN();
