// The controller's job runner: the scheduler thread that starts queued jobs
// on the worker pool, watches them, re-shards elastic jobs between epochs,
// and finishes them, with the live progress the API reports.
//
// Jobs run one at a time per pool placement, in this process, as the
// standalone role's cluster: the job's parameter servers are threads of the
// controller (over loopback, the wire protocol as in a real cluster) and its
// parts run on pool workers (worker_pool.h). The servers checkpoint every
// controller.checkpoint_every_steps into <data_dir>/jobs/<id>/ps; a job found
// `running` at start-up (the controller died) is resumed from there.
//
// Threads: Run() is the scheduler thread; every decision (start, place,
// re-shard, finish) is made there. HTTP threads call Wake(), Cancel(),
// Live() and pool(); the pool's heartbeat threads report progress through
// the listener (OnStep/OnEpoch).
//
// Locks: mu_ guards the running jobs and the loop's flags; live_mu_ guards
// the progress table. They are never held together, and neither is held
// while calling into the pool (whose heartbeat callbacks take live_mu_) or
// the store. A LiveProgress's own `mu` guards only its last epoch.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/thread_annotations.h"
#include "roles/controller/context.h"
#include "roles/pool/controller_end.h"
#include "roles/train/job_spec.h"

namespace dnnd {

// controller.ps_ports: "first-last" (both in 1..65535, first <= last), or
// empty for any free port (nullopt).
using PortRange = std::pair<int64_t, int64_t>;
Result<std::optional<PortRange>> ParsePortRange(const std::string& range);

// A running job's progress as its reporting worker tells it.
struct LiveProgress {
  int64_t job = 0;
  std::atomic<int64_t> step{0}, total{0};
  // First step of this attempt and when it was seen (for the rate); atomics:
  // written by heartbeat threads, read by HTTP threads.
  std::atomic<int64_t> start_step{-1};
  std::atomic<double> start_s{0};
  std::atomic<int64_t> workers{0};  // of the current segment (recorded with each epoch)
  // The last epoch recorded (an elastic job's scheduler decides on it).
  Mutex mu;
  pool::EpochReport last_epoch GUARDED_BY(mu);  // epoch 0: none yet
};

class JobRunner {
 public:
  // `ctx` must outlive the runner.
  JobRunner(const ControllerContext& ctx, std::optional<PortRange> ps_ports);
  ~JobRunner();

  // The scheduler loop, on the calling thread, until Stop(): every 250 ms or
  // on Wake(), one pass (lost nodes, replacements, finished jobs, the next
  // queued job). `shard_port`: the shard service every task fetches its data
  // from. Returns when stopped; the jobs keep running until StopJobs().
  void Run(int shard_port) EXCLUDES(mu_);
  // After Run() returned: the running jobs' servers checkpoint and stop; the
  // jobs stay `running` in the store and resume at the next start. The
  // caller stops its own in-process workers first, while their servers still
  // answer (stopped after them, they would retry dead servers for minutes).
  void StopJobs() EXCLUDES(mu_);
  void Stop() EXCLUDES(mu_);
  // A pass now (a job was queued, a task ended).
  void Wake() EXCLUDES(mu_);
  // Cancels a job that is not queued any more: a running one at the next
  // pass, one running before a restart (still waiting for its workers) as well.
  void Cancel(int64_t id) EXCLUDES(mu_);

  // The progress of a running job, or null.
  std::shared_ptr<const LiveProgress> Live(int64_t job) const EXCLUDES(live_mu_);
  // Bumped by every progress report (GET /api/v1/jobs caches on it).
  uint64_t LiveVersion() const { return live_version_.load(); }

  WorkerPool& pool() { return pool_; }
  const std::optional<PortRange>& ps_ports() const { return ps_ports_; }

 private:
  struct RunningJob;

  WorkerPool::Listener PoolListener();
  std::shared_ptr<LiveProgress> MutableLive(int64_t job) const EXCLUDES(live_mu_);
  void RecordPoolMetrics(const std::vector<JobRecord>& jobs) EXCLUDES(mu_);

  void Schedule() EXCLUDES(mu_);
  void StartNext(int64_t reserved) EXCLUDES(mu_);
  Status StartJob(const JobRecord& job, const JobSpec& spec, int64_t workers)
      EXCLUDES(mu_, live_mu_);
  Result<bool> LaunchSegment(RunningJob& run, const std::vector<int64_t>& ports) EXCLUDES(mu_);
  int64_t AdvanceElastic(int64_t id, const WorkerPool::JobProgress& progress) EXCLUDES(mu_);
  void SetSegment(RunningJob& run, LiveProgress& live, const JobSegment& g) EXCLUDES(mu_);
  void Finish(int64_t id, const char* state, const std::string& reason) EXCLUDES(mu_, live_mu_);

  std::optional<std::vector<int64_t>> TakePorts(int64_t n);

  const ControllerContext& ctx_;
  const std::optional<PortRange> ps_ports_;
  int shard_port_ = 0;            // set by Run
  WorkerPool pool_;               // thread-safe on its own
  std::set<int64_t> used_ports_;  // scheduler thread only
  int64_t queued_ = 0;  // jobs waiting, at the last scheduler pass (scheduler thread only)

  Mutex mu_;
  CondVar cv_;
  bool stop_ GUARDED_BY(mu_) = false;
  bool wake_ GUARDED_BY(mu_) = false;
  // Started jobs. A RunningJob's `cancel`, `workers` and `servers` are
  // written under mu_ (the HTTP threads' Cancel, the metrics read them);
  // the rest is the scheduler thread's alone. Entries are erased only by
  // Finish, on the scheduler thread, so it may keep a pointer without mu_.
  std::map<int64_t, std::unique_ptr<RunningJob>> jobs_ GUARDED_BY(mu_);
  std::set<int64_t> cancel_waiting_ GUARDED_BY(mu_);

  mutable Mutex live_mu_;
  std::map<int64_t, std::shared_ptr<LiveProgress>> live_ GUARDED_BY(live_mu_);
  std::atomic<uint64_t> live_version_{0};
};

}  // namespace dnnd
