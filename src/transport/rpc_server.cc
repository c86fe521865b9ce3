#include "transport/rpc_server.h"

#include <sys/socket.h>

#include <future>

#include "core/config.h"
#include "core/files.h"
#include "core/log.h"
#include "core/metrics.h"
#include "transport/secrets.h"

namespace dnnd::rpc {

namespace {
// How long the accept loop rests after accept() fails (as src/transport/http.cc does).
constexpr std::chrono::milliseconds kAcceptPause{50};
}  // namespace

// ---------------------------------------------------------------------------
// IoThreads
// ---------------------------------------------------------------------------

IoThreads::IoThreads(int threads) : work_(asio::make_work_guard(context_)) {
  for (int i = 0; i < std::max(1, threads); ++i) threads_.emplace_back([this] { context_.run(); });
}

IoThreads::~IoThreads() { Stop(); }

void IoThreads::Stop() {
  work_.reset();
  context_.stop();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
}

// ---------------------------------------------------------------------------
// Responder
// ---------------------------------------------------------------------------

// Per-route metric children, resolved once when the route is registered.
struct RouteMetrics {
  explicit RouteMetrics(const std::string& route)
      : route(route),
        ok(DefaultMetrics().Counter("dnnd_rpc_requests_total",
                                    "RPC requests served, by route and result code",
                                    {{"route", route}, {"code", "ok"}})),
        duration(DefaultMetrics().Histogram(
            "dnnd_rpc_request_duration_seconds", "Time from a request's arrival to its response",
            {{"route", route}},
            {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
             0.5, 1, 2.5, 5, 10, 30})) {}
  void Record(StatusCode code, std::chrono::steady_clock::time_point start) {
    if (code == StatusCode::kOk)
      ok.Inc();
    else
      DefaultMetrics()
          .Counter("dnnd_rpc_requests_total", "",
                   {{"route", route}, {"code", StatusCodeName(code)}})
          .Inc();
    duration.Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::string route;
  Counter& ok;
  Histogram& duration;
};

RouteMetrics* MetricsForRoute(const std::string& route) {
  static std::mutex mu;
  static auto* cache = new std::map<std::string, std::unique_ptr<RouteMetrics>>;
  std::lock_guard lock(mu);
  auto& slot = (*cache)[route];
  if (!slot) slot = std::make_unique<RouteMetrics>(route);
  return slot.get();
}

// Counts requests between dispatch and answer, so Stop() can wait for them.
// Shared with Responders, which may outlive the server.
struct InflightTracker {
  std::mutex mu;
  std::condition_variable cv;
  uint64_t inflight = 0;
  std::atomic<uint64_t> errors{0};
  void Begin() {
    std::lock_guard lock(mu);
    ++inflight;
  }
  void End(bool error) {
    if (error) errors++;
    std::lock_guard lock(mu);
    if (--inflight == 0) cv.notify_all();
  }
};

struct Responder::State {
  std::weak_ptr<FrameConnection> connection;
  wire::Message header;  // type and id of the request
  PeerInfo peer;
  std::shared_ptr<InflightTracker> tracker;
  std::shared_ptr<std::atomic<int64_t>> session_inflight;
  std::string route;
  RouteMetrics* metrics = nullptr;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  std::atomic<bool> answered{false};

  void Answer(wire::Message response) {
    if (answered.exchange(true)) return;
    response.type = header.type;
    response.request_id = header.request_id;
    response.flags |= wire::kFlagResponse;
    bool error = response.is_error();
    StatusCode code = error ? response.ErrorStatus().code() : StatusCode::kOk;
    if (auto conn = connection.lock()) {
      Status s = conn->Send(response);
      if (!s.ok() && s.code() != StatusCode::kUnavailable) {
        // The response itself broke a limit: tell the client why instead.
        Log(LogLevel::kError, "rpc", "cannot send response",
            {{"route", route}, {"error", s.ToString()}});
        (void)conn->Send(wire::Message::ErrorTo(header, s.WithContext("response to " + route)));
        error = true;
        code = s.code();
      }
    }
    if (metrics) metrics->Record(code, start);
    if (session_inflight) session_inflight->fetch_sub(1);
    tracker->End(error);
  }

  ~State() {
    if (!answered.load())
      Answer(wire::Message::ErrorTo(header, Internal(route + " handler dropped the request")));
  }
};

void Responder::Send(wire::Message response) { state_->Answer(std::move(response)); }
void Responder::Fail(const Status& status) {
  state_->Answer(wire::Message::ErrorTo(state_->header, status));
}
const PeerInfo& Responder::peer() const { return state_->peer; }
const wire::Message& Responder::request_header() const { return state_->header; }

// ---------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------

Result<RpcServerOptions> RpcServerOptions::FromConfig(const Config& config, std::string listen,
                                                      std::string role) {
  RpcServerOptions o;
  o.listen = std::move(listen);
  o.self = {std::move(role), config.GetString("node.name")};
  o.encode = wire::EncodeOptions::FromConfig(config);
  o.limits = o.encode.limits;
  o.io_threads = static_cast<int>(config.GetInt("transport.io_threads"));
  o.handler_threads = static_cast<int>(config.GetInt("transport.handler_threads"));
  o.hello_timeout = std::chrono::milliseconds(config.GetInt("transport.hello_timeout_ms"));
  o.max_connections = static_cast<size_t>(config.GetInt("transport.max_connections"));
  o.idle_timeout = std::chrono::milliseconds(config.GetInt("transport.idle_timeout_ms"));
  o.max_queued_bytes = static_cast<uint64_t>(config.GetInt("transport.max_queued_bytes"));
  DNND_ASSIGN_OR_RETURN(o.token, wire::LoadTransportToken(config));
  DNND_RETURN_IF_ERROR(wire::CheckListenSecurity(config, o.listen, o.self.role + " wire listener",
                                                 !o.token.empty()));
  return o;
}

// ---------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------

struct RpcServer::Session {
  std::shared_ptr<FrameConnection> connection;
  std::string server_nonce;
  PeerInfo peer;
  std::atomic<bool> authenticated{false};
  // The handshake deadline, then the idle deadline; used only on the
  // connection's strand.
  std::unique_ptr<asio::steady_timer> timer;
  // Requests dispatched and not yet answered (shared with their Responders).
  std::shared_ptr<std::atomic<int64_t>> inflight = std::make_shared<std::atomic<int64_t>>(0);
};

RpcServer::RpcServer(RpcServerOptions options)
    : options_(std::move(options)), tracker_(std::make_shared<InflightTracker>()) {}

RpcServer::~RpcServer() { Stop(std::chrono::milliseconds(1000)); }

void RpcServer::Handle(uint16_t type, std::string name, Handler handler, Execution execution) {
  RouteMetrics* metrics = MetricsForRoute(name);
  routes_[type] = Route{std::move(name), std::move(handler), execution, metrics};
}

void RpcServer::Handle(uint16_t type, std::string name, SimpleHandler handler,
                       Execution execution) {
  Handle(type, std::move(name),
         Handler([handler = std::move(handler)](wire::Message request, Responder responder) {
           auto result = handler(request, responder.peer());
           if (result.ok())
             responder.Send(std::move(result).value());
           else
             responder.Fail(result.status());
         }),
         execution);
}

Status RpcServer::Start() {
  std::lock_guard lock(mu_);
  if (started_) return Internal("RpcServer started twice");
  DNND_ASSIGN_OR_RETURN(auto host_port, SplitHostPort(options_.listen));
  io_ = std::make_unique<IoThreads>(options_.io_threads);
  pool_ = std::make_unique<asio::thread_pool>(std::max(1, options_.handler_threads));
  boost::system::error_code ec;
  tcp::resolver resolver(io_->context());
  auto endpoints = resolver.resolve(host_port.first, std::to_string(host_port.second), ec);
  if (ec || endpoints.empty())
    return Unavailable("cannot resolve listen address '" + options_.listen + "': " + ec.message());
  const tcp::endpoint endpoint = endpoints.begin()->endpoint();
  // On a strand: Accept(), its pause timer and Stop()'s close never run at
  // once on two I/O threads (ThreadSanitizer saw that race).
  acceptor_ = std::make_unique<tcp::acceptor>(asio::make_strand(io_->context()));
  if (acceptor_->open(endpoint.protocol(), ec); ec)
    return IoError("socket for " + options_.listen + ": " + ec.message());
  acceptor_->set_option(tcp::acceptor::reuse_address(true), ec);
  if (acceptor_->bind(endpoint, ec); ec)
    return IoError("cannot bind " + options_.listen + ": " + ec.message());
  if (acceptor_->listen(asio::socket_base::max_listen_connections, ec); ec)
    return IoError("cannot listen on " + options_.listen + ": " + ec.message());
  port_ = acceptor_->local_endpoint().port();
  started_ = true;
  if (options_.token.empty())
    Log(LogLevel::kWarn, "rpc",
        "no transport token configured: any peer that can connect is accepted",
        {{"listen", address()}});
  Log(LogLevel::kInfo, "rpc", "listening", {{"address", address()}, {"role", options_.self.role}});
  asio::post(acceptor_->get_executor(), [this] { Accept(); });
  return Status::Ok();
}

std::string RpcServer::address() const {
  auto hp = SplitHostPort(options_.listen);
  return (hp.ok() ? hp.value().first : std::string("?")) + ":" + std::to_string(port_);
}

void RpcServer::Accept() {
  acceptor_->async_accept(asio::make_strand(io_->context()),
                          [this](const boost::system::error_code& ec, tcp::socket socket) {
                            if (ec == asio::error::operation_aborted || !acceptor_->is_open())
                              return;
                            if (!ec) {
                              OnAccepted(std::move(socket));
                              Accept();
                              return;
                            }
                            // EMFILE and friends: the connection stays in the backlog, so accepting
                            // again at once would spin (and log) as fast as the CPU allows. Pause,
                            // and say so at most once a second.
                            if (uint64_t held_back = 0; accept_errors_log_.Allow(&held_back))
                              Log(LogLevel::kWarn, "rpc", "accept failed; pausing the accept loop",
                                  {{"address", address()},
                                   {"error", ec.message()},
                                   {"pause_ms", static_cast<int64_t>(kAcceptPause.count())},
                                   {"failures_not_logged", static_cast<int64_t>(held_back)}});
                            auto timer = std::make_shared<asio::steady_timer>(
                                acceptor_->get_executor(), kAcceptPause);
                            timer->async_wait([this, timer](const boost::system::error_code& e) {
                              if (!e && acceptor_->is_open()) Accept();
                            });
                          });
}

void RpcServer::Refuse(tcp::socket socket, size_t open) {
  refused_connections_++;
  const Status why =
      ResourceExhausted("server " + address() + " already has " + std::to_string(open) +
                        " connections, its transport.max_connections; try again later");
  if (uint64_t held_back = 0; refused_log_.Allow(&held_back))
    Log(LogLevel::kWarn, "rpc", "refused connection over the connection cap",
        {{"address", address()},
         {"max_connections", static_cast<int64_t>(options_.max_connections)},
         {"refusals_not_logged", static_cast<int64_t>(held_back)}});
  // In place of the HELLO, so a dnnd client reports the reason (and retries
  // with backoff). One small non-blocking write; what the kernel does not
  // take is dropped with the connection.
  auto frame = wire::EncodeFrame(wire::Message::ErrorTo(wire::type::kHello, 0, why));
  if (frame.ok()) {
    const std::string bytes = wire::FlattenFrame(frame.value());
    (void)::send(socket.native_handle(), bytes.data(), bytes.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  }
  boost::system::error_code ec;
  socket.shutdown(tcp::socket::shutdown_send, ec);
  socket.close(ec);
}

void RpcServer::OnAccepted(tcp::socket socket) {
  accepted_++;
  static Gauge& open_connections =
      DefaultMetrics().Gauge("dnnd_rpc_connections", "Open wire-protocol server connections");
  size_t open;
  {
    std::lock_guard lock(mu_);
    if (draining_) return;    // the socket closes here
    open = sessions_.size();  // only closes change it meanwhile: accepts are one at a time
  }
  if (open >= options_.max_connections) return Refuse(std::move(socket), open);
  auto session = std::make_shared<Session>();
  // Until the peer proves the token it may send one small HELLO_AUTH, nothing more.
  session->connection = std::make_shared<FrameConnection>(
      std::move(socket), options_.limits.BeforeHandshake(), options_.encode, transport_stats_,
      options_.max_queued_bytes);
  session->peer.address = session->connection->peer();
  session->server_nonce = wire::RandomNonce();
  {
    std::lock_guard lock(mu_);
    if (draining_) return;  // the socket closes with the session
    sessions_.insert(session);
  }
  open_connections.Inc();
  std::weak_ptr<Session> weak = session;
  FrameConnection::Callbacks callbacks;
  callbacks.on_message = [this, weak](wire::Message m) {
    if (auto s = weak.lock()) OnMessage(s, std::move(m));
  };
  callbacks.on_close = [this, weak](const Status& reason) {
    auto s = weak.lock();
    if (!s) return;
    s->timer->cancel();  // on the connection's strand, like every use of the timer
    Log(LogLevel::kDebug, "rpc", "connection closed",
        {{"peer", s->peer.address}, {"reason", reason.ToString()}});
    open_connections.Dec();
    std::lock_guard lock(mu_);
    sessions_.erase(s);
  };
  session->timer = std::make_unique<asio::steady_timer>(session->connection->strand());
  ArmHandshakeDeadline(session);
  session->connection->Start(std::move(callbacks));
  (void)session->connection->Send(wire::MakeHello(options_.self, session->server_nonce));
}

void RpcServer::ArmHandshakeDeadline(const std::shared_ptr<Session>& session) {
  std::weak_ptr<Session> weak = session;
  session->timer->expires_after(options_.hello_timeout);
  session->timer->async_wait([this, weak](const boost::system::error_code& ec) {
    auto s = weak.lock();
    if (ec || !s || s->authenticated) return;
    handshake_failures_++;
    DefaultMetrics()
        .Counter("dnnd_rpc_handshake_failures_total", "Connections refused in the HELLO handshake",
                 {{"reason", "DeadlineExceeded"}})
        .Inc();
    if (uint64_t held_back = 0; handshake_log_.Allow(&held_back))
      Log(LogLevel::kWarn, "rpc", "refused connection: no HELLO_AUTH within the handshake timeout",
          {{"peer", s->peer.address}, {"refusals_not_logged", static_cast<int64_t>(held_back)}});
    s->connection->Close(DeadlineExceeded("no HELLO_AUTH within transport.hello_timeout_ms (" +
                                          std::to_string(options_.hello_timeout.count()) + " ms)"));
  });
}

void RpcServer::ArmIdleDeadline(const std::shared_ptr<Session>& session,
                                std::chrono::steady_clock::time_point at) {
  std::weak_ptr<Session> weak = session;
  session->timer->expires_at(at);
  session->timer->async_wait([this, weak](const boost::system::error_code& ec) {
    auto s = weak.lock();
    if (ec || !s || s->connection->closed()) return;
    const auto now = std::chrono::steady_clock::now();
    // A request still being handled (a sync barrier, a long computation) is
    // not idleness: look again a whole period later.
    if (s->inflight->load() > 0) return ArmIdleDeadline(s, now + options_.idle_timeout);
    const auto due = s->connection->last_activity() + options_.idle_timeout;
    if (now < due) return ArmIdleDeadline(s, due);
    idle_closed_++;
    Log(LogLevel::kInfo, "rpc", "closing an idle connection",
        {{"peer", s->peer.address},
         {"node", s->peer.identity.node},
         {"idle_timeout_ms", static_cast<int64_t>(options_.idle_timeout.count())}});
    s->connection->Close(DeadlineExceeded("no traffic for transport.idle_timeout_ms (" +
                                          std::to_string(options_.idle_timeout.count()) + " ms)"));
  });
}

void RpcServer::OnMessage(const std::shared_ptr<Session>& session, wire::Message message) {
  if (!session->authenticated) {
    wire::Message response;
    auto who = wire::VerifyHelloAuth(message, options_.self, options_.token, session->server_nonce,
                                     &response);
    if (!who.ok()) {
      handshake_failures_++;
      DefaultMetrics()
          .Counter("dnnd_rpc_handshake_failures_total",
                   "Connections refused in the HELLO handshake",
                   {{"reason", StatusCodeName(who.status().code())}})
          .Inc();
      if (uint64_t held_back = 0; handshake_log_.Allow(&held_back))
        Log(LogLevel::kWarn, "rpc", "refused connection",
            {{"peer", session->peer.address},
             {"reason", who.status().ToString()},
             {"refusals_not_logged", static_cast<int64_t>(held_back)}});
      (void)session->connection->Send(wire::Message::ErrorTo(message, who.status()));
      session->connection->CloseAfterWrites(who.status());
      return;
    }
    session->authenticated = true;
    session->connection->UseLimits(options_.limits);  // on the strand: applies from the next frame
    ArmIdleDeadline(session, std::chrono::steady_clock::now() + options_.idle_timeout);
    session->peer.identity = who.value();
    (void)session->connection->Send(response);
    Log(LogLevel::kDebug, "rpc", "peer authenticated",
        {{"peer", session->peer.address}, {"role", who.value().role}, {"node", who.value().node}});
    return;
  }
  if (message.is_response()) {
    Log(LogLevel::kWarn, "rpc", "ignoring a response frame sent to a server",
        {{"peer", session->peer.address}});
    return;
  }
  Dispatch(session, std::move(message));
}

void RpcServer::Dispatch(const std::shared_ptr<Session>& session, wire::Message message) {
  requests_++;
  const uint16_t type = message.type;
  if (draining_) {
    request_errors_++;
    (void)session->connection->Send(
        wire::Message::ErrorTo(message, Unavailable("server is shutting down")));
    return;
  }
  auto state = std::make_shared<Responder::State>();
  state->connection = session->connection;
  state->header.type = type;
  state->header.request_id = message.request_id;
  state->peer = session->peer;
  state->tracker = tracker_;
  state->session_inflight = session->inflight;
  session->inflight->fetch_add(1);
  tracker_->Begin();

  if (type == wire::type::kPing) {  // built in: echo fields and tensors
    state->route = "ping";
    state->metrics = MetricsForRoute("ping");
    wire::Message echo;
    echo.fields = std::move(message.fields);
    echo.tensors = std::move(message.tensors);
    Responder(state).Send(std::move(echo));
    return;
  }
  auto it = routes_.find(type);
  if (it == routes_.end()) {
    state->route = "unknown";
    state->metrics = MetricsForRoute("unknown");
    Responder(state).Fail(NotFound("no handler for message type " + std::to_string(type) +
                                   " on this " + options_.self.role));
    return;
  }
  const Route& route = it->second;
  state->route = route.name;
  state->metrics = route.metrics;
  auto run = [&route, state, message = std::move(message)]() mutable {
    try {
      route.handler(std::move(message), Responder(state));
    } catch (const std::exception& e) {
      Log(LogLevel::kError, "rpc", "handler threw", {{"route", route.name}, {"error", e.what()}});
      Responder(state).Fail(Internal(route.name + ": " + e.what()));
    }
  };
  if (route.execution == Execution::kInline)
    run();
  else
    asio::post(*pool_, std::move(run));
}

void RpcServer::Stop(std::chrono::milliseconds grace) {
  {
    std::lock_guard lock(mu_);
    if (!started_ || stopped_) return;
    stopped_ = true;
  }
  draining_ = true;
  // The acceptor belongs to the I/O threads; close it there.
  std::promise<void> closed;
  asio::post(acceptor_->get_executor(), [this, &closed] {
    boost::system::error_code ec;
    acceptor_->close(ec);
    closed.set_value();
  });
  closed.get_future().wait();
  {
    std::unique_lock lock(tracker_->mu);
    if (!tracker_->cv.wait_for(lock, grace, [&] { return tracker_->inflight == 0; }))
      Log(LogLevel::kWarn, "rpc", "stopping with requests still in flight",
          {{"inflight", static_cast<int64_t>(tracker_->inflight)}});
  }
  std::set<std::shared_ptr<Session>> sessions;
  {
    std::lock_guard lock(mu_);
    sessions.swap(sessions_);
  }
  for (auto& s : sessions) s->connection->Close(Unavailable("server stopped"));
  pool_->stop();
  pool_->join();
  io_->Stop();
  sessions.clear();
  Log(LogLevel::kInfo, "rpc", "stopped", {{"address", address()}});
}

RpcServer::Stats RpcServer::stats() const {
  Stats s;
  {
    std::lock_guard lock(mu_);
    s.connections = sessions_.size();
  }
  s.accepted = accepted_;
  s.handshake_failures = handshake_failures_;
  s.refused_connections = refused_connections_;
  s.idle_closed = idle_closed_;
  s.slow_readers = transport_stats_->slow_readers;
  s.requests = requests_;
  s.request_errors = tracker_->errors + request_errors_;
  s.bad_frames = transport_stats_->bad_frames;
  s.bytes_in = transport_stats_->bytes_in;
  s.bytes_out = transport_stats_->bytes_out;
  return s;
}

}  // namespace dnnd::rpc
