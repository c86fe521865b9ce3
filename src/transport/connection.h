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
#pragma once

#include <atomic>
#include <boost/asio.hpp>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/status.h"
#include "transport/wire.h"

namespace dnnd::rpc {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

// Counters shared by a server's or client's connections (read by metrics).
struct TransportStats {
  std::atomic<uint64_t> frames_in{0}, frames_out{0};
  std::atomic<uint64_t> bytes_in{0}, bytes_out{0};
  std::atomic<uint64_t> bad_frames{0};
};

class FrameConnection : public std::enable_shared_from_this<FrameConnection> {
 public:
  struct Callbacks {
    std::function<void(wire::Message)> on_message;  // on this connection's strand
    std::function<void(const Status&)> on_close;    // exactly once
  };

  FrameConnection(tcp::socket socket, wire::Limits limits, wire::EncodeOptions encode,
                  std::shared_ptr<TransportStats> stats);
  ~FrameConnection();
  FrameConnection(const FrameConnection&) = delete;
  FrameConnection& operator=(const FrameConnection&) = delete;

  // Starts the read loop. `leftover` holds bytes already read from the socket
  // (e.g. during a blocking handshake) that belong to the next frames.
  void Start(Callbacks callbacks, std::string leftover = {});

  // Thread-safe. Encodes and queues the message; fails if it cannot be
  // encoded or the connection is closed.
  Status Send(const wire::Message& message);
  Status Send(wire::EncodedFrame frame);

  // Thread-safe and idempotent: stops reading, drops queued writes, closes the
  // socket, and calls on_close(reason).
  void Close(const Status& reason);
  // Closes once everything queued so far has been written (used to deliver a
  // final error frame).
  void CloseAfterWrites(const Status& reason);

  // True once the connection is closed or a write failed (the close itself
  // completes on the I/O thread, but nobody should send on it any more).
  bool closed() const { return closed_.load(std::memory_order_acquire) || broken_.load(std::memory_order_acquire); }
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
  void Deliver(const wire::FrameHeader& header, wire::ParsedMetadata metadata, std::shared_ptr<Storage> payload);
  void RejectFrame(const Status& why, uint16_t type, uint64_t request_id);
  // Writes as much of the queue as the socket takes without blocking. Returns
  // false on a socket error. Caller holds write_mu_.
  bool WriteNowLocked(Status* error);
  void ContinueWriteAsync();
  void DoClose(const Status& reason);

  tcp::socket socket_;
  asio::strand<asio::any_io_executor> strand_;
  const wire::Limits limits_;
  const wire::EncodeOptions encode_;
  std::shared_ptr<TransportStats> stats_;
  std::string peer_;
  Callbacks callbacks_;

  // Read side (strand only).
  std::vector<uint8_t> staging_;
  size_t staged_begin_ = 0, staged_end_ = 0;

  // Write side.
  std::mutex write_mu_;
  std::deque<Outgoing> queue_;
  bool async_writing_ = false;
  bool close_after_writes_ = false;
  Status close_after_reason_;
  std::atomic<uint64_t> queued_bytes_{0};

  std::atomic<bool> closed_{false};
  std::atomic<bool> broken_{false};
};

// "host:port" -> (host, port); IPv6 literals as "[::1]:port".
Result<std::pair<std::string, uint16_t>> SplitHostPort(const std::string& address);

}  // namespace dnnd::rpc
