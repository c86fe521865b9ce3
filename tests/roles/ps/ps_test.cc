// Data-parallel training through real parameter servers and workers: the
// partition, sync-mode reproducibility, async and kavg, and faults (a worker
// killed mid-run, a server killed and restarted) with real dnnd processes.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <condition_variable>
#include <map>
#include <numeric>
#include <regex>
#include <thread>

#include "core/files.h"
#include "roles/ps/messages.h"
#include "roles/ps/protocol.h"
#include "tensor/checkpoint.h"
#include "tensor/model_spec.h"
#include "tensor/safetensors.h"
#include "tests/roles/dnnd_process.h"
#include "transport/hello.h"
#include "transport/rpc_client.h"

namespace dnnd::ps {
namespace {

TEST(PsPartition, EqualBytesAndEveryElementExactlyOnce) {
  const std::vector<std::pair<std::string, Shape>> params = {
      {"1.weight", {512, 784}}, {"1.bias", {512}},       {"3.weight", {256, 512}},
      {"3.bias", {256}},        {"5.weight", {10, 256}}, {"5.bias", {10}}};
  for (int servers : {1, 2, 3, 7}) {
    Partition p = PartitionParameters(params, servers);
    ASSERT_EQ(p.pieces.size(), static_cast<size_t>(servers));
    int64_t total = 0;
    for (const auto& [n, s] : params) total += ShapeNumel(s);
    EXPECT_EQ(p.total_elements, total);
    // Equal shares, to the element.
    for (int s = 0; s < servers; ++s)
      EXPECT_LE(std::abs(p.ServerElements(s) - total / servers), 1) << servers;
    // Each parameter's pieces tile it exactly, in order.
    for (const auto& [name, shape] : params) {
      int64_t next = 0;
      for (int s = 0; s < servers; ++s)
        for (const ShardPiece& piece : p.pieces[s])
          if (piece.param == name) {
            EXPECT_EQ(piece.offset, next) << name;
            next += piece.length;
          }
      EXPECT_EQ(next, ShapeNumel(shape)) << name << " with " << servers << " servers";
    }
  }
  // A pure function: the same inputs give the same map.
  EXPECT_EQ(PartitionParameters(params, 3).pieces[1][0].key(),
            PartitionParameters(params, 3).pieces[1][0].key());
  // The big first weight is split across two servers.
  Partition two = PartitionParameters(params, 2);
  EXPECT_EQ(two.pieces[0].size(), 1u);
  EXPECT_EQ(two.pieces[0][0].param, "1.weight");
  EXPECT_EQ(two.pieces[1][0].param, "1.weight");
  EXPECT_GT(two.pieces[1][0].offset, 0);
}

TEST(PsPartition, MoreServersThanElementsLeavesSomeEmpty) {
  Partition p = PartitionParameters({{"w", {3}}}, 5);
  int64_t sum = 0;
  for (int s = 0; s < 5; ++s) sum += p.ServerElements(s);
  EXPECT_EQ(sum, 3);
}

}  // namespace
}  // namespace dnnd::ps

namespace dnnd {
namespace {

using namespace std::chrono_literals;
using testing::Daemon;
using testing::Dnnd;
using testing::Src;
using testing::TempDir;

// Small, quick data-parallel jobs on real Fashion-MNIST.
std::string Job(const std::string& dir, const std::string& extra = "") {
  return "--config " + Src("configs/standalone.toml") +
         " --set standalone.controller=false --set http.listen=127.0.0.1:0" +
         " --set train.checkpoint_dir=" + dir + "/model" + " --set ps.checkpoint_dir=" + dir +
         "/ps --set data.limit_train=4096 --set data.limit_test=1000" +
         " --set train.epochs=1 --set train.progress=none " + extra;
}

double FinalAccuracy(const std::string& output) {
  std::smatch m;
  if (!std::regex_search(output, m, std::regex("final test accuracy ([0-9.]+)%"))) return -1;
  return std::stod(m[1]);
}

// Same seed, same worker count: the same weights, bit for bit, whether the
// parameters are cut into 2 servers x 2 chunks (the default) or 3 servers x 1,
// and whether the pushes overlap backward (the default) or follow it.
TEST(Standalone, SyncRunsAreBitIdentical) {
  TempDir a, b, c;
  auto ra = Dnnd("--role=standalone " + Job(a.path()));
  auto rb = Dnnd("--role=standalone " + Job(b.path(), "--set worker.overlap=false"));
  auto rc =
      Dnnd("--role=standalone " + Job(c.path(), "--set standalone.servers=3 --set ps.chunks=1"));
  ASSERT_EQ(ra.code, 0) << ra.output;
  ASSERT_EQ(rb.code, 0) << rb.output;
  ASSERT_EQ(rc.code, 0) << rc.output;
  auto fa = LoadSafetensors(a.path() + "/model/model.safetensors");
  auto fb = LoadSafetensors(b.path() + "/model/model.safetensors");
  auto fc = LoadSafetensors(c.path() + "/model/model.safetensors");
  ASSERT_TRUE(fa.ok() && fb.ok() && fc.ok());
  ASSERT_EQ(fa->tensors.size(), 6u);
  for (size_t i = 0; i < fa->tensors.size(); ++i) {
    EXPECT_EQ(fa->tensors[i].second.ToVector(), fb->tensors[i].second.ToVector())
        << fa->tensors[i].first;
    EXPECT_EQ(fa->tensors[i].second.ToVector(), fc->tensors[i].second.ToVector())
        << fa->tensors[i].first;
  }
  // Every chunk of every server checkpointed at the end, at the same version.
  for (const std::string file : {"ps-0-0", "ps-0-1", "ps-1-0", "ps-1-1"}) {
    auto sa = LoadSafetensors(a.path() + "/ps/" + file + ".safetensors");
    ASSERT_TRUE(sa.ok()) << sa.status().ToString();
    EXPECT_EQ(sa->metadata.at("dnnd.version"), "32")
        << file << ": 4096 samples / 2 workers / 64 per batch";
  }
  EXPECT_TRUE(std::filesystem::exists(c.path() + "/ps/ps-2-0.safetensors"));
  EXPECT_GT(FinalAccuracy(ra.output), 60.0) << ra.output;
}

// A server's checkpoint keeps the one before it: a chunk file that no longer
// loads (damaged on disk) falls back to it, with a warning naming the bad file.
TEST(PsCheckpoint, DamagedChunkFileFallsBackToThePreviousCheckpoint) {
  TempDir dir;
  auto r = Dnnd("--role=standalone " + Job(dir.path(), "--set ps.checkpoint_every_steps=8"));
  ASSERT_EQ(r.code, 0) << r.output;
  const std::string bad = dir.path() + "/ps/ps-0-0.safetensors",
                    prev = dir.path() + "/ps/ps-0-0.prev.safetensors";
  auto previous = LoadSafetensors(prev);
  ASSERT_TRUE(previous.ok()) << previous.status().ToString();
  EXPECT_EQ(previous->metadata.at("dnnd.version"), "24");  // checkpoints at 8, 16, 24, 32
  std::filesystem::resize_file(bad, std::filesystem::file_size(bad) / 2);
  Daemon server(
      "--role=parameter-server --config " + Src("configs/parameter-server.toml") +
          " --set ps.listen=127.0.0.1:0 --set ps.index=0 --set ps.servers=2 --set ps.workers=2" +
          " --set ps.checkpoint_dir=" + dir.path() +
          "/ps --set http.listen= --set transport.token=t",
      dir.path() + "/server.log");
  ASSERT_TRUE(server.WaitFor("resumed from checkpoint", 20s)) << server.output();
  const std::string out = server.output();
  EXPECT_NE(
      out.find("checkpoint does not load; resuming the chunk from its previous checkpoint bad=" +
               bad),
      std::string::npos)
      << out;
  server.Signal(SIGTERM);
  EXPECT_EQ(server.Wait(), 0) << server.output();
}

TEST(Standalone, AsyncAndKavgModesTrain) {
  for (const std::string mode : {"async", "kavg"}) {
    TempDir dir;
    auto r = Dnnd("--role=standalone " +
                  Job(dir.path(), "--set ps.mode=" + mode + " --set ps.kavg_steps=4"));
    ASSERT_EQ(r.code, 0) << mode << "\n" << r.output;
    EXPECT_GT(FinalAccuracy(r.output), 60.0) << mode << "\n" << r.output;
  }
}

// Gradients down-cast to bf16 on the wire still train (and the server sees f32).
TEST(Standalone, Bf16GradientsTrain) {
  TempDir dir;
  auto r = Dnnd("--role=standalone " + Job(dir.path(), "--set worker.gradient_codec=bf16"));
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_GT(FinalAccuracy(r.output), 60.0) << r.output;
}

// Parameter-server processes and two worker processes on loopback.
class Cluster {
 public:
  explicit Cluster(const TempDir& dir, int servers = 1, std::string extra = "")
      : dir_(dir.path()), extra_(std::move(extra)), ports_(servers, 0), servers_(servers) {}

  void StartServer(int i = 0) {
    servers_[i] = std::make_unique<Daemon>(
        "--role=parameter-server --config " + Src("configs/parameter-server.toml") +
            " --set ps.listen=127.0.0.1:" + std::to_string(ports_[i]) + " --set ps.index=" +
            std::to_string(i) + " --set ps.servers=" + std::to_string(ports_.size()) +
            " --set ps.workers=2 --set ps.heartbeat_timeout_ms=1000" +
            " --set ps.checkpoint_every_steps=20 --set ps.checkpoint_dir=" + dir_ +
            "/ps --set http.listen=" + " --set transport.token=t --set node.threads=1 " + extra_,
        dir_ + "/ps" + std::to_string(i) + "-" + std::to_string(runs_++) + ".log");
    if (ports_[i] == 0)
      ports_[i] = servers_[i]->PortAfter("rpc: listening address=127.0.0.1:", 10s);
  }
  void StartServers() {
    for (size_t i = 0; i < ports_.size(); ++i) StartServer(static_cast<int>(i));
  }
  // The servers, then both workers with `worker_extra`; false if a server did
  // not come up.
  bool StartJob(const std::string& worker_extra = "") {
    StartServers();
    for (int port : ports_)
      if (port == 0) return false;
    StartWorker(0, worker_extra);
    StartWorker(1, worker_extra);
    return true;
  }
  void StartWorker(int i, const std::string& extra = "") {
    std::string list;
    for (int port : ports_)
      list += std::string(list.empty() ? "" : ",") + "\"127.0.0.1:" + std::to_string(port) + "\"";
    workers_[i] = std::make_unique<Daemon>(
        "--role=worker --config " + Src("configs/worker-ps.toml") +
            " --set 'worker.parameter_servers=[" + list +
            "]' --set worker.index=" + std::to_string(i) +
            " --set worker.count=2 --set worker.heartbeat_ms=200 --set transport.token=t --set "
            "node.threads=1" +
            " --set data.limit_train=0 --set data.limit_test=0 --set train.epochs=5 --set "
            "train.progress=log" +
            " --set train.checkpoint_dir=" + dir_ + "/model" + std::to_string(i) + " " + extra,
        dir_ + "/worker" + std::to_string(i) + "-" + std::to_string(runs_++) + ".log");
  }
  int port(int i = 0) const { return ports_[i]; }
  std::unique_ptr<Daemon>& server(int i = 0) { return servers_[i]; }
  std::unique_ptr<Daemon>& worker(int i) { return workers_[i]; }
  void StopServers() {
    for (auto& s : servers_) {
      s->Signal(SIGTERM);
      EXPECT_EQ(s->Wait(), 0) << s->output();
    }
  }

 private:
  std::string dir_, extra_;
  std::vector<int> ports_;
  int runs_ = 0;
  std::vector<std::unique_ptr<Daemon>> servers_;
  std::unique_ptr<Daemon> workers_[2];
};

// 2 parameter-server processes + 2 worker processes, the full 5 epochs.
TEST(PsCluster, EveryModeReachesItsAccuracyTarget) {
  struct Case {
    std::string mode;
    double target;
  };
  for (const Case& c : {Case{"sync", 88.0}, Case{"async", 87.0}, Case{"kavg", 87.0}}) {
    TempDir dir;
    Cluster cluster(dir, 2, "--set ps.mode=" + c.mode + " --set ps.kavg_steps=4");
    ASSERT_TRUE(cluster.StartJob()) << cluster.server(1)->output();
    ASSERT_EQ(cluster.worker(0)->Wait(), 0) << cluster.worker(0)->output();
    ASSERT_EQ(cluster.worker(1)->Wait(), 0) << cluster.worker(1)->output();
    const double acc = FinalAccuracy(cluster.worker(0)->output());
    std::fprintf(stderr, "%s: 2 servers + 2 workers, 5 epochs: test accuracy %.2f%%\n",
                 c.mode.c_str(), acc);
    EXPECT_GE(acc, c.target) << c.mode << "\n" << cluster.worker(0)->output();
    cluster.StopServers();
    // Each server wrote its own shard on shutdown.
    EXPECT_TRUE(std::filesystem::exists(dir.path() + "/ps/ps-0-0.safetensors"));
    EXPECT_TRUE(std::filesystem::exists(dir.path() + "/ps/ps-1-0.safetensors"));
  }
}

// BatchNorm's buffers travel with the parameters: 2 servers + 2 workers in
// sync mode train a conv -> batchnorm2d -> relu -> pool -> linear graph for 4
// steps (512 samples / 2 workers / 64 per batch); the final checkpoint holds
// running statistics moved from their 0 / 1 start, num_batches_tracked = 4
// (int64, as torch keeps it).
TEST(PsCluster, SyncTrainingKeepsBatchNormBuffers) {
  TempDir dir;
  const std::string model = dir.Write("bn.toml", R"([model]
input = [1, 28, 28]
loss = "cross_entropy"
[[model.nodes]]
name = "conv"
type = "conv2d"
out = 8
kernel = 3
padding = 1
bias = false
[[model.nodes]]
name = "bn"
type = "batchnorm2d"
[[model.nodes]]
name = "relu"
type = "relu"
[[model.nodes]]
name = "pool"
type = "global_avgpool2d"
[[model.nodes]]
name = "fc"
type = "linear"
out = 10
[model.optimizer]
type = "sgd"
lr = 0.05
momentum = 0.9
)");
  Cluster cluster(dir, 2, "--set ps.mode=sync");
  ASSERT_TRUE(cluster.StartJob("--set model.file=" + model +
                               " --set data.limit_train=512 --set data.limit_test=64" +
                               " --set train.epochs=1 --set train.progress=none"))
      << cluster.server(1)->output();
  ASSERT_EQ(cluster.worker(0)->Wait(), 0) << cluster.worker(0)->output();
  ASSERT_EQ(cluster.worker(1)->Wait(), 0) << cluster.worker(1)->output();
  cluster.StopServers();
  auto file = LoadSafetensors(dir.path() + "/model0/model.safetensors");
  ASSERT_TRUE(file.ok()) << file.status().ToString() << "\n" << cluster.worker(0)->output();
  std::map<std::string, Tensor> t(file->tensors.begin(), file->tensors.end());
  ASSERT_TRUE(t.count("bn.running_mean") && t.count("bn.running_var") &&
              t.count("bn.num_batches_tracked"))
      << "buffers missing from the checkpoint";
  EXPECT_EQ(file->metadata.at("dnnd.step"), "4");
  EXPECT_TRUE(file->int64_names.count("bn.num_batches_tracked"));
  EXPECT_EQ(t.at("bn.num_batches_tracked").ToVector(), std::vector<float>{4.0f});
  const std::vector<float> mean = t.at("bn.running_mean").ToVector();
  const std::vector<float> var = t.at("bn.running_var").ToVector();
  ASSERT_EQ(mean.size(), 8u);
  ASSERT_EQ(var.size(), 8u);
  float largest_shift = 0;
  for (size_t c = 0; c < 8; ++c) {
    EXPECT_NE(mean[c], 0.0f) << "running_mean[" << c << "] still at its init 0";
    EXPECT_NE(var[c], 1.0f) << "running_var[" << c << "] still at its init 1";
    largest_shift = std::max(largest_shift, std::abs(var[c] - 1.0f));
  }
  EXPECT_GT(largest_shift, 0.05f) << "4 steps at momentum 0.1 move the variances visibly";
}

double CleanRunAccuracy() {
  static double accuracy = [] {
    TempDir dir;
    Cluster c(dir);
    EXPECT_TRUE(c.StartJob()) << c.server()->output();
    EXPECT_EQ(c.worker(0)->Wait(), 0) << c.worker(0)->output();
    EXPECT_EQ(c.worker(1)->Wait(), 0) << c.worker(1)->output();
    c.StopServers();
    return FinalAccuracy(c.worker(0)->output());
  }();
  return accuracy;
}

TEST(PsFaults, KilledWorkerIsDroppedThenRejoinsAndTheJobFinishes) {
  const double clean = CleanRunAccuracy();
  ASSERT_GT(clean, 70.0);
  TempDir dir;
  Cluster c(dir);
  ASSERT_TRUE(c.StartJob()) << c.server()->output();
  ASSERT_TRUE(c.worker(1)->WaitFor("joined parameter servers", 20s)) << c.worker(1)->output();
  std::this_thread::sleep_for(1500ms);
  c.worker(1)->Signal(SIGKILL);
  c.worker(1)->Wait();
  // The server drops it after the heartbeat timeout; worker 0 goes on alone.
  ASSERT_TRUE(c.server()->WaitFor("dropped from the barrier", 10s)) << c.server()->output();
  c.StartWorker(1);  // restarted: rejoins at the current step
  EXPECT_EQ(c.worker(0)->Wait(), 0) << c.worker(0)->output();
  EXPECT_EQ(c.worker(1)->Wait(), 0) << c.worker(1)->output();
  EXPECT_NE(c.worker(1)->output().find("start_step="), std::string::npos);
  EXPECT_EQ(c.worker(1)->output().find("start_step=0 "), std::string::npos) << "rejoined mid-run";
  const double acc = FinalAccuracy(c.worker(0)->output());
  std::fprintf(stderr, "test accuracy: clean run %.2f%%, worker killed and restarted %.2f%%\n",
               clean, acc);
  EXPECT_NEAR(acc, clean, 0.5) << c.worker(0)->output();
  c.StopServers();
}

TEST(PsFaults, KilledServerRestartsFromItsCheckpointAndTheJobFinishes) {
  const double clean = CleanRunAccuracy();
  TempDir dir;
  Cluster c(dir);
  ASSERT_TRUE(c.StartJob()) << c.server()->output();
  ASSERT_TRUE(c.worker(0)->WaitFor("joined parameter servers", 20s)) << c.worker(0)->output();
  std::this_thread::sleep_for(2000ms);
  c.server()->Signal(SIGKILL);
  c.server()->Wait();
  std::this_thread::sleep_for(300ms);
  c.StartServer();  // same port, same checkpoint directory
  ASSERT_TRUE(c.server()->WaitFor("resumed from checkpoint", 10s)) << c.server()->output();
  EXPECT_EQ(c.worker(0)->Wait(), 0) << c.worker(0)->output();
  EXPECT_EQ(c.worker(1)->Wait(), 0) << c.worker(1)->output();
  // Both workers carried on against the restarted server (how they noticed
  // depends on timing: a failed exchange and a resync, or a push the server
  // answered with its restored weights).
  const std::string restarted = c.server()->output();
  EXPECT_NE(restarted.find("worker joined server=0 worker=0"), std::string::npos) << restarted;
  EXPECT_NE(restarted.find("worker joined server=0 worker=1"), std::string::npos) << restarted;
  const double acc = FinalAccuracy(c.worker(0)->output());
  std::fprintf(stderr, "test accuracy: clean run %.2f%%, server killed and restarted %.2f%%\n",
               clean, acc);
  EXPECT_NEAR(acc, clean, 0.5) << c.worker(0)->output();
  c.StopServers();
}

// ---------------------------------------------------------------------------
// Worker identities: servers admit the job's ranks only, each bound to the
// session issued at its join; non-finite pushes are refused.
// ---------------------------------------------------------------------------

std::unique_ptr<rpc::RpcClient> PsClient(int port) {
  rpc::RpcClientOptions options;
  options.token = "t";
  return rpc::RpcClient::Create("127.0.0.1:" + std::to_string(port), options);
}

// A heartbeat or leave from `worker` presenting `session`.
wire::Message PsRequest(uint16_t type, int64_t worker, const std::string& session = "") {
  return ps::MemberRequest{.type = type, .member = {.worker = worker, .session = session}}.Encode();
}

// The MLP spec as workers send it (configs/worker-ps.toml: seed 42).
std::string MlpSpecText() {
  auto spec =
      ParseModelSpecText(ReadFileToString(Src("configs/models/mlp.toml")).value(), "mlp.toml");
  return ModelSpecToToml(spec.value());
}

wire::Message Init(int64_t worker, const std::string& session = "") {
  static const std::string spec = MlpSpecText();
  return ps::InitRequest{.spec = spec,
                         .seed = 42,
                         .servers = 1,
                         .index = 0,
                         .member = {.worker = worker, .session = session}}
      .Encode();
}

// The value of `series` (name{labels}) in a Prometheus text page, or -1.
double MetricValue(const std::string& page, const std::string& series) {
  const size_t p = page.find("\n" + series + " ");
  return p == std::string::npos ? -1 : std::atof(page.c_str() + p + series.size() + 2);
}

double MillisToGet(int port, const std::string& path, int* status) {
  const auto t0 = std::chrono::steady_clock::now();
  *status = testing::HttpStatus(testing::HttpGet(port, path));
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

const std::string kSmallJob =
    "--set data.limit_train=8192 --set data.limit_test=1000 --set train.epochs=2";

struct JobRun {
  double seconds = 0;
  double accuracy = -1;
  int64_t server_hwm_kb = 0;
  std::string metrics;
};

// A 2-worker sync job on one server; with `attack`, while both workers
// train, a token holder heartbeats and pushes as invented workers (and as a
// member with a forged session), and tries to join as a held and a
// non-existent rank. Every attempt must be refused with its reason.
JobRun RunSyncJob(bool attack, double attack_cap_s) {
  JobRun out;
  TempDir dir;
  const int http = testing::FreeLoopbackPort();
  Cluster c(
      dir, 1,
      "--set ps.heartbeat_timeout_ms=5000 --set http.listen=127.0.0.1:" + std::to_string(http));
  c.StartServers();
  EXPECT_GT(c.port(), 0) << c.server()->output();
  if (c.port() == 0) return out;
  const auto start = std::chrono::steady_clock::now();
  c.StartWorker(0, kSmallJob);
  c.StartWorker(1, kSmallJob);
  std::atomic<bool> stop{false};
  std::thread attacker;
  if (attack) {
    attacker = std::thread([&] {
      EXPECT_TRUE(c.worker(0)->WaitFor("joined parameter servers", 30s));
      EXPECT_TRUE(c.worker(1)->WaitFor("joined parameter servers", 30s));
      auto client = PsClient(c.port());
      const std::string forged = wire::RandomNonce();
      int rounds = 0;
      double worst_healthz = 0;
      while (!stop && std::chrono::steady_clock::now() - start <
                          std::chrono::duration<double>(attack_cap_s)) {
        auto invented = client->Call(PsRequest(ps::kHeartbeat, 7), 2s);
        EXPECT_EQ(invented.status().code(), StatusCode::kPermissionDenied)
            << invented.status().ToString();
        auto member = client->Call(PsRequest(ps::kHeartbeat, 1, forged), 2s);
        EXPECT_EQ(member.status().code(), StatusCode::kPermissionDenied)
            << member.status().ToString();
        wire::Message push =
            ps::PushRequest{
                .member = {.worker = 9, .session = ""}, .version = 0, .step = 1, .lr = 0.1}
                .Encode();
        auto pushed = client->Call(std::move(push), 2s);
        EXPECT_EQ(pushed.status().code(), StatusCode::kPermissionDenied)
            << pushed.status().ToString();
        EXPECT_NE(pushed.status().message().find("session"), std::string::npos)
            << pushed.status().ToString();
        // Rank 1 is held while worker 1 trains (free again once it left).
        auto held = client->Call(Init(1), 2s);
        if (held.ok())
          EXPECT_NE(c.server()->output().find("worker finished server=0 worker=1"),
                    std::string::npos);
        else
          EXPECT_EQ(held.status().code(), StatusCode::kAlreadyExists) << held.status().ToString();
        auto beyond = client->Call(Init(5), 2s);
        EXPECT_EQ(beyond.status().code(), StatusCode::kResourceExhausted)
            << beyond.status().ToString();
        EXPECT_NE(beyond.status().message().find("ps.workers"), std::string::npos)
            << beyond.status().ToString();
        int status = 0;
        worst_healthz = std::max(worst_healthz, MillisToGet(http, "/healthz", &status));
        EXPECT_EQ(status, 200);
        ++rounds;
        std::this_thread::sleep_for(50ms);
      }
      std::fprintf(stderr, "attacker: %d rounds, worst /healthz %.1f ms\n", rounds, worst_healthz);
      EXPECT_GT(rounds, 0);
      EXPECT_LT(worst_healthz, 100.0);
    });
  }
  EXPECT_EQ(c.worker(0)->Wait(), 0) << c.worker(0)->output();
  EXPECT_EQ(c.worker(1)->Wait(), 0) << c.worker(1)->output();
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  stop = true;
  if (attacker.joinable()) attacker.join();
  out.accuracy = FinalAccuracy(c.worker(0)->output());
  out.server_hwm_kb = testing::ProcStatus(c.server()->pid(), "VmHWM");
  out.metrics = testing::HttpGet(http, "/metrics");
  c.StopServers();
  return out;
}

// Invented ids and forged sessions change nothing about a sync job: it takes
// about as long as without them (on the old code, a heartbeat for an
// invented id held every step until the attacker stopped) and ends with the
// same accuracy, bit for bit as sync mode is; every attempt is counted.
TEST(PsMembership, InventedWorkersAreRefusedAndDoNotStretchASyncJob) {
  const JobRun clean = RunSyncJob(false, 0);
  ASSERT_GT(clean.accuracy, 60.0);
  const JobRun attacked = RunSyncJob(true, 4 * clean.seconds + 5);
  std::fprintf(
      stderr, "2-worker sync job: %.2f s clean, %.2f s under attack; server VmHWM %lld / %lld kB\n",
      clean.seconds, attacked.seconds, static_cast<long long>(clean.server_hwm_kb),
      static_cast<long long>(attacked.server_hwm_kb));
  EXPECT_LT(attacked.seconds, 2 * clean.seconds + 1) << "the attack stretched the job";
  EXPECT_EQ(attacked.accuracy, clean.accuracy) << "sync mode: the same run, bit for bit";
  EXPECT_GT(MetricValue(attacked.metrics, "dnnd_ps_refused_total{reason=\"unknown_worker\"}"), 0)
      << attacked.metrics;
  EXPECT_GT(MetricValue(attacked.metrics, "dnnd_ps_refused_total{reason=\"rank_held\"}"), 0);
  EXPECT_GT(MetricValue(attacked.metrics, "dnnd_ps_refused_total{reason=\"beyond_workers\"}"), 0);
  EXPECT_LT(attacked.server_hwm_kb, clean.server_hwm_kb + 32 * 1024);
}

// Waits for `n` asynchronous calls.
class Countdown {
 public:
  void Add() {
    std::lock_guard lock(mu_);
    ++left_;
  }
  void Done() {
    std::lock_guard lock(mu_);
    if (--left_ == 0) cv_.notify_all();
  }
  void Wait() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return left_ == 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int left_ = 0;
};

// 20,000 joins as ranks the job does not have and 20,000 heartbeats of
// never-joined workers, before any worker initialised the model: all
// refused, cheaply (no model is built, nobody becomes a member, memory stays
// put), while /healthz answers; a real rank still joins afterwards. (The old
// code accepted every one: the first join built the model and the
// heartbeats made 20,000 live members.)
TEST(PsMembership, TwentyThousandJoinsBeyondTheWorkerCountAreRefusedCheaply) {
  TempDir dir;
  const int http = testing::FreeLoopbackPort();
  Cluster c(dir, 1, "--set http.listen=127.0.0.1:" + std::to_string(http));
  c.StartServers();
  ASSERT_GT(c.port(), 0) << c.server()->output();
  auto client = PsClient(c.port());
  ASSERT_TRUE(client->Connect(rpc::Clock::now() + 10s).ok());
  const pid_t pid = c.server()->pid();
  const int64_t rss_before = testing::ProcStatus(pid, "VmRSS");
  constexpr int kAttempts = 20000;
  std::atomic<int> beyond{0}, unknown{0}, other{0};
  std::string first_beyond, first_unknown;
  std::mutex first_mu;
  std::atomic<bool> flooding{true};
  double worst_healthz = 0;
  int healthz_probes = 0;
  std::thread prober([&] {
    while (flooding) {
      int status = 0;
      worst_healthz = std::max(worst_healthz, MillisToGet(http, "/healthz", &status));
      EXPECT_EQ(status, 200);
      ++healthz_probes;
      std::this_thread::sleep_for(100ms);
    }
  });
  const auto t0 = std::chrono::steady_clock::now();
  for (int batch = 0; batch < 2 * kAttempts; batch += 500) {
    Countdown done;
    for (int i = batch; i < batch + 500; ++i) {
      const bool join = i < kAttempts;
      done.Add();
      client->CallAsync(join ? Init(2 + i) : PsRequest(ps::kHeartbeat, i - kAttempts),
                        rpc::Clock::now() + 30s, [&, join](Result<wire::Message> r) {
                          const StatusCode want =
                              join ? StatusCode::kResourceExhausted : StatusCode::kPermissionDenied;
                          if (r.status().code() == want) {
                            ++(join ? beyond : unknown);
                            std::lock_guard lock(first_mu);
                            (join ? first_beyond : first_unknown) = r.status().message();
                          } else {
                            ++other;
                          }
                          done.Done();
                        });
    }
    done.Wait();
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  flooding = false;
  prober.join();
  const int64_t rss_after = testing::ProcStatus(pid, "VmRSS");
  std::fprintf(
      stderr,
      "%d refused joins + %d refused heartbeats in %.2f s (%.0f us each); worst /healthz %.1f ms "
      "of %d; VmRSS %lld -> %lld kB\n",
      beyond.load(), unknown.load(), seconds, seconds * 1e6 / (2 * kAttempts), worst_healthz,
      healthz_probes, static_cast<long long>(rss_before), static_cast<long long>(rss_after));
  EXPECT_EQ(beyond, kAttempts);
  EXPECT_EQ(unknown, kAttempts);
  EXPECT_EQ(other, 0);
  EXPECT_NE(first_beyond.find("ps.workers = 2"), std::string::npos) << first_beyond;
  EXPECT_NE(first_unknown.find("session"), std::string::npos) << first_unknown;
  EXPECT_LT(seconds, 30.0) << "each refusal is a map lookup";
  EXPECT_LT(worst_healthz, 100.0);
  EXPECT_LT(rss_after - rss_before, 16 * 1024) << "kB";
  auto s = client->Call(ps::StatsRequest(), 5s);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  auto stats = ps::StatsReply::Decode(s.value());
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_FALSE(stats->initialized) << "no refused join built the model";
  EXPECT_EQ(stats->live_workers, 0);
  const std::string metrics = testing::HttpGet(http, "/metrics");
  EXPECT_EQ(MetricValue(metrics, "dnnd_ps_refused_total{reason=\"beyond_workers\"}"), kAttempts);
  EXPECT_EQ(MetricValue(metrics, "dnnd_ps_refused_total{reason=\"unknown_worker\"}"), kAttempts);
  // A rank of the job joins and gets its session.
  auto joined = client->Call(Init(1), 10s);
  ASSERT_TRUE(joined.ok()) << joined.status().ToString();
  EXPECT_EQ(ps::InitReply::Decode(joined.value()).value().session.size(), 32u);
  c.StopServers();
}

// A job that starts from given weights (an ONNX model's): the first init
// carries them and their digest, the server builds the model from them, and
// a worker naming other weights (or the seed) is refused. An init naming
// weights it does not carry, or carrying weights that are not the digest's,
// builds nothing.
TEST(PsInitialWeights, ServersBuildTheModelFromTheWeightsTheFirstInitCarries) {
  TempDir dir;
  Cluster c(dir, 1, "");
  c.StartServers();
  ASSERT_GT(c.port(), 0) << c.server()->output();
  auto client = PsClient(c.port());
  const std::string spec_text = MlpSpecText();
  auto model = BuildModel(ParseModelSpecText(spec_text, "mlp").value(), 7).value();
  nn::NamedTensors state = model->NamedState();
  for (auto& [name, t] : state) t = Tensor::Full(t.shape(), 0.25f);
  const std::string digest = StateDigest(state);
  auto init = [&](int64_t worker, const std::string& d, bool carry, const std::string& session) {
    ps::InitRequest r{.spec = spec_text,
                      .seed = 42,
                      .servers = 1,
                      .index = 0,
                      .member = {.worker = worker, .session = session},
                      .initial_digest = d};
    if (carry)
      for (const auto& [name, t] : state)
        r.initial.push_back(wire::WireTensor::FromTensor(name, t));
    return client->Call(r.Encode(), 10s);
  };
  auto named = init(0, digest, /*carry=*/false, "");
  ASSERT_FALSE(named.ok());
  EXPECT_NE(named.status().message().find("must carry them"), std::string::npos)
      << named.status().ToString();
  auto forged = init(0, std::string(64, 'a'), /*carry=*/true, "");
  ASSERT_FALSE(forged.ok());
  EXPECT_NE(forged.status().message().find("do not match their digest"), std::string::npos)
      << forged.status().ToString();

  auto joined = init(0, digest, /*carry=*/true, "");
  ASSERT_TRUE(joined.ok()) << joined.status().ToString();
  const ps::InitReply reply = ps::InitReply::Decode(joined.value()).value();
  int64_t elements = 0;
  for (int64_t chunk = 0; chunk < reply.chunks; ++chunk) {
    auto pulled = client->Call(
        ps::PullRequest{.member = ps::Member{.worker = 0, .session = reply.session}, .chunk = chunk}
            .Encode(),
        10s);
    ASSERT_TRUE(pulled.ok()) << pulled.status().ToString();
    const ps::WeightsReply weights = ps::WeightsReply::Decode(pulled.value()).value();
    for (const auto& w : weights.tensors) {
      const Tensor t = w.ToTensor().value();
      elements += t.numel();
      for (float v : t.ToVector()) ASSERT_EQ(v, 0.25f) << w.name;
    }
  }
  EXPECT_EQ(elements, model->ParameterCount()) << "every parameter came from the init";

  auto seeded = init(1, "", /*carry=*/false, "");
  ASSERT_FALSE(seeded.ok());
  EXPECT_NE(seeded.status().message().find("initial weights"), std::string::npos)
      << seeded.status().ToString();
  auto same = init(1, digest, /*carry=*/true, "");
  EXPECT_TRUE(same.ok()) << same.status().ToString();
  c.StopServers();
}

// A push carrying NaN (or Inf) is refused with an error naming it, counted,
// and changes nothing: the real worker trains on to a normal accuracy and
// its model is finite. (On the old code the NaN was averaged in and the
// model was NaN from that step on.)
TEST(PsMembership, NonFinitePushIsRefusedCountedAndTrainingGoesOn) {
  TempDir dir;
  const int http = testing::FreeLoopbackPort();
  Cluster c(
      dir, 1,
      "--set ps.heartbeat_timeout_ms=1500 --set http.listen=127.0.0.1:" + std::to_string(http));
  c.StartServers();
  ASSERT_GT(c.port(), 0) << c.server()->output();
  c.StartWorker(0, kSmallJob);  // part 0 of 2; this test is part 1
  ASSERT_TRUE(c.worker(0)->WaitFor("joined parameter servers", 30s)) << c.worker(0)->output();
  auto client = PsClient(c.port());
  auto joined = client->Call(Init(1), 10s);
  ASSERT_TRUE(joined.ok()) << joined.status().ToString();
  auto reply = ps::InitReply::Decode(joined.value());
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  const std::string session = reply->session;
  EXPECT_EQ(session.size(), 32u) << "the join's session";
  const int chunks = static_cast<int>(reply->chunks);
  auto model = BuildModel(ParseModelSpecText(MlpSpecText(), "mlp").value(), 42).value();
  std::vector<std::pair<std::string, Shape>> shapes;
  for (const auto& [name, t] : model->NamedParameters()) shapes.emplace_back(name, t.shape());
  const ps::Partition partition = ps::PartitionParameters(shapes, chunks);
  const float poison[] = {std::nanf(""), INFINITY};
  for (int chunk = 0; chunk < chunks; ++chunk) {
    ps::PushRequest push{.member = {.worker = 1, .session = session},
                         .chunk = chunk,
                         .version = reply->version,
                         .step = 1,
                         .lr = 0.001};
    for (const ps::ShardPiece& piece : partition.pieces[chunk]) {
      Tensor g = Tensor::Zeros({piece.length});
      g.data()[piece.length / 2] = poison[chunk % 2];
      push.tensors.push_back(wire::WireTensor::FromTensor(piece.key(), g));
    }
    auto r = client->Call(push.Encode(), 10s);
    EXPECT_FALSE(r.ok()) << "chunk " << chunk;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().ToString();
    EXPECT_NE(
        r.status().message().find("non-finite value (" + std::string(chunk % 2 ? "inf" : "nan")),
        std::string::npos)
        << r.status().ToString();
  }
  ASSERT_TRUE(client->Call(PsRequest(ps::kLeave, 1, session), 5s).ok());
  ASSERT_EQ(c.worker(0)->Wait(), 0) << c.worker(0)->output();
  EXPECT_GT(FinalAccuracy(c.worker(0)->output()), 50.0) << c.worker(0)->output();
  auto saved = LoadSafetensors(dir.path() + "/model0/model.safetensors");
  ASSERT_TRUE(saved.ok()) << saved.status().ToString();
  for (const auto& [name, t] : saved->tensors)
    for (float v : t.ToVector()) ASSERT_TRUE(std::isfinite(v)) << name;
  const std::string metrics = testing::HttpGet(http, "/metrics");
  EXPECT_EQ(MetricValue(metrics, "dnnd_ps_refused_total{reason=\"non_finite\"}"), chunks)
      << metrics;
  c.StopServers();
}

// ps.weights_codec = bf16: a sync step answers with each parameter's change
// as bf16 (on the wire), the changes a worker adds up are bit for bit the
// weights the server publishes (its pull), and those stay within a rounding
// of a step's change of the server's own float32 weights (its checkpoint).
// After a restart the first step answers with values, so a worker holding
// what was published before the crash gets the restored weights.
TEST(PsWeightsCodec, Bf16ChangesAddUpToThePublishedWeightsAcrossARestart) {
  TempDir dir;
  Cluster c(dir, 1, "--set ps.workers=1 --set ps.chunks=1 --set ps.weights_codec=bf16");
  c.StartServers();
  ASSERT_GT(c.port(), 0) << c.server()->output();
  auto model = BuildModel(ParseModelSpecText(MlpSpecText(), "mlp").value(), 42).value();
  std::vector<std::pair<std::string, Shape>> shapes;
  for (const auto& [name, t] : model->NamedParameters()) shapes.emplace_back(name, t.shape());
  const std::vector<ps::ShardPiece> pieces = ps::PartitionParameters(shapes, 1).pieces[0];

  std::unique_ptr<rpc::RpcClient> client;
  std::string session;
  auto join = [&] {
    client = PsClient(c.port());
    auto joined = client->Call(Init(0), 10s);
    ASSERT_TRUE(joined.ok()) << joined.status().ToString();
    session = ps::InitReply::Decode(joined.value()).value().session;
  };
  auto floats = [](const wire::WireTensor& t) { return t.ToTensor().value().ToVector(); };
  std::vector<std::vector<float>> held;  // what this worker holds, per piece
  auto take_values = [&](const ps::WeightsReply& r) {
    held.clear();
    for (const auto& t : r.tensors) held.push_back(floats(t));
  };
  // One step's push for `version`: a fixed gradient of varied magnitude.
  auto step = [&](int64_t version) {
    ps::PushRequest push{.member = {.worker = 0, .session = session},
                         .chunk = 0,
                         .version = version,
                         .step = version + 1,
                         .lr = 0.05};
    for (const ps::ShardPiece& piece : pieces) {
      Tensor g = Tensor::Empty({piece.length});
      for (int64_t k = 0; k < piece.length; ++k)
        g.data()[k] = 0.01f * std::sin(static_cast<float>(k + version));
      push.tensors.push_back(wire::WireTensor::FromTensor(piece.key(), g));
    }
    auto r = client->Call(push.Encode(), 10s);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return ps::WeightsReply::Decode(r.value()).value();
  };
  auto pull = [&] {
    auto r = client->Call(
        ps::PullRequest{.member = ps::Member{.worker = 0, .session = session}}.Encode(), 10s);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return ps::WeightsReply::Decode(r.value()).value();
  };

  join();
  ps::WeightsReply first = pull();
  ASSERT_FALSE(first.delta);
  ASSERT_EQ(first.tensors.size(), pieces.size());
  take_values(first);
  for (int64_t v = 0; v < 3; ++v) {
    ps::WeightsReply r = step(v);
    ASSERT_TRUE(r.delta) << "step " << v;
    ASSERT_EQ(r.version, v + 1);
    ASSERT_EQ(r.tensors.size(), pieces.size());
    for (size_t i = 0; i < pieces.size(); ++i) {
      EXPECT_EQ(r.tensors[i].codec, wire::Codec::kBF16) << pieces[i].key();
      const std::vector<float> d = floats(r.tensors[i]);
      for (size_t k = 0; k < d.size(); ++k) held[i][k] += d[k];
    }
  }
  ps::WeightsReply published = pull();
  ASSERT_FALSE(published.delta);
  ASSERT_EQ(published.version, 3);
  for (size_t i = 0; i < pieces.size(); ++i)
    EXPECT_EQ(floats(published.tensors[i]), held[i]) << pieces[i].key();

  c.StopServers();  // checkpoints the server's float32 weights at version 3
  auto saved = LoadSafetensors(dir.path() + "/ps/ps-0-0.safetensors");
  ASSERT_TRUE(saved.ok()) << saved.status().ToString();
  std::map<std::string, Tensor> own(saved->tensors.begin(), saved->tensors.end());
  double worst = 0, moved = 0;
  for (size_t i = 0; i < pieces.size(); ++i) {
    const std::vector<float> w = own.at(pieces[i].key()).ToVector();
    const std::vector<float> w0 = floats(first.tensors[i]);
    for (size_t k = 0; k < w.size(); ++k) {
      worst = std::max(worst, std::abs(static_cast<double>(w[k]) - held[i][k]));
      moved = std::max(moved, std::abs(static_cast<double>(w[k]) - w0[k]));
    }
  }
  std::fprintf(stderr, "3 steps moved weights by up to %.3g; workers hold them within %.3g\n",
               moved, worst);
  EXPECT_GT(moved, 1e-4);
  EXPECT_LT(worst, moved / 128) << "more than a bf16 rounding of the change";

  c.StartServer();
  ASSERT_TRUE(c.server()->WaitFor("resumed from checkpoint", 10s)) << c.server()->output();
  join();
  ps::WeightsReply after = step(3);
  EXPECT_FALSE(after.delta) << "the first step after a restart sends values";
  EXPECT_EQ(after.version, 4);
  take_values(after);
  ps::WeightsReply next = step(4);
  EXPECT_TRUE(next.delta);
  for (size_t i = 0; i < pieces.size(); ++i) {
    const std::vector<float> d = floats(next.tensors[i]);
    for (size_t k = 0; k < d.size(); ++k) held[i][k] += d[k];
  }
  published = pull();
  for (size_t i = 0; i < pieces.size(); ++i)
    EXPECT_EQ(floats(published.tensors[i]), held[i]) << pieces[i].key();
  c.StopServers();
}

// Deltas need every worker on the same weights: async and kavg refuse them.
TEST(PsWeightsCodec, Bf16WeightsOutsideSyncModeAreAClearError) {
  for (const std::string mode : {"async", "kavg"}) {
    TempDir dir;
    auto r = Dnnd("--role=standalone " +
                  Job(dir.path(), "--set ps.mode=" + mode + " --set ps.weights_codec=bf16"));
    EXPECT_NE(r.code, 0) << r.output;
    EXPECT_NE(r.output.find("ps.weights_codec = \"bf16\" needs ps.mode = \"sync\" (it is \"" +
                            mode + "\")"),
              std::string::npos)
        << r.output;
  }
}

// A sync job with bf16 weights trains like the float32 one and stays
// bit-reproducible.
TEST(Standalone, Bf16WeightsTrainReproducibly) {
  TempDir a, b, f;
  auto ra = Dnnd("--role=standalone " + Job(a.path(), "--set ps.weights_codec=bf16"));
  auto rb = Dnnd("--role=standalone " + Job(b.path(), "--set ps.weights_codec=bf16"));
  auto rf = Dnnd("--role=standalone " + Job(f.path()));
  ASSERT_EQ(ra.code, 0) << ra.output;
  ASSERT_EQ(rb.code, 0) << rb.output;
  ASSERT_EQ(rf.code, 0) << rf.output;
  auto fa = LoadSafetensors(a.path() + "/model/model.safetensors");
  auto fb = LoadSafetensors(b.path() + "/model/model.safetensors");
  ASSERT_TRUE(fa.ok() && fb.ok());
  for (size_t i = 0; i < fa->tensors.size(); ++i)
    EXPECT_EQ(fa->tensors[i].second.ToVector(), fb->tensors[i].second.ToVector())
        << fa->tensors[i].first;
  std::fprintf(stderr, "test accuracy: float32 weights %.2f%%, bf16 changes %.2f%%\n",
               FinalAccuracy(rf.output), FinalAccuracy(ra.output));
  EXPECT_NEAR(FinalAccuracy(ra.output), FinalAccuracy(rf.output), 1.5) << ra.output;
}

}  // namespace
}  // namespace dnnd
