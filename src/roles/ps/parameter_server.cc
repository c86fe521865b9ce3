#include "roles/ps/parameter_server.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <optional>

#include "core/config.h"
#include "core/files.h"
#include "core/log.h"
#include "core/metrics.h"
#include "roles/base/role.h"
#include "roles/ps/messages.h"
#include "tensor/safetensors.h"
#include "transport/hello.h"

namespace dnnd {
namespace {

using rpc::RpcServer;

Counter& StalePushes() {
  static Counter& c = DefaultMetrics().Counter(
      "dnnd_ps_stale_pushes_total", "async pushes rejected for exceeding the staleness bound");
  return c;
}
Gauge& VersionGauge() {
  static Gauge& g =
      DefaultMetrics().Gauge("dnnd_ps_version", "optimizer steps applied by this parameter server");
  return g;
}
Counter& Pushes(bool applied) {
  static Counter& yes = DefaultMetrics().Counter("dnnd_ps_pushes_total",
                                                 "pushes received, by whether they were applied",
                                                 {{"applied", "true"}});
  static Counter& no = DefaultMetrics().Counter("dnnd_ps_pushes_total",
                                                "pushes received, by whether they were applied",
                                                {{"applied", "false"}});
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

// Requests refused before they could touch the server's state, by reason:
// unknown_worker (no session, or not the one issued), beyond_workers (a rank
// >= ps.workers), rank_held (a rank a live worker holds), non_finite.
Counter& Refused(const char* reason) {
  return DefaultMetrics().Counter(
      "dnnd_ps_refused_total",
      "requests refused before touching the state: unknown worker or session, rank beyond "
      "ps.workers, rank held by a live worker, non-finite values",
      {{"reason", reason}});
}

// The first non-finite value of a push (its lr, then each piece's tensor),
// as an error naming where it is; Ok if all are finite.
Status CheckFinite(const std::vector<Tensor>& tensors, const std::vector<ps::ShardPiece>& pieces,
                   std::optional<float> lr, const std::string& who) {
  if (lr && !std::isfinite(*lr))
    return InvalidArgument(who + " carries a non-finite learning rate (" + std::to_string(*lr) +
                           "); refused");
  for (size_t i = 0; i < tensors.size(); ++i) {
    const float* v = tensors[i].data();
    const int64_t n = tensors[i].numel();
    bool bad = false;
    for (int64_t k = 0; k < n; ++k) bad |= !std::isfinite(v[k]);  // no early exit: vectorises
    if (!bad) continue;
    int64_t k = 0;
    while (std::isfinite(v[k])) ++k;
    return InvalidArgument(
        who + " carries a non-finite value (" + std::to_string(v[k]) + ") at element " +
        std::to_string(k) + " of '" + pieces[i].key() +
        "'; refused, the step is unchanged (a diverged worker: lower the learning rate)");
  }
  return Status::Ok();
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
  o.chunks = static_cast<int>(c.GetInt("ps.chunks"));
  return o;
}

// ---------------------------------------------------------------------------
// Chunk: the state machine of one range of parameters. Membership is kept per
// chunk (every chunk hears every heartbeat), so a chunk decides its barrier
// under its own lock alone; only chunk 0 logs membership changes and sets the
// server-wide gauges, so the log reads the same for any chunk count.
// ---------------------------------------------------------------------------

class ParameterServer::Chunk {
 public:
  Chunk(const ParameterServerOptions& options, int chunk, std::string checkpoint_path)
      : options_(options),
        chunk_(chunk),
        loud_(chunk == 0),
        checkpoint_path_(std::move(checkpoint_path)) {}

  // Takes this chunk's pieces from the freshly built model `all`.
  Status Init(const std::vector<ps::ShardPiece>& pieces, const nn::NamedTensors& all,
              const ModelSpec& spec, const std::string& spec_text, uint64_t seed);
  void Push(const ps::PushRequest& push, rpc::Responder responder);
  wire::Message Pull(std::optional<int64_t> worker, int64_t if_newer_than);
  void Heartbeat(int64_t worker, bool leaving);
  // Drops workers whose heartbeats stopped; goes on short-handed if the job's
  // workers never all came.
  void Tick(Clock::time_point now);
  // Answers waiting pushes with `why`.
  void FailPending(const Status& why);
  Status Checkpoint();
  // Restores pieces, optimizer state and version from `file` (already
  // checked to belong to this job).
  Status Restore(const SafetensorsFile& file);

  int64_t version() const;
  // The step `worker` last completed (what a restarted worker resumes from).
  int64_t WorkerStep(int64_t worker) const;
  std::pair<int64_t, int64_t> LiveAndDropped() const;

 private:
  struct Worker {
    Clock::time_point last_seen;
    bool live = false;
    int64_t step = 0;  // the last step this worker completed
  };
  struct PendingPush {
    std::vector<Tensor> tensors;  // gradients (sync) or weights (kavg), one per piece
    rpc::Responder responder;
    Clock::time_point arrived = Clock::now();
  };

  void TouchLocked(int64_t worker, bool live) REQUIRES(mu_);
  int64_t LiveLocked() const REQUIRES(mu_);
  void MaybeCompleteStepLocked() REQUIRES(mu_);
  void ApplyLocked(const std::vector<std::vector<Tensor>*>& contributions, float lr) REQUIRES(mu_);
  ps::WeightsReply WeightsLocked(bool applied) const REQUIRES(mu_);
  Status CheckpointLocked() REQUIRES(mu_);

  const ParameterServerOptions& options_;
  const int chunk_;
  const bool loud_;
  const std::string checkpoint_path_;  // empty: no checkpoints

  // Guards all the chunk's state below; taken after ParameterServer::init_mu_
  // (Init), never together with another chunk's or Members::mu_, and held
  // while answering pushes (the connection's write lock comes after it).
  mutable Mutex mu_;
  std::string spec_text_ GUARDED_BY(mu_);
  uint64_t seed_ GUARDED_BY(mu_) = 0;
  std::vector<ps::ShardPiece> pieces_ GUARDED_BY(mu_);
  nn::NamedTensors params_ GUARDED_BY(mu_);  // one 1-D tensor per piece, named by key
  std::unique_ptr<optim::Optimizer> optimizer_ GUARDED_BY(mu_);
  int64_t version_ GUARDED_BY(mu_) = 0;
  float step_lr_ GUARDED_BY(mu_) = 0;
  std::map<int64_t, Worker> workers_ GUARDED_BY(mu_);
  int64_t dropped_ GUARDED_BY(mu_) = 0;  // workers that left or timed out
  // sync/kavg pushes for version_
  std::map<int64_t, PendingPush> pending_ GUARDED_BY(mu_);
  // when the first of pending_ arrived
  Clock::time_point waiting_since_ GUARDED_BY(mu_){};
  // going on without workers that never came
  bool short_handed_ GUARDED_BY(mu_) = false;
  int64_t last_checkpoint_version_ GUARDED_BY(mu_) = -1;
};

Status ParameterServer::Chunk::Init(const std::vector<ps::ShardPiece>& pieces,
                                    const nn::NamedTensors& all, const ModelSpec& spec,
                                    const std::string& spec_text, uint64_t seed) {
  MutexLock lock(mu_);
  pieces_ = pieces;
  params_.clear();
  for (const ps::ShardPiece& piece : pieces_) {
    const Tensor* src = nullptr;
    for (const auto& [name, t] : all)
      if (name == piece.param) src = &t;
    Tensor t = Tensor::Empty({piece.length});
    std::memcpy(t.data(), src->data() + piece.offset,
                static_cast<size_t>(piece.length) * sizeof(float));
    t.set_requires_grad(true);
    params_.emplace_back(piece.key(), t);
  }
  DNND_ASSIGN_OR_RETURN(optimizer_, optim::MakeOptimizer(spec.optimizer, params_));
  spec_text_ = spec_text;
  seed_ = seed;
  return Status::Ok();
}

int64_t ParameterServer::Chunk::LiveLocked() const {
  int64_t n = 0;
  for (const auto& [id, w] : workers_) n += w.live;
  return n;
}

void ParameterServer::Chunk::TouchLocked(int64_t worker, bool live) {
  Worker& w = workers_[worker];
  w.last_seen = Clock::now();
  if (live && !w.live) {
    w.live = true;
    if (loud_)
      Log(LogLevel::kInfo, "ps", "worker joined",
          {{"server", options_.index}, {"worker", worker}, {"version", version_}});
  }
  if (loud_) LiveWorkersGauge().Set(static_cast<double>(LiveLocked()));
}

ps::WeightsReply ParameterServer::Chunk::WeightsLocked(bool applied) const {
  ps::WeightsReply r{.version = version_, .applied = applied};
  // A copy: the pieces change with the next step while this response may
  // still be on its way out.
  for (const auto& [key, t] : params_)
    r.tensors.push_back(wire::WireTensor::FromTensor(key, t.detach().clone()));
  return r;
}

void ParameterServer::Chunk::ApplyLocked(const std::vector<std::vector<Tensor>*>& contributions,
                                         float lr) {
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
  if (loud_) VersionGauge().Set(static_cast<double>(version_));
  if (options_.checkpoint_every_steps > 0 && version_ % options_.checkpoint_every_steps == 0) {
    Status s = CheckpointLocked();
    if (!s.ok()) Log(LogLevel::kError, "ps", "checkpoint failed", {{"error", s.ToString()}});
  }
}

void ParameterServer::Chunk::Push(const ps::PushRequest& push, rpc::Responder responder) {
  const int64_t worker = push.member.worker, version = push.version, step = push.step;
  const std::optional<float> lr =
      push.lr ? std::optional<float>(static_cast<float>(*push.lr)) : std::nullopt;
  const std::string who = "push from worker " + std::to_string(worker) + " for step " +
                          std::to_string(step) + " (server " + std::to_string(options_.index) +
                          " chunk " + std::to_string(chunk_) + ")";
  MutexLock lock(mu_);
  auto tensors = ps::PieceTensors(push.tensors, pieces_, who);
  if (!tensors.ok()) return responder.Fail(tensors.status());
  // Before anything changes: a bad push leaves the step as it was.
  if (Status finite = CheckFinite(tensors.value(), pieces_, lr, who); !finite.ok()) {
    Refused("non_finite").Inc();
    return responder.Fail(finite);
  }
  TouchLocked(worker, true);
  workers_[worker].step = step;

  if (options_.mode == "async") {
    if (version_ - version > options_.staleness) {
      StalePushes().Inc();
      Pushes(false).Inc();
      responder.Send(WeightsLocked(false).Encode());  // recompute on fresh weights
      return;
    }
    const auto start = Clock::now();
    std::vector<std::vector<Tensor>*> one = {&tensors.value()};
    ApplyLocked(one, lr.value_or(step_lr_));
    Pushes(true).Inc();
    ps::WeightsReply answer = WeightsLocked(true);
    answer.server_s = std::chrono::duration<double>(Clock::now() - start).count();
    responder.Send(answer.Encode());
    return;
  }
  // sync and kavg: a push for another version (a worker that rejoined, or
  // one that was dropped mid-step) gets the current weights to resync.
  if (version != version_) {
    Pushes(false).Inc();
    responder.Send(WeightsLocked(false).Encode());
    return;
  }
  if (lr) step_lr_ = *lr;
  pending_.erase(worker);  // a retried push replaces the first
  if (pending_.empty()) waiting_since_ = Clock::now();
  pending_.emplace(worker, PendingPush{std::move(tensors).value(), std::move(responder)});
  MaybeCompleteStepLocked();
}

void ParameterServer::Chunk::MaybeCompleteStepLocked() {
  mu_.AssertHeld();
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
  ps::WeightsReply answer = WeightsLocked(true);
  // Workers split their step time with these: how long each push waited for
  // the others, and how long the server then computed.
  const double applied = std::chrono::duration<double>(Clock::now() - complete).count();
  for (auto& [id, p] : pending_) {
    const double waited = std::chrono::duration<double>(complete - p.arrived).count();
    if (loud_) BarrierWait().Observe(waited);
    Pushes(true).Inc();
    answer.waited_s = waited;
    answer.server_s = applied;
    p.responder.Send(answer.Encode());
  }
  pending_.clear();
}

wire::Message ParameterServer::Chunk::Pull(std::optional<int64_t> worker, int64_t if_newer_than) {
  MutexLock lock(mu_);
  if (worker) TouchLocked(*worker, false);
  // The worker is current: no tensors.
  if (if_newer_than >= version_) return ps::WeightsReply{.version = version_}.Encode();
  return WeightsLocked(false).Encode();
}

void ParameterServer::Chunk::Heartbeat(int64_t worker, bool leaving) {
  MutexLock lock(mu_);
  if (!leaving) return TouchLocked(worker, true);
  auto it = workers_.find(worker);
  if (it == workers_.end() || !it->second.live) return;
  it->second.live = false;
  ++dropped_;
  pending_.erase(worker);
  if (loud_) {
    Log(LogLevel::kInfo, "ps", "worker finished", {{"server", options_.index}, {"worker", worker}});
    LiveWorkersGauge().Set(static_cast<double>(LiveLocked()));
  }
  MaybeCompleteStepLocked();
}

void ParameterServer::Chunk::Tick(Clock::time_point now) {
  MutexLock lock(mu_);
  bool changed = false;
  for (auto& [id, w] : workers_) {
    if (w.live && now - w.last_seen > options_.heartbeat_timeout) {
      w.live = false;
      ++dropped_;
      changed = true;
      if (loud_)
        Log(LogLevel::kWarn, "ps", "worker missed its heartbeats; dropped from the barrier",
            {{"server", options_.index}, {"worker", id}, {"version", version_}});
    }
  }
  // A worker that never (re)joins, e.g. after this server restarted, must
  // not hold the others forever either.
  if (!changed && !pending_.empty() && dropped_ == 0 && !short_handed_ &&
      now - waiting_since_ > options_.heartbeat_timeout) {
    const int64_t live = LiveLocked();
    if (live < options_.workers) {
      short_handed_ = true;
      if (loud_)
        Log(LogLevel::kWarn, "ps", "going on without workers that have not joined",
            {{"server", options_.index},
             {"live", live},
             {"expected", options_.workers},
             {"version", version_}});
      MaybeCompleteStepLocked();
    }
  }
  if (changed) {
    if (loud_) LiveWorkersGauge().Set(static_cast<double>(LiveLocked()));
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

void ParameterServer::Chunk::FailPending(const Status& why) {
  MutexLock lock(mu_);
  for (auto& [id, p] : pending_) p.responder.Fail(why);
  pending_.clear();
}

int64_t ParameterServer::Chunk::version() const {
  MutexLock lock(mu_);
  return version_;
}

int64_t ParameterServer::Chunk::WorkerStep(int64_t worker) const {
  MutexLock lock(mu_);
  auto it = workers_.find(worker);
  return it == workers_.end() ? (options_.mode == "sync" ? version_ : 0) : it->second.step;
}

std::pair<int64_t, int64_t> ParameterServer::Chunk::LiveAndDropped() const {
  MutexLock lock(mu_);
  return {LiveLocked(), dropped_};
}

// Checkpoints: <dir>/ps-<index>-<chunk>.safetensors holds the chunk's pieces
// and, under "optimizer/", its optimizer state, written atomically as ONE
// file: a crash at any moment leaves either the previous checkpoint or the new
// one, never pieces and an optimizer from different versions. The previous
// one stays as ps-<index>-<chunk>.prev.safetensors (a hard link), the
// fallback when the newest does not load. Chunks may be versions apart after
// a crash; workers resynchronise each chunk on its own.
namespace {
constexpr std::string_view kOptimizerPrefix = "optimizer/";
}  // namespace

Status ParameterServer::Chunk::Checkpoint() {
  MutexLock lock(mu_);
  return CheckpointLocked();
}

Status ParameterServer::Chunk::CheckpointLocked() {
  mu_.AssertHeld();
  if (checkpoint_path_.empty() || !optimizer_ || last_checkpoint_version_ == version_)
    return Status::Ok();
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(checkpoint_path_).parent_path(), ec);
  nn::NamedTensors tensors = params_;
  for (auto& [name, t] : optimizer_->State())
    tensors.emplace_back(std::string(kOptimizerPrefix) + name, t);
  std::map<std::string, std::string> meta = {{"dnnd.version", std::to_string(version_)},
                                             {"dnnd.seed", std::to_string(seed_)},
                                             {"dnnd.servers", std::to_string(options_.servers)},
                                             {"dnnd.index", std::to_string(options_.index)},
                                             {"dnnd.chunks", std::to_string(options_.chunks)},
                                             {"dnnd.chunk", std::to_string(chunk_)},
                                             {"dnnd.model_spec", spec_text_}};
  if (std::filesystem::exists(checkpoint_path_, ec))
    DNND_RETURN_IF_ERROR(LinkFileAtomic(checkpoint_path_, PreviousPath(checkpoint_path_)));
  DNND_RETURN_IF_ERROR(SaveSafetensors(checkpoint_path_, tensors, meta));
  last_checkpoint_version_ = version_;
  return Status::Ok();
}

Status ParameterServer::Chunk::Restore(const SafetensorsFile& file) {
  nn::NamedTensors optimizer_state;
  std::map<std::string, const Tensor*> pieces;
  for (const auto& [name, t] : file.tensors) {
    if (name.rfind(kOptimizerPrefix, 0) == 0)
      optimizer_state.emplace_back(name.substr(kOptimizerPrefix.size()), t);
    else
      pieces[name] = &t;
  }
  MutexLock lock(mu_);
  for (auto& [key, t] : params_) {
    auto it = pieces.find(key);
    if (it == pieces.end() || it->second->shape() != t.shape())
      return Corruption(checkpoint_path_ + ": piece '" + key + "' missing or mis-shaped");
    t.detach().CopyFrom(*it->second);
  }
  DNND_RETURN_IF_ERROR(optimizer_->LoadState(optimizer_state).WithContext(checkpoint_path_));
  version_ = std::stoll(file.metadata.at("dnnd.version"));
  last_checkpoint_version_ = version_;
  if (loud_) VersionGauge().Set(static_cast<double>(version_));
  return Status::Ok();
}

// ---------------------------------------------------------------------------
// Members: which worker ranks joined this server, each with the session (32
// random bytes) issued at its join. Thread-safe; every check is one map
// lookup under one mutex, so refusing an invented id costs next to nothing.
// ---------------------------------------------------------------------------

class ParameterServer::Members {
 public:
  explicit Members(const ParameterServerOptions& options) : options_(options) {}

  // Ok if `rank` is one of the job's, [0, ps.workers); checked before
  // anything costly.
  Status InRange(int64_t rank) const {
    if (rank >= 0 && rank < options_.workers) return Status::Ok();
    Refused("beyond_workers").Inc();
    return ResourceExhausted("parameter server " + std::to_string(options_.index) +
                             " admits workers 0-" + std::to_string(options_.workers - 1) +
                             " (ps.workers = " + std::to_string(options_.workers) + "); worker " +
                             std::to_string(rank) + " is not one of this job's");
  }

  // Admits `rank` (init): the session it `presented` if that is the rank's
  // current one (a worker re-initialising), else a new one if the rank is
  // free (never joined, left, or its holder silent for the heartbeat
  // timeout). Refusals name the limit and are counted.
  Result<std::string> Join(int64_t rank, const std::string& presented) {
    DNND_RETURN_IF_ERROR(InRange(rank));
    const std::string where = "parameter server " + std::to_string(options_.index);
    const auto now = Clock::now();
    MutexLock lock(mu_);
    Member& m = members_[rank];
    if (!m.session.empty() && Same(m.session, presented)) {
      Seen(m, now);
      return m.session;
    }
    if (!m.session.empty() && !m.left && now - m.last_seen < options_.heartbeat_timeout) {
      Refused("rank_held").Inc();
      const auto ago =
          std::chrono::duration_cast<std::chrono::milliseconds>(now - m.last_seen).count();
      return AlreadyExists(where + ": worker " + std::to_string(rank) +
                           " is held by a live worker (heard from " + std::to_string(ago) +
                           " ms ago); another may join as " + std::to_string(rank) +
                           " once that one has been silent for ps.heartbeat_timeout_ms = " +
                           std::to_string(options_.heartbeat_timeout.count()));
    }
    m.session = wire::RandomNonce();
    Seen(m, now);
    return m.session;
  }

  // Ok if `session` is the one issued to `rank` (marking it seen, and back
  // from a leave); PermissionDenied, counted, otherwise.
  Status Check(int64_t rank, const std::string& session, const char* what, bool leaving = false) {
    {
      MutexLock lock(mu_);
      auto it = members_.find(rank);
      if (it != members_.end() && !it->second.session.empty() &&
          Same(it->second.session, session)) {
        Seen(it->second, Clock::now());
        it->second.left = leaving;
        return Status::Ok();
      }
    }
    Refused("unknown_worker").Inc();
    return PermissionDenied(
        std::string(what) + " from worker " + std::to_string(rank) + " refused: parameter server " +
        std::to_string(options_.index) +
        (session.empty() ? " got no session" : " did not issue that session") +
        " (a worker joins with init and sends the session it answers; after a server restart, "
        "init again)");
  }

 private:
  struct Member {
    std::string session;  // empty: never joined
    Clock::time_point last_seen;
    bool left = false;
  };
  static bool Same(const std::string& a, const std::string& b) {
    return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
  }
  static void Seen(Member& m, Clock::time_point now) {
    m.last_seen = now;
    m.left = false;
  }

  const ParameterServerOptions& options_;
  Mutex mu_;  // a leaf: nothing else is locked while it is held
  std::map<int64_t, Member> members_ GUARDED_BY(mu_);  // at most ps.workers entries
};

// ---------------------------------------------------------------------------
// The server: routes requests to chunks.
// ---------------------------------------------------------------------------

ParameterServer::ParameterServer(ParameterServerOptions options, rpc::RpcServerOptions rpc)
    : options_(std::move(options)),
      server_(std::move(rpc)),
      members_(std::make_unique<Members>(options_)) {
  for (int c = 0; c < std::max(1, options_.chunks); ++c)
    chunks_.push_back(std::make_unique<Chunk>(options_, c, CheckpointPath(c)));
  server_.Handle(ps::kInit, "ps_init",
                 RpcServer::SimpleHandler([this](const wire::Message& m, const rpc::PeerInfo&) {
                   return HandleInit(m);
                 }));
  server_.Handle(ps::kPush, "ps_push",
                 RpcServer::Handler([this](wire::Message m, rpc::Responder r) {
                   HandlePush(std::move(m), std::move(r));
                 }));
  server_.Handle(ps::kPull, "ps_pull",
                 RpcServer::SimpleHandler([this](const wire::Message& m, const rpc::PeerInfo&) {
                   return HandlePull(m);
                 }));
  server_.Handle(ps::kHeartbeat, "ps_heartbeat",
                 RpcServer::SimpleHandler([this](const wire::Message& m, const rpc::PeerInfo&) {
                   return HandleHeartbeat(m);
                 }),
                 RpcServer::Execution::kInline);
  server_.Handle(ps::kLeave, "ps_leave",
                 RpcServer::SimpleHandler([this](const wire::Message& m, const rpc::PeerInfo&) {
                   return HandleHeartbeat(m);
                 }));
  server_.Handle(ps::kStats, "ps_stats",
                 RpcServer::SimpleHandler(
                     [this](const wire::Message&, const rpc::PeerInfo&) { return HandleStats(); }),
                 RpcServer::Execution::kInline);
}

ParameterServer::~ParameterServer() { Stop(); }

std::string ParameterServer::CheckpointPath(int chunk) const {
  if (options_.checkpoint_dir.empty()) return "";
  return options_.checkpoint_dir + "/ps-" + std::to_string(options_.index) + "-" +
         std::to_string(chunk) + ".safetensors";
}

std::string ParameterServer::PreviousPath(const std::string& checkpoint_path) {
  const std::string suffix = ".safetensors";
  return checkpoint_path.substr(0, checkpoint_path.size() - suffix.size()) + ".prev" + suffix;
}

Result<std::optional<SafetensorsFile>> ParameterServer::LoadChunkCheckpoint(int chunk) const {
  const std::string path = CheckpointPath(chunk), prev = PreviousPath(path);
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return std::optional<SafetensorsFile>();
  auto file = LoadSafetensors(path);
  if (file.ok() || !std::filesystem::exists(prev, ec)) {
    if (!file.ok()) return file.status();
    return std::optional<SafetensorsFile>(std::move(file).value());
  }
  Log(LogLevel::kWarn, "ps",
      "checkpoint does not load; resuming the chunk from its previous checkpoint",
      {{"bad", path}, {"error", file.status().ToString()}, {"using", prev}});
  DNND_ASSIGN_OR_RETURN(SafetensorsFile previous, LoadSafetensors(prev));
  return std::optional<SafetensorsFile>(std::move(previous));
}

Status ParameterServer::Start() {
  if (!options_.checkpoint_dir.empty()) {
    // Only this server's files: the job's other servers may share the dir (and this process).
    const std::string mine = "ps-" + std::to_string(options_.index) + "-";
    DNND_ASSIGN_OR_RETURN(
        std::vector<std::string> removed,
        SweepTempFiles(options_.checkpoint_dir,
                       {.recursive = false, .temp_prefix = mine, .upload_prefix = ""}));
    for (const auto& path : removed)
      Log(LogLevel::kWarn, "ps", "removed what an interrupted checkpoint left behind",
          {{"path", path}});
  }
  if (!options_.checkpoint_dir.empty() && options_.resume)
    DNND_RETURN_IF_ERROR(RestoreFromCheckpoint());
  DNND_RETURN_IF_ERROR(server_.Start());
  // Workers silent for ps.heartbeat_timeout_ms leave the barrier.
  monitor_.Start(std::chrono::milliseconds(100), [this] {
    const auto now = Clock::now();
    for (auto& c : chunks_) c->Tick(now);
  });
  return Status::Ok();
}

void ParameterServer::Stop() {
  if (stopping_.exchange(true)) return;
  monitor_.Stop();
  for (auto& chunk : chunks_) {
    chunk->FailPending(Unavailable("parameter server is stopping"));
    if (!initialized_) continue;
    Status s = chunk->Checkpoint();
    if (!s.ok()) Log(LogLevel::kError, "ps", "final checkpoint failed", {{"error", s.ToString()}});
  }
  server_.Stop();
}

std::pair<bool, std::string> ParameterServer::Readiness() const {
  if (!initialized_) return {false, "waiting for a worker to initialise the model"};
  return {true, ""};
}

int64_t ParameterServer::version() const {
  int64_t v = chunks_[0]->version();
  for (const auto& c : chunks_) v = std::min(v, c->version());
  return v;
}

Status ParameterServer::InitLocked(const std::string& spec_text, uint64_t seed) {
  init_mu_.AssertHeld();
  DNND_ASSIGN_OR_RETURN(ModelSpec spec, ParseModelSpecText(spec_text, "model spec from a worker"));
  // Building the whole model with the job's seed gives every server the same
  // initial values a local run would have; each chunk keeps only its pieces.
  DNND_ASSIGN_OR_RETURN(auto model, BuildModel(spec, seed));
  const nn::NamedTensors all = model->NamedParameters();
  std::vector<std::pair<std::string, Shape>> shapes;
  for (const auto& [name, t] : all) shapes.emplace_back(name, t.shape());
  const int chunks = static_cast<int>(chunks_.size());
  const ps::Partition partition = ps::PartitionParameters(shapes, options_.servers * chunks);
  int64_t elements = 0;
  for (int c = 0; c < chunks; ++c) {
    const auto& pieces = partition.pieces[options_.index * chunks + c];
    for (const auto& p : pieces) elements += p.length;
    DNND_RETURN_IF_ERROR(chunks_[c]->Init(pieces, all, spec, spec_text, seed));
  }
  spec_text_ = spec_text;
  seed_ = seed;
  initialized_ = true;
  Log(LogLevel::kInfo, "ps", "model initialised",
      {{"server", options_.index},
       {"chunks", static_cast<int64_t>(chunks)},
       {"parameters", elements},
       {"mode", options_.mode}});
  return Status::Ok();
}

Result<wire::Message> ParameterServer::HandleInit(const wire::Message& request) {
  DNND_ASSIGN_OR_RETURN(ps::InitRequest init, ps::InitRequest::Decode(request));
  const std::string& spec = init.spec;
  const uint64_t seed = init.seed;
  const int64_t servers = init.servers, index = init.index, worker = init.member.worker;
  if (servers != options_.servers || index != options_.index)
    return InvalidArgument("this is parameter server " + std::to_string(options_.index) + " of " +
                           std::to_string(options_.servers) + ", the worker expects server " +
                           std::to_string(index) + " of " + std::to_string(servers) +
                           " (check worker.parameter_servers and ps.servers)");
  // The rank first: a worker this job does not have costs nothing more.
  DNND_RETURN_IF_ERROR(members_->InRange(worker));
  {
    MutexLock lock(init_mu_);
    if (!initialized_) {
      DNND_RETURN_IF_ERROR(InitLocked(spec, seed));
    } else if (SpecFingerprint(spec, seed) != SpecFingerprint(spec_text_, seed_)) {
      // Idempotent for the same job; a different model or seed is a mistake.
      return InvalidArgument(
          "parameter server " + std::to_string(options_.index) +
          " already holds a different model or seed; restart it with an empty ps.checkpoint_dir "
          "to train a new one");
    }
  }
  // Joined only once the model is this job's.
  DNND_ASSIGN_OR_RETURN(std::string session, members_->Join(worker, init.member.session));
  return ps::InitReply{.mode = options_.mode,
                       .kavg_steps = options_.kavg_steps,
                       .chunks = static_cast<int64_t>(chunks_.size()),
                       .version = version(),
                       .worker_step = chunks_[0]->WorkerStep(worker),
                       .session = std::move(session)}
      .Encode();
}

Result<ParameterServer::Chunk*> ParameterServer::ChunkFor(int64_t c) {
  if (!initialized_)
    return Unavailable("parameter server " + std::to_string(options_.index) +
                       " is not initialised; send init first");
  if (c < 0 || c >= static_cast<int64_t>(chunks_.size()))
    return InvalidArgument("chunk " + std::to_string(c) + " does not exist: parameter server " +
                           std::to_string(options_.index) + " has " +
                           std::to_string(chunks_.size()) + " chunks");
  return chunks_[c].get();
}

void ParameterServer::HandlePush(wire::Message request, rpc::Responder responder) {
  auto push = ps::PushRequest::Decode(request);
  if (!push.ok()) return responder.Fail(push.status());
  if (!push.value().lr && options_.mode != "kavg")
    return responder.Fail(
        InvalidArgument("ps push: missing field 'lr' (mode " + options_.mode + ")"));
  if (Status member = CheckMember(push.value().member, "push"); !member.ok())
    return responder.Fail(member);
  auto chunk = ChunkFor(push.value().chunk);
  if (!chunk.ok()) return responder.Fail(chunk.status());
  chunk.value()->Push(push.value(), std::move(responder));
}

Result<wire::Message> ParameterServer::HandlePull(const wire::Message& request) {
  Pulls().Inc();
  DNND_ASSIGN_OR_RETURN(ps::PullRequest pull, ps::PullRequest::Decode(request));
  DNND_ASSIGN_OR_RETURN(Chunk * chunk, ChunkFor(pull.chunk));
  std::optional<int64_t> worker;  // an anonymous pull reads the weights and joins nothing
  if (pull.member) {
    DNND_RETURN_IF_ERROR(CheckMember(*pull.member, "pull"));
    worker = pull.member->worker;
  }
  return chunk->Pull(worker, pull.if_newer_than);
}

Status ParameterServer::CheckMember(const ps::Member& member, const char* what, bool leaving) {
  return members_->Check(member.worker, member.session, what, leaving);
}

Result<wire::Message> ParameterServer::HandleHeartbeat(const wire::Message& request) {
  DNND_ASSIGN_OR_RETURN(ps::MemberRequest r, ps::MemberRequest::Decode(request));
  const bool leaving = r.type == ps::kLeave;
  DNND_RETURN_IF_ERROR(CheckMember(r.member, leaving ? "leave" : "heartbeat", leaving));
  for (auto& c : chunks_) c->Heartbeat(r.member.worker, leaving);
  return ps::VersionReply{.version = version()}.Encode();
}

Result<wire::Message> ParameterServer::HandleStats() {
  const auto [live, dropped] = chunks_[0]->LiveAndDropped();
  return ps::StatsReply{.version = version(),
                        .initialized = initialized_,
                        .live_workers = live,
                        .dropped_workers = dropped,
                        .chunks = static_cast<int64_t>(chunks_.size()),
                        .mode = options_.mode}
      .Encode();
}

Status ParameterServer::RestoreFromCheckpoint() {
  // Every chunk file must belong to the same job and layout; a chunk whose
  // file is missing (a crash before its first checkpoint) starts afresh.
  std::vector<std::optional<SafetensorsFile>> files(chunks_.size());
  std::string spec, seed;
  for (size_t c = 0; c < chunks_.size(); ++c) {
    const std::string path = CheckpointPath(static_cast<int>(c));
    DNND_ASSIGN_OR_RETURN(std::optional<SafetensorsFile> loaded,
                          LoadChunkCheckpoint(static_cast<int>(c)));
    if (!loaded) continue;
    SafetensorsFile& file = *loaded;
    auto meta = [&](const std::string& key) {
      auto it = file.metadata.find(key);
      return it == file.metadata.end() ? std::string() : it->second;
    };
    if (meta("dnnd.servers") != std::to_string(options_.servers) ||
        meta("dnnd.chunks") != std::to_string(chunks_.size()))
      return InvalidArgument(path + " was written by a job with " + meta("dnnd.servers") +
                             " servers x " + meta("dnnd.chunks") + " chunks; this one has " +
                             std::to_string(options_.servers) + " x " +
                             std::to_string(chunks_.size()) + " (ps.servers, ps.chunks)");
    if (meta("dnnd.version").empty() || meta("dnnd.model_spec").empty() ||
        meta("dnnd.seed").empty())
      return Corruption(path + ": metadata lacks dnnd.version, dnnd.model_spec or dnnd.seed");
    if (spec.empty()) {
      spec = meta("dnnd.model_spec");
      seed = meta("dnnd.seed");
    } else if (spec != meta("dnnd.model_spec") || seed != meta("dnnd.seed")) {
      return InvalidArgument(
          path + " belongs to a different model or seed than the other chunks' checkpoints");
    }
    files[c] = std::move(file);
  }
  if (spec.empty()) return Status::Ok();
  MutexLock lock(init_mu_);
  DNND_RETURN_IF_ERROR(InitLocked(spec, std::stoull(seed)));
  for (size_t c = 0; c < chunks_.size(); ++c) {
    if (!files[c]) {
      Log(LogLevel::kWarn, "ps", "chunk has no checkpoint; it starts from the initial weights",
          {{"server", options_.index}, {"chunk", static_cast<int64_t>(c)}});
      continue;
    }
    DNND_RETURN_IF_ERROR(chunks_[c]->Restore(*files[c]));
  }
  Log(LogLevel::kInfo, "ps", "resumed from checkpoint",
      {{"server", options_.index}, {"version", version()}});
  return Status::Ok();
}

// ---------------------------------------------------------------------------
// Role
// ---------------------------------------------------------------------------

Result<std::unique_ptr<Role>> MakeParameterServerRole(const Config& config) {
  ParameterServerOptions options = ParameterServerOptions::FromConfig(config);
  if (options.index >= options.servers)
    return InvalidArgument("ps.index " + std::to_string(options.index) +
                           " is not below ps.servers " + std::to_string(options.servers));
  DNND_ASSIGN_OR_RETURN(auto rpc, rpc::RpcServerOptions::FromConfig(
                                      config, config.GetString("ps.listen"), "parameter-server"));
  std::shared_ptr<ParameterServer> ps =
      std::make_shared<ParameterServer>(std::move(options), std::move(rpc));
  return std::unique_ptr<Role>(new ServingRole({
      .start = [ps] { return ps->Start(); },
      .stop =
          [ps] {
            ps->Stop();
            return Status(StatusCode::kCancelled,
                          "stopped at version " + std::to_string(ps->version()));
          },
      .readiness = [ps] { return ps->Readiness(); },
  }));
}

}  // namespace dnnd
