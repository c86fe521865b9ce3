// The controller's side of the pool (WorkerPool): what it does with a
// heartbeat for a task it does not know, as after a controller restart.
#include "roles/pool/controller_end.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

namespace dnnd {
namespace {

struct Recorded {
  int64_t job;
  int64_t epoch;
};

pool::NodeReport RunningReport(int64_t job, const std::string& attempt,
                               std::vector<int64_t> epochs) {
  pool::NodeReport r;
  r.threads = 1;
  r.job = job;
  r.attempt = attempt;
  r.state = pool::TaskState::kRunning;
  for (int64_t e : epochs) {
    pool::EpochReport er;
    er.epoch = e;
    er.train_loss = 0.5;
    r.epochs.push_back(er);
  }
  return r;
}

// A node still running part 0 of job 7 under a previous controller run's
// attempt reports the epochs it finished while the controller was down. The
// restarted controller stops the task (it will place the job again) and
// records those epochs: the node counts any answered report as delivered, so
// dropping them lost them for good. Other parts' epochs are not the job's
// history, and a malformed attempt names no part.
TEST(WorkerPoolRestart, EpochsOfAPreviousRunsFirstPartAreRecordedAndTheTaskStopped) {
  std::vector<Recorded> got;
  WorkerPool::Listener listener;
  listener.on_epoch = [&](int64_t job, const pool::EpochReport& e) {
    got.push_back({job, e.epoch});
  };
  WorkerPool pool(std::chrono::milliseconds(5000), listener);

  pool::NodeOrder order =
      pool.Heartbeat("n1", "127.0.0.1:1", RunningReport(7, "0a1b2c3d-7-0-3", {4, 5}));
  EXPECT_EQ(order.kind, pool::NodeOrder::Kind::kStop);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].job, 7);
  EXPECT_EQ(got[0].epoch, 4);
  EXPECT_EQ(got[1].epoch, 5);

  got.clear();
  for (const std::string attempt :
       {"0a1b2c3d-7-1-4", "0a1b2c3d-8-0-4", "0a1b2c3d-7-0-", "0a1b2c3d-7-0-x", "7-0-1", "junk"}) {
    order = pool.Heartbeat("n2", "127.0.0.1:2", RunningReport(7, attempt, {6}));
    EXPECT_EQ(order.kind, pool::NodeOrder::Kind::kStop) << attempt;
    EXPECT_TRUE(got.empty()) << attempt << " recorded epoch " << got.front().epoch;
    got.clear();
  }
}

}  // namespace
}  // namespace dnnd
