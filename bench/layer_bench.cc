// Per-layer round trips to a layer server on loopback, next to the same
// layers run in-process and to a bare 64-byte RPC ping, in one run:
//
//   LayerPing                    64-byte request/response (the floor)
//   LayerForward/<batch>         forward of DockerNN's first XOR layer
//                                (Linear 3->50 + ReLU), evaluation mode
//   LayerForwardBackward/<batch> training forward + backward with the input gradient
//   LocalForwardBackward/<batch> the same layers in this process, no network
//
//   build/bench/layer_bench --benchmark_min_time=2
#include <benchmark/benchmark.h>

#include "roles/layers/layer_server.h"
#include "roles/layers/protocol.h"
#include "tensor/model_spec.h"
#include "tensor/nn.h"
#include "tensor/parallel.h"
#include "transport/rpc_client.h"

namespace dnnd {
namespace {

const char* kXorSpec = R"([model]
input = [3]
loss = "mse"
[[model.layers]]
type = "linear"
out = 50
[[model.layers]]
type = "relu"
[[model.layers]]
type = "linear"
out = 1
[model.optimizer]
type = "sgd"
lr = 0.02
)";

struct Loopback {
  std::unique_ptr<LayerServer> server;
  std::unique_ptr<rpc::RpcClient> client;
  Loopback() {
    SetThreads(1);
    rpc::RpcServerOptions so;
    so.token = "bench";
    server = std::make_unique<LayerServer>(LayerServerOptions{}, so);
    if (!server->Start().ok()) std::abort();
    rpc::RpcClientOptions co;
    co.token = "bench";
    client = rpc::RpcClient::Create(server->address(), co);
    wire::Message open{.type = layers::kOpen};
    open.fields.SetString("session", "bench");
    open.fields.SetString("spec", kXorSpec);
    open.fields.SetInt("seed", 0);
    open.fields.SetInt("first", 0);
    open.fields.SetInt("last", 2);
    if (!client->Call(open).ok()) std::abort();
  }
};

Loopback& Shared() {
  static Loopback* lb = new Loopback();
  return *lb;
}

wire::Message Request(uint16_t type, int64_t mb, const char* name, const Tensor& t) {
  wire::Message m{.type = type};
  m.fields.SetString("session", "bench");
  m.fields.SetInt("mb", mb);
  m.tensors.push_back(wire::WireTensor::FromTensor(name, t));
  return m;
}

void LayerPing(benchmark::State& state) {
  auto& lb = Shared();
  wire::Message ping{.type = wire::type::kPing};
  ping.tensors.push_back(wire::WireTensor::FromTensor("x", Tensor::Zeros({16})));
  for (auto _ : state)
    if (!lb.client->Call(ping).ok()) state.SkipWithError("ping failed");
}

void LayerForward(benchmark::State& state) {
  auto& lb = Shared();
  Rng rng(1);
  const Tensor x = Tensor::Normal({state.range(0), 3}, 0, 1, rng);
  for (auto _ : state) {
    wire::Message m = Request(layers::kForward, 0, "x", x);
    m.fields.SetInt("train", 0);
    if (!lb.client->Call(std::move(m)).ok()) state.SkipWithError("forward failed");
  }
}

void LayerForwardBackward(benchmark::State& state) {
  auto& lb = Shared();
  Rng rng(1);
  const Tensor x = Tensor::Normal({state.range(0), 3}, 0, 1, rng);
  const Tensor g = Tensor::Normal({state.range(0), 50}, 0, 1, rng);
  for (auto _ : state) {
    if (!lb.client->Call(Request(layers::kForward, 1, "x", x)).ok())
      state.SkipWithError("forward failed");
    if (!lb.client->Call(Request(layers::kBackward, 1, "g", g)).ok())
      state.SkipWithError("backward failed");
  }
}

void LocalForwardBackward(benchmark::State& state) {
  auto spec = ParseModelSpecText(kXorSpec, "bench");
  auto model = BuildModel(*spec, 0).value();
  Rng rng(1);
  const Tensor x = Tensor::Normal({state.range(0), 3}, 0, 1, rng);
  const Tensor g = Tensor::Normal({state.range(0), 50}, 0, 1, rng);
  for (auto _ : state) {
    Tensor in = x.detach();
    in.set_requires_grad(true);
    model->ForwardRange(in, 0, 2).backward(g);
    benchmark::DoNotOptimize(in.grad().data());
  }
}

BENCHMARK(LayerPing)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(LayerForward)->Arg(8)->Arg(128)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(LayerForwardBackward)->Arg(8)->Arg(128)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(LocalForwardBackward)->Arg(8)->Arg(128)->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace
}  // namespace dnnd

BENCHMARK_MAIN();
