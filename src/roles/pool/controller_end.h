// The controller's view of its worker pool, and the scheduling decisions
// over it: which node runs which part of which job.
//
// Nodes register by heartbeating (pool_protocol.h) and are lost after
// `node_timeout` of silence. A job is placed all at once: Place() gives every
// one of its parts to an idle node, or changes nothing, so two jobs can never
// each hold half of what they need and wait for each other. A part whose node
// is lost goes back to `unplaced`; Replace() hands such parts to idle nodes
// (a new pod, or the same one restarted), and the newcomer rejoins the job's
// parameter servers at their current step.
//
// All decisions are made by one thread (the controller's scheduler loop);
// heartbeats arrive on HTTP threads and only record reports and collect the
// orders already decided. Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/thread_annotations.h"
#include "roles/pool/protocol.h"

namespace dnnd {

class WorkerPool {
 public:
  using Clock = std::chrono::steady_clock;

  struct NodeInfo {
    std::string name, address;
    std::string state;  // idle | busy | lost
    int64_t threads = 0;
    int64_t job = 0, index = -1;  // busy: the part it runs
    double last_seen_seconds = 0;
  };

  // How a job's parts are doing (Progress()).
  struct JobProgress {
    int64_t parts = 0, running = 0, succeeded = 0, unplaced = 0;
    std::vector<std::string> failures;  // "part 1 on w2: <error>"
  };

  // Reports from a job's nodes, delivered on the heartbeat's thread (quick,
  // must not call back into the pool): epochs of the reporting part (index 0)
  // and progress steps.
  struct Listener {
    std::function<void(int64_t job, const pool::EpochReport& epoch)> on_epoch;
    std::function<void(int64_t job, int64_t step, int64_t total_steps)> on_step;
  };

  WorkerPool(std::chrono::milliseconds node_timeout, Listener listener);

  // A node's heartbeat: registers or refreshes it, records its report, and
  // answers with its order.
  pool::NodeOrder Heartbeat(const std::string& name, const std::string& address,
                            const pool::NodeReport& report);

  // Marks silent nodes lost (their unfinished parts become unplaced) and
  // forgets nodes lost for long. Returns the names newly lost.
  std::vector<std::string> Sweep();
  // Nodes ready for work now.
  int64_t IdleCount() const;
  // Nodes not lost (idle or busy): the pool's capacity.
  int64_t Capacity() const;

  // Gives all `tasks` (parts 0..n-1 of one job) to idle nodes, or nothing.
  bool Place(std::vector<pool::Task> tasks);
  // Hands unplaced parts of running jobs to idle nodes (new attempts).
  // Returns "job/part -> node" lines for the log.
  std::vector<std::string> Replace();
  JobProgress Progress(int64_t job) const;
  // Whether part `index` of the job has reported success.
  bool PartSucceeded(int64_t job, int64_t index) const;
  // Whether the task with this attempt is still the job's current one.
  bool IsCurrentAttempt(int64_t job, const std::string& attempt) const;
  // Ends a job's placement: its nodes are told to stop (or simply get no new
  // work, if their part already finished).
  void Release(int64_t job);
  // Nodes whose last report says they still run a task of `job` (after
  // Release: the ones still winding down).
  int64_t StillRunning(int64_t job) const;

  std::vector<NodeInfo> Nodes() const;

 private:
  struct Node {
    std::string address;
    int64_t threads = 0;
    Clock::time_point last_seen;
    bool lost = false;
    // The part the node was given (none: idle, or its part finished); it is
    // handed over with the next heartbeat that reports no running task.
    std::optional<pool::Task> task;
    bool reported_running = false;  // its last report: a task running (maybe one we do not know)
    int64_t reported_job = 0;       // ... of this job
  };
  struct Part {
    pool::Task task;   // its attempt changes on every (re)placement
    std::string node;  // "" while unplaced
    pool::TaskState state = pool::TaskState::kRunning;
    std::string error;
  };
  struct Job {
    std::vector<Part> parts;
  };

  // With mu_ held (AssertHeld in debug builds).
  std::string NewAttempt(int64_t job, int64_t index) REQUIRES(mu_);
  void Assign(const std::string& node_name, Part& part) REQUIRES(mu_);
  Part* FindPart(int64_t job, const std::string& attempt) REQUIRES(mu_);
  const Part* FindPart(int64_t job, const std::string& attempt) const REQUIRES(mu_);

  const std::chrono::milliseconds node_timeout_;
  const Listener listener_;
  // The one lock: every public call takes it, none calls out while holding it.
  mutable Mutex mu_;
  std::map<std::string, Node> nodes_ GUARDED_BY(mu_);
  std::map<int64_t, Job> jobs_ GUARDED_BY(mu_);
  uint64_t attempts_ GUARDED_BY(mu_) = 0;
  const std::string epoch_;  // this controller's start, in every attempt name
};

}  // namespace dnnd
