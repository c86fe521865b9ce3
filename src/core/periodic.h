// A background thread that runs a function every `period` until stopped:
// the parameter servers' membership check, the layer servers' idle-session
// reaper, a worker's heartbeats to its parameter servers.
//
//   PeriodicTask sweeper;
//   sweeper.Start(std::chrono::seconds(1), [this] { DropIdleSessions(); });
//   ...
//   sweeper.Stop();  // wakes the thread at once and joins it (also on destruction)
//
// The function first runs one period after Start(), never after Stop()
// returns, and never concurrently with itself.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

namespace dnnd {

class PeriodicTask {
 public:
  PeriodicTask() = default;
  ~PeriodicTask() { Stop(); }
  PeriodicTask(const PeriodicTask&) = delete;
  PeriodicTask& operator=(const PeriodicTask&) = delete;

  // At most once per task (a stopped task stays stopped).
  void Start(std::chrono::milliseconds period, std::function<void()> fn) {
    thread_ = std::thread([this, period, fn = std::move(fn)] {
      std::unique_lock lock(mu_);
      while (!stop_) {
        cv_.wait_for(lock, period, [this] { return stop_; });
        if (stop_) break;
        lock.unlock();
        fn();
        lock.lock();
      }
    });
  }

  void Stop() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
  }

 private:
  std::mutex mu_;  // guards stop_
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace dnnd
