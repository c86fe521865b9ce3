#include "roles/layers/layer_server.h"

#include <algorithm>
#include <cstdlib>

#include "core/config.h"
#include "core/log.h"
#include "core/metrics.h"
#include "roles/base/role.h"
#include "roles/layers/protocol.h"
#include "tensor/model_spec.h"
#include "tensor/nn.h"
#include "tensor/optim.h"

namespace dnnd {
namespace {

using Clock = std::chrono::steady_clock;
constexpr std::string_view kOptimizerPrefix = "optimizer/";

Gauge& CachedBytesGauge() {
  static Gauge& g = DefaultMetrics().Gauge("dnnd_layer_activation_bytes",
                                           "bytes of activations kept for pending backward passes");
  return g;
}
Gauge& SessionsGauge() {
  static Gauge& g = DefaultMetrics().Gauge("dnnd_layer_sessions", "open layer-server sessions");
  return g;
}

// The layer index a parameter name starts with ("3.weight" -> 3).
int64_t LayerOf(const std::string& name) { return std::stoll(name.substr(0, name.find('.'))); }

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
  PeerLink(std::string address, const rpc::RpcClientOptions& options, std::chrono::milliseconds connect_timeout,
           rpc::asio::thread_pool& pool)
      : address_(std::move(address)), client_(rpc::RpcClient::Create(address_, options)),
        connect_timeout_(connect_timeout), queue_(rpc::asio::make_strand(pool)) {}

  // Sends `request` after every hop queued before it; `done` is called once.
  void Send(wire::Message request, rpc::Clock::time_point deadline, rpc::RpcClient::Callback done) {
    const auto queued = rpc::Clock::now();
    rpc::asio::post(queue_, [this, request = std::move(request), deadline, done = std::move(done), queued]() mutable {
      // Hops that waited behind a failed connect share its failure at once
      // rather than each waiting for one more.
      if (failed_at_ >= queued) return done(last_failure_);
      Status up = client_->Connect(std::min(deadline, rpc::Clock::now() + connect_timeout_));
      if (!up.ok()) {
        failed_at_ = rpc::Clock::now();
        last_failure_ = Status(up.code() == StatusCode::kDeadlineExceeded ? StatusCode::kUnavailable : up.code(),
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
    Shape input;              // per sample, what layer `first` takes
    Shape output;             // per sample, what layer `last - 1` gives
    int64_t cached_per_sample = 0;  // floats kept per sample for backward
  };

  Session(std::string name, std::string fingerprint, std::shared_ptr<nn::Sequential> model, Layout layout,
          nn::NamedTensors params, std::unique_ptr<optim::Optimizer> optimizer, std::atomic<uint64_t>& server_bytes,
          uint64_t limit)
      : name_(std::move(name)), fingerprint_(std::move(fingerprint)), model_(std::move(model)),
        layout_(std::move(layout)), params_(std::move(params)), optimizer_(std::move(optimizer)),
        server_bytes_(server_bytes), limit_(limit) {}
  ~Session() { Release(); }

  const std::string& fingerprint() const { return fingerprint_; }
  int64_t parameter_count() const {
    int64_t n = 0;
    for (const auto& [k, t] : params_) n += t.numel();
    return n;
  }
  Clock::time_point last_used() const {
    std::lock_guard lock(mu_);
    return last_used_;
  }

  Result<wire::Message> Forward(const wire::Message& request) {
    DNND_ASSIGN_OR_RETURN(int64_t mb, request.fields.GetInt("mb"));
    const bool train = request.fields.IntOr("train", 1) != 0;
    DNND_ASSIGN_OR_RETURN(Tensor x, Input(request, "x", layout_.input, "input"));
    std::lock_guard lock(mu_);
    last_used_ = Clock::now();
    // The step the client owed since its last batch (layer_protocol.h).
    if (request.fields.Has("step_lr")) {
      DNND_ASSIGN_OR_RETURN(double lr, request.fields.GetFloat("step_lr"));
      StepLocked(static_cast<float>(lr));
    }
    wire::Message response;
    if (!train) {
      NoGradGuard no_grad;
      model_->Eval();
      response.tensors.push_back(wire::WireTensor::FromTensor("y", model_->ForwardRange(x, layout_.first, layout_.last)));
      return response;
    }
    EraseLocked(mb);  // a retried forward replaces the first
    const uint64_t bytes = static_cast<uint64_t>(x.size(0)) * layout_.cached_per_sample * sizeof(float);
    const uint64_t held = server_bytes_.load();
    if (held + bytes > limit_)
      return ResourceExhausted("layer server: micro-batch " + std::to_string(mb) + " of session '" + name_ +
                               "' needs " + std::to_string(bytes) + " bytes of activations, " + std::to_string(held) +
                               " are held for pending backward passes, layer.max_activation_bytes is " +
                               std::to_string(limit_) + " (run backward first, or use smaller micro-batches)");
    model_->Train();
    // The input's gradient costs a GEMM as big as the forward: compute it
    // only when backward will be asked for it (not for a model's first layers).
    if (request.fields.IntOr("input_grad", 1) != 0) x.set_requires_grad(true);
    Tensor y = model_->ForwardRange(x, layout_.first, layout_.last);
    pending_[mb] = Pending{x, y, bytes};
    CachedBytesGauge().Set(static_cast<double>(server_bytes_ += bytes));
    response.tensors.push_back(wire::WireTensor::FromTensor("y", y.detach()));
    return response;
  }

  Result<wire::Message> Backward(const wire::Message& request) {
    DNND_ASSIGN_OR_RETURN(int64_t mb, request.fields.GetInt("mb"));
    const bool input_grad = request.fields.IntOr("input_grad", 1) != 0;
    std::lock_guard lock(mu_);
    last_used_ = Clock::now();
    auto it = pending_.find(mb);
    if (it == pending_.end())
      return InvalidArgument("session '" + name_ + "' has no pending forward for micro-batch " + std::to_string(mb) +
                             " (never forwarded with train = 1, or already backpropagated)");
    DNND_ASSIGN_OR_RETURN(Tensor g, Input(request, "g", layout_.output, "output gradient"));
    Pending p = it->second;
    if (g.shape() != p.y.shape())
      return InvalidArgument("output gradient for micro-batch " + std::to_string(mb) + " is " +
                             ShapeToString(g.shape()) + ", the forward gave " + ShapeToString(p.y.shape()));
    EraseLocked(mb);
    p.y.backward(g);
    wire::Message response;
    if (input_grad) {
      if (!p.x.grad().defined())
        return InvalidArgument("micro-batch " + std::to_string(mb) + " was forwarded with input_grad = 0; its input "
                               "gradient was not kept");
      response.tensors.push_back(wire::WireTensor::FromTensor("dx", p.x.grad()));
    }
    return response;
  }

  Result<wire::Message> Step(const wire::Message& request) {
    DNND_ASSIGN_OR_RETURN(double lr, request.fields.GetFloat("lr"));
    std::lock_guard lock(mu_);
    last_used_ = Clock::now();
    StepLocked(static_cast<float>(lr));
    wire::Message response;
    response.fields.SetInt("version", version_);
    return response;
  }

  Result<wire::Message> State() {
    std::lock_guard lock(mu_);
    last_used_ = Clock::now();
    wire::Message response;
    response.fields.SetInt("version", version_);
    for (const auto& [name, t] : params_) response.tensors.push_back(wire::WireTensor::FromTensor(name, t.detach().clone()));
    for (const auto& [name, t] : optimizer_->State())
      response.tensors.push_back(wire::WireTensor::FromTensor(std::string(kOptimizerPrefix) + name, t.clone()));
    return response;
  }

  // Parameters by name (all of them) and, if any "optimizer/" tensors come,
  // the optimizer state.
  Result<wire::Message> Load(const wire::Message& request) {
    std::map<std::string, Tensor> given;
    nn::NamedTensors optimizer_state;
    for (const auto& wt : request.tensors) {
      DNND_ASSIGN_OR_RETURN(Tensor t, wt.ToTensor());
      if (wt.name.rfind(kOptimizerPrefix, 0) == 0) optimizer_state.emplace_back(wt.name.substr(kOptimizerPrefix.size()), t);
      else given[wt.name] = t;
    }
    std::lock_guard lock(mu_);
    last_used_ = Clock::now();
    for (const auto& [name, t] : params_) {
      auto it = given.find(name);
      if (it == given.end()) return InvalidArgument("load into session '" + name_ + "' lacks parameter '" + name + "'");
      if (it->second.shape() != t.shape())
        return InvalidArgument("load into session '" + name_ + "': '" + name + "' is " +
                               ShapeToString(it->second.shape()) + ", the layer holds " + ShapeToString(t.shape()));
    }
    if (given.size() != params_.size())
      return InvalidArgument("load into session '" + name_ + "' carries " + std::to_string(given.size()) +
                             " parameters, its layers have " + std::to_string(params_.size()));
    for (auto& [name, t] : params_) t.detach().CopyFrom(given[name]);
    if (!optimizer_state.empty()) DNND_RETURN_IF_ERROR(optimizer_->LoadState(optimizer_state));
    wire::Message response;
    response.fields.SetInt("version", version_);
    return response;
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

  // The named tensor of `request`, checked to be [batch, per_sample...].
  Result<Tensor> Input(const wire::Message& request, const std::string& name, const Shape& per_sample,
                       const char* what) const {
    if (request.tensors.size() != 1 || request.tensors[0].name != name)
      return InvalidArgument("expected one tensor '" + name + "' (the " + what + ")");
    DNND_ASSIGN_OR_RETURN(Tensor t, request.tensors[0].ToTensor());
    Shape want = per_sample;
    want.insert(want.begin(), t.ndim() > 0 ? t.size(0) : 0);
    if (t.ndim() == 0 || t.size(0) < 1 || t.shape() != want)
      return InvalidArgument("session '" + name_ + "': the " + what + " is " + ShapeToString(t.shape()) +
                             ", layers " + std::to_string(layout_.first) + "-" + std::to_string(layout_.last - 1) +
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
  const std::shared_ptr<nn::Sequential> model_;
  const Layout layout_;
  nn::NamedTensors params_;
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

LayerServer::LayerServer(LayerServerOptions options, rpc::RpcServerOptions rpc, rpc::RpcClientOptions peers)
    : options_(options), server_(std::move(rpc)), peer_options_(std::move(peers)) {
  if (!options_.next_stages.empty()) {
    dialers_ = std::make_unique<rpc::asio::thread_pool>(options_.next_stages.size());
    for (const std::string& address : options_.next_stages)
      if (!peers_.count(address))
        peers_[address] = std::make_unique<PeerLink>(address, peer_options_, options_.connect_timeout, *dialers_);
  }
  using rpc::RpcServer;
  // Inline: the requests of one connection run in arrival order (see
  // layer_protocol.h); other connections run on the other I/O threads.
  const auto inline_ = RpcServer::Execution::kInline;
  server_.Handle(layers::kOpen, "layer_open",
                 RpcServer::SimpleHandler([this](const wire::Message& m, const rpc::PeerInfo& p) { return HandleOpen(m, p); }),
                 inline_);
  auto route = [this](Result<wire::Message> (Session::*fn)(const wire::Message&)) {
    return RpcServer::SimpleHandler([this, fn](const wire::Message& m, const rpc::PeerInfo&) -> Result<wire::Message> {
      DNND_ASSIGN_OR_RETURN(auto session, Find(m));
      return ((*session).*fn)(m);
    });
  };
  server_.Handle(layers::kForward, "layer_forward",
                 RpcServer::Handler([this](wire::Message m, rpc::Responder r) { Chained(std::move(m), std::move(r), false); }),
                 inline_);
  server_.Handle(layers::kBackward, "layer_backward",
                 RpcServer::Handler([this](wire::Message m, rpc::Responder r) { Chained(std::move(m), std::move(r), true); }),
                 inline_);
  server_.Handle(layers::kStep, "layer_step", route(&Session::Step), inline_);
  server_.Handle(layers::kLoad, "layer_load", route(&Session::Load), inline_);
  server_.Handle(layers::kState, "layer_state",
                 RpcServer::SimpleHandler([this](const wire::Message& m, const rpc::PeerInfo&) -> Result<wire::Message> {
                   DNND_ASSIGN_OR_RETURN(auto session, Find(m));
                   return session->State();
                 }),
                 inline_);
  server_.Handle(layers::kDrop, "layer_drop",
                 RpcServer::SimpleHandler([this](const wire::Message& m, const rpc::PeerInfo&) { return HandleDrop(m); }),
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
  DNND_ASSIGN_OR_RETURN(std::string name, request.fields.GetString("session"));
  std::lock_guard lock(mu_);
  auto it = sessions_.find(name);
  if (it == sessions_.end())
    return NotFound("no session '" + name + "' on this layer server (never opened, dropped, or idle for longer than "
                    "layer.session_idle_timeout_ms)");
  return it->second;
}

Result<LayerServer::PeerLink*> LayerServer::Peer(const std::string& address) {
  auto it = peers_.find(address);
  if (it != peers_.end()) return it->second.get();
  std::string allowed;
  for (const auto& [a, link] : peers_) allowed += (allowed.empty() ? "" : ", ") + a;
  return PermissionDenied("chain hop to " + address.substr(0, 256) + " refused: this layer server passes results only "
                          "to layer.next_stages = [" + allowed + "] (list the next stages there, as worker.placement "
                          "names them)");
}

void LayerServer::Chained(wire::Message request, rpc::Responder responder, bool backward) {
  auto session = Find(request);
  if (!session.ok()) return responder.Fail(session.status());
  const std::string chain = request.fields.StringOr("chain", "");
  // "host:port\tsession[\tlr]" lines: the stages still to run, and the
  // optimizer step each owes before it computes. Checked before this stage
  // computes: a hop this server may not take costs nothing.
  const size_t end = chain.find('\n');
  const std::string hop = chain.substr(0, end), rest = end == std::string::npos ? "" : chain.substr(end + 1);
  const size_t tab = hop.find('\t'), tab2 = tab == std::string::npos ? tab : hop.find('\t', tab + 1);
  const std::string address = hop.substr(0, tab);
  const std::string next_session = tab == std::string::npos ? "" : hop.substr(tab + 1, tab2 - tab - 1);
  char* lr_end = nullptr;
  const std::string lr_text = tab2 == std::string::npos ? "" : hop.substr(tab2 + 1);
  const double lr = std::strtod(lr_text.c_str(), &lr_end);
  PeerLink* link = nullptr;
  if (!chain.empty()) {
    if (address.empty() || next_session.empty() || (!lr_text.empty() && *lr_end != '\0'))
      return responder.Fail(InvalidArgument("chain hop '" + hop.substr(0, 512) + "' is not host:port<TAB>session[<TAB>lr]"));
    auto peer = Peer(address);
    if (!peer.ok()) return responder.Fail(peer.status());
    link = peer.value();
  }
  const int64_t input_grad = request.fields.IntOr("input_grad", 1);
  // Along a chain every stage but the first needs its input gradient: it is
  // what the next stage (the previous layers) backpropagates.
  if (backward && !chain.empty()) request.fields.SetInt("input_grad", 1);
  auto result = backward ? session.value()->Backward(request) : session.value()->Forward(request);
  if (!result.ok() || chain.empty()) {
    if (!result.ok()) return responder.Fail(result.status());
    return responder.Send(std::move(result).value());
  }
  wire::Message next;
  next.type = request.type;
  next.fields.SetString("session", next_session);
  if (!lr_text.empty()) next.fields.SetFloat("step_lr", lr);
  next.fields.SetInt("mb", request.fields.IntOr("mb", 0));
  if (backward) next.fields.SetInt("input_grad", input_grad);
  else next.fields.SetInt("train", request.fields.IntOr("train", 1));
  if (!rest.empty()) next.fields.SetString("chain", rest);
  wire::Message out = std::move(result).value();
  if (out.tensors.size() != 1) return responder.Fail(Internal("a chained stage produced no tensor"));
  out.tensors[0].name = backward ? "g" : "x";
  next.tensors.push_back(std::move(out.tensors[0]));
  link->Send(std::move(next), rpc::Clock::now() + peer_options_.default_timeout,
             [responder, address](Result<wire::Message> r) mutable {
               if (!r.ok()) return responder.Fail(r.status().WithContext("next layer server " + address));
               responder.Send(std::move(r).value());
             });
}

Result<wire::Message> LayerServer::HandleOpen(const wire::Message& request, const rpc::PeerInfo& peer) {
  DNND_ASSIGN_OR_RETURN(std::string name, request.fields.GetString("session"));
  DNND_ASSIGN_OR_RETURN(std::string spec_text, request.fields.GetString("spec"));
  DNND_ASSIGN_OR_RETURN(int64_t seed, request.fields.GetInt("seed"));
  DNND_ASSIGN_OR_RETURN(int64_t first, request.fields.GetInt("first"));
  DNND_ASSIGN_OR_RETURN(int64_t last, request.fields.GetInt("last"));
  if (name.empty() || name.size() > 256 ||
      std::any_of(name.begin(), name.end(), [](unsigned char c) { return c < 0x20 || c == 0x7f; }))
    return InvalidArgument("session names are 1-256 bytes without control characters");
  const std::string fingerprint = std::to_string(std::hash<std::string>{}(spec_text)) + "/" + std::to_string(seed) +
                                  "/" + std::to_string(first) + "-" + std::to_string(last);
  auto answer = [](const Session& s) {
    wire::Message r;
    r.fields.SetInt("parameters", s.parameter_count());
    return r;
  };
  {
    std::lock_guard lock(mu_);
    auto it = sessions_.find(name);
    if (it != sessions_.end()) {
      // Idempotent: a client that reconnects gets its session back.
      if (it->second->fingerprint() == fingerprint) return answer(*it->second);
      return AlreadyExists("session '" + name + "' already hosts other layers or another model; drop it first");
    }
    if (static_cast<int64_t>(sessions_.size()) >= options_.max_sessions)
      return ResourceExhausted("this layer server already hosts layer.max_sessions = " +
                               std::to_string(options_.max_sessions) + " sessions");
  }
  DNND_ASSIGN_OR_RETURN(ModelSpec spec, ParseModelSpecText(spec_text, "model spec from " + peer.address));
  DNND_ASSIGN_OR_RETURN(auto model, BuildModel(spec, static_cast<uint64_t>(seed)));
  const int64_t layer_count = static_cast<int64_t>(model->size());
  if (first < 0 || first >= last || last > layer_count)
    return InvalidArgument("layers " + std::to_string(first) + "-" + std::to_string(last - 1) +
                           " are not a range of the model's " + std::to_string(layer_count) + " layers");
  Session::Layout layout{static_cast<size_t>(first), static_cast<size_t>(last), spec.input, {}, 0};
  Shape s = spec.input;
  for (int64_t i = 0; i < last; ++i) {
    if (i == first) {
      layout.input = s;
      layout.cached_per_sample = ShapeNumel(s);
    }
    DNND_ASSIGN_OR_RETURN(s, model->at(i)->OutputShape(s));
    if (i >= first) layout.cached_per_sample += ShapeNumel(s);
  }
  layout.output = s;
  nn::NamedTensors params;
  for (auto& [pname, t] : model->NamedParameters())
    if (LayerOf(pname) >= first && LayerOf(pname) < last) params.emplace_back(pname, t);
  DNND_ASSIGN_OR_RETURN(auto optimizer, optim::MakeOptimizer(spec.optimizer, params));
  auto session = std::make_shared<Session>(name, fingerprint, std::move(model), layout, std::move(params),
                                           std::move(optimizer), cached_bytes_, options_.max_activation_bytes);
  std::lock_guard lock(mu_);
  auto [it, inserted] = sessions_.emplace(name, session);
  if (!inserted && it->second->fingerprint() != fingerprint)
    return AlreadyExists("session '" + name + "' already hosts other layers or another model; drop it first");
  SessionsGauge().Set(static_cast<double>(sessions_.size()));
  Log(LogLevel::kInfo, "layer-server", "session opened",
      {{"session", name}, {"layers", std::to_string(first) + "-" + std::to_string(last - 1)},
       {"parameters", it->second->parameter_count()}, {"peer", peer.address}});
  return answer(*it->second);
}

Result<wire::Message> LayerServer::HandleDrop(const wire::Message& request) {
  DNND_ASSIGN_OR_RETURN(std::string name, request.fields.GetString("session"));
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
    return InvalidArgument("layer.next_stages lists " + std::to_string(config.GetStrings("layer.next_stages").size()) +
                           " addresses; a layer server chains to at most " + std::to_string(kMaxNextStages));
  DNND_ASSIGN_OR_RETURN(auto rpc,
                        rpc::RpcServerOptions::FromConfig(config, config.GetString("layer.listen"), "layer-server"));
  // Stages of a chain call the next stage's server themselves.
  DNND_ASSIGN_OR_RETURN(auto peers, rpc::RpcClientOptions::FromConfig(config, "layer-server"));
  auto server = std::make_shared<LayerServer>(LayerServerOptions::FromConfig(config), std::move(rpc), std::move(peers));
  return std::unique_ptr<Role>(new ServingRole({
      .start = [server] { return server->Start(); },
      .stop = [server] {
        server->Stop();
        return Status(StatusCode::kCancelled, "stopped");
      },
      .readiness = nullptr,
  }));
}

}  // namespace dnnd
