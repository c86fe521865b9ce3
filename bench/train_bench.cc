// Training throughput (samples/s) of the benchmark models at batch 128, on
// synthetic Fashion-MNIST-shaped data, plus the GEMM roofline of the MLP: a
// bare cblas_sgemm of exactly the GEMMs one MLP step performs.
//
//   build/bench/train_bench --benchmark_counters_tabular=true
//
// Thread counts are arguments (1 and 2); dnnd's one budget sizes OpenBLAS and
// its own pool together.
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <cstdio>
#include <string>

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

void TrainModel(benchmark::State& state, const std::string& name, bool sgd = false) {
  SetThreads(static_cast<int>(state.range(0)));
  ModelSpec spec = LoadSpec(name);
  if (sgd) spec.optimizer = {.type = "sgd", .lr = 0.1f, .momentum = 0.9f};
  auto model = ValueOrThrow(BuildModel(spec, 1));
  auto opt = ValueOrThrow(optim::MakeOptimizer(spec.optimizer, model->NamedParameters()));
  Rng rng(2);
  Shape xs = {kBatch};
  xs.insert(xs.end(), spec.input.begin(), spec.input.end());
  Tensor x = Tensor::Uniform(xs, 0.0f, 1.0f, rng);
  nn::Target target;
  for (int64_t i = 0; i < kBatch; ++i) target.labels.push_back(static_cast<int32_t>(i % 10));
  for (auto _ : state) {
    Tensor loss = nn::ComputeLoss(spec.loss, model->Forward(x), target);
    loss.backward();
    opt->Step();
    opt->ZeroGrad();
    benchmark::DoNotOptimize(loss.item());
  }
  state.counters["samples_per_s"] = benchmark::Counter(
      static_cast<double>(state.iterations() * kBatch), benchmark::Counter::kIsRate);
  if (name == "mlp" && !sgd) {
    // forward 2*B*(784*512 + 512*256 + 256*10); backward twice that, minus the
    // input gradient of the first layer, which is never computed.
    double macs = 784.0 * 512 + 512.0 * 256 + 256.0 * 10;
    double flops = kBatch * (2 * macs + 4 * macs - 2 * 784.0 * 512);
    state.counters["GFLOP_per_s"] = benchmark::Counter(
        flops * static_cast<double>(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
  }
  state.SetLabel("blas=" + BlasCoreName());
}

// The same GEMMs, and only them, with no autograd, allocation or element-wise
// work: the best an MLP step could do on this BLAS.
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
  state.SetLabel("blas=" + BlasCoreName());
}

void BM_TrainMlp(benchmark::State& s) { TrainModel(s, "mlp"); }
void BM_TrainLenet(benchmark::State& s) { TrainModel(s, "lenet"); }
void BM_TrainMlpSgd(benchmark::State& s) { TrainModel(s, "mlp", true); }
void BM_TrainLenetSgd(benchmark::State& s) { TrainModel(s, "lenet", true); }
BENCHMARK(BM_TrainMlp)->Arg(1)->Arg(2)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_TrainLenet)->Arg(1)->Arg(2)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_TrainMlpSgd)->Arg(1)->Arg(2)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_TrainLenetSgd)->Arg(1)->Arg(2)->UseRealTime()->MinTime(2.0);
BENCHMARK(MlpGemmRoofline)->Arg(1)->Arg(2)->UseRealTime()->MinTime(2.0);

}  // namespace
}  // namespace dnnd

BENCHMARK_MAIN();
