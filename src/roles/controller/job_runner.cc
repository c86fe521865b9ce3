#include "roles/controller/job_runner.h"

#include <boost/json.hpp>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <thread>
#include <tuple>

#include "core/files.h"
#include "core/log.h"
#include "core/metrics.h"
#include "roles/controller/elastic_policy.h"
#include "roles/ps/parameter_server.h"
#include "tensor/model_spec.h"
#include "transport/rpc_server.h"

namespace dnnd {
namespace fs = std::filesystem;
namespace json = boost::json;

Result<std::optional<PortRange>> ParsePortRange(const std::string& range) {
  if (range.empty()) return std::optional<PortRange>();
  int64_t first = 0, last = 0;
  char tail = 0;
  if (std::sscanf(range.c_str(), "%" SCNd64 "-%" SCNd64 "%c", &first, &last, &tail) != 2 ||
      first < 1 || last > 65535 || first > last)
    return InvalidArgument("controller.ps_ports is '" + range +
                           "'; expected \"first-last\" ports, e.g. \"7101-7104\"");
  return std::optional<PortRange>(PortRange{first, last});
}

namespace {

// The job's spec as the store keeps it (rows of every schema version decode).
Result<JobSpec> SpecOf(const JobRecord& j) {
  json::value v = ParseJsonText(j.params);
  if (!v.is_object())
    return Corruption("job " + std::to_string(j.id) + " has unreadable parameters");
  return JobSpec::FromJson(v.get_object(), JobSpec::Stored(),
                           "job " + std::to_string(j.id) + "'s parameters");
}

// Workers the job (re)starts on: an elastic job resumed after a restart
// continues its segment on that segment's workers.
int64_t StartWorkers(const JobRecord& j, const JobSpec& spec) {
  if (spec.elastic && j.segment.workers > 0) return j.segment.workers;
  return spec.workers;
}

// The job series on /metrics (KubeML's history, per job): one set of
// gauges per job, updated at every epoch.
void RecordJobMetrics(int64_t job, const pool::EpochReport& e) {
  MetricsRegistry& m = DefaultMetrics();
  const MetricLabels l = {{"job", std::to_string(job)}};
  m.Gauge("dnnd_job_epoch", "epochs completed by the job", l).Set(static_cast<double>(e.epoch));
  m.Gauge("dnnd_job_train_loss", "mean training loss of the job's last epoch", l).Set(e.train_loss);
  m.Gauge("dnnd_job_epoch_duration_seconds", "wall time of the job's last epoch", l).Set(e.seconds);
  m.Gauge("dnnd_job_samples_per_second", "training throughput of the job's last epoch (per worker)",
          l)
      .Set(e.samples_per_s);
  if (e.evaluated) {
    m.Gauge("dnnd_job_validation_loss", "test-set loss after the job's last evaluated epoch", l)
        .Set(e.test_loss);
    m.Gauge("dnnd_job_validation_accuracy",
            "test-set accuracy after the job's last evaluated epoch", l)
        .Set(e.test_accuracy);
  }
}

}  // namespace

struct JobRunner::RunningJob {
  JobRecord record;  // as started (no history)
  JobSpec spec;
  std::string model;  // the model spec's TOML, as stored
  std::vector<std::unique_ptr<ParameterServer>> servers;
  std::vector<int64_t> ports;
  int64_t workers = 0;
  bool cancel = false;
  // Elastic jobs run one epoch per segment; between two segments the
  // servers are checkpointed and stopped and the next one is not placed yet.
  bool elastic = false;
  ElasticBounds bounds;
  JobSegment segment;
  bool between = false;
};

WorkerPool::Listener JobRunner::PoolListener() {
  WorkerPool::Listener l;
  l.on_step = [this](int64_t job, int64_t step, int64_t total) {
    std::shared_ptr<LiveProgress> live = MutableLive(job);
    if (!live) return;
    // The rate's origin: the first report (a few steps in). Where the
    // attempt started is logged by StartJob, from its servers.
    if (live->start_step.load() < 0) {
      live->start_s = NowSeconds();
      live->start_step = step;
    }
    live->step = step;
    live->total = total;
    ++live_version_;
  };
  l.on_epoch = [this](int64_t job, const pool::EpochReport& e) {
    std::shared_ptr<LiveProgress> live = MutableLive(job);
    EpochRow row{e.epoch,         e.train_loss, e.evaluated,     e.test_loss,
                 e.test_accuracy, e.seconds,    e.samples_per_s, live ? live->workers.load() : 0};
    if (live) {
      MutexLock lock(live->mu);
      if (e.epoch >= live->last_epoch.epoch) live->last_epoch = e;
    }
    RecordJobMetrics(job, e);
    Status s = ctx_.store.RecordEpoch(job, row, e.step, e.total_steps);
    if (!s.ok())
      Log(LogLevel::kError, "controller", "cannot record epoch",
          {{"job", job}, {"error", s.ToString()}});
    char line[256];
    std::snprintf(line, sizeof line, "epoch %lld: train loss %.4f, %.1f s, %.0f samples/s",
                  static_cast<long long>(e.epoch), e.train_loss, e.seconds, e.samples_per_s);
    std::string text = line;
    if (e.evaluated) {
      std::snprintf(line, sizeof line, ", test loss %.4f, test accuracy %.2f%%", e.test_loss,
                    100 * e.test_accuracy);
      text += line;
    }
    ctx_.JobLog(job, text);
  };
  return l;
}

// Jobs by state, the queue, nodes by state (once per scheduler pass).
void JobRunner::RecordPoolMetrics(const std::vector<JobRecord>& jobs) {
  MetricsRegistry& m = DefaultMetrics();
  std::map<std::string, int64_t> by_state = {
      {kJobQueued, 0}, {kJobRunning, 0}, {kJobSucceeded, 0}, {kJobFailed, 0}, {kJobCancelled, 0}};
  for (const auto& j : jobs) ++by_state[j.state];
  for (const auto& [state, n] : by_state)
    m.Gauge("dnnd_controller_jobs", "jobs in the store by state", {{"state", state}})
        .Set(static_cast<double>(n));
  m.Gauge("dnnd_controller_queue_length", "jobs waiting for workers")
      .Set(static_cast<double>(by_state[kJobQueued]));
  queued_ = by_state[kJobQueued];
  std::map<std::string, int64_t> nodes = {{"idle", 0}, {"busy", 0}, {"lost", 0}};
  for (const auto& n : pool_.Nodes()) ++nodes[n.state];
  for (const auto& [state, n] : nodes)
    m.Gauge("dnnd_controller_nodes", "pool workers by state", {{"state", state}})
        .Set(static_cast<double>(n));
  MutexLock lock(mu_);
  for (const auto& [id, run] : jobs_)
    m.Gauge("dnnd_job_parallelism", "workers the job runs on", {{"job", std::to_string(id)}})
        .Set(static_cast<double>(run->workers));
}

JobRunner::JobRunner(const ControllerContext& ctx, std::optional<PortRange> ps_ports)
    : ctx_(ctx),
      ps_ports_(ps_ports),
      pool_(std::chrono::milliseconds(ctx.cfg.GetInt("controller.node_timeout_ms")),
            PoolListener()) {}

JobRunner::~JobRunner() = default;

void JobRunner::Run(int shard_port) {
  shard_port_ = shard_port;
  while (true) {
    {
      MutexLock lock(mu_);
      if (stop_) break;
      cv_.WaitUntil(lock, std::chrono::steady_clock::now() + std::chrono::milliseconds(250),
                    [&]() REQUIRES(mu_) { return stop_ || wake_; });
      wake_ = false;
      if (stop_) break;
    }
    Schedule();
  }
}

void JobRunner::StopJobs() {
  std::map<int64_t, std::unique_ptr<RunningJob>> jobs;
  {
    MutexLock lock(mu_);
    jobs.swap(jobs_);
  }
  for (auto& [id, job] : jobs) {
    ctx_.JobLog(id, "controller stopping; the job resumes from its checkpoint at the next start");
    pool_.Release(id);
    for (auto& s : job->servers) s->Stop();
  }
}

void JobRunner::Stop() {
  MutexLock lock(mu_);
  stop_ = true;
  cv_.NotifyAll();
}

void JobRunner::Wake() {
  MutexLock lock(mu_);
  wake_ = true;
  cv_.NotifyAll();
}

void JobRunner::Cancel(int64_t id) {
  MutexLock lock(mu_);
  auto it = jobs_.find(id);
  if (it != jobs_.end())
    it->second->cancel = true;
  else
    cancel_waiting_.insert(id);  // running before a restart, waiting for its workers
  wake_ = true;
  cv_.NotifyAll();
}

std::shared_ptr<const LiveProgress> JobRunner::Live(int64_t job) const { return MutableLive(job); }

std::shared_ptr<LiveProgress> JobRunner::MutableLive(int64_t job) const {
  MutexLock lock(live_mu_);
  auto it = live_.find(job);
  return it == live_.end() ? nullptr : it->second;
}

// Ports for a job's servers from controller.ps_ports ("first-last"), or 0s
// (any free port) when unset. Empty when the range is used up.
std::optional<std::vector<int64_t>> JobRunner::TakePorts(int64_t n) {
  if (!ps_ports_) return std::vector<int64_t>(static_cast<size_t>(n), 0);
  std::vector<int64_t> out;
  for (int64_t p = ps_ports_->first; p <= ps_ports_->second && static_cast<int64_t>(out.size()) < n;
       ++p)
    if (!used_ports_.count(p)) out.push_back(p);
  if (static_cast<int64_t>(out.size()) < n) return std::nullopt;
  return out;
}

// One pass of the scheduler: lost nodes, replacements, finished jobs, and
// the next queued job if the pool can take all of it.
void JobRunner::Schedule() {
  for (const auto& name : pool_.Sweep())
    Log(LogLevel::kWarn, "controller", "node lost", {{"node", name}});
  for (const auto& line : pool_.Replace())
    Log(LogLevel::kInfo, "controller", "part replaced", {{"placement", line}});
  std::vector<std::tuple<int64_t, bool, bool>> active;  // id, cancel, elastic
  std::set<int64_t> cancel_waiting;
  {
    MutexLock lock(mu_);
    cancel_waiting.swap(cancel_waiting_);
    for (auto& [id, job] : jobs_) active.push_back({id, job->cancel, job->elastic});
  }
  for (int64_t id : cancel_waiting) {
    ctx_.JobLog(id, "cancelled while waiting for its workers");
    (void)ctx_.store.SetJobState(id, kJobCancelled, "cancelled by request");
  }
  int64_t reserved = 0;  // idle nodes elastic jobs are about to take back
  for (auto [id, cancel, elastic] : active) {
    const WorkerPool::JobProgress p = pool_.Progress(id);
    if (cancel) {
      Finish(id, kJobCancelled, "cancelled by request");
    } else if (!p.failures.empty()) {
      Finish(id, kJobFailed, p.failures.front());
    } else if (elastic) {
      reserved += AdvanceElastic(id, p);
    } else if (p.parts > 0 && (p.succeeded == p.parts || pool_.PartSucceeded(id, 0))) {
      // The reporting part (0) has evaluated and uploaded the model; the
      // others end with it (in sync they finish together anyway; with a
      // goal accuracy reached, part 0 ends first).
      Finish(id, kJobSucceeded, "");
    }
  }
  StartNext(reserved);
}

// Strict FIFO: the oldest waiting job (a job left running by a previous
// controller first) starts when the pool has an idle node for each of its
// workers; younger jobs do not overtake it, so a large job is not starved.
// `reserved` idle nodes are not free: elastic jobs between two epochs hold them.
void JobRunner::StartNext(int64_t reserved) {
  auto list = ctx_.store.ListJobs();
  if (!list.ok()) return;
  RecordPoolMetrics(*list);
  std::optional<JobRecord> next;
  for (auto it = list->rbegin(); it != list->rend(); ++it) {
    {
      MutexLock lock(mu_);
      if (jobs_.count(it->id)) continue;
    }
    if (it->state == kJobRunning) {
      next = *it;
      break;
    }
    if (it->state == kJobQueued && !next) next = *it;
  }
  if (!next) return;
  Result<JobSpec> spec = SpecOf(*next);
  const int64_t workers = spec.ok() ? StartWorkers(*next, *spec) : 1;
  if (pool_.IdleCount() - reserved < workers) return;
  Status s = spec.ok() ? StartJob(*next, *spec, workers) : spec.status();
  if (!s.ok()) {
    ctx_.JobLog(next->id, "failed to start: " + s.ToString());
    (void)ctx_.store.SetJobState(next->id, kJobFailed, s.ToString());
    Log(LogLevel::kWarn, "controller", "job failed", {{"job", next->id}, {"reason", s.ToString()}});
  }
}

Status JobRunner::StartJob(const JobRecord& job, const JobSpec& spec, int64_t workers) {
  const int64_t id = job.id;
  const bool resumed = job.state == kJobRunning;
  auto ports = TakePorts(spec.servers);
  if (!ports) return Status::Ok();  // the port range is busy: stay queued
  auto run = std::make_unique<RunningJob>();
  run->record = job;
  run->record.history.clear();
  run->spec = spec;
  DNND_ASSIGN_OR_RETURN(ModelRecord model, ctx_.store.GetModel(job.model));
  run->model = std::move(model.spec);
  run->workers = workers;
  run->elastic = spec.elastic;
  if (run->elastic) {
    run->bounds = {spec.min_workers, spec.max_workers};
    run->segment = job.segment.workers > 0 ? job.segment : JobSegment{0, 0, workers, 0};
  }
  DNND_ASSIGN_OR_RETURN(bool placed, LaunchSegment(*run, *ports));
  if (!placed) return Status::Ok();  // a node went away since IdleCount()
  // Where the workers begin: the servers' step (0, or their checkpoint's).
  int64_t from = run->servers.empty() ? 0 : run->servers[0]->version();
  for (const auto& s : run->servers) from = std::min(from, s->version());
  auto live = std::make_shared<LiveProgress>();
  live->job = id;
  live->step = job.step;
  live->total = job.total_steps;
  live->workers = workers;
  if (run->elastic && resumed) {
    // The epoch the job last recorded: if its segment had ended just
    // before the restart, the scheduler decides the next one from it.
    auto full = ctx_.store.GetJob(id);
    if (full.ok() && !full->history.empty()) {
      const EpochRow& e = full->history.back();
      MutexLock lock(live->mu);
      live->last_epoch = {e.epoch,     e.train_loss,    e.seconds,  e.samples_per_s,  e.evaluated,
                          e.test_loss, e.test_accuracy, full->step, full->total_steps};
    }
  }
  {
    MutexLock lock(live_mu_);
    live_[id] = live;
    ++live_version_;
  }
  {
    MutexLock lock(mu_);
    jobs_[id] = std::move(run);
  }
  DNND_RETURN_IF_ERROR(ctx_.store.SetJobState(id, kJobRunning, ""));
  std::string how = "running on " + std::to_string(workers) + " pool worker(s)";
  if (spec.elastic)
    how += " (elastic: " + std::to_string(spec.min_workers) + "-" +
           std::to_string(spec.max_workers) + ")";
  if (resumed)
    how = "resumed after a controller restart (attempt " + std::to_string(job.attempts + 1) +
          ", from its servers' last checkpoint)";
  ctx_.JobLog(id, how + ": training from step " + std::to_string(from));
  Log(LogLevel::kInfo, "controller", resumed ? "job resumed" : "job started",
      {{"job", id}, {"workers", workers}});
  return Status::Ok();
}

// Starts the job's parameter servers for run.workers workers (resuming
// from their checkpoint, if any) on `ports` (0: any free port) and places
// its parts on idle nodes. False, with nothing started, when the pool no
// longer has the nodes.
Result<bool> JobRunner::LaunchSegment(RunningJob& run, const std::vector<int64_t>& ports) {
  const JobRecord& job = run.record;
  const int64_t id = job.id;
  // What every worker of the job runs; an elastic job's segment trains one
  // epoch: [segment.epoch, segment.epoch + 1).
  JobSpec spec = run.spec;
  if (run.elastic) {
    spec.start_epoch = run.segment.epoch;
    spec.start_step = run.segment.step;
    spec.stop_epoch = run.segment.epoch + 1;
  }
  DNND_RETURN_IF_ERROR(spec.Validate());
  std::error_code ec;
  fs::create_directories(ctx_.JobDir(id), ec);
  // For people debugging a job.
  (void)WriteFileAtomic(ctx_.JobDir(id) + "/task.json", json::serialize(spec.ToJson()));
  const int64_t nservers = static_cast<int64_t>(ports.size());
  std::vector<std::unique_ptr<ParameterServer>> servers;
  std::vector<int64_t> bound;
  auto stop_all = [&] {
    for (auto& started : servers) started->Stop();
  };
  for (int64_t i = 0; i < nservers; ++i) {
    ParameterServerOptions o = ParameterServerOptions::FromConfig(ctx_.cfg);
    o.index = static_cast<int>(i);
    o.servers = static_cast<int>(nservers);
    o.mode = spec.mode;
    o.workers = run.workers;
    o.kavg_steps = spec.kavg_steps;
    o.weights_codec = spec.weights_codec;
    o.checkpoint_dir = ctx_.JobDir(id) + "/ps";
    o.resume = true;
    o.checkpoint_every_steps = ctx_.cfg.GetInt("controller.checkpoint_every_steps");
    auto rpc = rpc::RpcServerOptions::FromConfig(
        ctx_.cfg, ctx_.ServiceHost() + ":" + std::to_string(ports[i]), "parameter-server");
    if (!rpc.ok()) {
      stop_all();
      return rpc.status();
    }
    rpc->token = ctx_.secrets.wire_key;
    rpc->self.node = "job-" + std::to_string(id) + "-ps-" + std::to_string(i);
    auto server = std::make_unique<ParameterServer>(std::move(o), std::move(*rpc));
    Status s = server->Start();
    if (!s.ok()) {
      stop_all();
      return s.WithContext("parameter server " + std::to_string(i));
    }
    bound.push_back(server->port());
    servers.push_back(std::move(server));
  }
  std::vector<pool::Task> tasks;
  std::error_code exists_ec;
  const std::string initial = fs::exists(ctx_.InitialWeightsPath(job.model), exists_ec)
                                  ? "/api/v1/models/" + job.model + "/initial"
                                  : "";
  for (int64_t i = 0; i < run.workers; ++i)
    tasks.push_back(
        {id, "", i, run.workers, job.dataset, spec, run.model, bound, shard_port_, initial});
  if (!pool_.Place(std::move(tasks))) {
    stop_all();
    return false;
  }
  for (auto port : run.ports) used_ports_.erase(port);
  for (auto port : bound) used_ports_.insert(port);
  run.ports = std::move(bound);
  MutexLock lock(mu_);  // RecordPoolMetrics reads the job's servers and workers
  run.servers = std::move(servers);
  return true;
}

// An elastic job between epochs: once every part has finished the
// segment and its epoch is recorded, the job either ends (last epoch, or
// goal accuracy reached) or its servers checkpoint and stop, the throughput
// policy picks the next segment's workers, and the servers restart from
// the checkpoint for that many workers, each with its new part of the data.
//
// Returns how many idle nodes the job holds in reserve for its next epoch
// (its own, freed by the epoch just finished), so the queue's next job
// does not take them in the meantime.
int64_t JobRunner::AdvanceElastic(int64_t id, const WorkerPool::JobProgress& progress) {
  RunningJob* run;  // erased only by Finish, on this (the scheduler's) thread
  {
    MutexLock lock(mu_);
    auto it = jobs_.find(id);
    if (it == jobs_.end()) return 0;
    run = it->second.get();
  }
  std::shared_ptr<LiveProgress> live = MutableLive(id);
  if (!live) return 0;
  if (!run->between) {
    // The segment runs; parts that finished it early keep their nodes for the next.
    if (progress.parts == 0 || progress.succeeded < progress.parts) return progress.succeeded;
    pool::EpochReport last;
    {
      MutexLock lock(live->mu);
      last = live->last_epoch;
    }
    if (last.epoch < run->segment.epoch + 1)
      return run->workers;  // its epoch's record is still on its way
    const int64_t epochs = run->spec.epochs;
    const double goal = run->spec.goal_accuracy;
    if (last.epoch >= epochs || (goal > 0 && last.evaluated && last.test_accuracy >= goal)) {
      Finish(id, kJobSucceeded, "");
      return 0;
    }
    const int64_t before = run->workers;
    // It does not grow into idle nodes while other jobs wait for them.
    const int64_t idle = pool_.IdleCount();
    const ElasticDecision d =
        NextParallelism(run->bounds, before, last.seconds, run->segment.reference_seconds,
                        queued_ > 0 ? std::min(idle, before) : idle);
    // Checkpoint before re-sharding: the servers write their state as they stop.
    std::vector<std::unique_ptr<ParameterServer>> servers;
    {
      MutexLock lock(mu_);
      servers.swap(run->servers);
    }
    for (auto& s : servers) s->Stop();
    SetSegment(*run, *live, {last.epoch, last.step, d.workers, d.reference_seconds});
    run->between = true;
    ctx_.JobLog(id, "elastic: epoch " + std::to_string(last.epoch) + " ran on " +
                        std::to_string(before) + " worker(s); " + d.reason + " -> epoch " +
                        std::to_string(last.epoch + 1) + " on " + std::to_string(d.workers) +
                        " (servers checkpointed at step " + std::to_string(last.step) + ")");
  }
  // Place the next segment, on fewer workers if some went away meanwhile
  // (never fewer than min_workers: then it waits).
  const int64_t idle = pool_.IdleCount();
  if (idle < run->workers) {
    if (idle < run->bounds.min_workers) return 0;  // it waits; the queue may go first
    JobSegment g = run->segment;
    g.workers = idle;
    SetSegment(*run, *live, g);
    ctx_.JobLog(id, "elastic: only " + std::to_string(idle) + " worker(s) idle; epoch " +
                        std::to_string(g.epoch + 1) + " runs on them");
  }
  std::vector<int64_t> ports = run->ports;
  if (!ps_ports_) std::fill(ports.begin(), ports.end(), 0);
  Result<bool> placed = LaunchSegment(*run, ports);
  if (!placed.ok()) {
    Finish(id, kJobFailed, placed.status().WithContext("re-sharding").ToString());
    return 0;
  }
  if (!*placed) return run->workers;
  run->between = false;
  return 0;
}

// The elastic job's new segment, in memory and in the store (a restarted
// controller continues it).
void JobRunner::SetSegment(RunningJob& run, LiveProgress& live, const JobSegment& g) {
  {
    MutexLock lock(mu_);
    run.workers = g.workers;
  }
  run.segment = g;
  live.workers = g.workers;
  Status w = ctx_.store.SetJobSegment(run.record.id, g);
  if (!w.ok())
    Log(LogLevel::kError, "controller", "cannot record the job's segment",
        {{"job", run.record.id}, {"error", w.ToString()}});
}

void JobRunner::Finish(int64_t id, const char* state, const std::string& reason) {
  pool_.Release(id);
  // Let the job's workers stop at a step boundary while their servers
  // still answer (they are told at their next heartbeat); stopping the
  // servers first would leave them retrying a dead address until their
  // request timeout, their node busy all that time.
  const auto grace = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (pool_.StillRunning(id) > 0 && std::chrono::steady_clock::now() < grace)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::unique_ptr<RunningJob> run;
  {
    MutexLock lock(mu_);
    auto it = jobs_.find(id);
    if (it == jobs_.end()) return;
    run = std::move(it->second);
    jobs_.erase(it);
  }
  for (auto& s : run->servers) s->Stop();  // checkpoints the final state
  for (auto port : run->ports) used_ports_.erase(port);
  std::shared_ptr<LiveProgress> live = MutableLive(id);
  {
    MutexLock lock(live_mu_);
    live_.erase(id);
    ++live_version_;
  }
  std::string why = reason;
  const char* final_state = state;
  if (final_state == kJobSucceeded && !fs::exists(ctx_.JobDir(id) + "/model/model.safetensors")) {
    final_state = kJobFailed;
    why = "the reporting worker finished without uploading the trained model";
  }
  // The progress it reached stays with it, whatever the end (a cancelled
  // job mid-epoch is further than its last recorded epoch).
  if (live) (void)ctx_.store.SetProgress(id, live->step.load(), live->total.load());
  ctx_.JobLog(id, std::string(final_state) + (why.empty() ? "" : ": " + why));
  Status w = ctx_.store.SetJobState(id, final_state, why);
  if (!w.ok()) Log(LogLevel::kError, "controller", "store", {{"error", w.ToString()}});
  Log(final_state == kJobSucceeded ? LogLevel::kInfo : LogLevel::kWarn, "controller",
      std::string("job ") + final_state, {{"job", id}, {"reason", why}});
}

}  // namespace dnnd
