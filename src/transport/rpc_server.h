// RPC server over the wire protocol: accepts TCP connections, runs the HELLO
// handshake, and dispatches each request by message type to a registered
// handler. Responses may go out in any order; a connection keeps reading
// while its earlier requests are still being handled.
//
//   RpcServer server(options);
//   server.Handle(kPull, "pull", [&](const wire::Message& req, const PeerInfo&)
//                 -> Result<wire::Message> { ... });
//   DNND_RETURN_IF_ERROR(server.Start());
//   ...
//   server.Stop();   // stop accepting, finish in-flight requests, close
//
// Handlers run either inline on the connection's I/O thread (for cheap ones:
// no hand-off, lowest latency) or on the handler pool (anything that computes
// or blocks). A handler can also keep its Responder and answer later, e.g. a
// synchronous parameter server that replies to all workers once the last
// gradient of a step has arrived.
//
// Doors (docs/wire.md, "Limits"): a connection is read with
// Limits::BeforeHandshake() until its HELLO_AUTH is verified, so an
// unauthenticated peer can make the server hold one small frame and nothing
// else; at most `max_connections` are open at once (more are answered with a
// ResourceExhausted error frame and closed); an authenticated connection with
// nothing in flight and no bytes moving for `idle_timeout` is closed; a peer
// that does not read its responses is disconnected (`max_queued_bytes`);
// accept() failures (the descriptor limit) pause the accept loop and are
// logged at most once a second.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/status.h"
#include "transport/connection.h"
#include "transport/hello.h"
#include "transport/wire.h"

namespace dnnd {
class Config;
class Counter;
class Gauge;
class Histogram;
}  // namespace dnnd

namespace dnnd::rpc {

struct InflightTracker;
struct RouteMetrics;

// An io_context with its own threads; stopped and joined on destruction.
class IoThreads {
 public:
  explicit IoThreads(int threads);
  ~IoThreads();
  asio::io_context& context() { return context_; }
  void Stop();

 private:
  asio::io_context context_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::vector<std::thread> threads_;
};

// Who sent a request.
struct PeerInfo {
  std::string address;  // "127.0.0.1:41234"
  wire::PeerIdentity identity;
};

// Answers one request exactly once, from any thread. A Responder dropped
// without answering sends an Internal error, so a client never waits for a
// response that cannot come.
class Responder {
 public:
  void Send(wire::Message response);
  void Fail(const Status& status);
  const PeerInfo& peer() const;
  const wire::Message& request_header() const;  // type, id (no fields/tensors)

  struct State;
  explicit Responder(std::shared_ptr<State> state) : state_(std::move(state)) {}

 private:
  std::shared_ptr<State> state_;
};

struct RpcServerOptions {
  std::string listen = "127.0.0.1:0";
  wire::PeerIdentity self{"server", "dnnd"};
  std::string token;
  wire::Limits limits;
  wire::EncodeOptions encode;
  int io_threads = 2;
  int handler_threads = 2;
  std::chrono::milliseconds hello_timeout{5000};
  size_t max_connections = 1024;
  std::chrono::milliseconds idle_timeout{600000};
  uint64_t max_queued_bytes = uint64_t{1} << 30;

  // From [transport] of a validated config; `listen` and `self` are the
  // role's. Reads transport.token_file if set.
  static Result<RpcServerOptions> FromConfig(const Config& config, std::string listen,
                                             std::string role);
};

class RpcServer {
 public:
  enum class Execution { kInline, kPool };
  using Handler = std::function<void(wire::Message request, Responder responder)>;
  using SimpleHandler =
      std::function<Result<wire::Message>(const wire::Message& request, const PeerInfo& peer)>;

  struct Stats {
    uint64_t connections = 0;  // open now
    uint64_t accepted = 0;     // since start
    uint64_t handshake_failures = 0;
    uint64_t refused_connections = 0;  // over max_connections
    uint64_t idle_closed = 0;          // closed after idle_timeout
    uint64_t slow_readers = 0;         // closed for passing max_queued_bytes
    uint64_t requests = 0;
    uint64_t request_errors = 0;  // requests answered with an error frame
    uint64_t bad_frames = 0;
    uint64_t bytes_in = 0, bytes_out = 0;
  };

  explicit RpcServer(RpcServerOptions options);
  ~RpcServer();  // Stop()
  RpcServer(const RpcServer&) = delete;
  RpcServer& operator=(const RpcServer&) = delete;

  // Register before Start(). `name` labels metrics and logs.
  void Handle(uint16_t type, std::string name, Handler handler,
              Execution execution = Execution::kPool);
  // A handler whose result is the response (the response's type, id and
  // flags are filled in; an error Status becomes an error frame).
  void Handle(uint16_t type, std::string name, SimpleHandler handler,
              Execution execution = Execution::kPool);

  // Binds and starts accepting. Errors name the address.
  Status Start();
  uint16_t port() const { return port_; }
  std::string address() const;  // "127.0.0.1:port"

  // Stops accepting; new requests on open connections are refused with
  // Unavailable; waits up to `grace` for in-flight handlers to answer; then
  // closes every connection and joins the threads. Idempotent.
  void Stop(std::chrono::milliseconds grace = std::chrono::milliseconds(5000));

  Stats stats() const;

 private:
  struct Route {
    std::string name;
    Handler handler;
    Execution execution;
    // Metric children resolved once at registration: no registry lookup per request.
    RouteMetrics* metrics = nullptr;
  };
  struct Session;
  friend struct Responder::State;

  void Accept();
  void OnAccepted(tcp::socket socket);
  // Answers a connection over max_connections with an error frame and closes it.
  void Refuse(tcp::socket socket, size_t open);
  // Arms the session's timer for the handshake deadline or, once
  // authenticated, for the idle deadline.
  void ArmHandshakeDeadline(const std::shared_ptr<Session>& session);
  void ArmIdleDeadline(const std::shared_ptr<Session>& session,
                       std::chrono::steady_clock::time_point at);
  void OnMessage(const std::shared_ptr<Session>& session, wire::Message message);
  void Dispatch(const std::shared_ptr<Session>& session, wire::Message message);

  RpcServerOptions options_;
  std::map<uint16_t, Route> routes_;
  std::unique_ptr<IoThreads> io_;
  std::unique_ptr<asio::thread_pool> pool_;
  std::unique_ptr<tcp::acceptor> acceptor_;
  uint16_t port_ = 0;
  std::shared_ptr<TransportStats> transport_stats_ = std::make_shared<TransportStats>();

  std::shared_ptr<InflightTracker> tracker_;
  mutable std::mutex mu_;
  std::set<std::shared_ptr<Session>> sessions_;
  bool started_ = false;
  std::atomic<bool> draining_{false};
  bool stopped_ = false;

  std::atomic<uint64_t> accepted_{0}, handshake_failures_{0}, requests_{0}, request_errors_{0};
  std::atomic<uint64_t> refused_connections_{0}, idle_closed_{0};
  LogThrottle accept_errors_log_, refused_log_, handshake_log_;
};

}  // namespace dnnd::rpc
