// Test helpers for attacking a wire-protocol server through a real socket: a
// blocking raw peer that can speak (or break) the protocol by hand, frames an
// attacker would send, and the process's memory high-water mark. Shared by
// tests/transport (in-process RpcServer) and tests/roles (real dnnd processes).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <future>
#include <string>

#include "core/status.h"
#include "transport/hello.h"
#include "transport/wire.h"

namespace dnnd::wire_test {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// A blocking TCP peer on 127.0.0.1 with deadlines on every read, so a test
// fails instead of hanging when a server neither answers nor closes.
class RawPeer {
 public:
  // `rcvbuf` > 0 shrinks the receive buffer before connecting (a peer that
  // reads nothing then fills up fast).
  explicit RawPeer(uint16_t port, int rcvbuf = 0) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (rcvbuf > 0) ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~RawPeer() { Close(); }
  RawPeer(const RawPeer&) = delete;
  RawPeer& operator=(const RawPeer&) = delete;

  bool connected() const { return connected_; }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  // Reads exactly n bytes before `deadline`.
  Status ReadExactly(uint8_t* p, size_t n, Clock::time_point deadline) {
    while (n > 0) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      pollfd pfd{fd_, POLLIN, 0};
      if (left <= 0 || ::poll(&pfd, 1, static_cast<int>(left)) == 0)
        return DeadlineExceeded("no frame in time");
      const ssize_t got = ::recv(fd_, p, n, 0);
      if (got == 0) return Unavailable("closed by the server");
      if (got < 0) {
        if (errno == EINTR) continue;
        return Unavailable(std::string("recv: ") + std::strerror(errno));
      }
      p += got;
      n -= static_cast<size_t>(got);
    }
    return Status::Ok();
  }

  // One frame, decoded with the default (post-handshake) limits.
  Result<wire::Message> ReadFrame(std::chrono::milliseconds timeout = 5000ms) {
    const auto deadline = Clock::now() + timeout;
    std::string all(wire::kHeaderBytes, '\0');
    DNND_RETURN_IF_ERROR(ReadExactly(reinterpret_cast<uint8_t*>(all.data()), all.size(), deadline));
    DNND_ASSIGN_OR_RETURN(wire::FrameHeader h,
                          wire::ParseHeader(reinterpret_cast<const uint8_t*>(all.data()), {}));
    all.resize(wire::kHeaderBytes + h.body_len);
    DNND_RETURN_IF_ERROR(ReadExactly(reinterpret_cast<uint8_t*>(all.data()) + wire::kHeaderBytes,
                                     h.body_len, deadline));
    return wire::DecodeFrame(reinterpret_cast<const uint8_t*>(all.data()), all.size());
  }

  // Writes all of `bytes`; false once the server has closed or reset the
  // connection (an attacker's write is expected to fail part-way).
  bool Write(const std::string& bytes) {
    for (size_t off = 0; off < bytes.size();) {
      const ssize_t n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return true;
  }
  bool Send(const wire::Message& m) {
    return Write(wire::FlattenFrame(wire::EncodeFrame(m).value()));
  }

  // Reads the server's HELLO and proves `token`; the server's verdict.
  Status Handshake(const std::string& token) {
    DNND_ASSIGN_OR_RETURN(wire::Message hello, ReadFrame());
    const std::string nc = wire::RandomNonce();
    DNND_ASSIGN_OR_RETURN(wire::Message auth,
                          wire::MakeHelloAuth(hello, {"attacker", "raw"}, token, nc));
    if (!Send(auth)) return Unavailable("could not send HELLO_AUTH");
    DNND_ASSIGN_OR_RETURN(wire::Message ok, ReadFrame());
    return ok.ErrorStatus();
  }

  // True once the server has closed the connection (EOF or reset) before
  // `timeout`; bytes still arriving are read and dropped.
  bool ClosedByServer(std::chrono::milliseconds timeout = 5000ms) {
    const auto deadline = Clock::now() + timeout;
    char buf[4096];
    for (;;) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      pollfd pfd{fd_, POLLIN, 0};
      if (left <= 0 || ::poll(&pfd, 1, static_cast<int>(left)) == 0) return false;
      const ssize_t got = ::recv(fd_, buf, sizeof buf, 0);
      if (got == 0 || (got < 0 && errno != EINTR)) return true;
    }
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

inline int64_t Ms(Clock::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

// What a server answered to an attack, and how long the answer took.
struct Refusal {
  Status status;  // the error frame's
  Clock::duration took;
};
// Sends `attack` from `raw` (in the background: the server may stop reading
// part-way) and waits for the error frame.
inline Refusal Attack(RawPeer& raw, const std::string& attack) {
  const auto start = Clock::now();
  auto writer = std::async(std::launch::async, [&] { return raw.Write(attack); });
  auto reply = raw.ReadFrame();
  const auto took = Clock::now() - start;
  writer.wait();
  if (!reply.ok()) return {reply.status().WithContext("no error frame"), took};
  return {reply.value().is_error() ? reply.value().ErrorStatus()
                                   : Internal("the attack was answered normally"),
          took};
}

// Header + metadata + payload with the lengths filled in.
inline std::string Frame(wire::FrameHeader h, const std::string& metadata,
                         const std::string& payload = {}) {
  h.metadata_len = static_cast<uint32_t>(metadata.size());
  h.body_len = metadata.size() + payload.size();
  std::string out(wire::kHeaderBytes, '\0');
  wire::WriteHeader(h, reinterpret_cast<uint8_t*>(out.data()));
  return out + metadata + payload;
}

template <typename T>
void Append(std::string* s, T v) {
  s->append(reinterpret_cast<const char*>(&v), sizeof v);
}

// Issue 15, finding 2: `count` distinct fields (4-character keys, empty
// bytes values, 10 bytes each): 65,535 of them make a 655 KB frame.
inline std::string ManyFieldsFrame(uint16_t type, uint32_t count = 65535) {
  std::string md;
  Append<uint16_t>(&md, static_cast<uint16_t>(count));
  const char* digits = "0123456789abcdefghijklmnopqrstuvwxyz";
  for (uint32_t i = 0; i < count; ++i) {
    Append<uint8_t>(&md, 4);
    for (uint32_t k = 0, v = i; k < 4; ++k, v /= 36) md.push_back(digits[v % 36]);
    Append<uint8_t>(&md, 4);  // bytes
    Append<uint32_t>(&md, 0);
  }
  wire::FrameHeader h;
  h.type = type;
  h.request_id = 7;
  return Frame(h, md);
}

// One zstd frame that decodes to `raw_len` zero bytes, built from RLE blocks
// (4 bytes per 128 KiB): what a decompression bomb looks like. A real zstd
// frame (ShuffleZstdCheck accepts it and it decodes), made without ever
// holding `raw_len` bytes.
inline std::string ZstdZerosFrame(uint64_t raw_len) {
  std::string z;
  Append<uint32_t>(&z, 0xFD2FB528u);  // magic
  Append<uint8_t>(&z, 0xE0);  // 8-byte content size, single segment, no checksum, no dictionary
  Append<uint64_t>(&z, raw_len);
  constexpr uint64_t kBlock = 128 * 1024;
  for (uint64_t done = 0; done < raw_len || raw_len == 0;) {
    const uint64_t n = std::min(kBlock, raw_len - done);
    done += n;
    const uint32_t last = done == raw_len ? 1 : 0;
    const uint32_t block_header =
        last | (1u << 1) | static_cast<uint32_t>(n << 3);  // RLE block of n bytes
    z.append(reinterpret_cast<const char*>(&block_header), 3);
    z.push_back('\0');
    if (raw_len == 0) break;
  }
  return z;
}

// Issue 15, finding 3: `tensors` f32 tensors with codec shuffle+zstd, each
// declaring `raw_len` decoded bytes (8 x 1 GiB by default: a 263 KB frame).
inline std::string ZstdBombFrame(uint16_t type, uint32_t tensors = 8,
                                 uint64_t raw_len = uint64_t{1} << 30) {
  const std::string z = ZstdZerosFrame(raw_len);
  std::string md, payload;
  Append<uint16_t>(&md, 0);  // no fields
  for (uint32_t i = 0; i < tensors; ++i) {
    while (payload.size() % wire::kPayloadAlignment) payload.push_back('\0');
    const std::string name = "bomb" + std::to_string(i);
    Append<uint16_t>(&md, static_cast<uint16_t>(name.size()));
    md += name;
    Append<uint8_t>(&md, static_cast<uint8_t>(wire::DType::kF32));
    Append<uint8_t>(&md, static_cast<uint8_t>(wire::Codec::kShuffleZstd));
    Append<uint8_t>(&md, 1);  // ndim
    Append<uint8_t>(&md, 0);
    Append<int64_t>(&md, static_cast<int64_t>(raw_len / 4));
    Append<uint64_t>(&md, raw_len);
    Append<uint64_t>(&md, z.size());
    Append<uint64_t>(&md, payload.size());
    payload += z;
  }
  wire::FrameHeader h;
  h.type = type;
  h.request_id = 8;
  h.tensor_count = tensors;
  return Frame(h, md, payload);
}

// A bare header declaring a `body_len`-byte body (nothing follows).
inline std::string HugeHeader(uint16_t type, uint64_t body_len) {
  wire::FrameHeader h;
  h.type = type;
  h.request_id = 9;
  h.body_len = body_len;
  std::string out(wire::kHeaderBytes, '\0');
  wire::WriteHeader(h, reinterpret_cast<uint8_t*>(out.data()));
  return out;
}

// A /proc/<pid>/status value in KiB ("VmHWM", "VmRSS"); -1 if absent.
inline int64_t ProcStatusKiB(const std::string& pid, const std::string& key) {
  std::ifstream in("/proc/" + pid + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key + ":", 0) == 0) return std::atoll(line.c_str() + key.size() + 1);
  return -1;
}

// Resets this process's VmHWM to its current RSS (Linux >= 4.0), so a test
// can bound the peak of what follows.
inline void ResetPeakRss() { std::ofstream("/proc/self/clear_refs") << "5"; }

}  // namespace dnnd::wire_test
