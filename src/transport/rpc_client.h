// RPC client for one server address: a small pool of authenticated
// connections, requests multiplexed by id (responses may come back in any
// order), per-call deadlines, reconnect with exponential backoff, and
// back-pressure on the bytes of requests awaiting their responses.
//
//   auto client = RpcClient::Create("dnnd-ps-0.dnnd-ps:7000", options);
//   Result<wire::Message> r = client->Call(std::move(request));  // blocks
//   client->CallAsync(std::move(request), deadline, [](Result<wire::Message> r) { ... });
//
// Connections are made lazily (or by Connect()), so peers may start in any
// order: a call waits, within its deadline, for the server to come up, and
// DNS names are resolved again on every attempt. An error frame from the
// server comes back as that Status; a lost connection fails its in-flight
// calls with Unavailable and the next call reconnects.
//
// Thread-safe: calls may come from any threads at once, and Close() (or a
// Canceller the client is bound to) from any thread but the client's own I/O
// thread -- that is, not from a `done` callback. Close() wakes every caller
// at once: one waiting for a connection (dialing, handshaking, backing off),
// for back-pressure or for a response gets Cancelled.
//
// Cancelling work whose clients are built out of reach (a pool worker's task
// builds its parameter-server exchange deep inside the trainer):
//
//   auto cancel = std::make_shared<Canceller>();
//   // on the task's thread:
//   CancelScope scope(cancel);  // clients created on this thread now are bound to it
//   RunTask();                  // ... and fail fast with Cancelled once
//   // elsewhere: cancel->Cancel();  closes them all (and any created later)
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/status.h"
#include "transport/connection.h"
#include "transport/hello.h"
#include "transport/rpc_server.h"
#include "transport/wire.h"

namespace dnnd {
class Config;
}

namespace dnnd::rpc {

using Clock = std::chrono::steady_clock;

class RpcClient;

// Closes the RpcClients bound to it (see CancelScope) when Cancel() is
// called, and any bound afterwards as soon as they are created: their
// pending and later calls fail with Cancelled at once instead of waiting
// for a peer that will not answer. Thread-safe; Cancel() must not be called
// from a bound client's `done` callback (Close() joins its I/O thread).
class Canceller {
 public:
  Canceller() = default;
  Canceller(const Canceller&) = delete;
  Canceller& operator=(const Canceller&) = delete;

  void Cancel();
  bool cancelled() const;

 private:
  friend class RpcClient;
  // A client binds itself at creation (closing itself if already cancelled)
  // and unbinds in its destructor; clients are closed under mu_, so a
  // client is never closed by Cancel() after its destructor has unbound it.
  void Bind(RpcClient* client);
  void Unbind(RpcClient* client);

  mutable std::mutex mu_;
  bool cancelled_ = false;
  std::set<RpcClient*> clients_;
};

// While alive, RpcClients created on this thread are bound to `canceller`
// (null: to none). Scopes nest; each restores the previous one.
class CancelScope {
 public:
  explicit CancelScope(std::shared_ptr<Canceller> canceller);
  ~CancelScope();
  CancelScope(const CancelScope&) = delete;
  CancelScope& operator=(const CancelScope&) = delete;

  // The canceller of this thread's innermost scope (null outside any).
  static std::shared_ptr<Canceller> Current();

 private:
  std::shared_ptr<Canceller> previous_;
};

struct RpcClientOptions {
  wire::PeerIdentity self{"client", "dnnd"};
  std::string token;
  wire::Limits limits;
  wire::EncodeOptions encode;
  int connections = 1;
  uint64_t max_inflight_bytes = uint64_t{256} << 20;
  std::chrono::milliseconds default_timeout{60000};
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds backoff_initial{50};
  std::chrono::milliseconds backoff_max{2000};

  static Result<RpcClientOptions> FromConfig(const Config& config, std::string role);
};

class RpcClient {
 public:
  using Callback = std::function<void(Result<wire::Message>)>;

  struct Stats {
    uint64_t calls = 0, failures = 0, reconnects = 0;
    uint64_t inflight_bytes = 0;
    uint64_t bytes_in = 0, bytes_out = 0;
  };

  // Starts no connection yet. `address` is host:port (names are resolved on
  // each connection attempt). Bound to the creating thread's CancelScope, if any.
  static std::unique_ptr<RpcClient> Create(std::string address, RpcClientOptions options);
  ~RpcClient();  // Close()
  RpcClient(const RpcClient&) = delete;
  RpcClient& operator=(const RpcClient&) = delete;

  // Connects and authenticates every pooled connection, retrying with backoff
  // until `deadline`. Optional: calls connect on demand.
  Status Connect(Clock::time_point deadline);

  // Sends `request` (its id is assigned here) and calls `done` exactly once:
  // with the response, the server's error, Unavailable, ResourceExhausted or
  // DeadlineExceeded. Blocks the caller only while connecting or while
  // back-pressure holds. `done` runs on an I/O thread or, for failures before
  // sending, on the caller's.
  void CallAsync(wire::Message request, Clock::time_point deadline, Callback done);
  // Blocking call with the default timeout (or `timeout`).
  Result<wire::Message> Call(wire::Message request);
  Result<wire::Message> Call(wire::Message request, std::chrono::milliseconds timeout);

  // Fails every in-flight call with Cancelled, wakes calls waiting to
  // connect or to send, closes the connections; later calls fail with
  // Cancelled at once. Idempotent; not from a `done` callback.
  void Close();

  const std::string& address() const { return address_; }
  // The server's identity from the last handshake (empty before one).
  wire::PeerIdentity server_identity() const;
  Stats stats() const;

 private:
  struct Pending {
    Callback done;
    uint64_t bytes = 0;
    std::unique_ptr<asio::steady_timer> timer;
  };
  struct Channel {
    std::mutex mu;
    std::condition_variable cv;
    std::shared_ptr<FrameConnection> connection;
    bool connecting = false;
    int failures = 0;  // consecutive failed attempts
    Clock::time_point next_attempt{};
    Status last_error;
    std::unordered_map<uint64_t, Pending> pending;
  };

  struct Started {
    Channel* channel;
    uint64_t id;
  };

  RpcClient(std::string address, RpcClientOptions options);
  // Sends `request`; `done` is called exactly once. With `arm_timer` an I/O
  // timer enforces the deadline; a blocking caller enforces it itself (arming
  // a timer from a foreign thread wakes the I/O thread, which costs more than
  // a loopback round trip). Returns where the call is pending, if it was sent.
  std::optional<Started> Start(wire::Message request, Clock::time_point deadline, Callback done,
                               bool arm_timer);
  // Returns a ready connection of `channel`, connecting (with backoff) if needed.
  Result<std::shared_ptr<FrameConnection>> Ready(Channel& channel, Clock::time_point deadline);
  Result<std::shared_ptr<FrameConnection>> Dial(Clock::time_point deadline);
  void OnMessage(Channel& channel, wire::Message message);
  void OnClose(Channel& channel, const std::shared_ptr<FrameConnection>& connection,
               const Status& reason);
  void Finish(Channel& channel, uint64_t id, Result<wire::Message> result);
  Status AcquireBytes(uint64_t bytes, Clock::time_point deadline);
  void ReleaseBytes(uint64_t bytes);

  const std::string address_;
  const RpcClientOptions options_;
  std::unique_ptr<IoThreads> io_;
  std::shared_ptr<TransportStats> transport_stats_ = std::make_shared<TransportStats>();
  std::vector<std::unique_ptr<Channel>> channels_;
  std::atomic<uint64_t> next_id_{1};
  std::atomic<uint64_t> next_channel_{0};
  std::atomic<bool> closed_{false};
  // Readable once closed: a dial or handshake blocked in poll() wakes on it.
  int wake_fd_ = -1;
  std::shared_ptr<Canceller> canceller_;  // from the creating thread's CancelScope

  mutable std::mutex bytes_mu_;
  std::condition_variable bytes_cv_;
  uint64_t inflight_bytes_ = 0;

  mutable std::mutex identity_mu_;
  wire::PeerIdentity server_identity_;
  std::atomic<uint64_t> calls_{0}, failures_{0}, reconnects_{0};
};

}  // namespace dnnd::rpc
