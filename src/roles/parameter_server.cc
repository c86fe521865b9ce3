#include "roles/parameter_server.h"

#include <filesystem>
#include <functional>

#include "core/config.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/role.h"
#include "tensor/safetensors.h"

namespace dnnd {
namespace {

using rpc::RpcServer;

Counter& StalePushes() {
  static Counter& c = DefaultMetrics().Counter("dnnd_ps_stale_pushes_total",
                                               "async pushes rejected for exceeding the staleness bound");
  return c;
}
Gauge& VersionGauge() {
  static Gauge& g = DefaultMetrics().Gauge("dnnd_ps_version", "optimizer steps applied by this parameter server");
  return g;
}
Counter& Pushes(bool applied) {
  static Counter& yes = DefaultMetrics().Counter("dnnd_ps_pushes_total", "pushes received, by whether they were applied", {{"applied", "true"}});
  static Counter& no = DefaultMetrics().Counter("dnnd_ps_pushes_total", "pushes received, by whether they were applied", {{"applied", "false"}});
  return applied ? yes : no;
}
Counter& Pulls() {
  static Counter& c = DefaultMetrics().Counter("dnnd_ps_pulls_total", "weight pulls served");
  return c;
}
Histogram& BarrierWait() {
  static Histogram& h = DefaultMetrics().Histogram(
      "dnnd_ps_barrier_wait_seconds", "time a sync/kavg push waited for the other workers", {},
      {0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10});
  return h;
}
Gauge& LiveWorkersGauge() {
  static Gauge& g = DefaultMetrics().Gauge("dnnd_ps_live_workers", "workers in the step barrier");
  return g;
}

std::string SpecFingerprint(const std::string& spec, uint64_t seed) {
  return std::to_string(std::hash<std::string>{}(spec)) + "/" + std::to_string(seed);
}

}  // namespace

ParameterServerOptions ParameterServerOptions::FromConfig(const Config& c) {
  ParameterServerOptions o;
  o.index = static_cast<int>(c.GetInt("ps.index"));
  o.servers = static_cast<int>(c.GetInt("ps.servers"));
  o.mode = c.GetString("ps.mode");
  o.workers = c.GetInt("ps.workers");
  o.staleness = c.GetInt("ps.staleness");
  o.kavg_steps = c.GetInt("ps.kavg_steps");
  o.heartbeat_timeout = std::chrono::milliseconds(c.GetInt("ps.heartbeat_timeout_ms"));
  o.checkpoint_dir = c.GetString("ps.checkpoint_dir");
  o.resume = c.GetBool("ps.resume");
  o.checkpoint_every_steps = c.GetInt("ps.checkpoint_every_steps");
  return o;
}

ParameterServer::ParameterServer(ParameterServerOptions options, rpc::RpcServerOptions rpc)
    : options_(std::move(options)), server_(std::move(rpc)) {
  server_.Handle(ps::kInit, "ps_init",
                 RpcServer::SimpleHandler([this](const wire::Message& m, const rpc::PeerInfo&) { return HandleInit(m); }));
  server_.Handle(ps::kPush, "ps_push",
                 RpcServer::Handler([this](wire::Message m, rpc::Responder r) { HandlePush(std::move(m), std::move(r)); }));
  server_.Handle(ps::kPull, "ps_pull",
                 RpcServer::SimpleHandler([this](const wire::Message& m, const rpc::PeerInfo&) { return HandlePull(m); }));
  server_.Handle(ps::kHeartbeat, "ps_heartbeat",
                 RpcServer::SimpleHandler([this](const wire::Message& m, const rpc::PeerInfo&) {
                   return HandleHeartbeat(m, false);
                 }),
                 RpcServer::Execution::kInline);
  server_.Handle(ps::kLeave, "ps_leave", RpcServer::SimpleHandler([this](const wire::Message& m, const rpc::PeerInfo&) {
                   return HandleHeartbeat(m, true);
                 }));
  server_.Handle(ps::kStats, "ps_stats",
                 RpcServer::SimpleHandler([this](const wire::Message&, const rpc::PeerInfo&) { return HandleStats(); }),
                 RpcServer::Execution::kInline);
}

ParameterServer::~ParameterServer() { Stop(); }

Status ParameterServer::Start() {
  if (!options_.checkpoint_dir.empty() && options_.resume) DNND_RETURN_IF_ERROR(RestoreFromCheckpoint());
  DNND_RETURN_IF_ERROR(server_.Start());
  monitor_ = std::thread([this] { MonitorHeartbeats(); });
  return Status::Ok();
}

void ParameterServer::Stop() {
  if (stopping_.exchange(true)) return;
  {
    std::lock_guard lock(monitor_mu_);
    monitor_cv_.notify_all();
  }
  if (monitor_.joinable()) monitor_.join();
  {
    std::lock_guard lock(mu_);
    for (auto& [id, p] : pending_) p.responder.Fail(Unavailable("parameter server is stopping"));
    pending_.clear();
    if (initialized_) {
      Status s = CheckpointLocked();
      if (!s.ok()) Log(LogLevel::kError, "ps", "final checkpoint failed", {{"error", s.ToString()}});
    }
  }
  server_.Stop();
}

std::pair<bool, std::string> ParameterServer::Readiness() const {
  std::lock_guard lock(mu_);
  if (!initialized_) return {false, "waiting for a worker to initialise the model"};
  return {true, ""};
}

int64_t ParameterServer::version() const {
  std::lock_guard lock(mu_);
  return version_;
}

// ---------------------------------------------------------------------------
// Model state
// ---------------------------------------------------------------------------

Status ParameterServer::InitLocked(const std::string& spec_text, uint64_t seed) {
  DNND_ASSIGN_OR_RETURN(ModelSpec spec, ParseModelSpecText(spec_text, "model spec from a worker"));
  // Building the whole model with the job's seed gives every server the same
  // initial values a local run would have; each keeps only its pieces.
  DNND_ASSIGN_OR_RETURN(auto model, BuildModel(spec, seed));
  const nn::NamedTensors all = model->NamedParameters();
  std::vector<std::pair<std::string, Shape>> shapes;
  for (const auto& [name, t] : all) shapes.emplace_back(name, t.shape());
  ps::Partition partition = ps::PartitionParameters(shapes, options_.servers);
  pieces_ = partition.pieces[options_.index];
  params_.clear();
  for (const ps::ShardPiece& piece : pieces_) {
    const Tensor* src = nullptr;
    for (const auto& [name, t] : all)
      if (name == piece.param) src = &t;
    Tensor t = Tensor::Empty({piece.length});
    std::memcpy(t.data(), src->data() + piece.offset, static_cast<size_t>(piece.length) * sizeof(float));
    t.set_requires_grad(true);
    params_.emplace_back(piece.key(), t);
  }
  DNND_ASSIGN_OR_RETURN(optimizer_, optim::MakeOptimizer(spec.optimizer, params_));
  spec_text_ = spec_text;
  seed_ = seed;
  initialized_ = true;
  int64_t elements = 0;
  for (const auto& p : pieces_) elements += p.length;
  Log(LogLevel::kInfo, "ps", "model initialised",
      {{"server", options_.index}, {"pieces", static_cast<int64_t>(pieces_.size())},
       {"parameters", elements}, {"mode", options_.mode}});
  return Status::Ok();
}

Result<wire::Message> ParameterServer::HandleInit(const wire::Message& request) {
  DNND_ASSIGN_OR_RETURN(std::string spec, request.fields.GetString("spec"));
  DNND_ASSIGN_OR_RETURN(int64_t seed, request.fields.GetInt("seed"));
  DNND_ASSIGN_OR_RETURN(int64_t servers, request.fields.GetInt("servers"));
  DNND_ASSIGN_OR_RETURN(int64_t index, request.fields.GetInt("index"));
  const int64_t worker = request.fields.IntOr("worker", -1);
  if (servers != options_.servers || index != options_.index)
    return InvalidArgument("this is parameter server " + std::to_string(options_.index) + " of " +
                           std::to_string(options_.servers) + ", the worker expects server " + std::to_string(index) +
                           " of " + std::to_string(servers) + " (check worker.parameter_servers and ps.servers)");
  std::lock_guard lock(mu_);
  if (!initialized_) {
    DNND_RETURN_IF_ERROR(InitLocked(spec, static_cast<uint64_t>(seed)));
  } else if (SpecFingerprint(spec, seed) != SpecFingerprint(spec_text_, seed_)) {
    // Idempotent for the same job; a different model or seed is a mistake.
    return InvalidArgument("parameter server " + std::to_string(options_.index) +
                           " already holds a different model or seed; restart it with an empty ps.checkpoint_dir "
                           "to train a new one");
  }
  wire::Message r;
  r.fields.SetString("mode", options_.mode);
  r.fields.SetInt("kavg_steps", options_.kavg_steps);
  r.fields.SetInt("version", version_);
  auto it = workers_.find(worker);
  r.fields.SetInt("worker_step", it == workers_.end() ? (options_.mode == "sync" ? version_ : 0) : it->second.step);
  return r;
}

Result<std::vector<Tensor>> ParameterServer::PieceTensors(const wire::Message& request) const {
  if (request.tensors.size() != pieces_.size())
    return InvalidArgument("push carries " + std::to_string(request.tensors.size()) + " tensors, server " +
                           std::to_string(options_.index) + " holds " + std::to_string(pieces_.size()) + " pieces");
  std::vector<Tensor> out;
  out.reserve(pieces_.size());
  for (size_t i = 0; i < pieces_.size(); ++i) {
    const wire::WireTensor& t = request.tensors[i];
    if (t.name != pieces_[i].key() || t.shape != Shape{pieces_[i].length})
      return InvalidArgument("push tensor " + std::to_string(i) + " is '" + t.name + "' " + ShapeToString(t.shape) +
                             ", expected '" + pieces_[i].key() + "' [" + std::to_string(pieces_[i].length) + "]");
    DNND_ASSIGN_OR_RETURN(Tensor x, t.ToTensor());
    out.push_back(std::move(x));
  }
  return out;
}

void ParameterServer::Touch(int64_t worker, bool live) {
  Worker& w = workers_[worker];
  w.last_seen = Clock::now();
  if (live && !w.live) {
    w.live = true;
    Log(LogLevel::kInfo, "ps", "worker joined", {{"server", options_.index}, {"worker", worker}, {"version", version_}});
  }
  int64_t n = 0;
  for (const auto& [id, x] : workers_) n += x.live;
  LiveWorkersGauge().Set(static_cast<double>(n));
}

wire::Message ParameterServer::WeightsLocked(bool applied) const {
  wire::Message r;
  r.fields.SetInt("version", version_);
  r.fields.SetInt("applied", applied ? 1 : 0);
  // A copy: the pieces change with the next step while this response may
  // still be on its way out.
  for (const auto& [key, t] : params_) r.tensors.push_back(wire::WireTensor::FromTensor(key, t.detach().clone()));
  return r;
}

void ParameterServer::ApplyLocked(const std::vector<std::vector<Tensor>*>& contributions, float lr) {
  const float scale = 1.0f / static_cast<float>(contributions.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor& p = params_[i].second;
    const int64_t n = p.numel();
    Tensor sum = Tensor::Zeros({n});
    float* s = sum.data();
    for (const auto* c : contributions) {  // in worker-id order: reproducible sums
      const float* g = (*c)[i].data();
      for (int64_t k = 0; k < n; ++k) s[k] += g[k];
    }
    for (int64_t k = 0; k < n; ++k) s[k] *= scale;
    if (options_.mode == "kavg") {
      p.CopyFrom(sum);  // the average of the workers' weights
    } else {
      p.set_grad(sum);
    }
  }
  if (options_.mode != "kavg") {
    optimizer_->set_lr(lr);
    optimizer_->Step();
    optimizer_->ZeroGrad();
  }
  ++version_;
  VersionGauge().Set(static_cast<double>(version_));
  if (options_.checkpoint_every_steps > 0 && version_ % options_.checkpoint_every_steps == 0) {
    Status s = CheckpointLocked();
    if (!s.ok()) Log(LogLevel::kError, "ps", "checkpoint failed", {{"error", s.ToString()}});
  }
}

void ParameterServer::HandlePush(wire::Message request, rpc::Responder responder) {
  auto fail = [&](const Status& s) { responder.Fail(s); };
  auto worker = request.fields.GetInt("worker");
  auto version = request.fields.GetInt("version");
  auto step = request.fields.GetInt("step");
  auto lr = request.fields.GetFloat("lr");
  if (!worker.ok()) return fail(worker.status());
  if (!version.ok()) return fail(version.status());
  if (!step.ok()) return fail(step.status());
  if (!lr.ok() && options_.mode != "kavg") return fail(lr.status());
  std::lock_guard lock(mu_);
  if (!initialized_) return fail(Unavailable("parameter server " + std::to_string(options_.index) + " is not initialised; send init first"));
  auto tensors = PieceTensors(request);
  if (!tensors.ok()) return fail(tensors.status());
  Touch(worker.value(), true);
  workers_[worker.value()].step = step.value();

  if (options_.mode == "async") {
    if (version_ - version.value() > options_.staleness) {
      StalePushes().Inc();
      Pushes(false).Inc();
      responder.Send(WeightsLocked(false));  // recompute on fresh weights
      return;
    }
    const auto start = Clock::now();
    std::vector<std::vector<Tensor>*> one = {&tensors.value()};
    ApplyLocked(one, static_cast<float>(lr.value()));
    Pushes(true).Inc();
    wire::Message answer = WeightsLocked(true);
    answer.fields.SetFloat("server_s", std::chrono::duration<double>(Clock::now() - start).count());
    responder.Send(std::move(answer));
    return;
  }
  // sync and kavg: a push for another version (a worker that rejoined, or
  // one that was dropped mid-step) gets the current weights to resync.
  if (version.value() != version_) {
    Pushes(false).Inc();
    responder.Send(WeightsLocked(false));
    return;
  }
  if (lr.ok()) step_lr_ = static_cast<float>(lr.value());
  pending_.erase(worker.value());  // a retried push replaces the first
  if (pending_.empty()) waiting_since_ = Clock::now();
  pending_.emplace(worker.value(), PendingPush{std::move(tensors).value(), std::move(responder)});
  MaybeCompleteStepLocked();
}

void ParameterServer::MaybeCompleteStepLocked() {
  int64_t live = 0;
  for (const auto& [id, w] : workers_) {
    if (!w.live) continue;
    ++live;
    if (!pending_.count(id)) return;  // still waiting for this one
  }
  // Until the job has its full complement, a step waits for late starters;
  // once a worker has dropped out, the survivors go on without it.
  if (live == 0 || (live < options_.workers && dropped_ == 0 && !short_handed_)) return;
  std::vector<std::vector<Tensor>*> contributions;
  for (auto& [id, p] : pending_)
    if (workers_[id].live) contributions.push_back(&p.tensors);  // std::map: worker-id order
  const auto complete = Clock::now();
  ApplyLocked(contributions, step_lr_);
  const wire::Message weights = WeightsLocked(true);
  // Workers split their step time with these: how long each push waited for
  // the others, and how long the server then computed.
  const double applied = std::chrono::duration<double>(Clock::now() - complete).count();
  for (auto& [id, p] : pending_) {
    const double waited = std::chrono::duration<double>(complete - p.arrived).count();
    BarrierWait().Observe(waited);
    Pushes(true).Inc();
    wire::Message answer = weights;
    answer.fields.SetFloat("waited_s", waited);
    answer.fields.SetFloat("server_s", applied);
    p.responder.Send(std::move(answer));
  }
  pending_.clear();
}

Result<wire::Message> ParameterServer::HandlePull(const wire::Message& request) {
  Pulls().Inc();
  std::lock_guard lock(mu_);
  if (!initialized_) return Unavailable("parameter server " + std::to_string(options_.index) + " is not initialised");
  if (request.fields.Has("worker")) Touch(request.fields.IntOr("worker", 0), false);
  if (request.fields.IntOr("if_newer_than", -1) >= version_) {
    wire::Message r;  // the worker is current: no tensors
    r.fields.SetInt("version", version_);
    r.fields.SetInt("applied", 0);
    return r;
  }
  return WeightsLocked(false);
}

Result<wire::Message> ParameterServer::HandleHeartbeat(const wire::Message& request, bool leaving) {
  DNND_ASSIGN_OR_RETURN(int64_t worker, request.fields.GetInt("worker"));
  std::lock_guard lock(mu_);
  if (leaving) {
    auto it = workers_.find(worker);
    if (it != workers_.end() && it->second.live) {
      it->second.live = false;
      ++dropped_;
      pending_.erase(worker);
      Log(LogLevel::kInfo, "ps", "worker finished", {{"server", options_.index}, {"worker", worker}});
      MaybeCompleteStepLocked();
    }
  } else {
    Touch(worker, true);
  }
  wire::Message r;
  r.fields.SetInt("version", version_);
  return r;
}

Result<wire::Message> ParameterServer::HandleStats() {
  std::lock_guard lock(mu_);
  wire::Message r;
  r.fields.SetInt("version", version_);
  r.fields.SetInt("initialized", initialized_);
  int64_t live = 0;
  for (const auto& [id, w] : workers_) live += w.live;
  r.fields.SetInt("live_workers", live);
  r.fields.SetInt("dropped_workers", dropped_);
  r.fields.SetString("mode", options_.mode);
  return r;
}

void ParameterServer::MonitorHeartbeats() {
  std::unique_lock wait_lock(monitor_mu_);
  while (!stopping_) {
    monitor_cv_.wait_for(wait_lock, std::chrono::milliseconds(100));
    std::lock_guard lock(mu_);
    const auto now = Clock::now();
    bool changed = false;
    for (auto& [id, w] : workers_) {
      if (w.live && now - w.last_seen > options_.heartbeat_timeout) {
        w.live = false;
        ++dropped_;
        changed = true;
        Log(LogLevel::kWarn, "ps", "worker missed its heartbeats; dropped from the barrier",
            {{"server", options_.index}, {"worker", id}, {"version", version_}});
      }
    }
    // A worker that never (re)joins, e.g. after this server restarted, must
    // not hold the others forever either.
    if (!changed && !pending_.empty() && dropped_ == 0 && !short_handed_ &&
        now - waiting_since_ > options_.heartbeat_timeout) {
      int64_t live = 0;
      for (const auto& [id, w] : workers_) live += w.live;
      if (live < options_.workers) {
        short_handed_ = true;
        Log(LogLevel::kWarn, "ps", "going on without workers that have not joined",
            {{"server", options_.index}, {"live", live}, {"expected", options_.workers}, {"version", version_}});
        MaybeCompleteStepLocked();
      }
    }
    if (changed) {
      int64_t live = 0;
      for (const auto& [id, w] : workers_) live += w.live;
      LiveWorkersGauge().Set(static_cast<double>(live));
      // Its pending push (if any) no longer counts; the rest may now be complete.
      for (auto it = pending_.begin(); it != pending_.end();) {
        if (!workers_[it->first].live) {
          it->second.responder.Fail(Unavailable("dropped from the barrier after missing heartbeats"));
          it = pending_.erase(it);
        } else {
          ++it;
        }
      }
      MaybeCompleteStepLocked();
    }
  }
}

// ---------------------------------------------------------------------------
// Checkpoints: <dir>/ps-<index>.safetensors holds the pieces and, under
// "optimizer/", the optimizer state, written atomically as ONE file: a crash
// at any moment leaves either the previous checkpoint or the new one, never a
// model and an optimizer from different versions.
// ---------------------------------------------------------------------------

namespace {
constexpr std::string_view kOptimizerPrefix = "optimizer/";
}  // namespace

Status ParameterServer::CheckpointLocked() {
  if (options_.checkpoint_dir.empty() || last_checkpoint_version_ == version_) return Status::Ok();
  std::error_code ec;
  std::filesystem::create_directories(options_.checkpoint_dir, ec);
  const std::string path = options_.checkpoint_dir + "/ps-" + std::to_string(options_.index) + ".safetensors";
  nn::NamedTensors tensors = params_;
  for (auto& [name, t] : optimizer_->State()) tensors.emplace_back(std::string(kOptimizerPrefix) + name, t);
  std::map<std::string, std::string> meta = {{"dnnd.version", std::to_string(version_)},
                                             {"dnnd.seed", std::to_string(seed_)},
                                             {"dnnd.servers", std::to_string(options_.servers)},
                                             {"dnnd.index", std::to_string(options_.index)},
                                             {"dnnd.model_spec", spec_text_}};
  DNND_RETURN_IF_ERROR(SaveSafetensors(path, tensors, meta));
  last_checkpoint_version_ = version_;
  return Status::Ok();
}

Status ParameterServer::RestoreFromCheckpoint() {
  const std::string path = options_.checkpoint_dir + "/ps-" + std::to_string(options_.index) + ".safetensors";
  if (!std::filesystem::exists(path)) return Status::Ok();
  DNND_ASSIGN_OR_RETURN(SafetensorsFile file, LoadSafetensors(path));
  auto meta = [&](const std::string& key) -> std::string {
    auto it = file.metadata.find(key);
    return it == file.metadata.end() ? "" : it->second;
  };
  if (meta("dnnd.servers") != std::to_string(options_.servers))
    return InvalidArgument(path + " was written by a job with " + meta("dnnd.servers") + " servers; this one has " +
                           std::to_string(options_.servers));
  nn::NamedTensors optimizer_state;
  std::map<std::string, const Tensor*> pieces;
  for (const auto& [name, t] : file.tensors) {
    if (name.rfind(kOptimizerPrefix, 0) == 0) optimizer_state.emplace_back(name.substr(kOptimizerPrefix.size()), t);
    else pieces[name] = &t;
  }
  std::lock_guard lock(mu_);
  DNND_RETURN_IF_ERROR(InitLocked(meta("dnnd.model_spec"), std::stoull(meta("dnnd.seed"))));
  for (auto& [key, t] : params_) {
    auto it = pieces.find(key);
    if (it == pieces.end() || it->second->shape() != t.shape())
      return Corruption(path + ": piece '" + key + "' missing or mis-shaped");
    t.detach().CopyFrom(*it->second);
  }
  DNND_RETURN_IF_ERROR(optimizer_->LoadState(optimizer_state).WithContext(path));
  version_ = std::stoll(meta("dnnd.version"));
  last_checkpoint_version_ = version_;
  VersionGauge().Set(static_cast<double>(version_));
  Log(LogLevel::kInfo, "ps", "resumed from checkpoint", {{"server", options_.index}, {"version", version_}});
  return Status::Ok();
}

// ---------------------------------------------------------------------------
// Role
// ---------------------------------------------------------------------------

namespace {

class ParameterServerRole : public Role {
 public:
  explicit ParameterServerRole(std::unique_ptr<ParameterServer> ps) : ps_(std::move(ps)) {}
  Status Run() override {
    DNND_RETURN_IF_ERROR(ps_->Start());
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return stop_; });
    ps_->Stop();
    return Status(StatusCode::kCancelled, "stopped at version " + std::to_string(ps_->version()));
  }
  void Stop() override {
    std::lock_guard lock(mu_);
    stop_ = true;
    cv_.notify_all();
  }
  std::pair<bool, std::string> Readiness() const override { return ps_->Readiness(); }

 private:
  std::unique_ptr<ParameterServer> ps_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
};

}  // namespace

Result<std::unique_ptr<Role>> MakeParameterServerRole(const Config& config) {
  ParameterServerOptions options = ParameterServerOptions::FromConfig(config);
  if (options.index >= options.servers)
    return InvalidArgument("ps.index " + std::to_string(options.index) + " is not below ps.servers " +
                           std::to_string(options.servers));
  DNND_ASSIGN_OR_RETURN(auto rpc, rpc::RpcServerOptions::FromConfig(config, config.GetString("ps.listen"),
                                                                     "parameter-server"));
  return std::unique_ptr<Role>(
      new ParameterServerRole(std::make_unique<ParameterServer>(std::move(options), std::move(rpc))));
}

}  // namespace dnnd
