// A worker in the controller's pool (`worker.controller` set): it registers
// with the controller by heartbeating, runs the tasks the controller gives it
// (one worker's part of a data-parallel job: model, options and parameter
// servers from the task, its part of the data fetched from the controller
// over the wire protocol), reports progress with every heartbeat, and goes
// back to idle when the task ends. The worker with index 0 evaluates and
// uploads the trained model before it reports success.
//
// The same object runs inside the controller (controller.local_workers) and
// as `dnnd --role=worker` on another host: both talk to the controller only
// through its HTTP API and its wire port.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "core/config.h"
#include "core/status.h"
#include "core/thread_annotations.h"
#include "roles/base/role.h"
#include "roles/pool/protocol.h"
#include "transport/rpc_client.h"

namespace dnnd {

struct PoolWorkerOptions {
  std::string controller;  // host:port of the controller's HTTP API
  std::string name;        // unique in the pool
  std::string api_token;   // bearer token for the controller's API (crosses the network)
  std::string wire_key;    // the wire protocol's secret (proven, never sent)
  std::chrono::milliseconds heartbeat{1000};
  int64_t threads = 1;      // reported to the controller
  std::string scratch_dir;  // where index 0 writes the model before uploading it
  std::string progress;     // non-empty: train.progress for tasks (else the job's "none")
  rpc::RpcClientOptions rpc;

  // From a worker's validated config: worker.controller, node.name (plus
  // this host's name, so replicas of one Deployment differ), the secrets.
  static Result<PoolWorkerOptions> FromConfig(const Config& config);
};

class PoolWorker : public Role {
 public:
  explicit PoolWorker(PoolWorkerOptions options);
  ~PoolWorker() override;

  // Heartbeats and runs tasks until Stop().
  Status Run() override;
  void Stop() override;
  std::pair<bool, std::string> Readiness() const override;

 private:
  struct Current;  // the task being run (or just finished), and its worker

  // One heartbeat about the current task: the report out, the order back.
  Result<pool::NodeOrder> Beat();
  // One heartbeat about `task` (null: none). `final`: the node is stopping;
  // the task's outcome is not reported, only its epochs.
  Result<pool::NodeOrder> Beat(const std::shared_ptr<Current>& task, bool final);
  // Once stopped: sends the epochs `task` finished that no heartbeat carried
  // yet (best effort, one short call).
  void FlushEpochs(const std::shared_ptr<Current>& task);
  void StartTask(const pool::Task& task);
  // Asks the running task to stop and returns at once (heartbeats go on
  // while it winds down; it then reports its end like any other). Its RPCs
  // are cancelled: a call waiting on its parameter servers (gone, when the
  // job was cancelled) fails at once instead of at its request timeout.
  void RequestStopTask();
  // Stops the task (if running), waits for its thread and returns it (null
  // when there was none). Its RPCs are cancelled at once, or, with a
  // `grace`, only if it has not ended by then: a step whose update the
  // servers applied is then also one the task saw and reported (cancelled
  // mid-call, the servers could be a step ahead of the epochs reported; a
  // sync step whose peer stopped first waits out the grace).
  std::shared_ptr<Current> StopTask(std::chrono::milliseconds grace = std::chrono::milliseconds(0));
  // How long a stopping node lets its task finish the step under way.
  static constexpr std::chrono::milliseconds kStopGrace{1000};
  Status RunTask(Current& current);

  const PoolWorkerOptions options_;
  std::atomic<bool> registered_{false};

  // Locks: mu_ guards the loop's flags and which task is current; a task's
  // own Current::mu guards its state. They are never held together (a
  // thread copies current_ under mu_, releases it, then takes the task's).
  Mutex mu_;
  CondVar cv_;
  bool stop_ GUARDED_BY(mu_) = false;
  bool wake_ GUARDED_BY(mu_) = false;  // a task ended: heartbeat now
  std::shared_ptr<Current> current_ GUARDED_BY(mu_);
};

// The worker role when worker.controller is set.
Result<std::unique_ptr<Role>> MakePoolWorkerRole(const Config& config);

}  // namespace dnnd
