#include "transport/connection.h"

#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/log.h"
#include "core/metrics.h"

namespace dnnd::rpc {
namespace {

constexpr size_t kStagingBytes = 64 * 1024;
constexpr size_t kMaxIov = 256;

// Process-wide transport counters (every server and client connection).
struct TransportMetrics {
  Counter& bytes_in = DefaultMetrics().Counter(
      "dnnd_transport_bytes_total", "Bytes read and written on wire-protocol connections",
      {{"direction", "in"}});
  Counter& bytes_out = DefaultMetrics().Counter(
      "dnnd_transport_bytes_total", "Bytes read and written on wire-protocol connections",
      {{"direction", "out"}});
  Counter& frames_in = DefaultMetrics().Counter("dnnd_transport_frames_total",
                                                "Frames received and sent", {{"direction", "in"}});
  Counter& frames_out = DefaultMetrics().Counter(
      "dnnd_transport_frames_total", "Frames received and sent", {{"direction", "out"}});
  Counter& bad_frames =
      DefaultMetrics().Counter("dnnd_transport_bad_frames_total",
                               "Malformed or over-limit frames (their connection was closed)");
  Counter& slow_readers =
      DefaultMetrics().Counter("dnnd_transport_slow_readers_total",
                               "Connections closed because the peer did not read what was queued "
                               "for it (transport.max_queued_bytes)");
};
TransportMetrics& Metrics() {
  static TransportMetrics* m = new TransportMetrics;
  return *m;
}

std::string EndpointString(const tcp::socket& s) {
  boost::system::error_code ec;
  auto ep = s.remote_endpoint(ec);
  if (ec) return "?";
  const std::string host =
      ep.address().is_v6() ? "[" + ep.address().to_string() + "]" : ep.address().to_string();
  return host + ":" + std::to_string(ep.port());
}

}  // namespace

Result<std::pair<std::string, uint16_t>> SplitHostPort(const std::string& address) {
  std::string host, port;
  if (!address.empty() && address[0] == '[') {
    const size_t close = address.find(']');
    if (close == std::string::npos || close + 1 >= address.size() || address[close + 1] != ':')
      return InvalidArgument("address '" + address + "' is not [ipv6]:port");
    host = address.substr(1, close - 1);
    port = address.substr(close + 2);
  } else {
    const size_t colon = address.rfind(':');
    if (colon == std::string::npos || address.find(':') != colon)
      return InvalidArgument("address '" + address + "' is not host:port");
    host = address.substr(0, colon);
    port = address.substr(colon + 1);
  }
  if (host.empty()) return InvalidArgument("address '" + address + "' has no host");
  char* end = nullptr;
  const long p = std::strtol(port.c_str(), &end, 10);
  if (port.empty() || *end != '\0' || p < 0 || p > 65535)
    return InvalidArgument("address '" + address + "' has an invalid port");
  return std::make_pair(host, static_cast<uint16_t>(p));
}

bool LogThrottle::Allow(uint64_t* held_back) {
  MutexLock lock(mu_);
  const auto now = std::chrono::steady_clock::now();
  if (logged_once_ && now - last_ < period_) {
    ++suppressed_;
    return false;
  }
  logged_once_ = true;
  last_ = now;
  *held_back = suppressed_;
  suppressed_ = 0;
  return true;
}

namespace {
// Staging for frames read under `limits`: a peer limited to small frames
// (before the handshake) gets a buffer no larger than one of them.
size_t StagingBytesFor(const wire::Limits& limits) {
  return static_cast<size_t>(
      std::clamp<uint64_t>(limits.max_frame_bytes, wire::kHeaderBytes, kStagingBytes));
}
}  // namespace

FrameConnection::FrameConnection(tcp::socket socket, wire::Limits limits,
                                 wire::EncodeOptions encode, std::shared_ptr<TransportStats> stats,
                                 uint64_t max_queued_bytes)
    : socket_(std::move(socket)),
      strand_(asio::make_strand(socket_.get_executor())),
      limits_(limits),
      encode_(encode),
      stats_(stats ? std::move(stats) : std::make_shared<TransportStats>()),
      peer_(EndpointString(socket_)),
      max_queued_bytes_(max_queued_bytes) {
  boost::system::error_code ec;
  socket_.set_option(tcp::no_delay(true), ec);  // frames are written whole; Nagle only adds latency
  Touch();
}

FrameConnection::~FrameConnection() = default;

void FrameConnection::Touch() {
  last_activity_.store(std::chrono::steady_clock::now().time_since_epoch().count(),
                       std::memory_order_relaxed);
}

void FrameConnection::UseLimits(const wire::Limits& limits) {
  limits_ = limits;
  if (staging_.size() < StagingBytesFor(limits))
    staging_.resize(StagingBytesFor(limits));  // keeps staged bytes
}

void FrameConnection::Start(Callbacks callbacks, std::string leftover) {
  callbacks_ = std::move(callbacks);
  staging_.resize(std::max(StagingBytesFor(limits_), leftover.size()));
  std::memcpy(staging_.data(), leftover.data(), leftover.size());
  staged_end_ = leftover.size();
  asio::post(strand_, [self = shared_from_this()] { self->ReadHeader(); });
}

// ---------------------------------------------------------------------------
// Reading. Each step either finds what it needs in the staging buffer and goes
// on, or issues one read and resumes from its completion. Deliver() posts the
// next frame when one is already staged, so the stack stays flat.
// ---------------------------------------------------------------------------

void FrameConnection::ReadMore(size_t need, std::function<void()> then) {
  const size_t have = staged_end_ - staged_begin_;
  if (staging_.size() - staged_begin_ < need) {
    std::memmove(staging_.data(), staging_.data() + staged_begin_, have);
    staged_begin_ = 0;
    staged_end_ = have;
    if (staging_.size() < need) staging_.resize(need);
  }
  asio::async_read(
      socket_, asio::buffer(staging_.data() + staged_end_, staging_.size() - staged_end_),
      asio::transfer_at_least(need - have),
      asio::bind_executor(strand_, [self = shared_from_this(), then = std::move(then)](
                                       const boost::system::error_code& ec, size_t n) {
        if (ec) {
          self->DoClose(ec == asio::error::eof
                            ? Status(StatusCode::kUnavailable, "peer closed the connection")
                            : Unavailable("read failed: " + ec.message()));
          return;
        }
        self->staged_end_ += n;
        self->Touch();
        self->stats_->bytes_in += n;
        Metrics().bytes_in.Inc(static_cast<double>(n));
        then();
      }));
}

void FrameConnection::ReadHeader() {
  if (closed()) return;
  if (staged_end_ - staged_begin_ < wire::kHeaderBytes) {
    if (staged_begin_ == staged_end_) staged_begin_ = staged_end_ = 0;
    ReadMore(wire::kHeaderBytes, [this] { ReadHeader(); });
    return;
  }
  const uint8_t* p = staging_.data() + staged_begin_;
  auto header = wire::ParseHeader(p, limits_);
  if (!header.ok()) {
    uint16_t type;
    uint64_t id;
    std::memcpy(&type, p + 6, 2);
    std::memcpy(&id, p + 16, 8);
    RejectFrame(header.status(), type, id);
    return;
  }
  staged_begin_ += wire::kHeaderBytes;
  const wire::FrameHeader h = header.value();
  if (staged_end_ - staged_begin_ < h.metadata_len) {
    ReadMore(h.metadata_len, [this, h] { ReadMetadata(h); });
    return;
  }
  ReadMetadata(h);  // continues with the payload, then the next header
}

void FrameConnection::ReadMetadata(const wire::FrameHeader& h) {
  auto md = wire::ParseMetadata(staging_.data() + staged_begin_, h, limits_);
  if (!md.ok()) {
    RejectFrame(md.status(), h.type, h.request_id);
    return;
  }
  staged_begin_ += h.metadata_len;
  ReadPayload(h, std::move(md).value());
}

void FrameConnection::ReadPayload(const wire::FrameHeader& h, wire::ParsedMetadata md) {
  const uint64_t n = h.payload_len();
  if (n == 0) {
    Deliver(h, std::move(md), nullptr);
    return;
  }
  // Only now, with every length checked, is memory committed to this frame.
  std::shared_ptr<Storage> payload;
  try {
    payload = Storage::Allocate(n);
  } catch (const std::bad_alloc&) {
    RejectFrame(ResourceExhausted("cannot allocate " + std::to_string(n) + " payload bytes"),
                h.type, h.request_id);
    return;
  }
  const size_t staged = std::min<uint64_t>(n, staged_end_ - staged_begin_);
  std::memcpy(payload->data(), staging_.data() + staged_begin_, staged);
  staged_begin_ += staged;
  if (staged == n) {
    Deliver(h, std::move(md), std::move(payload));
    return;
  }
  uint8_t* dst = static_cast<uint8_t*>(payload->data()) + staged;
  auto shared_md = std::make_shared<wire::ParsedMetadata>(std::move(md));
  asio::async_read(
      socket_, asio::buffer(dst, n - staged),
      asio::bind_executor(strand_, [self = shared_from_this(), h, shared_md, payload](
                                       const boost::system::error_code& ec, size_t got) {
        if (ec) {
          self->DoClose(Unavailable("connection lost while reading a payload: " + ec.message()));
          return;
        }
        self->Touch();
        self->stats_->bytes_in += got;
        Metrics().bytes_in.Inc(static_cast<double>(got));
        self->Deliver(h, std::move(*shared_md), payload);
      }));
}

void FrameConnection::Deliver(const wire::FrameHeader& h, wire::ParsedMetadata md,
                              std::shared_ptr<Storage> payload) {
  auto message = wire::AssembleMessage(h, std::move(md), std::move(payload));
  if (!message.ok()) {
    RejectFrame(message.status(), h.type, h.request_id);
    return;
  }
  stats_->frames_in++;
  Metrics().frames_in.Inc();
  if (callbacks_.on_message) callbacks_.on_message(std::move(message).value());
  // Continue with the next frame. Posting (rather than looping here) keeps
  // the stack flat when many small frames arrive in one read.
  if (staged_end_ - staged_begin_ >= wire::kHeaderBytes)
    asio::post(strand_, [self = shared_from_this()] { self->ReadHeader(); });
  else
    ReadHeader();
}

void FrameConnection::RejectFrame(const Status& why, uint16_t type, uint64_t request_id) {
  stats_->bad_frames++;
  Metrics().bad_frames.Inc();
  Log(LogLevel::kWarn, "transport", "closing connection after a bad frame",
      {{"peer", peer_}, {"reason", why.ToString()}});
  // The error frame itself is always version 1, which every dnnd understands.
  (void)Send(wire::Message::ErrorTo(type, request_id, why));
  CloseAfterWrites(why);
}

// ---------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------

Status FrameConnection::Send(const wire::Message& message) {
  auto frame = wire::EncodeFrame(message, encode_);
  if (!frame.ok()) return frame.status();
  return Send(std::move(frame).value());
}

Status FrameConnection::Send(wire::EncodedFrame frame) {
  MutexLock lock(write_mu_);
  if (closed()) return Unavailable("connection to " + peer_ + " is closed");
  if (!queue_.empty() && queued_bytes_ + frame.total_bytes() > max_queued_bytes_) {
    // Earlier frames still wait for the peer to read them: it is not
    // reading, and queueing more would hold memory for it without bound.
    const Status why = ResourceExhausted("peer " + peer_ + " is not reading: " +
                                         std::to_string(queued_bytes_ + frame.total_bytes()) +
                                         " bytes queued for it exceed transport.max_queued_bytes " +
                                         std::to_string(max_queued_bytes_));
    broken_ = true;
    lock.Unlock();
    stats_->slow_readers++;
    Metrics().slow_readers.Inc();
    Log(LogLevel::kWarn, "transport", "closing connection to a peer that does not read",
        {{"peer", peer_}, {"reason", why.message()}});
    Close(why);
    return Unavailable("connection to " + peer_ + " closed: " + why.message());
  }
  queued_bytes_ += frame.total_bytes();
  queue_.push_back({std::move(frame), 0});
  if (async_writing_) return Status::Ok();  // the I/O thread is draining the queue
  Status error;
  if (!WriteNowLocked(&error)) {
    broken_ = true;  // seen at once by closed(), before DoClose runs
    lock.Unlock();
    Close(error);
    return error;
  }
  if (!queue_.empty()) {
    async_writing_ = true;
    asio::post(strand_, [self = shared_from_this()] { self->ContinueWriteAsync(); });
  }
  return Status::Ok();
}

bool FrameConnection::WriteNowLocked(Status* error) {
  write_mu_.AssertHeld();  // debug builds: also when reached through a callback
  iovec iov[kMaxIov];
  while (!queue_.empty()) {
    // Gather as many queued pieces as fit in one sendmsg.
    size_t count = 0;
    for (const Outgoing& out : queue_) {
      size_t skip = &out == &queue_.front() ? out.sent : 0;
      for (const auto& part : out.frame.parts()) {
        if (skip >= part.size) {
          skip -= part.size;
          continue;
        }
        if (count == kMaxIov) break;
        iov[count].iov_base = const_cast<uint8_t*>(static_cast<const uint8_t*>(part.data) + skip);
        iov[count].iov_len = part.size - skip;
        ++count;
        skip = 0;
      }
      if (count == kMaxIov) break;
    }
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = count;
    const ssize_t n = ::sendmsg(socket_.native_handle(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
      *error = Unavailable("write to " + peer_ + " failed: " + std::strerror(errno));
      return false;
    }
    Touch();
    stats_->bytes_out += static_cast<uint64_t>(n);
    Metrics().bytes_out.Inc(static_cast<double>(n));
    size_t left = static_cast<size_t>(n);
    while (left > 0 && !queue_.empty()) {
      Outgoing& front = queue_.front();
      const size_t remaining = front.frame.total_bytes() - front.sent;
      if (left < remaining) {
        front.sent += left;
        left = 0;
      } else {
        left -= remaining;
        queued_bytes_ -= front.frame.total_bytes();
        stats_->frames_out++;
        Metrics().frames_out.Inc();
        queue_.pop_front();
      }
    }
  }
  return true;
}

void FrameConnection::ContinueWriteAsync() {
  socket_.async_wait(tcp::socket::wait_write,
                     asio::bind_executor(
                         strand_, [self = shared_from_this()](const boost::system::error_code& ec) {
                           self->OnWritable(ec);
                         }));
}

void FrameConnection::OnWritable(const boost::system::error_code& ec) {
  MutexLock lock(write_mu_);
  if (closed()) return;
  Status error = ec ? Unavailable("write to " + peer_ + " failed: " + ec.message()) : Status::Ok();
  if (error.ok()) WriteNowLocked(&error);  // sets `error` on failure
  if (!error.ok()) {
    lock.Unlock();
    DoClose(error);
    return;
  }
  if (!queue_.empty()) {
    ContinueWriteAsync();
    return;
  }
  async_writing_ = false;
  if (close_after_writes_) {
    const Status reason = close_after_reason_;  // read under the lock
    lock.Unlock();
    DoClose(reason);
  }
}

void FrameConnection::CloseAfterWrites(const Status& reason) {
  MutexLock lock(write_mu_);
  if (queue_.empty() && !async_writing_) {
    lock.Unlock();
    Close(reason);
    return;
  }
  close_after_writes_ = true;
  close_after_reason_ = reason;
}

void FrameConnection::Close(const Status& reason) {
  asio::post(strand_, [self = shared_from_this(), reason] { self->DoClose(reason); });
}

void FrameConnection::DoClose(const Status& reason) {
  {
    MutexLock lock(write_mu_);
    if (closed_.exchange(true)) return;
    broken_ = true;
    queue_.clear();
    queued_bytes_ = 0;
    // Under write_mu_: no sender can be inside sendmsg on this descriptor.
    boost::system::error_code ec;
    socket_.shutdown(tcp::socket::shutdown_both, ec);
    socket_.close(ec);
  }
  if (callbacks_.on_close) callbacks_.on_close(reason);
  callbacks_ = {};  // break reference cycles through captured owners
}

}  // namespace dnnd::rpc
