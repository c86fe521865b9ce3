// A small bounded pool of threads for heavy request work (dataset
// validation, image decoding, model building), kept apart from the threads
// that answer /healthz, heartbeats and the rest of the API: an HTTP route
// added with HttpRouter::HandleOffloaded runs its handler here, and its I/O
// thread goes back to serving other connections meanwhile.
//
//   auto heavy = std::make_shared<WorkQueue>(2, 8, "controller.heavy_queue");
//   if (!heavy->TrySubmit([] { Validate(); })) Answer503();
//   ...
//   heavy->Stop();   // before whatever the tasks use is destroyed
//
// Bounded both ways: `threads` tasks run at once and at most `max_queued`
// wait; TrySubmit refuses beyond that (the caller answers 503), so a flood of
// heavy requests costs neither unbounded memory nor the API's threads.
// Thread-safe.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace dnnd {

class WorkQueue {
 public:
  // `queue_setting` names the setting behind max_queued, for refusals.
  WorkQueue(int threads, size_t max_queued, std::string queue_setting);
  ~WorkQueue();  // Stop()s
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  // Queues `task`; false (task not taken) when max_queued tasks already
  // wait or the queue is stopped. A task must not throw (what escapes is
  // logged and dropped).
  bool TrySubmit(std::function<void()> task);

  // Waits for the running tasks, drops the queued ones (destroyed unrun) and
  // joins the threads. Later TrySubmit calls return false. Idempotent.
  void Stop();

  const std::string& queue_setting() const { return queue_setting_; }
  size_t max_queued() const { return max_queued_; }
  int threads() const { return static_cast<int>(threads_.size()); }

 private:
  void Loop();

  const size_t max_queued_;
  const std::string queue_setting_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stopped_ = false;
  size_t idle_ = 0;  // threads waiting for a task: a task for each is not "queued"
  std::vector<std::thread> threads_;
};

}  // namespace dnnd
