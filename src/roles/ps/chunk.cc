// ParameterServer::Chunk (chunk.h): the barrier, the optimizer step and the
// checkpoint of one range of parameters.
#include "roles/ps/chunk.h"

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <optional>

#include "core/files.h"
#include "core/log.h"
#include "core/metrics.h"
#include "roles/ps/server_internal.h"
#include "transport/codec.h"

namespace dnnd {
namespace {

using ps_internal::Refused;

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

}  // namespace

Status ParameterServer::Chunk::Init(const std::vector<ps::ShardPiece>& pieces,
                                    const nn::NamedTensors& all,
                                    const std::set<std::string>& buffers, const ModelSpec& spec,
                                    const std::string& spec_text, uint64_t seed,
                                    const std::string& initial_digest,
                                    const std::set<std::string>& frozen) {
  MutexLock lock(mu_);
  pieces_ = pieces;
  params_.clear();
  buffer_.clear();
  nn::NamedTensors trainable;
  std::set<std::string> no_decay;
  for (const ps::ShardPiece& piece : pieces_) {
    const Tensor* src = nullptr;
    for (const auto& [name, t] : all)
      if (name == piece.param) src = &t;
    Tensor t = Tensor::Empty({piece.length});
    std::memcpy(t.data(), src->data() + piece.offset,
                static_cast<size_t>(piece.length) * sizeof(float));
    const bool buffer = buffers.count(piece.param) > 0;
    t.set_requires_grad(!buffer);
    params_.emplace_back(piece.key(), t);
    buffer_.push_back(buffer);
    if (buffer || frozen.count(piece.param)) continue;
    trainable.emplace_back(piece.key(), t);
    // Pieces are flat slices: decay follows the tensor they came from.
    if (!spec.optimizer.decay_bias_and_norm && src->ndim() <= 1) no_decay.insert(piece.key());
  }
  DNND_ASSIGN_OR_RETURN(optimizer_, optim::MakeOptimizer(spec.optimizer, trainable));
  optimizer_->SetNoDecay(no_decay);
  published_.clear();
  if (options_.weights_codec == "bf16")
    for (const auto& [key, t] : params_) published_.push_back(t.detach().clone());
  full_next_ = false;
  spec_text_ = spec_text;
  seed_ = seed;
  initial_digest_ = initial_digest;
  frozen_text_.clear();
  for (const auto& f : frozen) frozen_text_ += (frozen_text_.empty() ? "" : "\n") + f;
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
  for (size_t i = 0; i < params_.size(); ++i)
    r.tensors.push_back(wire::WireTensor::FromTensor(
        params_[i].first,
        (published_.empty() ? params_[i].second.detach() : published_[i]).clone()));
  return r;
}

ps::WeightsReply ParameterServer::Chunk::StepAnswerLocked() {
  if (published_.empty()) return WeightsLocked(true);
  if (full_next_) {
    for (size_t i = 0; i < params_.size(); ++i) published_[i].CopyFrom(params_[i].second.detach());
    full_next_ = false;
    return WeightsLocked(true);
  }
  ps::WeightsReply r{.version = version_, .applied = true, .delta = true};
  std::vector<uint16_t> half;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor w = params_[i].second.detach();
    Tensor& held = published_[i];
    if (buffer_[i]) {  // averaged values the workers' forward passes moved: sent whole
      held.CopyFrom(w);
      r.tensors.push_back(wire::WireTensor::FromTensor(params_[i].first, w.clone()));
      continue;
    }
    const int64_t n = w.numel();
    Tensor change = Tensor::Empty({n});
    float* d = change.data();
    const float* src = w.data();
    float* h = held.data();
    for (int64_t k = 0; k < n; ++k) d[k] = src[k] - h[k];
    // Rounded here, so the bf16 encoding sends exactly these values and
    // `held` becomes exactly what every worker computes from them.
    half.resize(static_cast<size_t>(n));
    wire::FloatToBF16(d, half.data(), half.size());
    wire::BF16ToFloat(half.data(), d, half.size());
    for (int64_t k = 0; k < n; ++k) h[k] += d[k];
    r.tensors.push_back(wire::WireTensor::FromTensor(params_[i].first, change, wire::Codec::kBF16));
  }
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
    if (options_.mode == "kavg" || buffer_[i]) {
      // The average of the workers' weights; for buffers in every mode, the
      // average of their running statistics (async: the one pushed).
      p.CopyFrom(sum);
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
  ps::WeightsReply answer = StepAnswerLocked();
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
  if (!initial_digest_.empty()) meta["dnnd.initial"] = initial_digest_;
  if (!frozen_text_.empty()) meta["dnnd.frozen"] = frozen_text_;
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
  // Workers may hold what was published before the crash, which was not
  // checkpointed: they get values until everyone holds the restored weights.
  for (size_t i = 0; i < published_.size(); ++i) published_[i].CopyFrom(params_[i].second.detach());
  full_next_ = !published_.empty();
  version_ = std::stoll(file.metadata.at("dnnd.version"));
  last_checkpoint_version_ = version_;
  if (loud_) VersionGauge().Set(static_cast<double>(version_));
  return Status::Ok();
}

}  // namespace dnnd
