// The wire protocol's cost, next to the floor it cannot beat and to what the
// seed projects used, all in one run (bench/wire_compare.py prints the table):
//
//   EncodeDecode/<bytes>/{reused,fresh}  encode a message of float32 tensors,
//       copy its scatter/gather pieces into receive buffers the way recv()
//       would, decode; "fresh" allocates every receive buffer anew (page
//       faults), "reused" takes it from the pool as dnnd does.
//   Memcpy/<bytes>/{reused,fresh}        the same bytes through one memcpy.
//   Protobuf{Bytes,Floats}/<bytes>       the tensors as protobuf `bytes` /
//       `repeated float`: build + serialize + the recv copy + parse.
//   Rpc{Push,Pull}64MB / Raw{Push,Pull}64MB   16 x 4 MB through RpcClient and
//       RpcServer on loopback vs a raw TCP socket moving the same bytes.
//   RpcPush2MB                           one 2 MB gradient, DockerNN's push.
//   RpcRoundTrip64B / RawPingPong64B     64-byte request and response.
//   Codec/<codec>/{weights,gradients}    shuffle+zstd / bf16 / f16 on the
//       weights and gradients of an MLP trained on Fashion-MNIST for 300 steps.
#include <benchmark/benchmark.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <thread>

#include "tensor/data/dataset.h"
#include "tensor/data/idx.h"
#include "tensor/model_spec.h"
#include "tensor/nn.h"
#include "tensor/optim.h"
#include "tensor/parallel.h"
#include "transport/rpc_client.h"
#include "transport/rpc_server.h"
#include "transport/wire.h"
#include "wire_bench.pb.h"

namespace dnnd {
namespace {

using namespace std::chrono_literals;
constexpr uint16_t kPush = 0x0E01, kPull = 0x0E02;

// `bytes` of float32 as `count` equal tensors.
std::vector<Tensor> MakeTensors(size_t bytes, size_t count = 1) {
  std::vector<Tensor> out;
  Rng rng(1);
  for (size_t done = 0; done < bytes;) {
    const size_t n = std::min(bytes / count, bytes - done);
    out.push_back(Tensor::Uniform({static_cast<int64_t>(n / 4)}, -1, 1, rng));
    done += n;
  }
  return out;
}

wire::Message MessageOf(const std::vector<Tensor>& tensors, uint16_t type = wire::type::kPing,
                        wire::Codec codec = wire::Codec::kNone) {
  wire::Message m;
  m.type = type;
  for (size_t i = 0; i < tensors.size(); ++i)
    m.tensors.push_back(wire::WireTensor::FromTensor("t" + std::to_string(i), tensors[i], codec));
  return m;
}

void SetReuse(bool reuse) {
  SetBufferPoolCacheLimit(reuse ? size_t{4} << 30 : 0);
  TrimBufferPool();
}

// --- in memory ------------------------------------------------------------------

// Receives `frame` the way FrameConnection does (head into a staging buffer,
// payload into one pooled buffer) and decodes it.
wire::Message Receive(const wire::EncodedFrame& frame, std::vector<uint8_t>& staging) {
  const auto& parts = frame.parts();
  std::memcpy(staging.data(), parts[0].data, parts[0].size);
  auto header = wire::ParseHeader(staging.data(), {}).value();
  auto md = wire::ParseMetadata(staging.data() + wire::kHeaderBytes, header, {}).value();
  std::shared_ptr<Storage> payload;
  if (header.payload_len()) {
    payload = Storage::Allocate(header.payload_len());
    uint8_t* dst = static_cast<uint8_t*>(payload->data());
    for (size_t i = 1; i < parts.size(); ++i) {
      std::memcpy(dst, parts[i].data, parts[i].size);
      dst += parts[i].size;
    }
  }
  return wire::AssembleMessage(header, std::move(md), std::move(payload)).value();
}

void EncodeDecode(benchmark::State& state) {
  const size_t bytes = static_cast<size_t>(state.range(0));
  SetReuse(state.range(1));
  auto tensors = MakeTensors(bytes, static_cast<size_t>(state.range(2)));
  wire::Message m = MessageOf(tensors);
  std::vector<uint8_t> staging(1 << 20);
  // One untimed message first: a pooled receiver is warm in steady state
  // (a fresh 64 MB buffer alone costs ~160 ms of page faults here).
  Receive(wire::EncodeFrame(m).value(), staging);
  for (auto _ : state) {
    auto frame = wire::EncodeFrame(m).value();
    wire::Message got = Receive(frame, staging);
    benchmark::DoNotOptimize(got.tensors[0].data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
  SetReuse(true);
}

void Memcpy(benchmark::State& state) {
  const size_t bytes = static_cast<size_t>(state.range(0));
  const bool reuse = state.range(1);
  auto src = Storage::Allocate(bytes);
  std::memset(src->data(), 1, bytes);
  auto kept = Storage::Allocate(bytes);
  std::memset(kept->data(), 0, bytes);
  for (auto _ : state) {
    void* dst = kept->data();
    if (!reuse)
      dst = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    std::memcpy(dst, src->data(), bytes);
    benchmark::DoNotOptimize(dst);
    benchmark::ClobberMemory();
    if (!reuse) munmap(dst, bytes);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
}

void ProtobufBytes(benchmark::State& state) {
  const size_t bytes = static_cast<size_t>(state.range(0));
  auto tensors = MakeTensors(bytes);
  std::string wire_bytes, received;
  for (auto _ : state) {
    dnndbench::BytesMessage out;
    for (size_t i = 0; i < tensors.size(); ++i) {
      auto* t = out.add_tensors();
      t->set_name("t" + std::to_string(i));
      t->add_shape(tensors[i].numel());
      t->set_data(tensors[i].data(), tensors[i].nbytes());
    }
    out.SerializeToString(&wire_bytes);
    received.assign(wire_bytes);  // the recv copy, as for dnnd
    dnndbench::BytesMessage in;
    in.ParseFromString(received);
    benchmark::DoNotOptimize(in.tensors(0).data().data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
}

void ProtobufFloats(benchmark::State& state) {
  const size_t bytes = static_cast<size_t>(state.range(0));
  auto tensors = MakeTensors(bytes);
  std::string wire_bytes, received;
  for (auto _ : state) {
    dnndbench::FloatMessage out;
    for (size_t i = 0; i < tensors.size(); ++i) {
      auto* t = out.add_tensors();
      t->set_name("t" + std::to_string(i));
      t->add_shape(tensors[i].numel());
      const float* p = tensors[i].data();
      t->mutable_data()->Add(p, p + tensors[i].numel());
    }
    out.SerializeToString(&wire_bytes);
    received.assign(wire_bytes);
    dnndbench::FloatMessage in;
    in.ParseFromString(received);
    benchmark::DoNotOptimize(in.tensors(0).data().data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
}

// --- loopback RPC -------------------------------------------------------------

struct Loopback {
  Loopback() : params(MakeTensors(size_t{64} << 20, 16)) {
    rpc::RpcServerOptions so;
    so.token = "bench";
    so.io_threads = 1;
    so.handler_threads = 1;
    server = std::make_unique<rpc::RpcServer>(so);
    server->Handle(kPush, "push", rpc::RpcServer::Handler([](wire::Message, rpc::Responder r) {
                     r.Send(wire::Message{});
                   }),
                   rpc::RpcServer::Execution::kInline);
    server->Handle(kPull, "pull", rpc::RpcServer::Handler([this](wire::Message, rpc::Responder r) {
                     r.Send(MessageOf(params));
                   }),
                   rpc::RpcServer::Execution::kInline);
    if (!server->Start().ok()) std::abort();
    rpc::RpcClientOptions co;
    co.token = "bench";
    co.max_inflight_bytes = uint64_t{1} << 30;
    client = rpc::RpcClient::Create(server->address(), co);
    if (!client->Connect(rpc::Clock::now() + 5s).ok()) std::abort();
  }
  std::vector<Tensor> params;
  std::unique_ptr<rpc::RpcServer> server;
  std::unique_ptr<rpc::RpcClient> client;
};

Loopback& SharedLoopback() {
  static Loopback* loopback = new Loopback();  // lives until exit, like a daemon's
  return *loopback;
}

void RpcPush64MB(benchmark::State& state) {
  auto& lb = SharedLoopback();
  wire::Message push = MessageOf(lb.params, kPush);
  for (auto _ : state) {
    auto r = lb.client->Call(push);
    if (!r.ok()) state.SkipWithError(r.status().ToString().c_str());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * (int64_t{64} << 20));
}

// DockerNN's end-to-end case: one 2 MB gradient pushed, a small answer back.
void RpcPush2MB(benchmark::State& state) {
  auto& lb = SharedLoopback();
  Rng rng(2);
  wire::Message push = MessageOf({Tensor::Normal({(2 << 20) / 4}, 0, 0.01f, rng)}, kPush);
  for (auto _ : state) {
    auto r = lb.client->Call(push);
    if (!r.ok()) state.SkipWithError(r.status().ToString().c_str());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * (2 << 20));
}

void RpcPull64MB(benchmark::State& state) {
  auto& lb = SharedLoopback();
  for (auto _ : state) {
    auto r = lb.client->Call(MessageOf({}, kPull));
    if (!r.ok() || r.value().tensors.size() != 16) state.SkipWithError("pull failed");
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * (int64_t{64} << 20));
}

void RpcRoundTrip64B(benchmark::State& state) {
  auto& lb = SharedLoopback();
  wire::Message ping = MessageOf({Tensor::Zeros({16})});
  for (auto _ : state) {
    auto r = lb.client->Call(ping);
    if (!r.ok()) state.SkipWithError(r.status().ToString().c_str());
  }
}

// A raw TCP connection on loopback with a server thread running `serve`.
struct RawPair {
  int client = -1;
  std::thread server;
  template <typename Serve>
  explicit RawPair(Serve serve) {
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    bind(listener, reinterpret_cast<sockaddr*>(&addr), len);
    listen(listener, 1);
    getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
    client = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    connect(client, reinterpret_cast<sockaddr*>(&addr), len);
    int conn = accept(listener, nullptr, nullptr);
    setsockopt(conn, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    close(listener);
    server = std::thread([conn, serve] {
      serve(conn);
      close(conn);
    });
  }
  ~RawPair() {
    shutdown(client, SHUT_RDWR);
    close(client);
    server.join();
  }
};

bool ReadAll(int fd, void* p, size_t n) {
  auto* c = static_cast<uint8_t*>(p);
  while (n) {
    ssize_t r = read(fd, c, n);
    if (r <= 0) return false;
    c += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

bool WriteAll(int fd, const std::vector<iovec>& parts) {
  std::vector<iovec> v = parts;
  size_t i = 0;
  while (i < v.size()) {
    ssize_t w = writev(fd, v.data() + i, static_cast<int>(v.size() - i));
    if (w <= 0) return false;
    size_t left = static_cast<size_t>(w);
    while (i < v.size() && left >= v[i].iov_len) left -= v[i++].iov_len;
    if (i < v.size()) {
      v[i].iov_base = static_cast<uint8_t*>(v[i].iov_base) + left;
      v[i].iov_len -= left;
    }
  }
  return true;
}

std::vector<iovec> IovecsOf(const std::vector<Tensor>& tensors) {
  std::vector<iovec> v;
  for (const Tensor& t : tensors) v.push_back({const_cast<float*>(t.data()), t.nbytes()});
  return v;
}

// Raw pairs live for the whole run, like the RPC loopback, so both have warm
// connections (TCP autotuning grows buffers over the first transfers).
void RawPush64MB(benchmark::State& state) {
  const size_t bytes = size_t{64} << 20;
  static auto tensors = MakeTensors(bytes, 16);
  static RawPair& pair = *new RawPair([bytes](int fd) {
    std::vector<uint8_t> buf(bytes);  // reused, as the pool would be
    char ack = 1;
    while (ReadAll(fd, buf.data(), bytes) && write(fd, &ack, 1) == 1) {
    }
  });
  for (auto _ : state) {
    char ack;
    if (!WriteAll(pair.client, IovecsOf(tensors)) || !ReadAll(pair.client, &ack, 1))
      state.SkipWithError("io");
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
}

void RawPull64MB(benchmark::State& state) {
  const size_t bytes = size_t{64} << 20;
  static auto tensors = MakeTensors(bytes, 16);
  static RawPair& pair = *new RawPair([](int fd) {
    char req;
    while (ReadAll(fd, &req, 1) && WriteAll(fd, IovecsOf(tensors))) {
    }
  });
  static std::vector<uint8_t> buf(bytes);
  for (auto _ : state) {
    char req = 1;
    if (write(pair.client, &req, 1) != 1 || !ReadAll(pair.client, buf.data(), bytes))
      state.SkipWithError("io");
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
}

void RawPingPong64B(benchmark::State& state) {
  static RawPair& pair = *new RawPair([](int fd) {
    char buf[64];
    while (ReadAll(fd, buf, 64) && write(fd, buf, 64) == 64) {
    }
  });
  char buf[64] = {};
  for (auto _ : state) {
    if (write(pair.client, buf, 64) != 64 || !ReadAll(pair.client, buf, 64))
      state.SkipWithError("io");
  }
}

// --- codecs on real tensors -----------------------------------------------------

struct TrainedMlp {
  std::vector<Tensor> weights, gradients;
};

// The MLP of configs/models/mlp.toml after 300 Adam steps on Fashion-MNIST,
// and the gradients of the next batch: what a worker actually sends.
const TrainedMlp& RealTensors() {
  static TrainedMlp* mlp = [] {
    auto* out = new TrainedMlp;
    const std::string fm = "/usr/share/datasets/fashion-mnist/";
    data::Dataset set = ValueOrThrow(
        data::LoadIdxDataset(fm + "train-images-idx3-ubyte.gz", fm + "train-labels-idx1-ubyte.gz"));
    std::string spec_text = ValueOrThrow(
        data::ReadMaybeGzipped(std::string(DNND_SOURCE_DIR) + "/configs/models/mlp.toml",
                               data::DecodeLimits{.max_bytes = 1 << 20}));
    ModelSpec spec = ValueOrThrow(ParseModelSpecText(spec_text, "mlp.toml"));
    auto model = ValueOrThrow(BuildModel(spec, 1));
    auto opt = ValueOrThrow(optim::MakeOptimizer(spec.optimizer, model->NamedParameters()));
    data::DataLoader loader(set,
                            {.batch_size = 128, .seed = 1, .mean = {0.2860f}, .std = {0.3530f}});
    for (int64_t step = 0; step <= 300; ++step) {
      data::Batch b = loader.GetBatch(0, step);
      opt->ZeroGrad();
      nn::ComputeLoss(spec.loss, model->Forward(b.x), b.target).backward();
      if (step < 300) opt->Step();
    }
    for (auto& [name, p] : model->NamedParameters()) {
      out->weights.push_back(p.detach().clone());
      out->gradients.push_back(p.grad().clone());
    }
    return out;
  }();
  return *mlp;
}

void Codec(benchmark::State& state) {
  const auto codec = static_cast<wire::Codec>(state.range(0));
  const auto& real = RealTensors();
  const auto& tensors = state.range(1) ? real.gradients : real.weights;
  wire::Message m = MessageOf(tensors, wire::type::kPing, codec);
  size_t raw = 0;
  for (const Tensor& t : tensors) raw += t.nbytes();
  std::vector<uint8_t> staging(1 << 20);
  // Untimed first message: warms the pool and measures what the codec loses.
  auto first = wire::EncodeFrame(m).value();
  const uint64_t encoded = first.total_bytes();
  double err = 0, norm = 0;  // ||decoded - original|| / ||original||
  {
    wire::Message got = Receive(first, staging);
    for (size_t i = 0; i < tensors.size(); ++i) {
      const float* a = tensors[i].data();
      const float* b = reinterpret_cast<const float*>(got.tensors[i].data());
      for (int64_t k = 0; k < tensors[i].numel(); ++k) {
        err += (double{a[k]} - b[k]) * (double{a[k]} - b[k]);
        norm += double{a[k]} * a[k];
      }
    }
  }
  const double rel_rms = std::sqrt(err / norm);
  for (auto _ : state) {
    auto frame = wire::EncodeFrame(m).value();
    wire::Message got = Receive(frame, staging);
    benchmark::DoNotOptimize(got.tensors[0].data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * raw));
  state.counters["ratio"] = static_cast<double>(raw) / static_cast<double>(encoded);
  state.counters["wire_MB"] = static_cast<double>(encoded) / 1e6;
  state.counters["rel_rms_err"] = rel_rms;
  state.SetLabel(std::string(wire::CodecName(codec)) +
                 (state.range(1) ? " gradients" : " weights"));
}

const std::vector<int64_t> kSizes = {4 << 10, 64 << 10, 1 << 20, 16 << 20, 64 << 20};

void SizesAndReuse(benchmark::internal::Benchmark* b) {
  for (int64_t reuse : {1, 0})
    for (int64_t s : kSizes) b->Args({s, reuse, 1});
}
// The same 64 MB as 16 tensors of 4 MB: glibc copies pieces below its
// non-temporal threshold with ordinary stores, which costs bandwidth.
void SixteenTensors(benchmark::internal::Benchmark* b) { b->Args({64 << 20, 1, 16}); }
void Sizes(benchmark::internal::Benchmark* b) {
  for (int64_t s : kSizes) b->Args({s});
}

BENCHMARK(EncodeDecode)
    ->Apply(SizesAndReuse)
    ->Apply(SixteenTensors)
    ->ArgNames({"bytes", "reuse", "tensors"});
BENCHMARK(Memcpy)->Apply(SizesAndReuse)->ArgNames({"bytes", "reuse", "tensors"});
BENCHMARK(ProtobufBytes)->Apply(Sizes)->ArgNames({"bytes"});
BENCHMARK(ProtobufFloats)->Apply(Sizes)->ArgNames({"bytes"});
BENCHMARK(RpcPush64MB)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(RawPush64MB)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(RpcPull64MB)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(RawPull64MB)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(RpcPush2MB)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(RpcRoundTrip64B)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(RawPingPong64B)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(Codec)
    ->ArgsProduct({{0, 1, 2, 3}, {0, 1}})
    ->ArgNames({"codec", "gradients"})
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace dnnd

int main(int argc, char** argv) {
  // Large allocations always come from fresh mmapped pages (glibc otherwise
  // moves its threshold at run time), so "fresh" means fresh in every run.
  mallopt(M_MMAP_THRESHOLD, 128 * 1024);
  dnnd::SetThreads(1);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
