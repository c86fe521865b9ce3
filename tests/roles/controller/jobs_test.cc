// Jobs on the pool: workers registering, training, dying; a controller killed mid-job.
#include "fixture.h"

namespace dnnd {
namespace {

using namespace dnnd::controller_testing;

TEST(ControllerDurability, SigkilledMidJobResumesFromCheckpointAndFinishes) {
  if (!std::filesystem::exists(kFm + "train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "dataset-fashion-mnist missing";
  TempDir dir;
  int64_t id = 0;
  {
    ControllerProcess c(dir, "--set controller.checkpoint_every_steps=10");
    ASSERT_GT(c.port(), 0) << c.daemon().output();
    RegisterFashionMnistAndMlp(c);
    const std::string r = c.Send(
        "POST", "/api/v1/jobs",
        R"({"model":"mlp","dataset":"fm","epochs":4,"batch":64,"workers":2,"limit_train":12000,"limit_test":1000})");
    ASSERT_EQ(HttpStatus(r), 201) << r;
    id = json::parse(HttpBody(r)).at("id").as_int64();
    // Kill it hard once an epoch is in the store and the next is under way.
    auto job = WaitForJob(
        c, id,
        [](const json::value& j) {
          return j.at("history").as_array().size() >= 1 &&
                 j.at("progress").to_number<double>() > 30;
        },
        std::chrono::seconds(40));
    ASSERT_EQ(job.at("state").as_string(), "running") << job << c.daemon().output();
    ASSERT_GE(job.at("history").as_array().size(), 1u);
    EXPECT_GT(job.at("eta_seconds").to_number<double>(), 0.0) << job;
    EXPECT_EQ(HttpStatus(c.Send("DELETE", "/api/v1/datasets/fm")), 409);  // in use
    c.daemon().Signal(SIGKILL);
    c.daemon().Wait();
  }
  ControllerProcess c(dir);
  ASSERT_GT(c.port(), 0) << c.daemon().output();
  auto listed = c.Json("GET", "/api/v1/jobs");
  ASSERT_EQ(listed.at("jobs").as_array().size(), 1u);
  EXPECT_EQ(listed.at("jobs").as_array()[0].at("id").as_int64(), id);
  // The history recorded before the kill survived it.
  EXPECT_GE(c.Json("GET", "/api/v1/jobs/" + std::to_string(id)).at("history").as_array().size(),
            1u);
  auto job = WaitForJob(c, id, JobOver, std::chrono::seconds(60));
  ASSERT_EQ(job.at("state").as_string(), "succeeded") << job << c.daemon().output();
  EXPECT_EQ(job.at("attempts").as_int64(), 2);
  const auto& history = job.at("history").as_array();
  ASSERT_EQ(history.size(), 4u) << job;
  for (size_t e = 0; e < 4; ++e)
    EXPECT_EQ(history[e].at("epoch").as_int64(), static_cast<int64_t>(e + 1));
  EXPECT_GT(history[3].at("test_accuracy").to_number<double>(), 0.7) << job;
  EXPECT_NE(c.daemon().output().find("resumed from checkpoint"),
            std::string::npos);  // the parameter servers'
  const std::string log = HttpBody(c.Send("GET", "/api/v1/jobs/" + std::to_string(id) + "/logs"));
  EXPECT_NE(log.find("resumed after a controller restart"), std::string::npos) << log;
  EXPECT_NE(log.find("succeeded"), std::string::npos) << log;
  // The second attempt started from the parameter servers' checkpoint, not from step 0.
  const size_t second =
      log.find("training from step ", log.find("resumed after a controller restart"));
  ASSERT_NE(second, std::string::npos) << log;
  EXPECT_GT(std::atoll(log.c_str() + second + 19), 0) << log;
  const std::string ckpt = c.Send("GET", "/api/v1/jobs/" + std::to_string(id) + "/checkpoint");
  EXPECT_EQ(HttpStatus(ckpt), 200);
  EXPECT_GT(HttpBody(ckpt).size(), 535818u * 4);  // every float32 weight of the MLP

  // Cancel: a long job stops, is recorded cancelled, and frees its dataset.
  std::string r = c.Send(
      "POST", "/api/v1/jobs",
      R"({"model":"mlp","dataset":"fm","epochs":100,"workers":1,"limit_train":2000,"limit_test":100})");
  ASSERT_EQ(HttpStatus(r), 201) << r;
  const int64_t long_id = json::parse(HttpBody(r)).at("id").as_int64();
  WaitForJob(
      c, long_id, [](const json::value& j) { return j.at("state") == "running"; },
      std::chrono::seconds(20));
  EXPECT_EQ(HttpStatus(c.Send("DELETE", "/api/v1/datasets/fm")), 409);
  EXPECT_EQ(HttpStatus(c.Send("POST", "/api/v1/jobs/" + std::to_string(long_id) + "/cancel")), 202);
  job = WaitForJob(
      c, long_id, [](const json::value& j) { return j.at("state") != "running"; },
      std::chrono::seconds(20));
  EXPECT_EQ(job.at("state").as_string(), "cancelled") << job;
  EXPECT_EQ(HttpStatus(c.Send("DELETE", "/api/v1/datasets/fm")), 200);
  EXPECT_EQ(HttpStatus(c.Send("GET", "/api/v1/datasets/fm")), 404);
}

// A job cancelled just as it starts running (after an earlier job ran on the
// same workers): its parameter servers are stopped while its worker is still
// joining them. The worker must not wait on them for its request timeout
// (60 s): the controller's stop order cancels its calls, the node is idle
// again within seconds, the next job gets both workers, and SIGTERM ends the
// controller at once.
TEST(ControllerPool, CancelledRunningJobFreesItsWorkerAndShutdownAtOnce) {
  TinyPool pool(2);
  pool.Start(2);
  if (HasFatalFailure()) return;
  ControllerProcess& c = pool.c;
  auto submit = [&](const std::string& body) -> int64_t {
    const std::string r = c.Send("POST", "/api/v1/jobs", body);
    EXPECT_EQ(HttpStatus(r), 201) << r;
    return HttpStatus(r) == 201 ? json::parse(HttpBody(r)).at("id").as_int64() : -1;
  };
  const std::string long_job = R"({"model":"m","dataset":"d","epochs":100000,"batch":5,)";

  const int64_t first = submit(R"({"model":"m","dataset":"d","epochs":1,"batch":5,"workers":2})");
  json::value job = WaitForJob(c, first, JobOver, std::chrono::seconds(20));
  ASSERT_EQ(job.at("state"), "succeeded") << job << c.daemon().output();

  // Cancelled as soon as its worker has its task, before the worker's next
  // heartbeat says it runs it: the controller sees no worker to wait for and
  // stops the job's parameter servers at once.
  const int64_t cancelled = submit(long_job + R"("workers":1})");
  ASSERT_TRUE(c.daemon().WaitFor("pool: task job=" + std::to_string(cancelled) + " ",
                                 std::chrono::seconds(10)))
      << c.daemon().output();
  job = WaitForJob(
      c, cancelled, [](const json::value& j) { return j.at("state") != "queued"; },
      std::chrono::seconds(10));
  ASSERT_EQ(job.at("state"), "running") << job;
  ASSERT_EQ(HttpStatus(c.Send("POST", "/api/v1/jobs/" + std::to_string(cancelled) + "/cancel")),
            202);
  const auto cancelled_at = std::chrono::steady_clock::now();
  job = WaitForJob(c, cancelled, JobOver, std::chrono::seconds(5));
  EXPECT_EQ(job.at("state"), "cancelled") << job;

  // The next job needs both workers (a sync step takes both): it trains
  // within seconds of the cancel.
  const int64_t next = submit(long_job + R"("workers":2})");
  job = WaitForJob(
      c, next, [](const json::value& j) { return j.at("step").as_int64() > 0; },
      std::chrono::seconds(5));
  EXPECT_EQ(job.at("state"), "running") << job;
  EXPECT_GT(job.at("step").as_int64(), 0) << job << "\n"
                                          << c.Send("GET", "/api/v1/nodes") << c.daemon().output();
  EXPECT_LT(std::chrono::steady_clock::now() - cancelled_at, std::chrono::seconds(8));

  // Stopping the controller stops its workers' running tasks at once.
  c.daemon().Signal(SIGTERM);
  const bool exited = c.daemon().ExitsWithin(std::chrono::seconds(4));
  EXPECT_TRUE(exited) << "SIGTERM ignored for 4 s\n" << c.daemon().output();
  if (!exited) c.daemon().Signal(SIGKILL);
  const int code = c.daemon().Wait();
  if (exited) EXPECT_EQ(code, 0) << c.daemon().output();
}

// A job for slow links: bf16 gradients and bf16 weight changes reach the
// pool workers and the job's parameter server (their logs say so) and it
// trains; bf16 weights with an async job are refused at submission.
TEST(ControllerPool, AJobCanAskForTheSlowLinkCodecs) {
  TinyPool pool(2);
  pool.Start(2);
  if (HasFatalFailure()) return;
  ControllerProcess& c = pool.c;
  std::string r = c.Send("POST", "/api/v1/jobs",
                         R"({"model":"m","dataset":"d","epochs":2,"batch":5,"workers":2,)"
                         R"("gradient_codec":"bf16","weights_codec":"bf16"})");
  ASSERT_EQ(HttpStatus(r), 201) << r;
  const int64_t id = json::parse(HttpBody(r)).at("id").as_int64();
  json::value job = WaitForJob(c, id, JobOver, std::chrono::seconds(30));
  EXPECT_EQ(job.at("state"), "succeeded") << job << c.daemon().output();
  const std::string out = c.daemon().output();
  EXPECT_NE(out.find("weights_codec=bf16"), std::string::npos) << out;
  EXPECT_NE(out.find("gradient_codec=bf16"), std::string::npos) << out;

  r = c.Send("POST", "/api/v1/jobs",
             R"({"model":"m","dataset":"d","mode":"async","weights_codec":"bf16"})");
  EXPECT_EQ(HttpStatus(r), 400) << r;
  EXPECT_NE(ErrorMessage(r).find("'weights_codec' \"bf16\" needs mode \"sync\""), std::string::npos)
      << r;
  r = c.Send("POST", "/api/v1/jobs", R"({"model":"m","dataset":"d","gradient_codec":"gzip"})");
  EXPECT_EQ(HttpStatus(r), 400) << r;
  EXPECT_NE(ErrorMessage(r).find("gradient_codec"), std::string::npos) << r;
}

// What a broken or hostile pool worker can send: each a precise 4xx, and the
// pool keeps working.
TEST(ControllerPool, BadHeartbeatsAndUploadsAreRefusedPrecisely) {
  TempDir dir;
  ControllerProcess c(dir, "--set controller.local_workers=0");
  ASSERT_GT(c.port(), 0) << c.daemon().output();
  auto refused = [&](const std::string& r, int status, const std::string& words) {
    EXPECT_EQ(HttpStatus(r), status) << r;
    EXPECT_NE(ErrorMessage(r).find(words), std::string::npos) << r;
  };
  refused(c.Send("POST", "/api/v1/nodes/w1/heartbeat", "{not json"), 400, "line 1");
  refused(c.Send("POST", "/api/v1/nodes/w1/heartbeat", "[1,2]"), 400, "JSON object");
  refused(c.Send("POST", "/api/v1/nodes/w1/heartbeat", R"({"state":"dancing"})"), 400,
          "'state' is 'dancing'");
  refused(c.Send("POST", "/api/v1/nodes/w1/heartbeat", R"({"job":"one"})"), 400,
          "'job' must be an integer");
  refused(c.Send("POST", "/api/v1/nodes/w1/heartbeat", R"({"epochs":[{"epoch":0}]})"), 400,
          "epoch number");
  refused(c.Send("POST", "/api/v1/nodes/..%2Fx/heartbeat", "{}"), 400, "encoded '/'");
  refused(c.Send("POST", "/api/v1/nodes/.x/heartbeat", "{}"), 400, "invalid node name");
  refused(c.Send("PUT", "/api/v1/jobs/1/model?attempt=forged", "weights"), 409,
          "not running that attempt");
  EXPECT_EQ(c.Json("GET", "/api/v1/nodes").at("nodes").as_array().size(),
            0u);  // none registered by them
  // A well-formed heartbeat registers the node, and a report of a task the
  // controller never gave is answered "stop".
  auto order = c.Json("POST", "/api/v1/nodes/w1/heartbeat", R"({"threads":1})");
  EXPECT_EQ(order.at("order"), "idle") << order;
  order =
      c.Json("POST", "/api/v1/nodes/w1/heartbeat", R"({"job":7,"attempt":"x","state":"running"})");
  EXPECT_EQ(order.at("order"), "stop") << order;
  EXPECT_EQ(c.Json("GET", "/api/v1/nodes").at("nodes").as_array().size(), 1u);
}

// Controller + 3 registered worker processes on the real Fashion-MNIST: a
// 2-worker sync job reaches 88 %, a second job waits queued for all its
// workers, a job asking for more workers than the pool has is refused, and
// SIGKILLing a worker mid-job moves its part to the idle one without failing
// the job.
TEST(ControllerPool, RegisteredWorkersTrainAndSurviveAWorkerKill) {
  if (!std::filesystem::exists(kFm + "train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "dataset-fashion-mnist missing";
  TempDir dir;
  ControllerProcess c(dir,
                      "--set controller.local_workers=0 --set controller.node_timeout_ms=1500"
                      " --set controller.checkpoint_every_steps=20");
  ASSERT_GT(c.port(), 0) << c.daemon().output();
  std::map<std::string, std::unique_ptr<Daemon>> workers;
  for (const char* name : {"w1", "w2", "w3"}) workers[name] = StartPoolWorker(dir, c.port(), name);
  ASSERT_TRUE(WaitForNodes(c, 3, std::chrono::seconds(20))) << c.Send("GET", "/api/v1/nodes");
  const Outcome nodes =
      Dnnd("ctl --controller 127.0.0.1:" + std::to_string(c.port()) + " node list");
  EXPECT_EQ(nodes.code, 0) << nodes.output;
  for (const char* name : {"w1-", "w2-", "w3-"})
    EXPECT_NE(nodes.output.find(name), std::string::npos) << nodes.output;
  EXPECT_NE(nodes.output.find("idle"), std::string::npos) << nodes.output;
  const std::string ctl = "ctl --controller 127.0.0.1:" + std::to_string(c.port()) + " ";
  const Outcome created =
      Dnnd(ctl + "dataset create fm --format idx --train-images " + kFm +
           "train-images-idx3-ubyte.gz --train-labels " + kFm + "train-labels-idx1-ubyte.gz" +
           " --test-images " + kFm + "t10k-images-idx3-ubyte.gz --test-labels " + kFm +
           "t10k-labels-idx1-ubyte.gz");
  ASSERT_EQ(created.code, 0) << created.output;
  ASSERT_EQ(Dnnd(ctl + "model create mlp --spec " + Src("configs/models/mlp.toml")).code, 0);

  std::string r = c.Send("POST", "/api/v1/jobs", R"({"model":"mlp","dataset":"fm","workers":4})");
  ASSERT_EQ(HttpStatus(r), 400) << r;
  EXPECT_NE(ErrorMessage(r).find("asks for 4 workers but the pool has 3"), std::string::npos) << r;

  // `dnnd ctl train --follow` prints the id, follows the job to its end and
  // exits 0 only if it succeeded.
  Daemon follow(
      ctl + "train --model mlp --dataset fm --epochs 5 --batch 64 --workers 2 --servers 2 --follow",
      dir.path() + "/follow.log");
  ASSERT_TRUE(follow.WaitFor("\n", std::chrono::seconds(30))) << follow.output();
  const int64_t id = std::atoll(follow.output().c_str());
  ASSERT_GT(id, 0) << follow.output();
  r = c.Send("POST", "/api/v1/jobs", R"({"model":"mlp","dataset":"fm","epochs":1,"workers":2})");
  ASSERT_EQ(HttpStatus(r), 201) << r;
  const int64_t second = json::parse(HttpBody(r)).at("id").as_int64();

  // Kill the worker running part 1 once training is well under way.
  auto job = WaitForJob(
      c, id, [](const json::value& j) { return j.at("progress").to_number<double>() > 30; },
      std::chrono::seconds(60));
  ASSERT_EQ(job.at("state"), "running") << job << c.daemon().output();
  // All or nothing: one node is idle, but the second job needs two.
  EXPECT_EQ(c.Json("GET", "/api/v1/jobs/" + std::to_string(second)).at("state"), "queued");
  std::string victim, spare;
  for (const auto& node : PoolNodes(c)) {
    const std::string name(node.at("name").as_string());
    if (node.at("index") == 1) victim = name.substr(0, name.find('-'));
    if (node.at("state") == "idle") spare = name.substr(0, name.find('-'));
  }
  ASSERT_FALSE(victim.empty()) << c.Send("GET", "/api/v1/nodes");
  ASSERT_FALSE(spare.empty()) << c.Send("GET", "/api/v1/nodes");
  workers[victim]->Signal(SIGKILL);
  workers[victim]->Wait();

  EXPECT_EQ(follow.Wait(), 0) << follow.output();
  EXPECT_NE(follow.output().find("succeeded"), std::string::npos) << follow.output();
  job = WaitForJob(
      c, id, [](const json::value& j) { return j.at("state") != "running"; },
      std::chrono::seconds(120));
  ASSERT_EQ(job.at("state"), "succeeded") << job << c.daemon().output();
  const auto& history = job.at("history").as_array();
  ASSERT_EQ(history.size(), 5u) << job;
  EXPECT_GE(history.back().at("test_accuracy").to_number<double>(), 0.88) << job;
  EXPECT_NE(c.daemon().output().find("part replaced"), std::string::npos) << c.daemon().output();
  EXPECT_NE(workers[spare]->output().find("index=1"), std::string::npos)
      << workers[spare]->output();
  bool lost = false;
  for (const auto& node : PoolNodes(c))
    lost |= node.at("name").as_string().starts_with(victim) && node.at("state") == "lost";
  EXPECT_TRUE(lost) << c.Send("GET", "/api/v1/nodes");
  EXPECT_EQ(HttpStatus(c.Send("GET", "/api/v1/jobs/" + std::to_string(id) + "/checkpoint")), 200);
  const std::string metrics = HttpBody(c.Send("GET", "/metrics"));
  for (const std::string series :
       {"dnnd_job_validation_accuracy{job=\"" + std::to_string(id) + "\"} 0.8",
        std::string("dnnd_controller_nodes{state=\"lost\"} 1"),
        "dnnd_job_epoch{job=\"" + std::to_string(id) + "\"} 5"})
    EXPECT_NE(metrics.find(series), std::string::npos) << series << "\n" << metrics;

  // The queued job got its two workers once the first finished.
  job = WaitForJob(c, second, JobOver, std::chrono::seconds(60));
  EXPECT_EQ(job.at("state"), "succeeded") << job << c.daemon().output();
  // Two live nodes now: a 3-worker job is refused.
  r = c.Send("POST", "/api/v1/jobs", R"({"model":"mlp","dataset":"fm","workers":3})");
  EXPECT_EQ(HttpStatus(r), 400) << r;

  // Cancelling a running job frees its workers at once: the next job starts
  // on them within seconds, and no node is taken for lost meanwhile.
  r = c.Send("POST", "/api/v1/jobs",
             R"({"model":"mlp","dataset":"fm","epochs":100,"workers":2,"limit_train":2000})");
  ASSERT_EQ(HttpStatus(r), 201) << r;
  const int64_t long_id = json::parse(HttpBody(r)).at("id").as_int64();
  job = WaitForJob(
      c, long_id, [](const json::value& j) { return j.at("progress").to_number<double>() > 0.5; },
      std::chrono::seconds(60));
  ASSERT_EQ(job.at("state"), "running") << job;
  ASSERT_EQ(HttpStatus(c.Send("POST", "/api/v1/jobs/" + std::to_string(long_id) + "/cancel")), 202);
  r = c.Send("POST", "/api/v1/jobs",
             R"({"model":"mlp","dataset":"fm","epochs":1,"workers":2,"limit_train":2000})");
  ASSERT_EQ(HttpStatus(r), 201) << r;
  const int64_t next = json::parse(HttpBody(r)).at("id").as_int64();
  const auto cancelled_at = std::chrono::steady_clock::now();
  job = WaitForJob(
      c, next,
      [](const json::value& j) {
        return j.at("state") == "running" || j.at("state") == "succeeded";
      },
      std::chrono::seconds(60));
  EXPECT_LT(std::chrono::steady_clock::now() - cancelled_at, std::chrono::seconds(20))
      << c.daemon().output();
  EXPECT_EQ(c.Json("GET", "/api/v1/jobs/" + std::to_string(long_id)).at("state"), "cancelled");
  job = WaitForJob(
      c, next, [](const json::value& j) { return j.at("state") == "succeeded"; },
      std::chrono::seconds(60));
  EXPECT_EQ(job.at("state"), "succeeded") << job;
  int lost_now = 0;
  for (const auto& node : PoolNodes(c)) lost_now += node.at("state") == "lost";
  EXPECT_EQ(lost_now, 1) << c.Send("GET", "/api/v1/nodes");  // only the SIGKILLed one
}

}  // namespace
}  // namespace dnnd
