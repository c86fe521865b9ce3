#include "transport/rpc_client.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <future>
#include <random>
#include <thread>
#include <utility>

#include "core/config.h"
#include "core/log.h"

namespace dnnd::rpc {
namespace {

constexpr auto kSpinBeforeSleep = std::chrono::microseconds(50);

int64_t MillisUntil(Clock::time_point deadline) {
  return std::max<int64_t>(
      0, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
}

// Blocking I/O with a deadline on a connected socket (handshake only; the
// connection is handed to the asynchronous FrameConnection afterwards).
// `wake_fd` (the client's, readable once it is closed) ends the wait early.
Status WaitFd(int fd, short events, int wake_fd, Clock::time_point deadline,
              const std::string& what) {
  for (;;) {
    pollfd p[2] = {{fd, events, 0}, {wake_fd, POLLIN, 0}};
    const int r = ::poll(p, wake_fd >= 0 ? 2 : 1,
                         static_cast<int>(std::min<int64_t>(MillisUntil(deadline), 1 << 30)));
    if (r > 0 && p[1].revents) return Cancelled("client closed while " + what);
    if (r > 0) return Status::Ok();
    if (r == 0) return DeadlineExceeded("timed out " + what);
    if (errno != EINTR) return Unavailable(what + ": " + std::strerror(errno));
  }
}

Status ReadExactly(int fd, uint8_t* p, size_t n, int wake_fd, Clock::time_point deadline) {
  while (n > 0) {
    DNND_RETURN_IF_ERROR(WaitFd(fd, POLLIN, wake_fd, deadline, "waiting for the handshake"));
    const ssize_t got = ::recv(fd, p, n, MSG_DONTWAIT);
    if (got == 0) return Unavailable("server closed the connection during the handshake");
    if (got < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
      return Unavailable(std::string("handshake read: ") + std::strerror(errno));
    }
    p += got;
    n -= static_cast<size_t>(got);
  }
  return Status::Ok();
}

Status WriteAll(int fd, const std::string& bytes, int wake_fd, Clock::time_point deadline) {
  size_t off = 0;
  while (off < bytes.size()) {
    DNND_RETURN_IF_ERROR(WaitFd(fd, POLLOUT, wake_fd, deadline, "sending the handshake"));
    const ssize_t n =
        ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
      return Unavailable(std::string("handshake write: ") + std::strerror(errno));
    }
    off += static_cast<size_t>(n);
  }
  return Status::Ok();
}

// Reads one whole frame; `limits` are the handshake's, so every buffer here is small.
Result<wire::Message> ReadFrameBlocking(int fd, const wire::Limits& limits, int wake_fd,
                                        Clock::time_point deadline) {
  uint8_t header_bytes[wire::kHeaderBytes];
  DNND_RETURN_IF_ERROR(ReadExactly(fd, header_bytes, sizeof header_bytes, wake_fd, deadline));
  DNND_ASSIGN_OR_RETURN(wire::FrameHeader h, wire::ParseHeader(header_bytes, limits));
  std::vector<uint8_t> metadata(h.metadata_len);
  DNND_RETURN_IF_ERROR(ReadExactly(fd, metadata.data(), metadata.size(), wake_fd, deadline));
  DNND_ASSIGN_OR_RETURN(wire::ParsedMetadata md, wire::ParseMetadata(metadata.data(), h, limits));
  std::shared_ptr<Storage> payload;
  if (h.payload_len()) {
    payload = Storage::Allocate(h.payload_len());
    DNND_RETURN_IF_ERROR(ReadExactly(fd, static_cast<uint8_t*>(payload->data()), h.payload_len(),
                                     wake_fd, deadline));
  }
  return wire::AssembleMessage(h, std::move(md), std::move(payload));
}

bool Retryable(const Status& s) {
  return s.code() != StatusCode::kPermissionDenied && s.code() != StatusCode::kUnsupported &&
         s.code() != StatusCode::kInvalidArgument && s.code() != StatusCode::kCancelled;
}

thread_local std::shared_ptr<Canceller> current_canceller;

}  // namespace

void Canceller::Cancel() {
  std::lock_guard lock(mu_);
  if (cancelled_) return;
  cancelled_ = true;
  for (RpcClient* client : clients_) client->Close();
}

bool Canceller::cancelled() const {
  std::lock_guard lock(mu_);
  return cancelled_;
}

void Canceller::Bind(RpcClient* client) {
  std::lock_guard lock(mu_);
  clients_.insert(client);
  if (cancelled_) client->Close();
}

void Canceller::Unbind(RpcClient* client) {
  std::lock_guard lock(mu_);
  clients_.erase(client);
}

CancelScope::CancelScope(std::shared_ptr<Canceller> canceller)
    : previous_(std::exchange(current_canceller, std::move(canceller))) {}

CancelScope::~CancelScope() { current_canceller = std::move(previous_); }

std::shared_ptr<Canceller> CancelScope::Current() { return current_canceller; }

Result<RpcClientOptions> RpcClientOptions::FromConfig(const Config& config, std::string role) {
  RpcClientOptions o;
  o.self = {std::move(role), config.GetString("node.name")};
  o.encode = wire::EncodeOptions::FromConfig(config);
  o.limits = o.encode.limits;
  o.connections = static_cast<int>(config.GetInt("transport.connections_per_peer"));
  o.max_inflight_bytes = static_cast<uint64_t>(config.GetInt("transport.max_inflight_bytes"));
  o.default_timeout = std::chrono::milliseconds(config.GetInt("transport.request_timeout_ms"));
  o.connect_timeout = std::chrono::milliseconds(config.GetInt("transport.hello_timeout_ms"));
  DNND_ASSIGN_OR_RETURN(o.token, wire::LoadTransportToken(config));
  return o;
}

std::unique_ptr<RpcClient> RpcClient::Create(std::string address, RpcClientOptions options) {
  return std::unique_ptr<RpcClient>(new RpcClient(std::move(address), std::move(options)));
}

RpcClient::RpcClient(std::string address, RpcClientOptions options)
    : address_(std::move(address)),
      options_(std::move(options)),
      io_(std::make_unique<IoThreads>(1)),
      wake_fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)),
      canceller_(CancelScope::Current()) {
  for (int i = 0; i < std::max(1, options_.connections); ++i)
    channels_.push_back(std::make_unique<Channel>());
  if (canceller_) canceller_->Bind(this);
}

RpcClient::~RpcClient() {
  if (canceller_) canceller_->Unbind(this);
  Close();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

Result<std::shared_ptr<FrameConnection>> RpcClient::Dial(Clock::time_point deadline) {
  DNND_ASSIGN_OR_RETURN(auto host_port, SplitHostPort(address_));
  boost::system::error_code ec;
  tcp::resolver resolver(io_->context());
  auto endpoints = resolver.resolve(host_port.first, std::to_string(host_port.second), ec);
  if (ec) return Unavailable("cannot resolve " + address_ + ": " + ec.message());
  Status last = Unavailable("no address for " + address_);
  for (const auto& entry : endpoints) {
    tcp::socket socket(io_->context());
    socket.open(entry.endpoint().protocol(), ec);
    if (ec) return IoError("socket: " + ec.message());
    socket.non_blocking(true, ec);
    socket.connect(entry.endpoint(), ec);
    const int fd = socket.native_handle();
    if (ec == asio::error::would_block || ec == asio::error::in_progress) {
      Status waited = WaitFd(fd, POLLOUT, wake_fd_, deadline, "connecting to " + address_);
      if (waited.code() == StatusCode::kCancelled) return waited;
      if (!waited.ok()) {
        last = waited;
        continue;
      }
      int err = 0;
      socklen_t len = sizeof err;
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err) {
        last = Unavailable("cannot connect to " + address_ + ": " + std::strerror(err));
        continue;
      }
    } else if (ec) {
      last = Unavailable("cannot connect to " + address_ + ": " + ec.message());
      continue;
    }
    // Handshake (docs/wire.md): HELLO in, HELLO_AUTH out, proof back. Until
    // the server has proven the token, its frames are held to the same small
    // limits a server applies to an unauthenticated client.
    const wire::Limits handshake_limits = options_.limits.BeforeHandshake();
    DNND_ASSIGN_OR_RETURN(wire::Message hello,
                          ReadFrameBlocking(fd, handshake_limits, wake_fd_, deadline));
    const std::string client_nonce = wire::RandomNonce();
    DNND_ASSIGN_OR_RETURN(wire::Message auth,
                          wire::MakeHelloAuth(hello, options_.self, options_.token, client_nonce));
    DNND_ASSIGN_OR_RETURN(wire::EncodedFrame frame, wire::EncodeFrame(auth, options_.encode));
    DNND_RETURN_IF_ERROR(WriteAll(fd, wire::FlattenFrame(frame), wake_fd_, deadline));
    DNND_ASSIGN_OR_RETURN(wire::Message response,
                          ReadFrameBlocking(fd, handshake_limits, wake_fd_, deadline));
    const std::string server_nonce = hello.fields.GetBytes("nonce").value();
    auto who = wire::VerifyHelloResponse(response, options_.token, client_nonce, server_nonce);
    if (!who.ok()) return who.status().WithContext(address_);
    {
      std::lock_guard lock(identity_mu_);
      server_identity_ = who.value();
    }
    return std::make_shared<FrameConnection>(std::move(socket), options_.limits, options_.encode,
                                             transport_stats_);
  }
  return last;
}

Result<std::shared_ptr<FrameConnection>> RpcClient::Ready(Channel& ch, Clock::time_point deadline) {
  std::unique_lock lock(ch.mu);
  for (;;) {
    if (closed_) return Cancelled("client for " + address_ + " is closed");
    if (ch.connection && !ch.connection->closed()) return ch.connection;
    if (ch.connecting) {
      if (ch.cv.wait_until(lock, deadline) == std::cv_status::timeout)
        return DeadlineExceeded("connecting to " + address_ + ": " + ch.last_error.message());
      continue;
    }
    const auto now = Clock::now();
    if (now < ch.next_attempt) {
      if (ch.next_attempt >= deadline)
        return Unavailable("cannot reach " + address_ + " (" + ch.last_error.message() +
                           "); retrying with backoff");
      ch.cv.wait_until(lock, ch.next_attempt);
      continue;
    }
    ch.connecting = true;
    lock.unlock();
    auto dialed = Dial(std::min(deadline, now + options_.connect_timeout));
    lock.lock();
    ch.connecting = false;
    ch.cv.notify_all();
    if (closed_) {
      // Close() ran while we dialed: it could not see this connection.
      if (dialed.ok()) dialed.value()->Close(Cancelled("client closed"));
      return Cancelled("client for " + address_ + " is closed");
    }
    if (!dialed.ok()) {
      ch.last_error = dialed.status();
      ++ch.failures;
      // Exponential backoff with jitter, so restarted peers are not stormed.
      auto backoff = options_.backoff_initial * (1LL << std::min(ch.failures - 1, 16));
      backoff = std::min<std::chrono::milliseconds>(backoff, options_.backoff_max);
      thread_local std::mt19937 rng(std::random_device{}());
      backoff = std::chrono::milliseconds(std::uniform_int_distribution<int64_t>(
          backoff.count() / 2, std::max<int64_t>(1, backoff.count()))(rng));
      ch.next_attempt = Clock::now() + backoff;
      if (!Retryable(dialed.status()) || Clock::now() >= deadline) return dialed.status();
      continue;
    }
    if (ch.failures > 0 || ch.connection) reconnects_++;
    ch.failures = 0;
    auto connection = dialed.value();
    FrameConnection::Callbacks callbacks;
    callbacks.on_message = [this, &ch](wire::Message m) { OnMessage(ch, std::move(m)); };
    std::weak_ptr<FrameConnection> weak = connection;
    callbacks.on_close = [this, &ch, weak](const Status& reason) {
      if (auto c = weak.lock())
        OnClose(ch, c, reason);
      else
        OnClose(ch, nullptr, reason);
    };
    connection->Start(std::move(callbacks));
    ch.connection = connection;
    return connection;
  }
}

Status RpcClient::Connect(Clock::time_point deadline) {
  for (auto& ch : channels_) {
    for (;;) {
      auto r = Ready(*ch, deadline);
      if (r.ok()) break;
      if (!Retryable(r.status()) || Clock::now() >= deadline) return r.status();
      std::unique_lock lock(ch->mu);
      ch->cv.wait_until(lock, std::min(deadline, ch->next_attempt));
    }
  }
  return Status::Ok();
}

Status RpcClient::AcquireBytes(uint64_t bytes, Clock::time_point deadline) {
  std::unique_lock lock(bytes_mu_);
  // A message larger than the whole budget still goes, alone.
  const bool fits = bytes_cv_.wait_until(lock, deadline, [&] {
    return closed_ || inflight_bytes_ == 0 ||
           inflight_bytes_ + bytes <= options_.max_inflight_bytes;
  });
  if (closed_) return Cancelled("client for " + address_ + " is closed");
  if (!fits)
    return DeadlineExceeded("back-pressure: " + std::to_string(inflight_bytes_) +
                            " request bytes to " + address_ + " still awaiting responses");
  inflight_bytes_ += bytes;
  return Status::Ok();
}

void RpcClient::ReleaseBytes(uint64_t bytes) {
  {
    std::lock_guard lock(bytes_mu_);
    inflight_bytes_ -= bytes;
  }
  bytes_cv_.notify_all();
}

void RpcClient::CallAsync(wire::Message request, Clock::time_point deadline, Callback done) {
  Start(std::move(request), deadline, std::move(done), /*arm_timer=*/true);
}

std::optional<RpcClient::Started> RpcClient::Start(wire::Message request,
                                                   Clock::time_point deadline, Callback done,
                                                   bool arm_timer) {
  calls_++;
  if (closed_) {
    failures_++;
    done(Cancelled("client for " + address_ + " is closed"));
    return std::nullopt;
  }
  const uint64_t id = next_id_++;
  request.request_id = id;
  request.flags = 0;
  auto frame = wire::EncodeFrame(request, options_.encode);
  if (!frame.ok()) {
    failures_++;
    done(frame.status());
    return std::nullopt;
  }
  const uint64_t bytes = frame.value().total_bytes();
  if (Status s = AcquireBytes(bytes, deadline); !s.ok()) {
    failures_++;
    done(s);
    return std::nullopt;
  }
  Channel& ch = *channels_[next_channel_++ % channels_.size()];
  auto connection = Ready(ch, deadline);
  if (!connection.ok()) {
    ReleaseBytes(bytes);
    failures_++;
    done(connection.status());
    return std::nullopt;
  }
  Pending pending{std::move(done), bytes, nullptr};
  if (arm_timer && deadline != Clock::time_point::max()) {
    pending.timer = std::make_unique<asio::steady_timer>(io_->context(), deadline);
    pending.timer->async_wait([this, &ch, id](const boost::system::error_code& ec) {
      if (!ec)
        Finish(ch, id, DeadlineExceeded("no response from " + address_ + " before the deadline"));
    });
  }
  {
    std::lock_guard lock(ch.mu);
    ch.pending.emplace(id, std::move(pending));
  }
  if (closed_) {
    // Close() may have collected the pending calls before this one: fail it
    // here (Finish runs once per call, whoever comes first).
    Finish(ch, id, Cancelled("client for " + address_ + " closed"));
    return Started{&ch, id};
  }
  Status sent = connection.value()->Send(std::move(frame).value());
  if (!sent.ok()) Finish(ch, id, sent);
  return Started{&ch, id};
}

Result<wire::Message> RpcClient::Call(wire::Message request) {
  return Call(std::move(request), options_.default_timeout);
}

Result<wire::Message> RpcClient::Call(wire::Message request, std::chrono::milliseconds timeout) {
  std::promise<Result<wire::Message>> promise;
  auto future = promise.get_future();
  const auto deadline = Clock::now() + timeout;
  auto started = Start(
      std::move(request), deadline,
      [&promise](Result<wire::Message> r) { promise.set_value(std::move(r)); },
      /*arm_timer=*/false);
  // Small requests on a fast link come back within tens of microseconds;
  // polling that long first saves the sleep/wake-up of the calling thread.
  const auto spin_until = std::min(deadline, Clock::now() + kSpinBeforeSleep);
  while (started && future.wait_for(std::chrono::seconds(0)) != std::future_status::ready &&
         Clock::now() < spin_until)
    std::this_thread::yield();
  if (started && future.wait_until(deadline) == std::future_status::timeout)
    Finish(*started->channel, started->id,
           DeadlineExceeded("no response from " + address_ + " within " +
                            std::to_string(timeout.count()) + " ms"));
  return future.get();
}

void RpcClient::Finish(Channel& ch, uint64_t id, Result<wire::Message> result) {
  Pending pending;
  {
    std::lock_guard lock(ch.mu);
    auto it = ch.pending.find(id);
    if (it == ch.pending.end()) return;  // already finished (deadline vs response)
    pending = std::move(it->second);
    ch.pending.erase(it);
  }
  if (pending.timer) {
    // Timers belong to the I/O thread; cancel (and free) it there.
    asio::post(io_->context(), [t = std::move(pending.timer)] { t->cancel(); });
  }
  ReleaseBytes(pending.bytes);
  if (!result.ok()) failures_++;
  pending.done(std::move(result));
}

void RpcClient::OnMessage(Channel& ch, wire::Message message) {
  if (!message.is_response()) {
    Log(LogLevel::kWarn, "rpc", "ignoring a request frame from a server", {{"server", address_}});
    return;
  }
  const uint64_t id = message.request_id;
  if (message.is_error())
    Finish(ch, id, message.ErrorStatus());
  else
    Finish(ch, id, std::move(message));
}

void RpcClient::OnClose(Channel& ch, const std::shared_ptr<FrameConnection>& connection,
                        const Status& reason) {
  std::vector<uint64_t> ids;
  {
    std::lock_guard lock(ch.mu);
    if (connection && ch.connection == connection) ch.connection.reset();
    for (const auto& [id, p] : ch.pending) ids.push_back(id);
  }
  if (!ids.empty() && !closed_)
    Log(LogLevel::kWarn, "rpc", "connection lost",
        {{"server", address_},
         {"reason", reason.ToString()},
         {"failed_calls", static_cast<int64_t>(ids.size())}});
  for (uint64_t id : ids)
    Finish(ch, id, Unavailable("connection to " + address_ + " lost: " + reason.message()));
}

void RpcClient::Close() {
  if (closed_.exchange(true)) return;
  if (wake_fd_ >= 0) {
    const uint64_t one = 1;
    (void)!::write(wake_fd_, &one, sizeof one);
  }
  {
    std::lock_guard lock(bytes_mu_);  // a waiter checks closed_ under it
  }
  bytes_cv_.notify_all();
  for (auto& ch : channels_) {
    std::shared_ptr<FrameConnection> connection;
    std::vector<uint64_t> ids;
    {
      std::lock_guard lock(ch->mu);
      connection = std::move(ch->connection);
      for (const auto& [id, p] : ch->pending) ids.push_back(id);
      ch->cv.notify_all();
    }
    for (uint64_t id : ids) Finish(*ch, id, Cancelled("client for " + address_ + " closed"));
    if (connection) connection->Close(Cancelled("client closed"));
  }
  io_->Stop();
}

wire::PeerIdentity RpcClient::server_identity() const {
  std::lock_guard lock(identity_mu_);
  return server_identity_;
}

RpcClient::Stats RpcClient::stats() const {
  Stats s;
  s.calls = calls_;
  s.failures = failures_;
  s.reconnects = reconnects_;
  {
    std::lock_guard lock(bytes_mu_);
    s.inflight_bytes = inflight_bytes_;
  }
  s.bytes_in = transport_stats_->bytes_in;
  s.bytes_out = transport_stats_->bytes_out;
  return s;
}

}  // namespace dnnd::rpc
