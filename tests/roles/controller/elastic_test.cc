// Elastic parallelism: the throughput policy on its own, and an elastic job
// on a real controller process (3 pool workers) that changes its workers
// between epochs, survives a SIGKILL of the controller mid-job, and records
// each epoch's parallelism.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <string>

#include "roles/controller/elastic_policy.h"
#include "tests/roles/controller_process.h"
#include "tests/roles/dnnd_process.h"

namespace dnnd {
namespace {

using namespace dnnd::testing;
namespace json = boost::json;

TEST(ElasticPolicy, FollowsKubeMlsThroughputThresholds) {
  const ElasticBounds b{1, 4};
  // First epoch: no reference yet, so one more worker; its time is the reference.
  ElasticDecision d = NextParallelism(b, 1, 10.0, 0, 4);
  EXPECT_EQ(d.workers, 2);
  EXPECT_EQ(d.reference_seconds, 10.0);
  // Faster, or at most 5 % slower: up, with a new reference.
  d = NextParallelism(b, 2, 10.4, 10.0, 4);
  EXPECT_EQ(d.workers, 3);
  EXPECT_EQ(d.reference_seconds, 10.4);
  // 20 % slower or more: down, with a new reference.
  d = NextParallelism(b, 3, 12.0, 10.0, 4);
  EXPECT_EQ(d.workers, 2);
  EXPECT_EQ(d.reference_seconds, 12.0);
  // In between: unchanged, the reference kept.
  d = NextParallelism(b, 3, 11.0, 10.0, 4);
  EXPECT_EQ(d.workers, 3);
  EXPECT_EQ(d.reference_seconds, 10.0);
  EXPECT_NE(d.reason.find("keep"), std::string::npos) << d.reason;
}

TEST(ElasticPolicy, StaysWithinTheJobsBoundsAndThePool) {
  // At max_workers it cannot grow.
  EXPECT_EQ(NextParallelism({1, 3}, 3, 5.0, 6.0, 8).workers, 3);
  // At min_workers it cannot shrink.
  EXPECT_EQ(NextParallelism({2, 3}, 2, 9.0, 5.0, 8).workers, 2);
  // It wants 4 but only 3 workers are available.
  ElasticDecision d = NextParallelism({1, 8}, 3, 5.0, 6.0, 3);
  EXPECT_EQ(d.workers, 3);
  EXPECT_NE(d.reason.find("3 worker(s) available"), std::string::npos) << d.reason;
  // Never below min_workers, even when fewer are available (the scheduler waits then).
  EXPECT_EQ(NextParallelism({2, 4}, 2, 5.0, 6.0, 1).workers, 2);
}

// The steps one worker takes in an epoch on `workers` workers: its part of
// `samples` (an equal share, the remainder dropped) in batches of `batch`.
int64_t StepsPerEpoch(int64_t samples, int64_t workers, int64_t batch) {
  const int64_t part = samples / workers;
  return (part + batch - 1) / batch;
}

TEST(ControllerElastic, ReshardsBetweenEpochsByThroughputAndSurvivesAControllerKill) {
  if (!std::filesystem::exists(kFm + "train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "dataset-fashion-mnist missing";
  TempDir dir;
  const std::string pool =
      "--set controller.local_workers=3 --set controller.checkpoint_every_steps=10";
  constexpr int64_t kEpochs = 5, kSamples = 12000, kBatch = 64;
  int64_t id = 0;
  {
    ControllerProcess c(dir, pool);
    ASSERT_GT(c.port(), 0) << c.daemon().output();
    RegisterFashionMnistAndMlp(c);
    // Malformed elastic jobs: each a precise 400.
    const std::pair<const char*, const char*> bad[] = {
        {R"("elastic":"yes")", "field 'elastic' must be true or false"},
        {R"("elastic":true,"workers":1,"min_workers":2)", "min_workers <= workers <= max_workers"},
        {R"("elastic":true,"workers":3,"max_workers":2)", "min_workers <= workers <= max_workers"},
        {R"("min_workers":1)", "need \"elastic\": true"},
    };
    for (const auto& [fields, why] : bad) {
      const std::string r = c.Send("POST", "/api/v1/jobs",
                                   std::string(R"({"model":"mlp","dataset":"fm",)") + fields + "}");
      EXPECT_EQ(HttpStatus(r), 400) << fields << ": " << r;
      EXPECT_NE(ErrorMessage(r).find(why), std::string::npos) << ErrorMessage(r);
    }
    const std::string r =
        c.Send("POST", "/api/v1/jobs",
               R"({"model":"mlp","dataset":"fm","epochs":5,"batch":64,"workers":1,"elastic":true,)"
               R"("min_workers":1,"max_workers":3,"limit_train":12000,"limit_test":2000})");
    ASSERT_EQ(HttpStatus(r), 201) << r;
    id = json::parse(HttpBody(r)).at("id").as_int64();
    // Kill the controller once the job has been re-sharded at least once.
    auto job = WaitForJob(
        c, id,
        [](const json::value& j) {
          const bool over = j.at("state") != "queued" && j.at("state") != "running";
          return over || j.at("history").as_array().size() >= 2;
        },
        std::chrono::seconds(90));
    ASSERT_EQ(job.at("state").as_string(), "running") << job << c.daemon().output();
    c.daemon().Signal(SIGKILL);
    c.daemon().Wait();
  }
  ControllerProcess c(dir, pool);
  ASSERT_GT(c.port(), 0) << c.daemon().output();
  auto job = WaitForJob(c, id, JobOver, std::chrono::seconds(120));
  ASSERT_EQ(job.at("state").as_string(), "succeeded") << job << c.daemon().output();
  EXPECT_EQ(job.at("attempts").as_int64(), 2);
  const std::string log = HttpBody(c.Send("GET", "/api/v1/jobs/" + std::to_string(id) + "/logs"));
  EXPECT_NE(log.find("resumed after a controller restart"), std::string::npos) << log;

  // Every epoch ran, on the workers the policy chose from the epoch before.
  const auto& h = job.at("history").as_array();
  ASSERT_EQ(h.size(), static_cast<size_t>(kEpochs)) << job;
  ElasticBounds bounds{1, 3};
  int64_t workers = 1, steps = 0;
  double reference = 0;
  for (size_t e = 0; e < h.size(); ++e) {
    const auto& row = h[e].as_object();
    EXPECT_EQ(row.at("epoch").as_int64(), static_cast<int64_t>(e + 1));
    ASSERT_TRUE(row.contains("parallelism")) << row;
    EXPECT_EQ(row.at("parallelism").as_int64(), workers) << "epoch " << e + 1 << "\n" << log;
    steps += StepsPerEpoch(kSamples, workers, kBatch);
    const ElasticDecision d =
        NextParallelism(bounds, workers, row.at("seconds").to_number<double>(), reference, 3);
    workers = d.workers;
    reference = d.reference_seconds;
  }
  EXPECT_EQ(h[1].at("parallelism").as_int64(), 2);  // the first epoch always scales up
  // Steps kept counting across segments of different lengths.
  EXPECT_EQ(job.at("total_steps").as_int64(), steps) << job;
  EXPECT_EQ(job.at("step").as_int64(), steps) << job;
  // Each re-shard checkpointed the servers first, and was logged with its reason.
  size_t reshards = 0;
  for (size_t at = log.find("elastic: epoch "); at != std::string::npos;
       at = log.find("elastic: epoch ", at + 1))
    ++reshards;
  EXPECT_EQ(reshards, static_cast<size_t>(kEpochs - 1)) << log;
  EXPECT_NE(log.find("first epoch"), std::string::npos) << log;
  EXPECT_NE(log.find("servers checkpointed at step"), std::string::npos) << log;
  EXPECT_GT(h.back().at("test_accuracy").to_number<double>(), 0.8) << job;
  // The model trained across all segments is served.
  EXPECT_EQ(HttpStatus(c.Send("GET", "/api/v1/jobs/" + std::to_string(id) + "/checkpoint")), 200);
}

// With a job waiting in the queue, an elastic job keeps its workers rather
// than growing into the idle node the waiting job needs (and holds its own
// between epochs), then the waiting job runs.
TEST(ControllerElastic, DoesNotGrowWhileAnotherJobWaits) {
  if (!std::filesystem::exists(kFm + "train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "dataset-fashion-mnist missing";
  TempDir dir;
  ControllerProcess c(dir, "--set controller.local_workers=2");
  ASSERT_GT(c.port(), 0) << c.daemon().output();
  RegisterFashionMnistAndMlp(c);
  std::string r = c.Send(
      "POST", "/api/v1/jobs",
      R"({"model":"mlp","dataset":"fm","epochs":3,"workers":1,"elastic":true,"max_workers":2,)"
      R"("limit_train":6000,"limit_test":500})");
  ASSERT_EQ(HttpStatus(r), 201) << r;
  const int64_t elastic = json::parse(HttpBody(r)).at("id").as_int64();
  WaitForJob(
      c, elastic, [](const json::value& j) { return j.at("state") != "queued"; },
      std::chrono::seconds(20));
  r = c.Send(
      "POST", "/api/v1/jobs",
      R"({"model":"mlp","dataset":"fm","epochs":1,"workers":2,"limit_train":2000,"limit_test":500})");
  ASSERT_EQ(HttpStatus(r), 201) << r;
  const int64_t waiting = json::parse(HttpBody(r)).at("id").as_int64();
  auto job = WaitForJob(c, elastic, JobOver, std::chrono::seconds(90));
  ASSERT_EQ(job.at("state").as_string(), "succeeded") << job << c.daemon().output();
  const auto& h = job.at("history").as_array();
  ASSERT_EQ(h.size(), 3u) << job;
  for (const auto& e : h) EXPECT_EQ(e.at("parallelism").as_int64(), 1) << job;
  const std::string log =
      HttpBody(c.Send("GET", "/api/v1/jobs/" + std::to_string(elastic) + "/logs"));
  EXPECT_NE(log.find("first epoch"), std::string::npos) << log;
  EXPECT_NE(log.find("1 worker(s) available"), std::string::npos) << log;
  // The waiting job started only after the elastic one ended, and succeeded.
  auto second = WaitForJob(c, waiting, JobOver, std::chrono::seconds(60));
  EXPECT_EQ(second.at("state").as_string(), "succeeded") << second;
  EXPECT_GE(second.at("started").as_string(), job.at("finished").as_string()) << second << job;
}

// Re-sharding is exact: an elastic job held at 2 workers (min = max = 2)
// still stops, checkpoints and restarts its servers at every epoch, yet it
// trains exactly as the same job in one go: the same losses, bit for bit.
TEST(ControllerElastic, ReshardingAtTheSameSizeIsBitIdenticalToAFixedJob) {
  if (!std::filesystem::exists(kFm + "train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "dataset-fashion-mnist missing";
  TempDir dir;
  ControllerProcess c(dir);  // 2 local workers
  ASSERT_GT(c.port(), 0) << c.daemon().output();
  RegisterFashionMnistAndMlp(c);
  const std::string common =
      R"("model":"mlp","dataset":"fm","epochs":3,"workers":2,"limit_train":6000,"limit_test":1000)";
  json::array histories;
  for (const std::string extra : {"", R"(,"elastic":true,"min_workers":2,"max_workers":2)"}) {
    const std::string r = c.Send("POST", "/api/v1/jobs", "{" + common + extra + "}");
    ASSERT_EQ(HttpStatus(r), 201) << r;
    const int64_t id = json::parse(HttpBody(r)).at("id").as_int64();
    auto job = WaitForJob(c, id, JobOver, std::chrono::seconds(90));
    ASSERT_EQ(job.at("state").as_string(), "succeeded") << job << c.daemon().output();
    histories.push_back(job.at("history"));
  }
  const auto& fixed = histories[0].as_array();
  const auto& elastic = histories[1].as_array();
  ASSERT_EQ(fixed.size(), 3u);
  ASSERT_EQ(elastic.size(), 3u);
  for (size_t e = 0; e < 3; ++e) {
    for (const char* key : {"train_loss", "test_loss", "test_accuracy"})
      EXPECT_EQ(fixed[e].at(key).as_double(), elastic[e].at(key).as_double())
          << key << " of epoch " << e + 1;
    EXPECT_EQ(elastic[e].at("parallelism").as_int64(), 2);
  }
}

}  // namespace
}  // namespace dnnd
