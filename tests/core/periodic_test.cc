// PeriodicTask: runs its function repeatedly, stops at once however long the
// period, and never runs the function after Stop() returns.
#include "core/periodic.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

namespace dnnd {
namespace {

TEST(PeriodicTask, RunsRepeatedlyUntilStoppedAndNeverAfter) {
  std::atomic<int> runs{0};
  PeriodicTask task;
  task.Start(std::chrono::milliseconds(1), [&] { ++runs; });
  while (runs.load() < 3) std::this_thread::yield();
  task.Stop();
  const int at_stop = runs.load();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(runs.load(), at_stop);
}

TEST(PeriodicTask, StopWakesALongWaitAndTheFunctionNeverRan) {
  std::atomic<int> runs{0};
  {
    PeriodicTask task;
    task.Start(std::chrono::hours(1), [&] { ++runs; });
  }  // the destructor stops it: without the wake-up this would wait an hour
  EXPECT_EQ(runs.load(), 0);
}

}  // namespace
}  // namespace dnnd
