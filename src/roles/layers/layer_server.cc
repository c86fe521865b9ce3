#include "roles/layers/layer_server.h"

#include <algorithm>
#include <cstdlib>

#include "core/config.h"
#include "core/log.h"
#include "core/metrics.h"
#include "roles/base/role.h"
#include "roles/layers/messages.h"
#include "roles/layers/protocol.h"
#include "roles/layers/ranges.h"
#include "tensor/model_spec.h"
#include "tensor/nn.h"
#include "tensor/optim.h"

namespace dnnd {
namespace {

using Clock = std::chrono::steady_clock;

Gauge& CachedBytesGauge() {
  static Gauge& g = DefaultMetrics().Gauge("dnnd_layer_activation_bytes",
                                           "bytes of activations kept for pending backward passes");
  return g;
}
Gauge& SessionsGauge() {
  static Gauge& g = DefaultMetrics().Gauge("dnnd_layer_sessions", "open layer-server sessions");
  return g;
}

}  // namespace

LayerServerOptions LayerServerOptions::FromConfig(const Config& c) {
  LayerServerOptions o;
  o.max_activation_bytes = static_cast<uint64_t>(c.GetInt("layer.max_activation_bytes"));
  o.max_sessions = c.GetInt("layer.max_sessions");
  o.session_idle_timeout = std::chrono::milliseconds(c.GetInt("layer.session_idle_timeout_ms"));
  o.next_stages = c.GetStrings("layer.next_stages");
  o.connect_timeout = std::chrono::milliseconds(c.GetInt("layer.connect_timeout_ms"));
  return o;
}

// ---------------------------------------------------------------------------
// PeerLink: a configured next stage. Its hops run one after another on a
// strand of the dialer pool, never on an I/O thread: a connect (bounded by
// layer.connect_timeout_ms) blocks only this peer's queue.
// ---------------------------------------------------------------------------

class LayerServer::PeerLink {
 public:
  PeerLink(std::string address, const rpc::RpcClientOptions& options,
           std::chrono::milliseconds connect_timeout, rpc::asio::thread_pool& pool)
      : address_(std::move(address)),
        client_(rpc::RpcClient::Create(address_, options)),
        connect_timeout_(connect_timeout),
        queue_(rpc::asio::make_strand(pool)) {}

  // Sends `request` after every hop queued before it; `done` is called once.
  void Send(wire::Message request, rpc::Clock::time_point deadline, rpc::RpcClient::Callback done) {
    const auto queued = rpc::Clock::now();
    rpc::asio::post(queue_, [this, request = std::move(request), deadline, done = std::move(done),
                             queued]() mutable {
      // Hops that waited behind a failed connect share its failure at once
      // rather than each waiting for one more.
      if (failed_at_ >= queued) return done(last_failure_);
      Status up = client_->Connect(std::min(deadline, rpc::Clock::now() + connect_timeout_));
      if (!up.ok()) {
        failed_at_ = rpc::Clock::now();
        last_failure_ = Status(
            up.code() == StatusCode::kDeadlineExceeded ? StatusCode::kUnavailable : up.code(),
            "cannot reach it within layer.connect_timeout_ms = " +
                std::to_string(connect_timeout_.count()) + ": " + up.message());
        return done(last_failure_);
      }
      client_->CallAsync(std::move(request), deadline, std::move(done));
    });
  }

  // Fails queued and in-flight hops; a connect under way ends within its timeout.
  void Close() { client_->Close(); }

 private:
  const std::string address_;
  const std::unique_ptr<rpc::RpcClient> client_;
  const std::chrono::milliseconds connect_timeout_;
  rpc::asio::strand<rpc::asio::thread_pool::executor_type> queue_;
  // Only touched on the strand.
  rpc::Clock::time_point failed_at_{};
  Status last_failure_;
};

// ---------------------------------------------------------------------------
// Session: one client's layers, optimizer and pending micro-batches.
// ---------------------------------------------------------------------------

class LayerServer::Session {
 public:
  struct Layout {
    size_t first = 0, last = 0;
    Shape input;                    // per sample, what layer `first` takes
    Shape output;                   // per sample, what layer `last - 1` gives
    int64_t cached_per_sample = 0;  // floats kept per sample for backward
  };

  // `state`: the range's parameters then buffers (BatchNorm's running
  // statistics), which State and Load carry; `params` only the former.
  Session(std::string name, std::string fingerprint, std::shared_ptr<nn::Graph> model,
          Layout layout, nn::NamedTensors params, nn::NamedTensors state,
          std::unique_ptr<optim::Optimizer> optimizer, std::atomic<uint64_t>& server_bytes,
          uint64_t limit)
      : name_(std::move(name)),
        fingerprint_(std::move(fingerprint)),
        model_(std::move(model)),
        layout_(std::move(layout)),
        params_(std::move(params)),
        state_(std::move(state)),
        optimizer_(std::move(optimizer)),
        server_bytes_(server_bytes),
        limit_(limit) {}
  ~Session() { Release(); }

  const std::string& fingerprint() const { return fingerprint_; }
  const std::shared_ptr<nn::Graph>& model() const { return model_; }
  int64_t parameter_count() const {
    int64_t n = 0;
    for (const auto& [k, t] : params_) n += t.numel();
    return n;
  }
  Clock::time_point last_used() const {
    std::lock_guard lock(mu_);
    return last_used_;
  }

  Result<Tensor> Forward(const layers::PassRequest& request) {
    const int64_t mb = request.mb;
    DNND_ASSIGN_OR_RETURN(Tensor x, Input(request.tensor, layout_.input, "input"));
    std::lock_guard lock(mu_);
    last_used_ = Clock::now();
    // The step the client owed since its last batch (layer_protocol.h).
    if (request.step_lr) StepLocked(*request.step_lr);
    if (!request.train) {
      NoGradGuard no_grad;
      model_->Eval();
      return model_->ForwardRange(x, layout_.first, layout_.last);
    }
    EraseLocked(mb);  // a retried forward replaces the first
    const uint64_t bytes =
        static_cast<uint64_t>(x.size(0)) * layout_.cached_per_sample * sizeof(float);
    const uint64_t held = server_bytes_.load();
    if (held + bytes > limit_)
      return ResourceExhausted(
          "layer server: micro-batch " + std::to_string(mb) + " of session '" + name_ + "' needs " +
          std::to_string(bytes) + " bytes of activations, " + std::to_string(held) +
          " are held for pending backward passes, layer.max_activation_bytes is " +
          std::to_string(limit_) + " (run backward first, or use smaller micro-batches)");
    model_->Train();
    // The input's gradient costs a GEMM as big as the forward: compute it
    // only when backward will be asked for it (not for a model's first layers).
    if (request.input_grad) x.set_requires_grad(true);
    Tensor y = model_->ForwardRange(x, layout_.first, layout_.last);
    pending_[mb] = Pending{x, y, bytes};
    CachedBytesGauge().Set(static_cast<double>(server_bytes_ += bytes));
    return y.detach();
  }

  // The input's gradient if `request.input_grad`, else an undefined Tensor.
  Result<Tensor> Backward(const layers::PassRequest& request) {
    const int64_t mb = request.mb;
    const bool input_grad = request.input_grad;
    std::lock_guard lock(mu_);
    last_used_ = Clock::now();
    auto it = pending_.find(mb);
    if (it == pending_.end())
      return InvalidArgument("session '" + name_ + "' has no pending forward for micro-batch " +
                             std::to_string(mb) +
                             " (never forwarded with train = 1, or already backpropagated)");
    DNND_ASSIGN_OR_RETURN(Tensor g, Input(request.tensor, layout_.output, "output gradient"));
    Pending p = it->second;
    if (g.shape() != p.y.shape())
      return InvalidArgument("output gradient for micro-batch " + std::to_string(mb) + " is " +
                             ShapeToString(g.shape()) + ", the forward gave " +
                             ShapeToString(p.y.shape()));
    EraseLocked(mb);
    p.y.backward(g);
    if (!input_grad) return Tensor();
    if (!p.x.grad().defined())
      return InvalidArgument("micro-batch " + std::to_string(mb) +
                             " was forwarded with input_grad = 0; its input "
                             "gradient was not kept");
    return p.x.grad();
  }

  layers::VersionReply Step(const layers::StepRequest& request) {
    std::lock_guard lock(mu_);
    last_used_ = Clock::now();
    StepLocked(request.lr);
    return {.version = version_};
  }

  layers::StateTensors State() {
    std::lock_guard lock(mu_);
    last_used_ = Clock::now();
    layers::StateTensors state{.version = version_};
    for (const auto& [name, t] : state_)
      state.parameters.push_back(wire::WireTensor::FromTensor(name, t.detach().clone()));
    for (const auto& [name, t] : optimizer_->State())
      state.optimizer.push_back(wire::WireTensor::FromTensor(name, t.clone()));
    return state;
  }

  // Parameters and buffers by name (all of them) and, if any optimizer
  // tensors come, the optimizer state.
  Result<layers::VersionReply> Load(const layers::StateTensors& request) {
    std::map<std::string, Tensor> given;
    nn::NamedTensors optimizer_state;
    for (const auto& wt : request.parameters) {
      DNND_ASSIGN_OR_RETURN(Tensor t, wt.ToTensor());
      given[wt.name] = t;
    }
    for (const auto& wt : request.optimizer) {
      DNND_ASSIGN_OR_RETURN(Tensor t, wt.ToTensor());
      optimizer_state.emplace_back(wt.name, t);
    }
    std::lock_guard lock(mu_);
    last_used_ = Clock::now();
    for (const auto& [name, t] : state_) {
      auto it = given.find(name);
      if (it == given.end())
        return InvalidArgument("load into session '" + name_ + "' lacks '" + name + "'");
      if (it->second.shape() != t.shape())
        return InvalidArgument("load into session '" + name_ + "': '" + name + "' is " +
                               ShapeToString(it->second.shape()) + ", the layer holds " +
                               ShapeToString(t.shape()));
    }
    if (given.size() != state_.size())
      return InvalidArgument(
          "load into session '" + name_ + "' carries " + std::to_string(given.size()) +
          " tensors, its layers have parameters and buffers " + std::to_string(state_.size()));
    for (auto& [name, t] : state_) t.detach().CopyFrom(given[name]);
    if (!optimizer_state.empty()) DNND_RETURN_IF_ERROR(optimizer_->LoadState(optimizer_state));
    return layers::VersionReply{.version = version_};
  }

  // Frees every pending micro-batch.
  void Release() {
    std::lock_guard lock(mu_);
    while (!pending_.empty()) EraseLocked(pending_.begin()->first);
  }

 private:
  struct Pending {
    Tensor x, y;
    uint64_t bytes = 0;
  };

  // `input` as a float32 Tensor, checked to be [batch, per_sample...].
  Result<Tensor> Input(const wire::WireTensor& input, const Shape& per_sample,
                       const char* what) const {
    DNND_ASSIGN_OR_RETURN(Tensor t, input.ToTensor());
    Shape want = per_sample;
    want.insert(want.begin(), t.ndim() > 0 ? t.size(0) : 0);
    if (t.ndim() == 0 || t.size(0) < 1 || t.shape() != want)
      return InvalidArgument(
          "session '" + name_ + "': the " + what + " is " + ShapeToString(t.shape()) + ", layers " +
          std::to_string(layout_.first) + "-" + std::to_string(layout_.last - 1) +
          " take [batch, " + ShapeToString(per_sample) + "]");
    return t;
  }

  void StepLocked(float lr) {
    optimizer_->set_lr(lr);
    optimizer_->Step();
    optimizer_->ZeroGrad();
    ++version_;
  }

  void EraseLocked(int64_t mb) {
    auto it = pending_.find(mb);
    if (it == pending_.end()) return;
    CachedBytesGauge().Set(static_cast<double>(server_bytes_ -= it->second.bytes));
    pending_.erase(it);
  }

  const std::string name_, fingerprint_;
  const std::shared_ptr<nn::Graph> model_;
  const Layout layout_;
  nn::NamedTensors params_;
  nn::NamedTensors state_;
  std::unique_ptr<optim::Optimizer> optimizer_;
  std::atomic<uint64_t>& server_bytes_;
  const uint64_t limit_;

  mutable std::mutex mu_;
  std::map<int64_t, Pending> pending_;
  int64_t version_ = 0;
  Clock::time_point last_used_ = Clock::now();
};

// ---------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------

LayerServer::LayerServer(LayerServerOptions options, rpc::RpcServerOptions rpc,
                         rpc::RpcClientOptions peers)
    : options_(options), server_(std::move(rpc)), peer_options_(std::move(peers)) {
  if (!options_.next_stages.empty()) {
    dialers_ = std::make_unique<rpc::asio::thread_pool>(options_.next_stages.size());
    for (const std::string& address : options_.next_stages)
      if (!peers_.count(address))
        peers_[address] =
            std::make_unique<PeerLink>(address, peer_options_, options_.connect_timeout, *dialers_);
  }
  using rpc::RpcServer;
  // Inline: the requests of one connection run in arrival order (see
  // layer_protocol.h); other connections run on the other I/O threads.
  const auto inline_ = RpcServer::Execution::kInline;
  server_.Handle(layers::kOpen, "layer_open",
                 RpcServer::SimpleHandler([this](const wire::Message& m, const rpc::PeerInfo& p) {
                   return HandleOpen(m, p);
                 }),
                 inline_);
  auto chained = RpcServer::Handler(
      [this](wire::Message m, rpc::Responder r) { Chained(std::move(m), std::move(r)); });
  server_.Handle(layers::kForward, "layer_forward", chained, inline_);
  server_.Handle(layers::kBackward, "layer_backward", chained, inline_);
  using Reply = Result<wire::Message>;
  server_.Handle(
      layers::kStep, "layer_step",
      RpcServer::SimpleHandler([this](const wire::Message& m, const rpc::PeerInfo&) -> Reply {
        DNND_ASSIGN_OR_RETURN(auto session, Find(m));
        DNND_ASSIGN_OR_RETURN(layers::StepRequest step, layers::StepRequest::Decode(m));
        return session->Step(step).Encode();
      }),
      inline_);
  server_.Handle(
      layers::kLoad, "layer_load",
      RpcServer::SimpleHandler([this](const wire::Message& m, const rpc::PeerInfo&) -> Reply {
        DNND_ASSIGN_OR_RETURN(auto session, Find(m));
        DNND_ASSIGN_OR_RETURN(layers::StateTensors load, layers::StateTensors::Decode(m));
        DNND_ASSIGN_OR_RETURN(layers::VersionReply r, session->Load(load));
        return r.Encode();
      }),
      inline_);
  server_.Handle(
      layers::kState, "layer_state",
      RpcServer::SimpleHandler([this](const wire::Message& m, const rpc::PeerInfo&) -> Reply {
        DNND_ASSIGN_OR_RETURN(auto session, Find(m));
        return session->State().Encode(layers::kState);
      }),
      inline_);
  server_.Handle(layers::kDrop, "layer_drop",
                 RpcServer::SimpleHandler([this](const wire::Message& m, const rpc::PeerInfo&) {
                   return HandleDrop(m);
                 }),
                 inline_);
}

LayerServer::~LayerServer() { Stop(); }

Status LayerServer::Start() {
  DNND_RETURN_IF_ERROR(server_.Start());
  reaper_.Start(std::chrono::seconds(1), [this] { ExpireIdleSessions(); });
  return Status::Ok();
}

void LayerServer::Stop() {
  if (stopping_.exchange(true)) return;
  reaper_.Stop();
  server_.Stop();
  for (auto& [address, link] : peers_) link->Close();
  if (dialers_) dialers_->join();
  std::lock_guard lock(mu_);
  sessions_.clear();
}

size_t LayerServer::sessions() const {
  std::lock_guard lock(mu_);
  return sessions_.size();
}

Result<std::shared_ptr<LayerServer::Session>> LayerServer::Find(const wire::Message& request) {
  DNND_ASSIGN_OR_RETURN(layers::SessionRequest named, layers::SessionRequest::Decode(request));
  const std::string& name = named.session;
  std::lock_guard lock(mu_);
  auto it = sessions_.find(name);
  if (it == sessions_.end())
    return NotFound("no session '" + name +
                    "' on this layer server (never opened, dropped, or idle for longer than "
                    "layer.session_idle_timeout_ms)");
  return it->second;
}

Result<LayerServer::PeerLink*> LayerServer::Peer(const std::string& address) {
  auto it = peers_.find(address);
  if (it != peers_.end()) return it->second.get();
  std::string allowed;
  for (const auto& [a, link] : peers_) allowed += (allowed.empty() ? "" : ", ") + a;
  return PermissionDenied("chain hop to " + address.substr(0, 256) +
                          " refused: this layer server passes results only "
                          "to layer.next_stages = [" +
                          allowed +
                          "] (list the next stages there, as worker.placement "
                          "names them)");
}

void LayerServer::Chained(wire::Message request, rpc::Responder responder) {
  auto session = Find(request);
  if (!session.ok()) return responder.Fail(session.status());
  auto decoded = layers::PassRequest::Decode(request);
  if (!decoded.ok()) return responder.Fail(decoded.status());
  layers::PassRequest& pass = decoded.value();
  const bool backward = pass.backward();
  // The stages still to run, each with the optimizer step it owes before it
  // computes. Checked before this stage computes: a hop this server may not
  // take costs nothing.
  PeerLink* link = nullptr;
  if (!pass.chain.empty()) {
    auto peer = Peer(pass.chain.front().address);
    if (!peer.ok()) return responder.Fail(peer.status());
    link = peer.value();
  }
  const bool input_grad = pass.input_grad;
  // Along a chain every stage but the first needs its input gradient: it is
  // what the next stage (the previous layers) backpropagates.
  if (backward && !pass.chain.empty()) pass.input_grad = true;
  auto result = backward ? session.value()->Backward(pass) : session.value()->Forward(pass);
  if (!result.ok()) return responder.Fail(result.status());
  if (pass.chain.empty()) {
    layers::PassReply reply;
    if (result.value().defined()) reply.tensor = wire::WireTensor::FromTensor("", result.value());
    return responder.Send(reply.Encode(pass.type));
  }
  if (!result.value().defined())
    return responder.Fail(Internal("a chained stage produced no tensor"));
  const layers::Hop& hop = pass.chain.front();
  layers::PassRequest next{.type = pass.type,
                           .session = hop.session,
                           .mb = pass.mb,
                           .train = pass.train,
                           .input_grad = backward ? input_grad : true,
                           .step_lr = hop.step_lr,
                           .chain = {pass.chain.begin() + 1, pass.chain.end()},
                           .tensor = wire::WireTensor::FromTensor("", result.value())};
  const std::string address = hop.address;
  link->Send(next.Encode(), rpc::Clock::now() + peer_options_.default_timeout,
             [responder, address](Result<wire::Message> r) mutable {
               if (!r.ok())
                 return responder.Fail(r.status().WithContext("next layer server " + address));
               responder.Send(std::move(r).value());
             });
}

Result<wire::Message> LayerServer::HandleOpen(const wire::Message& request,
                                              const rpc::PeerInfo& peer) {
  DNND_ASSIGN_OR_RETURN(layers::OpenRequest open, layers::OpenRequest::Decode(request));
  const std::string& name = open.session;
  const std::string& spec_text = open.spec;
  const uint64_t seed = open.seed;
  const int64_t first = open.first, last = open.last;
  const std::string fingerprint = std::to_string(std::hash<std::string>{}(spec_text)) + "/" +
                                  std::to_string(seed) + "/" + std::to_string(first) + "-" +
                                  std::to_string(last);
  auto answer = [](const Session& s) {
    return layers::OpenReply{.parameters = s.parameter_count()}.Encode();
  };
  {
    std::lock_guard lock(mu_);
    auto it = sessions_.find(name);
    if (it != sessions_.end()) {
      // Idempotent: a client that reconnects gets its session back.
      if (it->second->fingerprint() == fingerprint) return answer(*it->second);
      return AlreadyExists("session '" + name +
                           "' already hosts other layers or another model; drop it first");
    }
    if (static_cast<int64_t>(sessions_.size()) >= options_.max_sessions)
      return ResourceExhausted("this layer server already hosts layer.max_sessions = " +
                               std::to_string(options_.max_sessions) + " sessions");
  }
  DNND_ASSIGN_OR_RETURN(ModelSpec spec,
                        ParseModelSpecText(spec_text, "model spec from " + peer.address));
  DNND_ASSIGN_OR_RETURN(auto model, BuildModel(spec, seed));
  const int64_t layer_count = static_cast<int64_t>(model->size());
  if (first < 0 || first >= last || last > layer_count)
    return InvalidArgument("layers " + std::to_string(first) + "-" + std::to_string(last - 1) +
                           " are not a range of the model's " + std::to_string(layer_count) +
                           " layers");
  const size_t begin = static_cast<size_t>(first), end = static_cast<size_t>(last);
  DNND_RETURN_IF_ERROR(
      layers::CheckRange(*model, begin, end, "layers " + layers::RangeNames(*model, begin, end)));
  // Shapes from the graph: a node may read any earlier one (a residual
  // block's add), but only node first-1's output enters the range.
  DNND_ASSIGN_OR_RETURN(std::vector<Shape> shapes, layers::NodeShapes(*model, spec.input));
  Session::Layout layout{begin, end, begin == 0 ? spec.input : shapes[begin - 1], shapes[end - 1],
                         0};
  layout.cached_per_sample = ShapeNumel(layout.input);
  for (size_t i = begin; i < end; ++i) layout.cached_per_sample += ShapeNumel(shapes[i]);
  nn::NamedTensors params = layers::RangeParameters(*model, begin, end);
  nn::NamedTensors state = layers::RangeState(*model, begin, end);
  DNND_ASSIGN_OR_RETURN(auto optimizer, optim::MakeOptimizer(spec.optimizer, params));
  auto session = std::make_shared<Session>(
      name, fingerprint, std::move(model), layout, std::move(params), std::move(state),
      std::move(optimizer), cached_bytes_, options_.max_activation_bytes);
  std::lock_guard lock(mu_);
  auto [it, inserted] = sessions_.emplace(name, session);
  if (!inserted && it->second->fingerprint() != fingerprint)
    return AlreadyExists("session '" + name +
                         "' already hosts other layers or another model; drop it first");
  SessionsGauge().Set(static_cast<double>(sessions_.size()));
  Log(LogLevel::kInfo, "layer-server", "session opened",
      {{"session", name},
       {"layers", std::to_string(first) + "-" + std::to_string(last - 1)},
       {"nodes", layers::RangeNames(*it->second->model(), begin, end)},
       {"parameters", it->second->parameter_count()},
       {"peer", peer.address}});
  return answer(*it->second);
}

Result<wire::Message> LayerServer::HandleDrop(const wire::Message& request) {
  DNND_ASSIGN_OR_RETURN(layers::SessionRequest drop, layers::SessionRequest::Decode(request));
  const std::string& name = drop.session;
  std::shared_ptr<Session> dropped;
  {
    std::lock_guard lock(mu_);
    auto it = sessions_.find(name);
    if (it == sessions_.end()) return wire::Message{};  // idempotent
    dropped = std::move(it->second);
    sessions_.erase(it);
    SessionsGauge().Set(static_cast<double>(sessions_.size()));
  }
  Log(LogLevel::kInfo, "layer-server", "session dropped", {{"session", name}});
  return wire::Message{};
}

void LayerServer::ExpireIdleSessions() {
  const auto now = Clock::now();
  std::vector<std::string> expired;
  {
    std::lock_guard lock(mu_);
    for (auto it = sessions_.begin(); it != sessions_.end();) {
      if (now - it->second->last_used() > options_.session_idle_timeout) {
        expired.push_back(it->first);
        it = sessions_.erase(it);
      } else {
        ++it;
      }
    }
    SessionsGauge().Set(static_cast<double>(sessions_.size()));
  }
  for (const auto& name : expired)
    Log(LogLevel::kWarn, "layer-server", "idle session dropped", {{"session", name}});
}

// ---------------------------------------------------------------------------
// Role
// ---------------------------------------------------------------------------

Result<std::unique_ptr<Role>> MakeLayerServerRole(const Config& config) {
  // One dialer thread and one client (with its I/O thread) per next stage.
  constexpr size_t kMaxNextStages = 64;
  if (config.GetStrings("layer.next_stages").size() > kMaxNextStages)
    return InvalidArgument(
        "layer.next_stages lists " + std::to_string(config.GetStrings("layer.next_stages").size()) +
        " addresses; a layer server chains to at most " + std::to_string(kMaxNextStages));
  DNND_ASSIGN_OR_RETURN(auto rpc, rpc::RpcServerOptions::FromConfig(
                                      config, config.GetString("layer.listen"), "layer-server"));
  // Stages of a chain call the next stage's server themselves.
  DNND_ASSIGN_OR_RETURN(auto peers, rpc::RpcClientOptions::FromConfig(config, "layer-server"));
  auto server = std::make_shared<LayerServer>(LayerServerOptions::FromConfig(config),
                                              std::move(rpc), std::move(peers));
  return std::unique_ptr<Role>(new ServingRole({
      .start = [server] { return server->Start(); },
      .stop =
          [server] {
            server->Stop();
            return Status(StatusCode::kCancelled, "stopped");
          },
      .readiness = nullptr,
  }));
}

}  // namespace dnnd
