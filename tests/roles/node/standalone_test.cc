// The README's run command (dnnd --role=standalone with
// configs/standalone.toml, the controller around the config's job) to the
// end: it keeps serving after the job, a re-run follows the job instead of
// training a second one, and what it registers has readable names.
#include <gtest/gtest.h>
#include <signal.h>

#include <boost/json.hpp>
#include <chrono>
#include <filesystem>
#include <set>
#include <string>
#include <thread>

#include "tests/roles/controller_process.h"

namespace dnnd::testing {
namespace {

namespace json = boost::json;

// The run command on 4096 samples, one epoch, its store in `dir`/c.
std::string RunArgs(const TempDir& dir, const std::string& extra = "") {
  return "--role=standalone --config " + Src("configs/standalone.toml") +
         " --set http.listen=127.0.0.1:0 --set controller.data_dir=" + dir.path() +
         "/c --set data.limit_train=4096 --set data.limit_test=1000 --set train.epochs=1"
         " --set train.progress=none " +
         extra;
}

// GET `path` from the standalone's API.
json::value Get(int port, const std::string& path) {
  const std::string r = HttpGet(port, path);
  EXPECT_EQ(HttpStatus(r), 200) << path << ": " << r;
  return HttpStatus(r) == 200 ? json::parse(HttpBody(r)) : json::value();
}

TEST(Standalone, KeepsServingAfterItsJobUntilSigint) {
  if (!std::filesystem::exists(kFm + "train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "dataset-fashion-mnist missing";
  TempDir dir;
  Daemon run(RunArgs(dir), dir.path() + "/run.log");
  const int port = run.PortAfter("dashboard: http://127.0.0.1:", std::chrono::seconds(60));
  ASSERT_GT(port, 0) << run.output();
  ASSERT_TRUE(run.WaitFor("keeps serving", std::chrono::seconds(120))) << run.output();
  const std::string out = run.output();
  EXPECT_NE(out.find("job 1 succeeded"), std::string::npos) << out;
  EXPECT_NE(out.find("Ctrl-C"), std::string::npos) << out;
  // The hints it printed work: the job, the readable names it registered, ctl.
  const json::value job = Get(port, "/api/v1/jobs/1");
  EXPECT_EQ(job.at("state"), "succeeded") << job;
  EXPECT_EQ(job.at("model"), "mlp") << job;
  EXPECT_EQ(job.at("dataset"), "fashion-mnist") << job;
  EXPECT_EQ(HttpStatus(HttpGet(port, "/api/v1/models/mlp")), 200);
  EXPECT_EQ(HttpStatus(HttpGet(port, "/api/v1/datasets/fashion-mnist")), 200);
  const Outcome ctl = Dnnd("ctl --controller 127.0.0.1:" + std::to_string(port) + " job get 1");
  EXPECT_EQ(ctl.code, 0) << ctl.output;
  // Still there a moment later, until SIGINT; then it ends cleanly.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(HttpStatus(HttpGet(port, "/healthz")), 200);
  run.Signal(SIGINT);
  EXPECT_EQ(run.Wait(), 0) << run.output();
}

// Ctrl-C mid-job, then the same command again: the job resumes from its
// checkpoint and succeeds; no second job. A third run finds it succeeded
// and trains nothing (standalone.exit_when_done: it ends at once).
TEST(Standalone, RerunAfterSigintResumesTheJobInsteadOfASecondOne) {
  if (!std::filesystem::exists(kFm + "train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "dataset-fashion-mnist missing";
  TempDir dir;
  // 4 epochs of 94 steps (12000 samples, 2 workers of 64), checkpointed every 10.
  const std::string args = RunArgs(dir,
                                   "--set data.limit_train=12000 --set train.epochs=4 "
                                   "--set controller.checkpoint_every_steps=10");
  int64_t stopped_at = 0;
  {
    Daemon first(args, dir.path() + "/first.log");
    const int port = first.PortAfter("dashboard: http://127.0.0.1:", std::chrono::seconds(60));
    ASSERT_GT(port, 0) << first.output();
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < end && stopped_at < 20) {
      const std::string r = HttpGet(port, "/api/v1/jobs/1");
      if (HttpStatus(r) == 200) stopped_at = json::parse(HttpBody(r)).at("step").as_int64();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ASSERT_GE(stopped_at, 20) << first.output();
    first.Signal(SIGINT);
    EXPECT_EQ(first.Wait(), 0) << first.output();
    EXPECT_EQ(first.output().find("job 1 succeeded"), std::string::npos)
        << "stopped too late: " << first.output();
  }
  {
    Daemon second(args + " --set standalone.exit_when_done=true", dir.path() + "/second.log");
    EXPECT_EQ(second.Wait(), 0) << second.output();
    const std::string out = second.output();
    EXPECT_EQ(out.find("registering dataset"), std::string::npos) << out;
    EXPECT_NE(out.find("job 1 is this config's job from an earlier run"), std::string::npos) << out;
    EXPECT_NE(out.find("job 1 succeeded"), std::string::npos) << out;
  }
  Daemon third(args + " --set standalone.exit_when_done=true", dir.path() + "/third.log");
  EXPECT_EQ(third.Wait(), 0) << third.output();
  EXPECT_NE(third.output().find("it already succeeded, nothing to train"), std::string::npos)
      << third.output();
  // One job, run twice (attempt 2 resumed from the servers' checkpoint), all 4 epochs recorded.
  ControllerProcess c(dir, "--set controller.data_dir=" + dir.path() + "/c");
  ASSERT_GT(c.port(), 0) << c.daemon().output();
  const auto jobs = c.Json("GET", "/api/v1/jobs").at("jobs").as_array();
  ASSERT_EQ(jobs.size(), 1u) << jobs;
  const json::value job = c.Json("GET", "/api/v1/jobs/1");
  EXPECT_EQ(job.at("state"), "succeeded") << job;
  EXPECT_EQ(job.at("attempts").as_int64(), 2) << job;
  EXPECT_EQ(job.at("history").as_array().size(), 4u) << job;
  const std::string log = HttpBody(c.Send("GET", "/api/v1/jobs/1/logs"));
  const size_t resumed = log.find("resumed after a controller restart");
  ASSERT_NE(resumed, std::string::npos) << log;
  const size_t from = log.find("training from step ", resumed);
  ASSERT_NE(from, std::string::npos) << log;
  EXPECT_GT(std::atoll(log.c_str() + from + 19), 0) << log;
}

// Epochs that ended since the workers' last heartbeat when Ctrl-C comes
// are still recorded: the servers checkpoint past their end, so the resumed
// run never trains (or reports) them again. Epochs of 5 steps end several
// times per heartbeat, so a stop almost always leaves some unreported.
TEST(Standalone, EpochsEndedJustBeforeSigintAreRecorded) {
  if (!std::filesystem::exists(kFm + "train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "dataset-fashion-mnist missing";
  TempDir dir;
  constexpr int64_t kEpochs = 60;
  const std::string args =
      RunArgs(dir, "--set data.limit_train=640 --set data.limit_test=200 --set train.epochs=" +
                       std::to_string(kEpochs) + " --set controller.checkpoint_every_steps=5");
  for (int round = 0; round < 2; ++round) {  // stop twice, then let it finish
    Daemon run(args, dir.path() + "/run" + std::to_string(round) + ".log");
    const int port = run.PortAfter("dashboard: http://127.0.0.1:", std::chrono::seconds(60));
    ASSERT_GT(port, 0) << run.output();
    const int64_t want = (round + 1) * kEpochs * 5 / 4;  // a quarter, then half of the steps
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    int64_t step = 0;
    while (std::chrono::steady_clock::now() < end && step < want) {
      const std::string r = HttpGet(port, "/api/v1/jobs/1");
      if (HttpStatus(r) == 200) step = json::parse(HttpBody(r)).at("step").as_int64();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ASSERT_GE(step, want) << run.output();
    // Half a heartbeat on: more epochs end unreported.
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    run.Signal(SIGINT);
    ASSERT_EQ(run.Wait(), 0) << run.output();
  }
  Daemon last(args + " --set standalone.exit_when_done=true", dir.path() + "/last.log");
  ASSERT_EQ(last.Wait(), 0) << last.output();
  ControllerProcess c(dir, "--set controller.data_dir=" + dir.path() + "/c");
  ASSERT_GT(c.port(), 0) << c.daemon().output();
  const json::value job = c.Json("GET", "/api/v1/jobs/1");
  EXPECT_EQ(job.at("state"), "succeeded") << job;
  EXPECT_EQ(job.at("attempts").as_int64(), 3) << job;
  std::set<int64_t> recorded;
  for (const auto& e : job.at("history").as_array()) recorded.insert(e.at("epoch").as_int64());
  std::string missing;
  for (int64_t e = 1; e <= kEpochs; ++e)
    if (!recorded.count(e)) missing += " " + std::to_string(e);
  EXPECT_EQ(missing, "") << "epochs missing from the job's history";
  EXPECT_EQ(recorded.size(), job.at("history").as_array().size()) << "an epoch recorded twice";
}

}  // namespace
}  // namespace dnnd::testing
