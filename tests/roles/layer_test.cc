// A model split across layer-server processes: the same results as local
// training, pipelined micro-batches, bounded activation memory, clear errors.
#include <gtest/gtest.h>

#include <regex>

#include "dnnd_process.h"
#include "core/files.h"
#include "roles/layer_protocol.h"
#include "tensor/safetensors.h"
#include "transport/rpc_client.h"

namespace dnnd {
namespace {

using namespace std::chrono_literals;
using testing::Daemon;
using testing::Dnnd;
using testing::Src;
using testing::TempDir;

// Two layer servers on ephemeral loopback ports.
class LayerServers {
 public:
  explicit LayerServers(const TempDir& dir, const std::string& extra = "") {
    for (int i = 0; i < 2; ++i) {
      servers_.push_back(std::make_unique<Daemon>(
          "--role=layer-server --config " + Src("configs/layer-server.toml") +
              " --set layer.listen=127.0.0.1:0 --set transport.token=t " + extra,
          dir.path() + "/layer" + std::to_string(i) + ".log"));
      ports_.push_back(servers_.back()->PortAfter("listening address=127.0.0.1:", 10s));
    }
  }
  bool up() const { return ports_[0] > 0 && ports_[1] > 0; }
  // --set worker.placement: `a` on the first server, `b` on the second.
  std::string Placement(const std::string& a, const std::string& b) const {
    return "--set 'worker.placement=[{layers=\"" + a + "\", server=\"127.0.0.1:" + std::to_string(ports_[0]) +
           "\"}, {layers=\"" + b + "\", server=\"127.0.0.1:" + std::to_string(ports_[1]) +
           "\"}]' --set transport.token=t ";
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
                     servers.Placement("0-1", "2-5") + "--set train.checkpoint_dir=" + dir.path() + "/remote");
  ASSERT_EQ(local.code, 0) << local.output;
  ASSERT_EQ(remote.code, 0) << remote.output;
  const auto a = Losses(local.output), b = Losses(remote.output);
  ASSERT_EQ(a.size(), 10u) << local.output;
  ASSERT_EQ(b.size(), a.size()) << remote.output;
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(b[i], a[i], 1e-6 + 1e-4 * a[i]) << "report " << i;
  const auto wa = Weights(dir.path() + "/local", "4.weight"), wb = Weights(dir.path() + "/remote", "4.weight");
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
  const std::string common = "--role=worker --config " + Src("configs/worker-xor-layers.toml") +
                             " --set train.iterations=40 --set train.progress=none --set model.file=" +
                             dir.Write("xor-momentum.toml", spec) + " " + servers.Placement("0-1", "2-5");
  const std::string full = dir.path() + "/full", part = dir.path() + "/part";
  auto a = Dnnd(common + "--set train.checkpoint_dir=" + full);
  ASSERT_EQ(a.code, 0) << a.output;
  auto b = Dnnd(common + "--set train.max_steps=20 --set train.checkpoint_dir=" + part);
  ASSERT_EQ(b.code, 0) << b.output;
  for (const char* file : {"/gen-1/layers-0-1.optimizer.safetensors", "/gen-1/layers-2-5.optimizer.safetensors"})
    EXPECT_TRUE(LoadSafetensors(part + file).ok()) << file;
  auto c = Dnnd(common + "--set train.resume=true --set train.checkpoint_dir=" + part);
  ASSERT_EQ(c.code, 0) << c.output;
  EXPECT_NE(c.output.find("resumed from " + part + "/gen-1 at step 20"), std::string::npos) << c.output;
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
  const std::string common = " --set data.limit_train=4096 --set data.limit_test=1000 --set train.epochs=2"
                             " --set train.progress=none ";
  auto local = Dnnd("--role=worker --config " + Src("configs/worker-mlp.toml") + common +
                    "--set node.threads=1 --set train.checkpoint_dir=" + dir.path() + "/local");
  ASSERT_EQ(local.code, 0) << local.output;
  const auto want = Losses(local.output);
  ASSERT_EQ(want.size(), 2u) << local.output;
  for (int mb : {1, 4}) {
    const std::string out_dir = dir.path() + "/mb" + std::to_string(mb);
    auto r = Dnnd("--role=worker --config " + Src("configs/worker-mlp-layers.toml") + common +
                  servers.Placement("1-2", "3-5") + "--set worker.micro_batches=" + std::to_string(mb) +
                  " --set train.checkpoint_dir=" + out_dir);
    ASSERT_EQ(r.code, 0) << r.output;
    const auto got = Losses(r.output);
    ASSERT_EQ(got.size(), want.size()) << r.output;
    for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], mb == 1 ? 1e-6 : 2e-3) << "mb " << mb;
    const auto wa = Weights(dir.path() + "/local", "5.weight"), wb = Weights(out_dir, "5.weight");
    ASSERT_EQ(wa.size(), 2560u);
    ASSERT_EQ(wb.size(), wa.size());
    double worst = 0;
    for (size_t i = 0; i < wa.size(); ++i) worst = std::max(worst, static_cast<double>(std::abs(wb[i] - wa[i])));
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
  const std::string common = " --set data.limit_train=512 --set data.limit_test=100 --set train.epochs=1"
                             " --set train.progress=none --set train.checkpoint_dir= ";
  auto big = Dnnd("--role=worker --config " + Src("configs/worker-mlp-layers.toml") + common +
                  servers.Placement("1-2", "3-5"));
  EXPECT_NE(big.code, 0);
  EXPECT_NE(big.output.find("layer.max_activation_bytes"), std::string::npos) << big.output;
  // 4 micro-batches of 8 samples in flight fit: 4 x 8 x (784 + 512 + 512)
  // floats = 231,424 bytes; the default 128-sample batch needs 4x that.
  auto small = Dnnd("--role=worker --config " + Src("configs/worker-mlp-layers.toml") + common +
                    servers.Placement("1-2", "3-5") + "--set train.batch_size=32 --set worker.micro_batches=4");
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
  auto unknown = call(layers::kForward, [](wire::Message& m) { m.fields.SetString("session", "nobody"); m.fields.SetInt("mb", 0); });
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("no session 'nobody'"), std::string::npos) << unknown.status().ToString();
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
  EXPECT_NE(shape.status().message().find("take [batch, [3]]"), std::string::npos) << shape.status().ToString();
  auto lr = forward({4, 3}, [](wire::Message& m) { m.fields.SetString("step_lr", "fast"); });
  EXPECT_FALSE(lr.ok());
  auto backward = call(layers::kBackward, [](wire::Message& m) {
    m.fields.SetString("session", "s");
    m.fields.SetInt("mb", 7);
    m.tensors.push_back(wire::WireTensor::FromTensor("g", Tensor::Zeros({4, 50})));
  });
  ASSERT_FALSE(backward.ok());
  EXPECT_NE(backward.status().message().find("no pending forward for micro-batch 7"), std::string::npos);
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
  EXPECT_NE(overlap.output.find("layers 2-3 overlap layers 0-2"), std::string::npos) << overlap.output;
  auto typo = Dnnd("--role=worker --config " + Src("configs/worker-xor.toml") +
                   " --set 'worker.placement=[{layers=\"0-2\", sever=\"127.0.0.1:1\"}]'");
  EXPECT_EQ(typo.code, 2) << typo.output;
  EXPECT_NE(typo.output.find("unknown field 'sever'"), std::string::npos) << typo.output;
  auto range = Dnnd("--role=worker --config " + Src("configs/worker-xor.toml") +
                    " --set 'worker.placement=[{layers=\"two\", server=\"127.0.0.1:1\"}]'");
  EXPECT_EQ(range.code, 2) << range.output;
  EXPECT_NE(range.output.find("is not a range"), std::string::npos) << range.output;
}

}  // namespace
}  // namespace dnnd
