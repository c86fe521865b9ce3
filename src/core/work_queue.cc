#include "core/work_queue.h"

#include <algorithm>
#include <exception>

#include "core/log.h"

namespace dnnd {

WorkQueue::WorkQueue(int threads, size_t max_queued, std::string queue_setting)
    : max_queued_(max_queued), queue_setting_(std::move(queue_setting)) {
  for (int i = 0; i < std::max(1, threads); ++i) threads_.emplace_back([this] { Loop(); });
}

WorkQueue::~WorkQueue() { Stop(); }

bool WorkQueue::TrySubmit(std::function<void()> task) {
  {
    std::lock_guard lock(mu_);
    if (stopped_ || queue_.size() >= max_queued_ + idle_) return false;
    queue_.push_back(std::move(task));
  }
  cv_.notify_one();
  return true;
}

void WorkQueue::Stop() {
  std::deque<std::function<void()>> dropped;
  {
    std::lock_guard lock(mu_);
    if (stopped_ && threads_.empty()) return;
    stopped_ = true;
    dropped.swap(queue_);
  }
  cv_.notify_all();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
  dropped.clear();  // outside the lock: a task's captures may do anything when destroyed
}

void WorkQueue::Loop() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock lock(mu_);
      ++idle_;
      cv_.wait(lock, [&] { return stopped_ || !queue_.empty(); });
      --idle_;
      if (stopped_) return;
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    try {
      task();
    } catch (const std::exception& e) {
      Log(LogLevel::kError, "work_queue", "task threw", {{"error", e.what()}});
    } catch (...) {
      Log(LogLevel::kError, "work_queue", "task threw", {{"error", "unknown exception"}});
    }
  }
}

}  // namespace dnnd
