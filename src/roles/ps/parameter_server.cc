#include "roles/ps/parameter_server.h"

#include <algorithm>
#include <filesystem>
#include <functional>
#include <optional>

#include "core/config.h"
#include "core/files.h"
#include "core/log.h"
#include "core/metrics.h"
#include "roles/base/role.h"
#include "roles/ps/chunk.h"
#include "roles/ps/members.h"
#include "roles/ps/messages.h"
#include "tensor/checkpoint.h"
#include "tensor/safetensors.h"
#include "transport/hello.h"

namespace dnnd {
namespace {

using rpc::RpcServer;

Counter& Pulls() {
  static Counter& c = DefaultMetrics().Counter("dnnd_ps_pulls_total", "weight pulls served");
  return c;
}

// A job's model: its spec, seed and initial weights (digest; "" = seeded).
std::string SpecFingerprint(const std::string& spec, uint64_t seed, const std::string& initial,
                            const std::vector<std::string>& frozen) {
  std::string f;
  for (const auto& name : frozen) f += name + "\n";
  return std::to_string(std::hash<std::string>{}(spec)) + "/" + std::to_string(seed) + "/" +
         initial + "/" + std::to_string(std::hash<std::string>{}(f));
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
  o.weights_codec = c.GetString("ps.weights_codec");
  return o;
}
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
  // Deltas need every worker to hold the same weights a step started from:
  // in async and kavg each worker's copy moves on its own.
  if (options_.weights_codec != "none" && options_.mode != "sync")
    return InvalidArgument("ps.weights_codec = \"" + options_.weights_codec +
                           "\" needs ps.mode = \"sync\" (it is \"" + options_.mode +
                           "\"): only a sync step's weights are the same for every worker");
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

Status ParameterServer::InitLocked(const std::string& spec_text, uint64_t seed,
                                   const std::string& initial_digest,
                                   const std::vector<wire::WireTensor>* initial,
                                   const std::vector<std::string>& frozen) {
  init_mu_.AssertHeld();
  DNND_ASSIGN_OR_RETURN(ModelSpec spec, ParseModelSpecText(spec_text, "model spec from a worker"));
  // Building the whole model with the job's seed gives every server the same
  // initial values a local run would have; each chunk keeps only its pieces.
  DNND_ASSIGN_OR_RETURN(auto model, BuildModel(spec, seed));
  if (initial) {  // the job's given weights instead, checked against their digest
    nn::NamedTensors given;
    for (const auto& w : *initial) {
      DNND_ASSIGN_OR_RETURN(Tensor t, w.ToTensor());
      given.emplace_back(w.name, std::move(t));
    }
    Status s = LoadParameters(*model, given);
    if (!s.ok()) return s.WithContext("the initial weights a worker sent");
    if (StateDigest(model->NamedState()) != initial_digest)
      return InvalidArgument("the initial weights a worker sent do not match their digest");
  }
  const nn::NamedTensors all = model->NamedState();
  std::set<std::string> buffers;
  for (const auto& [name, t] : model->NamedBuffers()) buffers.insert(name);
  std::set<std::string> frozen_names(frozen.begin(), frozen.end());
  {
    std::set<std::string> params;
    for (const auto& [name, t] : model->NamedParameters()) params.insert(name);
    for (const auto& f : frozen_names)
      if (!params.count(f)) return InvalidArgument("frozen '" + f + "' is not a parameter");
  }
  std::vector<std::pair<std::string, Shape>> shapes;
  for (const auto& [name, t] : all) shapes.emplace_back(name, t.shape());
  const int chunks = static_cast<int>(chunks_.size());
  const ps::Partition partition = ps::PartitionParameters(shapes, options_.servers * chunks);
  int64_t elements = 0;
  for (int c = 0; c < chunks; ++c) {
    const auto& pieces = partition.pieces[options_.index * chunks + c];
    for (const auto& p : pieces) elements += p.length;
    DNND_RETURN_IF_ERROR(chunks_[c]->Init(pieces, all, buffers, spec, spec_text, seed,
                                          initial_digest, frozen_names));
  }
  spec_text_ = spec_text;
  seed_ = seed;
  initial_digest_ = initial_digest;
  frozen_ = frozen;
  initialized_ = true;
  Log(LogLevel::kInfo, "ps", "model initialised",
      {{"server", options_.index},
       {"chunks", static_cast<int64_t>(chunks)},
       {"parameters", elements},
       {"mode", options_.mode},
       {"weights_codec", options_.weights_codec}});
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
      if (!init.initial_digest.empty() && init.initial.empty())
        return InvalidArgument("an init naming initial weights must carry them");
      DNND_RETURN_IF_ERROR(InitLocked(spec, seed, init.initial_digest,
                                      init.initial_digest.empty() ? nullptr : &init.initial,
                                      init.frozen));
    } else if (SpecFingerprint(spec, seed, init.initial_digest, init.frozen) !=
               SpecFingerprint(spec_text_, seed_, initial_digest_, frozen_)) {
      // Idempotent for the same job; a different model or seed is a mistake.
      return InvalidArgument(
          "parameter server " + std::to_string(options_.index) +
          " already holds a different model, seed or initial weights; restart it with an empty "
          "ps.checkpoint_dir to train a new one");
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
  std::string spec, seed, initial, frozen_text;
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
      initial = meta("dnnd.initial");
      frozen_text = meta("dnnd.frozen");
    } else if (spec != meta("dnnd.model_spec") || seed != meta("dnnd.seed") ||
               initial != meta("dnnd.initial") || frozen_text != meta("dnnd.frozen")) {
      return InvalidArgument(
          path + " belongs to a different model or seed than the other chunks' checkpoints");
    }
    files[c] = std::move(file);
  }
  if (spec.empty()) return Status::Ok();
  MutexLock lock(init_mu_);
  for (size_t c = 0; c < chunks_.size(); ++c)
    if (!files[c] && !initial.empty())
      return InvalidArgument(
          CheckpointPath(static_cast<int>(c)) +
          " is missing, and this job started from given weights the server cannot rebuild; "
          "restart the job with an empty ps.checkpoint_dir");
  // Given weights come back from the chunks' files; the seeded build is a frame.
  std::vector<std::string> frozen;
  for (size_t start = 0; start < frozen_text.size();) {
    const size_t end = std::min(frozen_text.find('\n', start), frozen_text.size());
    frozen.push_back(frozen_text.substr(start, end - start));
    start = end + 1;
  }
  DNND_RETURN_IF_ERROR(InitLocked(spec, std::stoull(seed), initial, nullptr, frozen));
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
