// The dnnd binary end to end: commands, exit codes, errors, and the worker
// role training, checkpointing and resuming through real processes and files.
#include <gtest/gtest.h>

#include "core/config.h"
#include "core/config_schema.h"
#include "roles/node/registry.h"
#include "tensor/isa.h"
#include "tensor/safetensors.h"
#include "tests/roles/dnnd_process.h"

namespace {

using dnnd::testing::Daemon;
using dnnd::testing::Dnnd;
using dnnd::testing::HttpGet;
using dnnd::testing::Outcome;
using dnnd::testing::Src;
using dnnd::testing::TempDir;

TEST(Cli, Version) {
  Outcome r = Dnnd("version");
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.output.find("dnnd "), std::string::npos);
  EXPECT_NE(r.output.find("blas="), std::string::npos);
}

TEST(Cli, UnknownRoleListsValidOnes) {
  Outcome r = Dnnd("--role=trainer --config x.toml");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("unknown role 'trainer'"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("parameter-server"), std::string::npos);
  Outcome near = Dnnd("--role=wroker --config x.toml");
  EXPECT_EQ(near.code, 2);
  EXPECT_NE(near.output.find("unknown role 'wroker'; did you mean 'worker'?"), std::string::npos)
      << near.output;
}

// The schema's node.role choices are the registry's roles, no more, no less.
TEST(Cli, NodeRoleChoicesAreTheRegistrysRoles) {
  std::vector<std::string> schema, registry;
  for (const auto& k : dnnd::ConfigSchema())
    if (k.key == "node.role")
      for (const auto& c : k.choices)
        if (!c.empty()) schema.push_back(c);
  for (const auto& r : dnnd::Roles()) registry.push_back(r.name);
  EXPECT_EQ(schema, registry);
}

// The config chooses the role: `dnnd --config file.toml` with no --role runs
// what [node] role names; here a splitter that cuts its shards and ends.
TEST(Cli, ConfigFileAloneChoosesTheRole) {
  TempDir dir;
  Outcome r =
      Dnnd("--config " + Src("configs/splitter.toml") +
           " --set data.limit_train=600 --set splitter.output_dir=" + dir.path() + "/shards");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(std::filesystem::exists(dir.path() + "/shards/manifest.json")) << r.output;
  EXPECT_TRUE(std::filesystem::exists(dir.path() + "/shards/shard-000.npz")) << r.output;
}

// A serving role from the file alone: a parameter server that answers its
// health check until SIGTERM.
TEST(Cli, ConfigFileAloneStartsAServingRole) {
  TempDir dir;
  Daemon ps(
      "--config " + Src("configs/parameter-server.toml") +
          " --set ps.listen=127.0.0.1:0 --set http.listen=127.0.0.1:0 --set ps.checkpoint_dir=",
      dir.path() + "/ps.log");
  const int port =
      ps.PortAfter("control plane listening address=127.0.0.1:", std::chrono::seconds(10));
  ASSERT_GT(port, 0) << ps.output();
  EXPECT_NE(HttpGet(port, "/healthz").find("200 OK"), std::string::npos);
  // Not ready until a worker initialises the model: a parameter server.
  EXPECT_NE(HttpGet(port, "/readyz").find("waiting for a worker"), std::string::npos);
  ps.Signal(SIGTERM);
  EXPECT_EQ(ps.Wait(), 0) << ps.output();
}

// --role and [node] role must agree: a disagreement names both and where the
// file's came from; an agreeing --role is fine.
TEST(Cli, RoleDisagreeingWithTheConfigIsAConfigError) {
  Outcome r = Dnnd("--role=worker --config " + Src("configs/splitter.toml"));
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("--role=worker disagrees with node.role = \"splitter\" (" +
                          Src("configs/splitter.toml") + ":10:8)"),
            std::string::npos)
      << r.output;
  Outcome set = Dnnd("--role=splitter --config " + Src("configs/splitter.toml") +
                     " --set node.role=aggregator");
  EXPECT_EQ(set.code, 2) << set.output;
  EXPECT_NE(set.output.find("--role=splitter disagrees with node.role = \"aggregator\" (--set "
                            "node.role)"),
            std::string::npos)
      << set.output;
}

TEST(Cli, ConfigWithoutOrWithAMisspeltRoleIsAConfigError) {
  TempDir dir;
  Outcome none = Dnnd("--config " + dir.Write("none.toml", "[node]\nname = \"x\"\n"));
  EXPECT_EQ(none.code, 2) << none.output;
  EXPECT_NE(none.output.find("none.toml chooses no role: add [node] role"), std::string::npos)
      << none.output;
  Outcome bad = Dnnd("--config " + dir.Write("bad.toml", "[node]\nrole = \"spliter\"\n"));
  EXPECT_EQ(bad.code, 2) << bad.output;
  EXPECT_NE(bad.output.find("bad.toml:2:8: node.role: 'spliter' is not allowed; did you mean "
                            "'splitter'?"),
            std::string::npos)
      << bad.output;
  Outcome top = Dnnd("--config " + dir.Write("top.toml", "role = \"worker\"\n"));
  EXPECT_EQ(top.code, 2) << top.output;
  EXPECT_NE(top.output.find("did you mean node.role?"), std::string::npos) << top.output;
}

// Every role is built now (the controller was the last); a controller
// without an address to serve its API on is a configuration error.
TEST(Cli, ControllerWithoutHttpListenIsAConfigError) {
  TempDir dir;
  Outcome r = Dnnd("--role=controller --config " + Src("configs/controller.toml") +
                   " --set http.listen= --set controller.data_dir=" + dir.path());
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("http.listen"), std::string::npos) << r.output;
}

TEST(Cli, UnknownOptionAndCommandAreUsageErrors) {
  EXPECT_EQ(Dnnd("--frobnicate").code, 2);
  EXPECT_EQ(Dnnd("launch").code, 2);
  EXPECT_EQ(Dnnd("").code, 2);
}

// Every shipped config checks and names its role ([node] role).
TEST(Cli, EveryShippedConfigChecks) {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(Src("configs"))) {
    if (e.path().extension() != ".toml") continue;
    ++n;
    Outcome r = Dnnd("config check " + e.path().string());
    EXPECT_EQ(r.code, 0) << e.path() << "\n" << r.output;
    auto cfg = dnnd::Config::Load(e.path().string(), {}, {});
    ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
    EXPECT_NE(cfg->GetString("node.role"), "") << e.path() << " names no role";
  }
  EXPECT_GT(n, 0);
}

TEST(Cli, ConfigCheckPrintsOriginsAndReportsErrors) {
  TempDir dir;
  Outcome ok = Dnnd("config check " + Src("configs/worker-mlp.toml") + " --set train.epochs=2");
  EXPECT_EQ(ok.code, 0);
  EXPECT_NE(ok.output.find("epochs = 2  # --set train.epochs"), std::string::npos) << ok.output;
  std::string bad = dir.Write("bad.toml", "[train]\nepochs = \"x\"\nunknown = 1\n");
  Outcome r = Dnnd("config check " + bad);
  EXPECT_EQ(r.code, 2);  // a configuration error, like every other
  EXPECT_NE(r.output.find("bad.toml:2:10: train.epochs"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("bad.toml:3:11: unknown key train.unknown"), std::string::npos)
      << r.output;
}

// Errors come in file order, then the overrides', each naming its origin,
// near misses with a did-you-mean.
TEST(Cli, ConfigCheckErrorsAreSortedWithOriginsAndSuggestions) {
  TempDir dir;
  std::string bad = dir.Write("bad.toml", "[train]\nepochz = 1\n[data]\nformat = \"npx\"\n[lgo]\n");
  Outcome r = Dnnd("config check " + bad + " --set rpc.listen=x --set trian.epochs=3");
  EXPECT_EQ(r.code, 2) << r.output;
  const std::vector<std::string> lines = {
      "bad.toml:2:10: unknown key train.epochz; did you mean train.epochs?",
      "bad.toml:4:10: data.format: 'npx' is not allowed; did you mean 'npy'?",
      "bad.toml:5:1: unknown section [lgo]; did you mean [log]?",
      "--set rpc.listen: unknown section [rpc]",
      "--set trian.epochs: unknown section [trian]; did you mean train.epochs?"};
  size_t at = 0;
  for (const auto& line : lines) {
    const size_t found = r.output.find(line, at);
    ASSERT_NE(found, std::string::npos) << "missing, or out of order: " << line << "\n" << r.output;
    at = found + line.size();
  }
  EXPECT_EQ(r.output.find("<config>:0:0"), std::string::npos) << r.output;
  // Every command reading a config says so with 2.
  Outcome token = Dnnd("api-token --config " + bad);
  EXPECT_EQ(token.code, 2) << token.output;
  EXPECT_NE(token.output.find("bad.toml:2:10: unknown key train.epochz"), std::string::npos)
      << token.output;
}

TEST(Cli, EnvironmentOverridesFile) {
  std::string cmd = "DNND_TRAIN__EPOCHS=9 " + std::string(DNND_BINARY) + " config check " +
                    Src("configs/worker-mlp.toml") + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  EXPECT_EQ(pclose(p), 0);
  EXPECT_NE(out.find("epochs = 9  # env DNND_TRAIN__EPOCHS"), std::string::npos) << out;
}

TEST(Cli, WorkerRejectsModelThatDoesNotFitData) {
  TempDir dir;
  Outcome r = Dnnd("--role=worker --config " + Src("configs/worker-mlp.toml") +
                   " --set 'model.input=[784]' --set data.limit_train=10");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("model.input is [784]"), std::string::npos) << r.output;
}

TEST(Cli, WorkerTrainsXorAndWritesACheckpoint) {
  TempDir dir;
  Outcome r = Dnnd("--role=worker --config " + Src("configs/worker-xor.toml") +
                   " --set train.iterations=3000 --set train.checkpoint_dir=" + dir.path());
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("final test accuracy"), std::string::npos) << r.output;
  auto ckpt = dnnd::LoadSafetensors(dir.path() + "/model.safetensors");
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  EXPECT_EQ(ckpt->tensors.size(), 6u);  // three linear layers
  EXPECT_EQ(ckpt->metadata.at("dnnd.step"), "3000");
  EXPECT_NE(ckpt->metadata.at("dnnd.model_spec").find("[[model.layers]]"), std::string::npos);
}

// configs/worker-ps.toml with its servers removed: worker 0 of 2 with no one
// to combine with trains alone on half the data. That can be meant (split,
// train, aggregate), so it runs, but it says so.
TEST(Cli, WorkerOfSeveralWithoutServersWarnsItTrainsAlone) {
  TempDir dir;
  auto run = [&](const std::string& count) {
    return Dnnd("--role=worker --config " + Src("configs/worker-ps.toml") +
                " --set 'worker.parameter_servers=[]' --set worker.count=" + count +
                " --set data.limit_train=256 --set data.limit_test=64 --set train.epochs=1"
                " --set train.progress=none --set train.checkpoint_dir=" +
                dir.path());
  };
  Outcome two = run("2");
  ASSERT_EQ(two.code, 0) << two.output;
  EXPECT_NE(two.output.find("this worker trains alone on its part of the data (1 of 2)"),
            std::string::npos)
      << two.output;
  Outcome one = run("1");
  ASSERT_EQ(one.code, 0) << one.output;
  EXPECT_EQ(one.output.find("trains alone"), std::string::npos) << one.output;
}

// A run stopped at step k and resumed must end bit-identical to a run that
// never stopped: same batches (seeded per epoch), same optimizer state.
TEST(Cli, ResumedRunMatchesUninterruptedRun) {
  TempDir a, b;
  const std::string common = "--role=worker --config " + Src("configs/worker-mlp.toml") +
                             " --set data.limit_train=2000 --set data.limit_test=500"
                             " --set train.epochs=2 --set train.progress=none";
  Outcome full = Dnnd(common + " --set train.checkpoint_dir=" + a.path());
  ASSERT_EQ(full.code, 0) << full.output;
  // 2000 samples / 128 = 16 steps per epoch: stop mid-epoch 2, then resume.
  Outcome part =
      Dnnd(common + " --set train.checkpoint_dir=" + b.path() + " --set train.max_steps=21");
  ASSERT_EQ(part.code, 0) << part.output;
  auto mid = dnnd::LoadSafetensors(b.path() + "/model.safetensors");
  ASSERT_TRUE(mid.ok());
  EXPECT_EQ(mid->metadata.at("dnnd.step"), "21");
  Outcome rest =
      Dnnd(common + " --set train.checkpoint_dir=" + b.path() + " --set train.resume=true");
  ASSERT_EQ(rest.code, 0) << rest.output;
  EXPECT_NE(rest.output.find("resumed"), std::string::npos) << rest.output;
  auto fa = dnnd::LoadSafetensors(a.path() + "/model.safetensors");
  auto fb = dnnd::LoadSafetensors(b.path() + "/model.safetensors");
  ASSERT_TRUE(fa.ok() && fb.ok());
  ASSERT_EQ(fa->tensors.size(), fb->tensors.size());
  for (size_t i = 0; i < fa->tensors.size(); ++i)
    EXPECT_EQ(fa->tensors[i].second.ToVector(), fb->tensors[i].second.ToVector())
        << fa->tensors[i].first;
}

// The opt-in bf16 precision, end to end: DNND_PRECISION and node.precision
// reach the daemon (`dnnd version` says which runs, an unknown name is
// reported and fp32 used); a ResNet-20 worker trains with it, twice to the
// same bits (sync runs stay reproducible), and to other bits than in fp32
// (the bf16 kernels ran). A CPU without AVX512-BF16 refuses the setting.
TEST(Cli, Bf16PrecisionReachesTheDaemonAndTrainsReproducibly) {
  const std::string bin = DNND_BINARY;
  if (!dnnd::isa::Cpu().avx512_bf16) {
    Outcome r = Dnnd("--role=worker --config " + Src("configs/worker-mlp.toml") +
                     " --set node.precision=bf16");
    EXPECT_EQ(r.code, 2) << r.output;
    EXPECT_NE(r.output.find("node.precision = \"bf16\": this CPU cannot run it"), std::string::npos)
        << r.output;
    return;
  }
  Outcome env = dnnd::testing::Shell("DNND_PRECISION=bf16 " + bin + " version");
  EXPECT_NE(env.output.find("precision=bf16"), std::string::npos) << env.output;
  Outcome bad = dnnd::testing::Shell("DNND_PRECISION=bf17 " + bin + " version");
  EXPECT_NE(bad.output.find("DNND_PRECISION=bf17 is not a precision"), std::string::npos)
      << bad.output;
  EXPECT_NE(bad.output.find("precision=fp32"), std::string::npos) << bad.output;

  TempDir a, b, c;
  auto train = [&](const std::string& precision, const TempDir& dir) {
    Outcome r = Dnnd("--role=worker --config " + Src("configs/worker-resnet20.toml") +
                     " --set node.threads=1 --set node.precision=" + precision +
                     " --set data.limit_train=384 --set data.limit_test=128 --set train.epochs=1"
                     " --set train.progress=none --set train.checkpoint_dir=" +
                     dir.path());
    EXPECT_EQ(r.code, 0) << r.output;
    EXPECT_NE(r.output.find("final test accuracy"), std::string::npos) << r.output;
    auto ckpt = dnnd::LoadSafetensors(dir.path() + "/model.safetensors");
    EXPECT_TRUE(ckpt.ok()) << ckpt.status().ToString();
    std::vector<std::vector<float>> weights;
    if (ckpt.ok())
      for (const auto& [name, t] : ckpt->tensors) weights.push_back(t.ToVector());
    return weights;
  };
  const auto first = train("bf16", a), second = train("bf16", b), fp32 = train("fp32", c);
  ASSERT_FALSE(first.empty());
  EXPECT_EQ(first, second) << "two bf16 runs differ";
  EXPECT_NE(first, fp32) << "bf16 and fp32 ended bit-identical: bf16 did not run";
}

// SIGTERM mid-training: the worker checkpoints where it is and exits 0; a
// resumed run continues from that step.
TEST(Cli, SigtermCheckpointsAndExitsCleanly) {
  TempDir dir;
  const std::string log = dir.path() + "/log.txt";
  std::string cmd =
      std::string("exec ") + DNND_BINARY + " --role=worker --config " +
      Src("configs/worker-mlp.toml") + " --set train.epochs=200 --set train.progress=none" +
      " --set data.limit_test=100 --set train.checkpoint_dir=" + dir.path() + " > " + log + " 2>&1";
  pid_t pid;
  const char* argv[] = {"/bin/sh", "-c", cmd.c_str(), nullptr};
  ASSERT_EQ(posix_spawn(&pid, "/bin/sh", nullptr, nullptr, const_cast<char**>(argv), environ), 0);
  // Signal it once it trains (loading the data takes a while on a busy
  // machine, and before the role exists SIGTERM simply ends the process).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (std::chrono::steady_clock::now() < deadline &&
         dnnd::testing::ReadFile(log).find("worker: training") == std::string::npos)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::this_thread::sleep_for(std::chrono::seconds(2));
  ASSERT_EQ(kill(pid, SIGTERM), 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  std::ifstream in(log);
  std::string output((std::istreambuf_iterator<char>(in)), {});
  ASSERT_TRUE(WIFEXITED(status)) << output;
  EXPECT_EQ(WEXITSTATUS(status), 0) << output;
  EXPECT_NE(output.find("stopping"), std::string::npos) << output;
  auto ckpt = dnnd::LoadSafetensors(dir.path() + "/model.safetensors");
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString() << "\n" << output;
  const long step = std::stol(ckpt->metadata.at("dnnd.step"));
  EXPECT_GT(step, 0);
  EXPECT_LT(step, 200L * 469);
}

// Every role serves /healthz, /readyz and /metrics when http.listen is set;
// the worker's training metrics and the process metrics are in the scrape.
TEST(Cli, ControlPlaneServesHealthReadinessAndMetrics) {
  TempDir dir;
  const std::string log = dir.path() + "/log.txt";
  std::string cmd =
      std::string("exec ") + DNND_BINARY + " --role=worker --config " +
      Src("configs/worker-xor.toml") +
      " --set train.iterations=100000000 --set train.progress=none --set http.listen=127.0.0.1:0" +
      " --set train.checkpoint_dir= > " + log + " 2>&1";
  pid_t pid;
  const char* argv[] = {"/bin/sh", "-c", cmd.c_str(), nullptr};
  ASSERT_EQ(posix_spawn(&pid, "/bin/sh", nullptr, nullptr, const_cast<char**>(argv), environ), 0);
  int port = 0;
  std::string output;
  for (int i = 0; i < 100 && port == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::ifstream in(log);
    output.assign(std::istreambuf_iterator<char>(in), {});
    const std::string marker = "control plane listening address=127.0.0.1:";
    const size_t at = output.find(marker);
    if (at != std::string::npos) port = std::atoi(output.c_str() + at + marker.size());
  }
  ASSERT_GT(port, 0) << output;
  EXPECT_NE(HttpGet(port, "/healthz").find("200 OK"), std::string::npos);
  EXPECT_NE(HttpGet(port, "/readyz").find("{\"ready\":true}"), std::string::npos);
  const std::string metrics = HttpGet(port, "/metrics");
  EXPECT_NE(metrics.find("text/plain; version=0.0.4"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("process_resident_memory_bytes "), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("dnnd_build_info{version="), std::string::npos) << metrics;
  const std::string missing = HttpGet(port, "/nope");
  EXPECT_NE(missing.find("404"), std::string::npos);
  EXPECT_NE(missing.find("\"error\""), std::string::npos);
  ASSERT_EQ(kill(pid, SIGTERM), 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

TEST(Cli, ControlPlaneBindFailureIsAClearError) {
  auto r = Dnnd("--role=worker --config " + Src("configs/worker-xor.toml") +
                " --set http.listen=not-an-address");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("http.listen"), std::string::npos) << r.output;
}

// `dnnd probe` is the health check of images without a shell (Swarm runs
// healthchecks inside the container): exit 0 on 2xx only.
TEST(Cli, ProbeJudgesTheControlPlane) {
  TempDir dir;
  // A parameter server is healthy at once but not ready until a worker
  // initialised the model: one process gives both a 2xx and a 503.
  Daemon ps(
      "--role=parameter-server --config " + Src("configs/parameter-server.toml") +
          " --set ps.listen=127.0.0.1:0 --set http.listen=127.0.0.1:0 --set ps.checkpoint_dir=",
      dir.path() + "/ps.log");
  const int port =
      ps.PortAfter("control plane listening address=127.0.0.1:", std::chrono::seconds(10));
  ASSERT_GT(port, 0) << ps.output();
  const std::string base = "127.0.0.1:" + std::to_string(port);

  Outcome health = Dnnd("probe http://" + base + "/healthz");
  EXPECT_EQ(health.code, 0) << health.output;
  EXPECT_NE(health.output.find("200 {\"status\":\"ok\"}"), std::string::npos) << health.output;
  EXPECT_EQ(Dnnd("probe " + base).code, 0);  // default path /healthz
  EXPECT_EQ(Dnnd("probe localhost:" + std::to_string(port) + "/healthz").code,
            0);  // a name, through /etc/hosts

  Outcome ready = Dnnd("probe http://" + base + "/readyz");
  EXPECT_EQ(ready.code, 1) << ready.output;
  EXPECT_NE(ready.output.find("503"), std::string::npos) << ready.output;
  EXPECT_NE(ready.output.find("waiting for a worker"), std::string::npos) << ready.output;

  Outcome missing = Dnnd("probe http://" + base + "/nope");
  EXPECT_EQ(missing.code, 1);
  EXPECT_NE(missing.output.find("404"), std::string::npos) << missing.output;

  ps.Signal(SIGTERM);
  EXPECT_EQ(ps.Wait(), 0);
  Outcome refused = Dnnd("probe http://" + base + "/healthz --timeout-ms 2000");
  EXPECT_EQ(refused.code, 1);
  EXPECT_NE(refused.output.find("cannot connect to " + base), std::string::npos) << refused.output;
}

TEST(Cli, ProbeTimesOutOnASilentServer) {
  // A listening socket that never accepts: the connection completes in the
  // kernel's backlog, the request is never answered.
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(fd, 4), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const auto start = std::chrono::steady_clock::now();
  Outcome r = Dnnd("probe 127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + " --timeout-ms 300");
  const auto took = std::chrono::steady_clock::now() - start;
  close(fd);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.output.find("DeadlineExceeded"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("within 300 ms"), std::string::npos) << r.output;
  EXPECT_LT(took, std::chrono::seconds(5));
}

TEST(Cli, ProbeRejectsBadUrlsAsUsageErrors) {
  for (const std::string url :
       {"https://127.0.0.1:9400/healthz", "127.0.0.1", "127.0.0.1:x/healthz", "http://:9400/",
        "127.0.0.1:0", "'127.0.0.1:1 /a'"}) {
    Outcome r = Dnnd("probe " + url);
    EXPECT_EQ(r.code, 2) << url << "\n" << r.output;
    EXPECT_NE(r.output.find("probe URL"), std::string::npos) << url << "\n" << r.output;
  }
  EXPECT_EQ(Dnnd("probe").code, 2);
  EXPECT_EQ(Dnnd("probe 127.0.0.1:1 --timeout-ms 0").code, 2);
  EXPECT_EQ(Dnnd("probe 127.0.0.1:1 --timeout-ms soon").code, 2);
}

}  // namespace

// The [model] is checked too, every error at once: an unknown layer type, a
// misspelt optimizer and a negative learning rate in one report.
TEST(Cli, ConfigCheckValidatesTheWholeModel) {
  TempDir dir;
  std::string bad = dir.Write("model.toml",
                              "[node]\nrole = \"worker\"\n[model]\ninput = [1, 28, 28]\n"
                              "[[model.layers]]\ntype = \"batchnorm3d\"\n"
                              "[[model.layers]]\ntype = \"flatten\"\n"
                              "[model.optimizer]\ntype = \"adamm\"\nlr = -1\n");
  Outcome r = Dnnd("config check " + bad);
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("model.toml:6:8: model.layers[0].type: unknown layer type 'batchnorm3d'"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("did you mean 'batchnorm"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("unknown optimizer 'adamm'"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("did you mean 'adam'?"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("model.optimizer.lr: -1 is outside"), std::string::npos) << r.output;
  // Shapes as well: a linear layer after an image without flatten.
  std::string shapes = dir.Write("shapes.toml",
                                 "[node]\nrole = \"worker\"\n[model]\ninput = [1, 28, 28]\n"
                                 "[[model.layers]]\ntype = \"linear\"\nout = 10\n");
  Outcome s = Dnnd("config check " + shapes);
  EXPECT_EQ(s.code, 2) << s.output;
  EXPECT_NE(s.output.find("add a flatten layer"), std::string::npos) << s.output;
}
