// A model split across layer-server processes: the same results as local
// training, pipelined micro-batches, bounded activation memory, clear errors.
#include <gtest/gtest.h>

#include <future>
#include <regex>
#include <thread>

#include "core/files.h"
#include "roles/layers/protocol.h"
#include "tensor/safetensors.h"
#include "tests/roles/dnnd_process.h"
#include "transport/rpc_client.h"

namespace dnnd {
namespace {

using namespace std::chrono_literals;
using testing::Daemon;
using testing::Dnnd;
using testing::Src;
using testing::TempDir;

// Two layer servers on free loopback ports, each allowed to chain to both
// (layer.next_stages) and to `more_stages`.
class LayerServers {
 public:
  explicit LayerServers(const TempDir& dir, const std::string& extra = "",
                        const std::vector<std::string>& more_stages = {}) {
    std::string stages;
    for (int i = 0; i < 2; ++i) {
      ports_.push_back(testing::FreeLoopbackPort());
      stages += std::string(stages.empty() ? "" : ", ") +
                "\"127.0.0.1:" + std::to_string(ports_.back()) + "\"";
    }
    for (const std::string& a : more_stages) stages += ", \"" + a + "\"";
    for (int i = 0; i < 2; ++i) {
      servers_.push_back(std::make_unique<Daemon>(
          "--role=layer-server --config " + Src("configs/layer-server.toml") +
              " --set layer.listen=127.0.0.1:" + std::to_string(ports_[i]) +
              " --set 'layer.next_stages=[" + stages + "]' --set transport.token=t " + extra,
          dir.path() + "/layer" + std::to_string(i) + ".log"));
      if (!servers_.back()->WaitFor("listening address=127.0.0.1:" + std::to_string(ports_[i]),
                                    10s))
        ports_[i] = 0;
    }
  }
  bool up() const { return ports_[0] > 0 && ports_[1] > 0; }
  // --set worker.placement: `a` on the first server, `b` on the second, as
  // `key` = "layers" (indices) or "nodes" (names).
  std::string Placement(const std::string& a, const std::string& b,
                        const std::string& key = "layers") const {
    return "--set 'worker.placement=[{" + key + "=\"" + a +
           "\", server=\"127.0.0.1:" + std::to_string(ports_[0]) + "\"}, {" + key + "=\"" + b +
           "\", server=\"127.0.0.1:" + std::to_string(ports_[1]) + "\"}]' --set transport.token=t ";
  }
  Daemon& server(int i) { return *servers_[i]; }
  int port(int i) const { return ports_[i]; }

 private:
  std::vector<std::unique_ptr<Daemon>> servers_;
  std::vector<int> ports_;
};

std::vector<double> Losses(const std::string& output) {
  std::vector<double> out;
  static const std::regex line("(?:iteration|epoch) \\d+/\\d+ loss ([0-9.]+)");
  for (std::sregex_iterator it(output.begin(), output.end(), line), end; it != end; ++it)
    out.push_back(std::stod((*it)[1]));
  return out;
}

std::vector<float> Weights(const std::string& dir, const std::string& name) {
  auto f = LoadSafetensors(dir + "/model.safetensors");
  if (!f.ok()) return {};
  for (const auto& [n, t] : f->tensors)
    if (n == name) return t.ToVector();
  return {};
}

// DockerNN's XOR network with every layer on a layer server follows the
// local run's loss curve, and its checkpoint holds the servers' weights.
TEST(LayerServer, XorWithEveryLayerRemoteMatchesLocalTraining) {
  TempDir dir;
  LayerServers servers(dir);
  ASSERT_TRUE(servers.up());
  const std::string common = " --set train.iterations=2000 --set train.progress=none ";
  auto local = Dnnd("--role=worker --config " + Src("configs/worker-xor.toml") + common +
                    "--set train.checkpoint_dir=" + dir.path() + "/local");
  auto remote = Dnnd("--role=worker --config " + Src("configs/worker-xor-layers.toml") + common +
                     servers.Placement("0-1", "2-5") + "--set train.checkpoint_dir=" + dir.path() +
                     "/remote");
  ASSERT_EQ(local.code, 0) << local.output;
  ASSERT_EQ(remote.code, 0) << remote.output;
  const auto a = Losses(local.output), b = Losses(remote.output);
  ASSERT_EQ(a.size(), 10u) << local.output;
  ASSERT_EQ(b.size(), a.size()) << remote.output;
  for (size_t i = 0; i < a.size(); ++i)
    EXPECT_NEAR(b[i], a[i], 1e-6 + 1e-4 * a[i]) << "report " << i;
  const auto wa = Weights(dir.path() + "/local", "4.weight"),
             wb = Weights(dir.path() + "/remote", "4.weight");
  ASSERT_EQ(wa.size(), 100u);
  ASSERT_EQ(wb.size(), wa.size());
  for (size_t i = 0; i < wa.size(); ++i) EXPECT_NEAR(wb[i], wa[i], 1e-4) << i;
  EXPECT_NE(remote.output.find("final test accuracy 100.00%"), std::string::npos) << remote.output;
}

// The servers' optimizer state (SGD momentum here) is saved in the worker's
// checkpoint generation and restored from it: a run stopped at step 20 and
// resumed ends where an uninterrupted run does.
TEST(LayerServer, ResumeRestoresTheServersOptimizerStateFromTheGeneration) {
  TempDir dir;
  LayerServers servers(dir);
  ASSERT_TRUE(servers.up());
  std::string spec = testing::ReadFile(Src("configs/models/xor.toml"));
  spec.replace(spec.find("lr = 0.02"), 9, "lr = 0.02\nmomentum = 0.9");
  const std::string common =
      "--role=worker --config " + Src("configs/worker-xor-layers.toml") +
      " --set train.iterations=40 --set train.progress=none --set model.file=" +
      dir.Write("xor-momentum.toml", spec) + " " + servers.Placement("0-1", "2-5");
  const std::string full = dir.path() + "/full", part = dir.path() + "/part";
  auto a = Dnnd(common + "--set train.checkpoint_dir=" + full);
  ASSERT_EQ(a.code, 0) << a.output;
  auto b = Dnnd(common + "--set train.max_steps=20 --set train.checkpoint_dir=" + part);
  ASSERT_EQ(b.code, 0) << b.output;
  for (const char* file :
       {"/gen-1/layers-0-1.optimizer.safetensors", "/gen-1/layers-2-5.optimizer.safetensors"})
    EXPECT_TRUE(LoadSafetensors(part + file).ok()) << file;
  auto c = Dnnd(common + "--set train.resume=true --set train.checkpoint_dir=" + part);
  ASSERT_EQ(c.code, 0) << c.output;
  EXPECT_NE(c.output.find("resumed from " + part + "/gen-1 at step 20"), std::string::npos)
      << c.output;
  for (const char* name : {"0.weight", "4.weight"}) {
    const auto wa = Weights(full, name), wc = Weights(part, name);
    ASSERT_FALSE(wa.empty()) << name;
    ASSERT_EQ(wc.size(), wa.size()) << name;
    for (size_t i = 0; i < wa.size(); ++i) EXPECT_NEAR(wc[i], wa[i], 1e-6) << name << " " << i;
  }
}

// The Fashion-MNIST MLP split over two servers: one micro-batch per step is
// local training exactly; four pipelined micro-batches differ only by the
// order of float sums.
TEST(LayerServer, SplitMlpTrainsLikeLocalWithAndWithoutPipelining) {
  TempDir dir;
  LayerServers servers(dir);
  ASSERT_TRUE(servers.up());
  const std::string common =
      " --set data.limit_train=4096 --set data.limit_test=1000 --set train.epochs=2"
      " --set train.progress=none ";
  auto local = Dnnd("--role=worker --config " + Src("configs/worker-mlp.toml") + common +
                    "--set node.threads=1 --set train.checkpoint_dir=" + dir.path() + "/local");
  ASSERT_EQ(local.code, 0) << local.output;
  const auto want = Losses(local.output);
  ASSERT_EQ(want.size(), 2u) << local.output;
  for (int mb : {1, 4}) {
    const std::string out_dir = dir.path() + "/mb" + std::to_string(mb);
    auto r =
        Dnnd("--role=worker --config " + Src("configs/worker-mlp-layers.toml") + common +
             servers.Placement("1-2", "3-5") + "--set worker.micro_batches=" + std::to_string(mb) +
             " --set train.checkpoint_dir=" + out_dir);
    ASSERT_EQ(r.code, 0) << r.output;
    const auto got = Losses(r.output);
    ASSERT_EQ(got.size(), want.size()) << r.output;
    for (size_t i = 0; i < got.size(); ++i)
      EXPECT_NEAR(got[i], want[i], mb == 1 ? 1e-6 : 2e-3) << "mb " << mb;
    const auto wa = Weights(dir.path() + "/local", "5.weight"), wb = Weights(out_dir, "5.weight");
    ASSERT_EQ(wa.size(), 2560u);
    ASSERT_EQ(wb.size(), wa.size());
    double worst = 0;
    for (size_t i = 0; i < wa.size(); ++i)
      worst = std::max(worst, static_cast<double>(std::abs(wb[i] - wa[i])));
    EXPECT_LT(worst, mb == 1 ? 1e-6 : 2e-2) << "mb " << mb;
  }
  // Sessions are dropped when the worker finishes.
  EXPECT_NE(servers.server(0).output().find("session dropped"), std::string::npos);
}

// A forward that would exceed the server's activation budget is refused with
// an error naming the limit; the server keeps serving other clients.
TEST(LayerServer, ActivationBudgetIsAClearErrorNotACrash) {
  TempDir dir;
  LayerServers servers(dir, "--set layer.max_activation_bytes=250000");
  ASSERT_TRUE(servers.up());
  const std::string common =
      " --set data.limit_train=512 --set data.limit_test=100 --set train.epochs=1"
      " --set train.progress=none --set train.checkpoint_dir= ";
  auto big = Dnnd("--role=worker --config " + Src("configs/worker-mlp-layers.toml") + common +
                  servers.Placement("1-2", "3-5"));
  EXPECT_NE(big.code, 0);
  EXPECT_NE(big.output.find("layer.max_activation_bytes"), std::string::npos) << big.output;
  // 4 micro-batches of 8 samples in flight fit: 4 x 8 x (784 + 512 + 512)
  // floats = 231,424 bytes; the default 128-sample batch needs 4x that.
  auto small = Dnnd("--role=worker --config " + Src("configs/worker-mlp-layers.toml") + common +
                    servers.Placement("1-2", "3-5") +
                    "--set train.batch_size=32 --set worker.micro_batches=4");
  EXPECT_EQ(small.code, 0) << small.output;
}

// Malformed requests get error answers naming the problem; the server goes
// on serving the same connection.
TEST(LayerServer, BadRequestsAreErrorsAndTheServerKeepsServing) {
  TempDir dir;
  LayerServers servers(dir);
  ASSERT_TRUE(servers.up());
  rpc::RpcClientOptions options;
  options.token = "t";
  auto client = rpc::RpcClient::Create("127.0.0.1:" + std::to_string(servers.port(0)), options);
  auto call = [&](uint16_t type, std::function<void(wire::Message&)> fill) {
    wire::Message m;
    m.type = type;
    fill(m);
    return client->Call(std::move(m), 10s);
  };
  auto unknown = call(layers::kForward, [](wire::Message& m) {
    m.fields.SetString("session", "nobody");
    m.fields.SetInt("mb", 0);
  });
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("no session 'nobody'"), std::string::npos)
      << unknown.status().ToString();
  const std::string spec = ReadFileToString(Src("configs/models/xor.toml"), 1 << 20).value();
  auto open_layers = [&](int64_t first, int64_t last) {
    return call(layers::kOpen, [&](wire::Message& m) {
      m.fields.SetString("session", "s");
      m.fields.SetString("spec", spec);
      m.fields.SetInt("seed", 0);
      m.fields.SetInt("first", first);
      m.fields.SetInt("last", last);
    });
  };
  auto range = open_layers(4, 9);
  ASSERT_FALSE(range.ok());
  EXPECT_NE(range.status().message().find("not a range of the model's 6 layers"), std::string::npos)
      << range.status().ToString();
  auto open = open_layers(0, 2);
  ASSERT_TRUE(open.ok()) << open.status().ToString();
  auto forward = [&](Shape shape, std::function<void(wire::Message&)> more) {
    return call(layers::kForward, [&](wire::Message& m) {
      m.fields.SetString("session", "s");
      m.fields.SetInt("mb", 1);
      m.tensors.push_back(wire::WireTensor::FromTensor("x", Tensor::Zeros(shape)));
      more(m);
    });
  };
  auto shape = forward({4, 5}, [](wire::Message&) {});
  ASSERT_FALSE(shape.ok());
  EXPECT_NE(shape.status().message().find("take [batch, [3]]"), std::string::npos)
      << shape.status().ToString();
  auto lr = forward({4, 3}, [](wire::Message& m) { m.fields.SetString("step_lr", "fast"); });
  EXPECT_FALSE(lr.ok());
  auto backward = call(layers::kBackward, [](wire::Message& m) {
    m.fields.SetString("session", "s");
    m.fields.SetInt("mb", 7);
    m.tensors.push_back(wire::WireTensor::FromTensor("g", Tensor::Zeros({4, 50})));
  });
  ASSERT_FALSE(backward.ok());
  EXPECT_NE(backward.status().message().find("no pending forward for micro-batch 7"),
            std::string::npos);
  auto good = forward({4, 3}, [](wire::Message&) {});
  ASSERT_TRUE(good.ok()) << good.status().ToString();
  EXPECT_EQ(good.value().tensors.at(0).shape, (Shape{4, 50}));
}

TEST(LayerServer, BadPlacementsAreConfigErrors) {
  TempDir dir;
  auto overlap = Dnnd("--role=worker --config " + Src("configs/worker-xor.toml") +
                      " --set 'worker.placement=[{layers=\"0-2\", server=\"127.0.0.1:1\"}, "
                      "{layers=\"2-3\", server=\"127.0.0.1:2\"}]'");
  EXPECT_EQ(overlap.code, 2) << overlap.output;
  EXPECT_NE(overlap.output.find("layers 2-3 overlap layers 0-2"), std::string::npos)
      << overlap.output;
  auto typo = Dnnd("--role=worker --config " + Src("configs/worker-xor.toml") +
                   " --set 'worker.placement=[{layers=\"0-2\", sever=\"127.0.0.1:1\"}]'");
  EXPECT_EQ(typo.code, 2) << typo.output;
  EXPECT_NE(typo.output.find("unknown field 'sever'"), std::string::npos) << typo.output;
  auto range = Dnnd("--role=worker --config " + Src("configs/worker-xor.toml") +
                    " --set 'worker.placement=[{layers=\"two\", server=\"127.0.0.1:1\"}]'");
  EXPECT_EQ(range.code, 2) << range.output;
  EXPECT_NE(range.output.find("is not a range"), std::string::npos) << range.output;
}

// A small residual network with BatchNorm: stem, two residual blocks, head.
constexpr const char* kResidualBn = R"(
[model]
input = [1, 28, 28]
[[model.nodes]]
name = "conv1"
type = "conv2d"
out = 4
kernel = 3
stride = 2
padding = 1
bias = false
[[model.nodes]]
name = "bn1"
type = "batchnorm2d"
[[model.nodes]]
name = "relu"
type = "relu"
[[model.nodes]]
name = "layer1"
type = "block"
block = "basic"
repeat = 2
[[model.nodes]]
name = "avgpool"
type = "global_avgpool2d"
[[model.nodes]]
name = "fc"
type = "linear"
out = 10
[model.blocks.basic]
[[model.blocks.basic.nodes]]
name = "conv1"
type = "conv2d"
out = 4
kernel = 3
padding = 1
bias = false
[[model.blocks.basic.nodes]]
name = "bn1"
type = "batchnorm2d"
[[model.blocks.basic.nodes]]
name = "relu1"
type = "relu"
[[model.blocks.basic.nodes]]
name = "conv2"
type = "conv2d"
out = 4
kernel = 3
padding = 1
bias = false
[[model.blocks.basic.nodes]]
name = "bn2"
type = "batchnorm2d"
[[model.blocks.basic.nodes]]
name = "add"
type = "add"
inputs = ["bn2", "in"]
[[model.blocks.basic.nodes]]
name = "relu2"
type = "relu"
[model.optimizer]
type = "sgd"
lr = 0.05
momentum = 0.9
)";

// A graph cut at a block boundary by node names: the servers run the
// BatchNorms (training mode: batch statistics; evaluation: running ones), so
// with one micro-batch the run is local training's, and the checkpoint holds
// the servers' running statistics. A range ending inside a residual block is
// refused, naming the connection that crosses.
TEST(LayerServer, ResidualBatchNormGraphSplitAtABlockBoundary) {
  TempDir dir;
  LayerServers servers(dir);
  ASSERT_TRUE(servers.up());
  const std::string common =
      "--role=worker --config " + Src("configs/worker-mlp-layers.toml") +
      " --set model.file=" + dir.Write("residual-bn.toml", kResidualBn) +
      " --set data.limit_train=256 --set data.limit_test=64 --set train.epochs=2"
      " --set train.batch_size=32 --set train.lr_schedule=constant --set train.progress=none"
      " --set worker.micro_batches=1 ";
  auto local = Dnnd(
      common + "--set 'worker.placement=[]' --set train.checkpoint_dir=" + dir.path() + "/local");
  ASSERT_EQ(local.code, 0) << local.output;
  auto remote = Dnnd(common + servers.Placement("conv1-layer1.0", "layer1.1-fc", "nodes") +
                     "--set train.checkpoint_dir=" + dir.path() + "/remote");
  ASSERT_EQ(remote.code, 0) << remote.output;
  const auto a = Losses(local.output), b = Losses(remote.output);
  ASSERT_EQ(a.size(), 2u) << local.output;
  ASSERT_EQ(b.size(), a.size()) << remote.output;
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(b[i], a[i], 1e-4 * a[i]) << "epoch " << i;
  // One buffer from each server: moved from their initial values, 16 steps
  // counted, equal to local training's.
  for (const char* name : {"bn1.running_mean", "layer1.1.bn2.running_var"}) {
    const auto wa = Weights(dir.path() + "/local", name),
               wb = Weights(dir.path() + "/remote", name);
    ASSERT_EQ(wb.size(), 4u) << name;
    ASSERT_EQ(wa.size(), wb.size()) << name;
    const float initial = std::string(name).find("mean") != std::string::npos ? 0.0f : 1.0f;
    for (size_t i = 0; i < wb.size(); ++i) {
      EXPECT_GT(std::abs(wb[i] - initial), 1e-4) << name << " " << i;
      EXPECT_NEAR(wb[i], wa[i], 1e-3 * std::abs(wa[i]) + 1e-5) << name << " " << i;
    }
  }
  auto f = LoadSafetensors(dir.path() + "/remote/model.safetensors");
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  int tracked = 0;
  for (const auto& [n, t] : f->tensors)
    if (n == "bn1.num_batches_tracked" || n == "layer1.1.bn1.num_batches_tracked") {
      ASSERT_EQ(t.numel(), 1) << n;
      EXPECT_EQ(t.ToVector()[0], 16.0f) << n;
      ++tracked;
    }
  EXPECT_EQ(tracked, 2);
  // Stopped at step 8 and resumed: the servers get the checkpoint's running
  // statistics back, and the run ends where the uninterrupted one does.
  const std::string part = dir.path() + "/part",
                    placed = servers.Placement("conv1-layer1.0", "layer1.1-fc", "nodes");
  auto first = Dnnd(common + placed + "--set train.max_steps=8 --set train.checkpoint_dir=" + part);
  ASSERT_EQ(first.code, 0) << first.output;
  auto resumed =
      Dnnd(common + placed + "--set train.resume=true --set train.checkpoint_dir=" + part);
  ASSERT_EQ(resumed.code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("at step 8"), std::string::npos) << resumed.output;
  for (const char* name : {"bn1.running_mean", "layer1.1.bn2.running_var",
                           "layer1.1.bn1.num_batches_tracked", "fc.weight"}) {
    const auto want = Weights(dir.path() + "/remote", name), got = Weights(part, name);
    ASSERT_FALSE(want.empty()) << name;
    ASSERT_EQ(got.size(), want.size()) << name;
    for (size_t i = 0; i < want.size(); ++i)
      EXPECT_NEAR(got[i], want[i], 1e-4 * std::abs(want[i]) + 1e-6) << name << " " << i;
  }

  auto inside = Dnnd(common + servers.Placement("conv1-layer1.0.conv1", "layer1.1", "nodes"));
  EXPECT_EQ(inside.code, 2) << inside.output;
  EXPECT_NE(inside.output.find("cannot end after node 'layer1.0.conv1'"), std::string::npos)
      << inside.output;
  EXPECT_NE(inside.output.find("node 'layer1.0.add' reads 'relu'"), std::string::npos)
      << inside.output;
  auto unknown = Dnnd(common + servers.Placement("conv1-layer9", "layer1.1", "nodes"));
  EXPECT_EQ(unknown.code, 2) << unknown.output;
  EXPECT_NE(unknown.output.find("names no node range"), std::string::npos) << unknown.output;
}

// A listener that completes TCP handshakes (the kernel's backlog) but never
// answers: a next stage that is dead without refusing connections.
class SilentListener {
 public:
  SilentListener() : fd_(socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 && listen(fd_, 64) == 0 &&
        getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0)
      port_ = ntohs(addr.sin_port);
  }
  ~SilentListener() { close(fd_); }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  int fd_;
  int port_ = 0;
};

double MillisSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

// Chains pass results only to layer.next_stages: a hop anywhere else is
// refused at once, before any work; a hop to a configured stage that never
// answers fails within layer.connect_timeout_ms, off the network thread, so
// that meanwhile a new client's handshake, /healthz and a real forward are
// answered promptly; and many distinct addresses leave no thread behind.
// (On the old code: the dead hop held the only I/O thread for the request
// timeout, and each address got a client with its own thread.)
TEST(LayerServer, ChainsDialOnlyConfiguredStagesAndNeverOnTheNetworkThread) {
  TempDir dir;
  SilentListener dead;
  LayerServers servers(dir,
                       "--set transport.io_threads=1 --set layer.connect_timeout_ms=1500 "
                       "--set http.listen=127.0.0.1:0",
                       {dead.address()});
  ASSERT_TRUE(servers.up());
  const int http = servers.server(0).PortAfter("http: listening address=127.0.0.1:", 10s);
  ASSERT_GT(http, 0) << servers.server(0).output();
  const pid_t pid = servers.server(0).pid();
  const std::string address = "127.0.0.1:" + std::to_string(servers.port(0));
  rpc::RpcClientOptions options;
  options.token = "t";
  auto client = rpc::RpcClient::Create(address, options);
  const std::string spec = ReadFileToString(Src("configs/models/xor.toml"), 1 << 20).value();
  wire::Message open;
  open.type = layers::kOpen;
  open.fields.SetString("session", "s");
  open.fields.SetString("spec", spec);
  open.fields.SetInt("seed", 0);
  open.fields.SetInt("first", 0);
  open.fields.SetInt("last", 2);
  ASSERT_TRUE(client->Call(std::move(open), 10s).ok());
  auto forward = [](const std::string& chain) {
    wire::Message m;
    m.type = layers::kForward;
    m.fields.SetString("session", "s");
    m.fields.SetInt("mb", 1);
    m.fields.SetInt("train", 0);
    if (!chain.empty()) m.fields.SetString("chain", chain);
    m.tensors.push_back(wire::WireTensor::FromTensor("x", Tensor::Zeros({4, 3})));
    return m;
  };
  ASSERT_TRUE(client->Call(forward(""), 10s).ok());  // warm: the connection is up
  const int64_t threads_before = testing::ProcStatus(pid, "Threads");
  const int64_t rss_before = testing::ProcStatus(pid, "VmRSS");

  // Not configured: refused at once, naming the setting.
  auto t0 = std::chrono::steady_clock::now();
  auto refused = client->Call(forward("127.0.0.1:1\tx"), 10s);
  const double refused_ms = MillisSince(t0);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kPermissionDenied) << refused.status().ToString();
  EXPECT_NE(refused.status().message().find("layer.next_stages"), std::string::npos)
      << refused.status().ToString();
  EXPECT_LT(refused_ms, 100.0);

  // Configured but silent: the hop fails within the connect timeout while
  // the server goes on answering everyone else.
  auto dead_result = std::make_shared<std::promise<std::pair<Status, double>>>();
  const auto dead_start = std::chrono::steady_clock::now();
  client->CallAsync(forward(dead.address() + "\tx"), rpc::Clock::now() + 30s,
                    [dead_result, dead_start](Result<wire::Message> r) {
                      dead_result->set_value({r.status(), MillisSince(dead_start)});
                    });
  std::this_thread::sleep_for(200ms);  // the dial is under way
  t0 = std::chrono::steady_clock::now();
  auto newcomer = rpc::RpcClient::Create(address, options);
  Status hello = newcomer->Connect(rpc::Clock::now() + 5s);
  const double hello_ms = MillisSince(t0);
  EXPECT_TRUE(hello.ok()) << hello.ToString();
  EXPECT_LT(hello_ms, 100.0) << "a new client's handshake while a hop dials a dead stage";
  t0 = std::chrono::steady_clock::now();
  auto served = newcomer->Call(forward(""), 5s);
  const double served_ms = MillisSince(t0);
  EXPECT_TRUE(served.ok()) << served.status().ToString();
  EXPECT_LT(served_ms, 100.0);
  t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(testing::HttpStatus(testing::HttpGet(http, "/healthz")), 200);
  EXPECT_LT(MillisSince(t0), 100.0);
  auto future = dead_result->get_future();
  ASSERT_EQ(future.wait_for(10s), std::future_status::ready) << "the dead hop never failed";
  const auto [dead_status, dead_ms] = future.get();
  EXPECT_EQ(dead_status.code(), StatusCode::kUnavailable) << dead_status.ToString();
  EXPECT_NE(dead_status.message().find("layer.connect_timeout_ms"), std::string::npos)
      << dead_status.ToString();
  EXPECT_NE(dead_status.message().find(dead.address()), std::string::npos)
      << dead_status.ToString();
  EXPECT_LT(dead_ms, 1500.0 + 1500.0) << "layer.connect_timeout_ms = 1500";

  // 300 distinct unconfigured addresses and 20 more hops to the dead stage:
  // every one refused, and the process has no more threads than before.
  for (int i = 0; i < 300; ++i) {
    auto r = client->Call(forward("127.0.0.2:" + std::to_string(20000 + i) + "\tx"), 5s);
    ASSERT_EQ(r.status().code(), StatusCode::kPermissionDenied)
        << i << ": " << r.status().ToString();
  }
  std::vector<std::future<Status>> hops;
  for (int i = 0; i < 20; ++i) {
    auto p = std::make_shared<std::promise<Status>>();
    hops.push_back(p->get_future());
    client->CallAsync(forward(dead.address() + "\tx"), rpc::Clock::now() + 30s,
                      [p](Result<wire::Message> r) { p->set_value(r.status()); });
  }
  for (auto& h : hops) {
    ASSERT_EQ(h.wait_for(20s), std::future_status::ready);
    EXPECT_EQ(h.get().code(), StatusCode::kUnavailable);
  }
  const int64_t threads_after = testing::ProcStatus(pid, "Threads");
  const int64_t rss_after = testing::ProcStatus(pid, "VmRSS");
  std::fprintf(stderr,
               "layer server: refused in %.1f ms, dead hop failed in %.0f ms, new client's "
               "handshake %.1f ms; "
               "threads %lld -> %lld, VmRSS %lld -> %lld kB\n",
               refused_ms, dead_ms, hello_ms, static_cast<long long>(threads_before),
               static_cast<long long>(threads_after), static_cast<long long>(rss_before),
               static_cast<long long>(rss_after));
  EXPECT_LE(threads_after, threads_before + 2);
  EXPECT_LT(rss_after - rss_before, 32 * 1024) << "kB";
  // And the server still serves.
  EXPECT_TRUE(client->Call(forward(""), 5s).ok());
}

}  // namespace
}  // namespace dnnd
