// What a job's record and log say about its progress: a fresh job starts
// from step 0 (not from wherever the first progress report happened to be),
// and a cancelled job keeps the progress it reached.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "tests/roles/controller_process.h"

namespace dnnd::testing {
namespace {

namespace json = boost::json;

TEST(ControllerJobProgress, FreshJobLogsStepZeroAndACancelledJobKeepsItsProgress) {
  if (!std::filesystem::exists(kFm + "train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "dataset-fashion-mnist missing";
  TempDir dir;
  ControllerProcess c(dir, "--set controller.local_workers=1");
  ASSERT_GT(c.port(), 0) << c.daemon().output();
  RegisterFashionMnistAndMlp(c);
  // 94 steps an epoch (6000 samples, batch 64), far more epochs than it gets to run.
  const std::string r =
      c.Send("POST", "/api/v1/jobs",
             R"({"model":"mlp","dataset":"fm","epochs":1000,"workers":1,"limit_train":6000,)"
             R"("limit_test":500})");
  ASSERT_EQ(HttpStatus(r), 201) << r;
  const int64_t id = json::parse(HttpBody(r)).at("id").as_int64();
  const std::string path = "/api/v1/jobs/" + std::to_string(id);
  // Into its second epoch: one evaluated epoch recorded, the live step past it.
  const json::value running = WaitForJob(
      c, id,
      [](const json::value& j) {
        return j.at("history").as_array().size() >= 1 && j.at("step").as_int64() > 94;
      },
      std::chrono::seconds(60));
  ASSERT_EQ(running.at("state"), "running") << running;
  ASSERT_GE(running.at("history").as_array().size(), 1u) << running;
  ASSERT_EQ(HttpStatus(c.Send("POST", path + "/cancel")), 202);
  const json::value job = WaitForJob(c, id, JobOver, std::chrono::seconds(30));
  ASSERT_EQ(job.at("state"), "cancelled") << job;
  EXPECT_GE(job.at("step").as_int64(), running.at("step").as_int64()) << job;
  EXPECT_EQ(job.at("total_steps").as_int64(), running.at("total_steps").as_int64()) << job;
  EXPECT_GT(job.at("progress").to_number<double>(), 0.0) << job;
  EXPECT_GE(job.at("epoch").as_int64(), 1) << job;
  ASSERT_GE(job.at("history").as_array().size(), 1u) << job;
  EXPECT_GT(job.at("history").as_array()[0].at("test_accuracy").to_number<double>(), 0.5) << job;
  // The same in the list.
  const json::value listed = c.Json("GET", "/api/v1/jobs").at("jobs").as_array()[0];
  EXPECT_EQ(listed.at("step"), job.at("step")) << listed;
  // Its log says where it started: step 0, once.
  const std::string log = HttpBody(c.Send("GET", path + "/logs"));
  EXPECT_NE(log.find("running on 1 pool worker(s): training from step 0\n"), std::string::npos)
      << log;
  size_t at = 0, lines = 0;
  while ((at = log.find("training from step ", at)) != std::string::npos) {
    EXPECT_EQ(log.compare(at + 19, 2, "0\n"), 0) << log;
    ++lines;
    ++at;
  }
  EXPECT_EQ(lines, 1u) << log;
}

}  // namespace
}  // namespace dnnd::testing
