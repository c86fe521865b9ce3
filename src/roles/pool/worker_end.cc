#include "roles/pool/worker_end.h"

#include <unistd.h>

#include <boost/json.hpp>
#include <filesystem>

#include "core/files.h"
#include "core/log.h"
#include "roles/train/worker.h"
#include "tensor/safetensors.h"
#include "transport/hello.h"
#include "transport/http_client.h"
#include "transport/secrets.h"

namespace dnnd {
namespace fs = std::filesystem;
namespace json = boost::json;

struct PoolWorker::Current {
  pool::Task task;
  std::atomic<int64_t> step{0}, total{0};
  // Bound to every RPC client the task creates (its data fetch, its
  // parameter-server exchange): a stop cancels their calls, so a task
  // waiting on servers that are gone (a cancelled job's) ends at once
  // rather than at its request timeout. Thread-safe.
  const std::shared_ptr<rpc::Canceller> rpc_cancel = std::make_shared<rpc::Canceller>();
  Mutex mu;                      // guards the fields below (never held with PoolWorker::mu_)
  std::unique_ptr<Role> worker;  // once built
  bool stop_requested = false;
  pool::TaskState state = pool::TaskState::kRunning;
  std::string error;
  std::vector<pool::EpochReport> epochs;
  size_t epochs_acked = 0;         // epochs[0, acked) reached the controller
  std::atomic<bool> ended{false};  // the thread is done with the task
  std::thread thread;
};

namespace {

std::string HostOf(const std::string& address) {
  const size_t colon = address.rfind(':');
  return colon == std::string::npos ? address : address.substr(0, colon);
}

std::string ThisHost() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0 || !buf[0]) return "host";
  return buf;
}

}  // namespace

Result<PoolWorkerOptions> PoolWorkerOptions::FromConfig(const Config& cfg) {
  PoolWorkerOptions o;
  o.controller = cfg.GetString("worker.controller");
  if (o.controller.find(':') == std::string::npos)
    return InvalidArgument(
        "worker.controller must be host:port of the controller's HTTP API, not '" + o.controller +
        "' (" + cfg.Origin("worker.controller") + ")");
  // Replicas of one Deployment share a config: the host name (the pod's
  // name) tells them apart.
  // Names are at most 64 characters; a pod name's unique part is its end.
  const std::string prefix = cfg.GetString("node.name") + "-";
  std::string host = ThisHost();
  if (prefix.size() + host.size() > 64 && prefix.size() < 48)
    host = host.substr(host.size() - (64 - prefix.size()));
  o.name = prefix + host;
  DNND_ASSIGN_OR_RETURN(wire::Secrets secrets, wire::LoadSecrets(cfg));
  o.api_token = std::move(secrets.api_token);
  o.wire_key = std::move(secrets.wire_key);
  o.heartbeat = std::chrono::milliseconds(cfg.GetInt("worker.heartbeat_ms"));
  o.threads = cfg.GetInt("node.threads");
  o.scratch_dir = (fs::temp_directory_path() / ("dnnd-" + o.name)).string();
  DNND_ASSIGN_OR_RETURN(o.rpc, rpc::RpcClientOptions::FromConfig(cfg, "worker"));
  return o;
}

PoolWorker::PoolWorker(PoolWorkerOptions options) : options_(std::move(options)) {}

PoolWorker::~PoolWorker() {
  Stop();
  StopTask();
}

std::pair<bool, std::string> PoolWorker::Readiness() const {
  if (!registered_.load())
    return {false, "not registered with the controller at " + options_.controller + " yet"};
  return {true, ""};
}

void PoolWorker::Stop() {
  MutexLock lock(mu_);
  stop_ = true;
  cv_.NotifyAll();
}

Status PoolWorker::Run() {
  Log(LogLevel::kInfo, "pool", "joining the controller's pool",
      {{"controller", options_.controller}, {"name", options_.name}});
  int failures = 0;
  // After a finished task is reported, the next one (an elastic job's next
  // epoch, the queue's next job) is usually decided within a scheduler pass:
  // ask for it every kQuickBeat for a while rather than a whole period later.
  constexpr auto kQuickBeat = std::chrono::milliseconds(100);
  int quick_beats = 0;
  while (true) {
    {
      MutexLock lock(mu_);
      if (stop_) break;
    }
    auto order = Beat();
    if (!order.ok()) {
      // The controller may be restarting: keep the task running (its
      // parameter servers decide whether it can go on) and keep trying.
      if (failures++ % 10 == 0)
        Log(LogLevel::kWarn, "pool", "heartbeat failed",
            {{"controller", options_.controller}, {"error", order.status().ToString()}});
    } else {
      if (!registered_.exchange(true) || failures > 0)
        Log(LogLevel::kInfo, "pool", "registered", {{"controller", options_.controller}});
      failures = 0;
      switch (order->kind) {
        case pool::NodeOrder::Kind::kStop:
          RequestStopTask();
          break;
        case pool::NodeOrder::Kind::kRun:
          StopTask();  // a finished task the controller has now heard about
          StartTask(*order->task);
          quick_beats = 0;
          break;
        case pool::NodeOrder::Kind::kIdle: {
          std::shared_ptr<Current> c;
          {
            MutexLock lock(mu_);
            c = current_;
          }
          if (c) {
            MutexLock lock(c->mu);
            if (c->state == pool::TaskState::kRunning) break;
          }
          if (c) quick_beats = 20;  // 2 s of quick beats
          StopTask();               // finished, and reported
          break;
        }
        case pool::NodeOrder::Kind::kContinue:
          break;
      }
    }
    const auto period = quick_beats > 0
                            ? std::min<std::chrono::milliseconds>(kQuickBeat, options_.heartbeat)
                            : options_.heartbeat;
    if (quick_beats > 0) --quick_beats;
    MutexLock lock(mu_);
    cv_.WaitUntil(lock, std::chrono::steady_clock::now() + period,
                  [&]() REQUIRES(mu_) { return stop_ || wake_; });
    wake_ = false;
  }
  FlushEpochs(StopTask(kStopGrace));
  return Cancelled("pool worker stopped");
}

void PoolWorker::FlushEpochs(const std::shared_ptr<Current>& c) {
  if (!c) return;
  {
    MutexLock lock(c->mu);
    if (c->epochs_acked == c->epochs.size()) return;
  }
  // The epochs the task finished since the last heartbeat. Without them a
  // job resumed from a checkpoint past an epoch's end would never record
  // that epoch (its servers checkpoint when the controller stops, after this).
  auto order = Beat(c, /*final=*/true);
  if (!order.ok())
    Log(LogLevel::kWarn, "pool", "the last epochs' report did not reach the controller",
        {{"job", c->task.job}, {"error", order.status().ToString()}});
}

Result<pool::NodeOrder> PoolWorker::Beat() {
  std::shared_ptr<Current> c;
  {
    MutexLock lock(mu_);
    c = current_;
  }
  return Beat(c, /*final=*/false);
}

Result<pool::NodeOrder> PoolWorker::Beat(const std::shared_ptr<Current>& c, bool final) {
  pool::NodeReport report;
  report.threads = options_.threads;
  size_t sent = 0;
  if (c) {
    MutexLock lock(c->mu);
    report.job = c->task.job;
    report.attempt = c->task.attempt;
    // A node stopping reports no outcome for the task it stopped: it did
    // not fail, and the controller moves it when the node is lost.
    report.state = final ? pool::TaskState::kNone : c->state;
    report.error = c->error;
    report.step = c->step.load();
    report.total_steps = c->total.load();
    report.epochs.assign(c->epochs.begin() + static_cast<std::ptrdiff_t>(c->epochs_acked),
                         c->epochs.end());
    sent = c->epochs.size();
  }
  DNND_ASSIGN_OR_RETURN(
      HttpReply reply,
      HttpCall({.address = options_.controller,
                .method = "POST",
                .target = "/api/v1/nodes/" + options_.name + "/heartbeat",
                .body = json::serialize(ToJson(report)),
                .token = options_.api_token,
                .timeout = final ? std::chrono::seconds(5) : HttpCallOptions{}.timeout}));
  if (reply.status != 200)
    return Unavailable("the controller answered the heartbeat with HTTP " +
                       std::to_string(reply.status) + ": " + reply.body.substr(0, 300));
  boost::system::error_code ec;
  json::value v = json::parse(reply.body, ec);
  if (ec) return Corruption("the controller's heartbeat answer is not JSON: " + ec.message());
  DNND_ASSIGN_OR_RETURN(pool::NodeOrder order, pool::NodeOrderFromJson(v));
  if (c) {
    MutexLock lock(c->mu);
    c->epochs_acked = std::max(c->epochs_acked, sent);
  }
  return order;
}

void PoolWorker::StartTask(const pool::Task& task) {
  auto c = std::make_shared<Current>();
  c->task = task;
  Log(LogLevel::kInfo, "pool", "task",
      {{"job", task.job}, {"index", task.index}, {"count", task.count}, {"attempt", task.attempt}});
  c->thread = std::thread([this, c] {
    Status s = Status::Ok();
    try {
      rpc::CancelScope scope(c->rpc_cancel);
      s = RunTask(*c);
    } catch (const std::exception& e) {
      s = Internal(std::string("task failed: ") + e.what());
    }
    {
      MutexLock lock(c->mu);
      c->state = s.ok() ? pool::TaskState::kSucceeded : pool::TaskState::kFailed;
      c->error = s.ok() ? "" : s.ToString();
    }
    Log(s.ok() ? LogLevel::kInfo : LogLevel::kWarn, "pool", "task ended",
        {{"job", c->task.job}, {"index", c->task.index}, {"status", s.ToString()}});
    MutexLock lock(mu_);
    c->ended = true;
    wake_ = true;  // report it now, not at the next tick
    cv_.NotifyAll();
  });
  MutexLock lock(mu_);
  current_ = std::move(c);
}

void PoolWorker::RequestStopTask() {
  std::shared_ptr<Current> c;
  {
    MutexLock lock(mu_);
    c = current_;
  }
  if (!c) return;
  {
    MutexLock lock(c->mu);
    if (c->stop_requested || c->state != pool::TaskState::kRunning) return;
    Log(LogLevel::kInfo, "pool", "stopping the task on the controller's order",
        {{"job", c->task.job}});
    c->stop_requested = true;
    if (c->worker) c->worker->Stop();
  }
  // Not under c->mu: closing the clients runs their callbacks.
  c->rpc_cancel->Cancel();
}

std::shared_ptr<PoolWorker::Current> PoolWorker::StopTask(std::chrono::milliseconds grace) {
  std::shared_ptr<Current> c;
  {
    MutexLock lock(mu_);
    c = std::move(current_);
  }
  if (!c) return c;
  {
    MutexLock lock(c->mu);
    c->stop_requested = true;
    if (c->worker) c->worker->Stop();
  }
  if (grace.count() > 0) {
    // The step under way finishes and is reported before its calls are cut.
    MutexLock lock(mu_);
    cv_.WaitUntil(lock, std::chrono::steady_clock::now() + grace,
                  [&]() REQUIRES(mu_) { return c->ended.load(); });
  }
  c->rpc_cancel->Cancel();
  if (c->thread.joinable()) c->thread.join();
  return c;
}

Status PoolWorker::RunTask(Current& c) {
  const pool::Task& task = c.task;
  const std::string where =
      "job " + std::to_string(task.job) + " part " + std::to_string(task.index);
  const std::string scratch = options_.scratch_dir + "/job-" + std::to_string(task.job);
  // The node's own settings; the job's come typed, in task.spec and task.model.
  std::vector<std::string> overrides = {
      "transport.token=" + TomlQuote(options_.wire_key),
      "node.name=" + TomlQuote(options_.name),
      "worker.heartbeat_ms=" + std::to_string(std::max<int64_t>(100, options_.heartbeat.count())),
      "train.checkpoint_dir=" + TomlQuote(scratch),
      "worker.gradient_codec=" + TomlQuote(task.spec.gradient_codec),
      "train.progress=" + TomlQuote(options_.progress.empty() ? "none" : options_.progress)};
  DNND_ASSIGN_OR_RETURN(Config cfg, Config::FromString("", where, overrides));
  DNND_ASSIGN_OR_RETURN(ModelSpec model_spec, ParseModelSpecText(task.model, where + ": model"));
  task.spec.ApplyTo(model_spec);
  TrainOptions train_options = TrainOptionsFromConfig(cfg);
  task.spec.ApplyTo(train_options);
  if (!task.initial_weights.empty()) {  // an imported model's weights, from the controller
    DNND_ASSIGN_OR_RETURN(HttpReply got, HttpCall({.address = options_.controller,
                                                   .method = "GET",
                                                   .target = task.initial_weights,
                                                   .token = options_.api_token}));
    if (got.status != 200)
      return Unavailable(where + ": the controller answered " + task.initial_weights +
                         " with HTTP " + std::to_string(got.status));
    DNND_ASSIGN_OR_RETURN(SafetensorsFile weights,
                          DecodeSafetensors(got.body, task.initial_weights));
    nn::NamedTensors state;  // copies: the decoded tensors view the reply's body
    for (const auto& [name, t] : weights.tensors) state.emplace_back(name, t.clone());
    train_options.initial_state = std::make_shared<const nn::NamedTensors>(std::move(state));
    train_options.initial_from = "the controller's " + task.initial_weights;
  }
  // This part of the data (and, for the reporting part, the test set) from
  // the controller.
  rpc::RpcClientOptions rpc = options_.rpc;
  rpc.token = options_.wire_key;
  auto client = rpc::RpcClient::Create(
      HostOf(options_.controller) + ":" + std::to_string(task.wire_port), rpc);
  auto fetch = [&](pool::ShardRequest::Split split) -> Result<pool::ShardReply> {
    const bool test = split == pool::ShardRequest::Split::kTest;
    pool::ShardRequest q{task.dataset, split, task.index, task.count,
                         test ? task.spec.limit_test : task.spec.limit_train};
    auto r = client->Call(q.Encode(), std::chrono::minutes(5));
    if (!r.ok())
      return r.status().WithContext(std::string("fetching the ") + (test ? "test" : "train") +
                                    " data for " + where);
    return pool::ShardReply::Decode(*r);
  };
  DNND_ASSIGN_OR_RETURN(pool::ShardReply train_reply, fetch(pool::ShardRequest::Split::kTrain));
  if (!train_reply.set) return InvalidArgument(where + ": the controller sent no training data");
  data::Dataset train = std::move(*train_reply.set);
  std::optional<data::Dataset> test;
  if (task.index == 0) {
    DNND_ASSIGN_OR_RETURN(pool::ShardReply test_reply, fetch(pool::ShardRequest::Split::kTest));
    test = std::move(test_reply.set);
  }
  client->Close();

  TrainHooks hooks;
  hooks.on_step = [&c](int64_t step, int64_t total) {
    c.step = step;
    c.total = total;
  };
  hooks.on_epoch = [&c](const EpochRecord& e, int64_t step, int64_t total) {
    MutexLock lock(c.mu);
    c.epochs.push_back({e.epoch, e.train_loss, e.seconds, e.samples_per_s, e.evaluated, e.eval.loss,
                        e.eval.accuracy, step, total});
  };
  std::error_code ec;
  fs::remove_all(scratch, ec);  // a model from an earlier attempt is not this one's
  WorkerPlacement placement{task.index, task.count, {}};
  for (auto port : task.ps_ports)
    placement.parameter_servers.push_back(HostOf(options_.controller) + ":" + std::to_string(port));
  DNND_ASSIGN_OR_RETURN(
      auto worker,
      MakeWorkerWithData(cfg, std::move(model_spec), std::move(train_options), placement,
                         /*show_progress=*/task.index == 0, task.index == 0 ? hooks : TrainHooks{},
                         std::move(train), std::move(test)));
  Role* w = nullptr;
  {
    MutexLock lock(c.mu);
    if (c.stop_requested) return Cancelled("stopped before training");
    c.worker = std::move(worker);
    w = c.worker.get();
  }
  DNND_RETURN_IF_ERROR(w->Run());
  if (task.index != 0) return Status::Ok();
  // The reporting part hands the trained model to the controller.
  DNND_ASSIGN_OR_RETURN(std::string model, ReadFileToString(scratch + "/model.safetensors"));
  DNND_ASSIGN_OR_RETURN(HttpReply reply,
                        HttpCall({.address = options_.controller,
                                  .method = "PUT",
                                  .target = "/api/v1/jobs/" + std::to_string(task.job) +
                                            "/model?attempt=" + task.attempt,
                                  .body = std::move(model),
                                  .content_type = "application/octet-stream",
                                  .token = options_.api_token,
                                  .timeout = std::chrono::minutes(5)}));
  fs::remove_all(scratch, ec);
  if (reply.status / 100 != 2)
    return Unavailable("the controller refused the trained model: HTTP " +
                       std::to_string(reply.status) + " " + reply.body.substr(0, 300));
  return Status::Ok();
}

Result<std::unique_ptr<Role>> MakePoolWorkerRole(const Config& config) {
  DNND_ASSIGN_OR_RETURN(PoolWorkerOptions o, PoolWorkerOptions::FromConfig(config));
  return std::unique_ptr<Role>(new PoolWorker(std::move(o)));
}

}  // namespace dnnd
