// One TCP connection carrying wire frames in both directions; the building
// block of RpcServer and RpcClient.
//
// Reading: frames are parsed from a small staging buffer (one recv usually
// brings a whole small frame: header, metadata and payload), and a large
// payload is read straight into one pooled, 64-byte-aligned buffer that the
// decoded tensors then view. Header and metadata are validated against the
// limits before the payload buffer is allocated.
//
// Writing: Send() may be called from any thread. When nothing is queued the
// caller writes the frame's scatter/gather list itself with one sendmsg
// (saving a hand-off to the I/O thread, which costs more than a loopback
// round trip on small VMs); what the kernel does not take at once is finished
// asynchronously by the I/O thread, in order.
//
// A malformed frame closes this connection only, after an error frame to the
// peer where one can still be understood.
//
// Threads and locks: the read side (staging buffer, limits, callbacks) lives
// on the strand and needs no lock. write_mu_ guards the write queue and is the
// only lock: it is never held while calling out (on_close, Close(), the
// log), so a caller may hold its own locks while it calls Send() (the
// parameter server answers pushes under a chunk's lock): write_mu_ comes
// after every lock of this connection's users. It is also held around
// sendmsg() and around the socket's shutdown and close, so no sender writes
// on a closed descriptor. The members it guards are marked GUARDED_BY below;
// tests/lint/thread_safety.sh checks them with Clang.
//
// Limits: frames are read against `limits` (RpcServer starts a connection
// with Limits::BeforeHandshake() and switches to the full limits once the peer
// is authenticated); the frames queued for a peer that does not read are
// capped at `max_queued_bytes`, beyond which the connection is closed.
#pragma once

#include <atomic>
#include <boost/asio.hpp>
#include <chrono>
#include <deque>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "core/thread_annotations.h"
#include "transport/wire.h"

namespace dnnd::rpc {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

// Counters shared by a server's or client's connections (read by metrics).
struct TransportStats {
  std::atomic<uint64_t> frames_in{0}, frames_out{0};
  std::atomic<uint64_t> bytes_in{0}, bytes_out{0};
  std::atomic<uint64_t> bad_frames{0};
  std::atomic<uint64_t> slow_readers{0};  // connections closed for passing max_queued_bytes
};

// Lets a repeated warning through at most once per `period` and counts the
// occurrences it held back, so a failure that repeats fast (accept() at the
// descriptor limit, a flood of refused connections) cannot flood the log.
// Thread-safe.
class LogThrottle {
 public:
  explicit LogThrottle(std::chrono::milliseconds period = std::chrono::seconds(1))
      : period_(period) {}
  // True if this occurrence should be logged; then `*held_back` is the number
  // of occurrences suppressed since the last one logged.
  bool Allow(uint64_t* held_back);

 private:
  const std::chrono::milliseconds period_;
  Mutex mu_;  // a leaf
  std::chrono::steady_clock::time_point last_ GUARDED_BY(mu_){};
  bool logged_once_ GUARDED_BY(mu_) = false;
  uint64_t suppressed_ GUARDED_BY(mu_) = 0;
};

class FrameConnection : public std::enable_shared_from_this<FrameConnection> {
 public:
  struct Callbacks {
    std::function<void(wire::Message)> on_message;  // on this connection's strand
    std::function<void(const Status&)> on_close;    // exactly once
  };

  // `max_queued_bytes`: when a frame is sent while earlier ones still wait
  // for the peer to read and the total passes this, the peer is taken to be
  // not reading and the connection is closed (one frame alone always goes).
  FrameConnection(tcp::socket socket, wire::Limits limits, wire::EncodeOptions encode,
                  std::shared_ptr<TransportStats> stats,
                  uint64_t max_queued_bytes = std::numeric_limits<uint64_t>::max());
  ~FrameConnection();
  FrameConnection(const FrameConnection&) = delete;
  FrameConnection& operator=(const FrameConnection&) = delete;

  // Starts the read loop. `leftover` holds bytes already read from the socket
  // (e.g. during a blocking handshake) that belong to the next frames.
  void Start(Callbacks callbacks, std::string leftover = {});

  // Replaces the read limits from the next frame on. Only on strand() (e.g.
  // from on_message), where no read is in progress.
  void UseLimits(const wire::Limits& limits);
  // Callbacks and timers bound to this never run concurrently with the
  // connection's own callbacks.
  const asio::strand<asio::any_io_executor>& strand() const { return strand_; }
  // The last time bytes were read from or written to the peer.
  std::chrono::steady_clock::time_point last_activity() const {
    return std::chrono::steady_clock::time_point(
        std::chrono::steady_clock::duration(last_activity_.load(std::memory_order_relaxed)));
  }

  // Thread-safe. Encodes and queues the message; fails if it cannot be
  // encoded, the connection is closed, or the peer is not reading (see
  // max_queued_bytes: the connection is then closed, and Unavailable returned).
  Status Send(const wire::Message& message) EXCLUDES(write_mu_);
  Status Send(wire::EncodedFrame frame) EXCLUDES(write_mu_);

  // Thread-safe and idempotent: stops reading, drops queued writes, closes the
  // socket, and calls on_close(reason).
  void Close(const Status& reason);
  // Closes once everything queued so far has been written (used to deliver a
  // final error frame).
  void CloseAfterWrites(const Status& reason) EXCLUDES(write_mu_);

  // True once the connection is closed or a write failed (the close itself
  // completes on the I/O thread, but nobody should send on it any more).
  bool closed() const {
    return closed_.load(std::memory_order_acquire) || broken_.load(std::memory_order_acquire);
  }
  const std::string& peer() const { return peer_; }
  uint64_t queued_bytes() const { return queued_bytes_.load(std::memory_order_relaxed); }

 private:
  struct Outgoing {
    wire::EncodedFrame frame;
    size_t sent = 0;  // bytes of the frame already written
  };

  void ReadMore(size_t need, std::function<void()> then);
  void ReadHeader();
  void ReadMetadata(const wire::FrameHeader& header);
  void ReadPayload(const wire::FrameHeader& header, wire::ParsedMetadata metadata);
  void Deliver(const wire::FrameHeader& header, wire::ParsedMetadata metadata,
               std::shared_ptr<Storage> payload);
  void RejectFrame(const Status& why, uint16_t type, uint64_t request_id);
  // Writes as much of the queue as the socket takes without blocking. Returns
  // false on a socket error.
  bool WriteNowLocked(Status* error) REQUIRES(write_mu_);
  void ContinueWriteAsync();
  // The socket became writable (or failed): writes on, on the strand.
  void OnWritable(const boost::system::error_code& ec) EXCLUDES(write_mu_);
  void DoClose(const Status& reason) EXCLUDES(write_mu_);
  void Touch();

  tcp::socket socket_;
  asio::strand<asio::any_io_executor> strand_;
  wire::Limits limits_;  // strand only
  const wire::EncodeOptions encode_;
  std::shared_ptr<TransportStats> stats_;
  std::string peer_;
  Callbacks callbacks_;

  // Read side (strand only).
  std::vector<uint8_t> staging_;
  size_t staged_begin_ = 0, staged_end_ = 0;

  // Write side.
  Mutex write_mu_;
  std::deque<Outgoing> queue_ GUARDED_BY(write_mu_);
  bool async_writing_ GUARDED_BY(write_mu_) = false;  // the strand drains the queue
  bool close_after_writes_ GUARDED_BY(write_mu_) = false;
  Status close_after_reason_ GUARDED_BY(write_mu_);
  std::atomic<uint64_t> queued_bytes_{0};  // written under write_mu_, read without it
  const uint64_t max_queued_bytes_;
  std::atomic<std::chrono::steady_clock::rep> last_activity_{0};

  std::atomic<bool> closed_{false};
  std::atomic<bool> broken_{false};
};

// "host:port" -> (host, port); IPv6 literals as "[::1]:port".
Result<std::pair<std::string, uint16_t>> SplitHostPort(const std::string& address);

}  // namespace dnnd::rpc
