// Attacking an HTTP server from tests: a raw client socket that sends exactly
// the bytes given (no framing help), a flood and a drip on it, how long a
// second connection waits for GET /healthz meanwhile, and a process's
// resident memory from /proc. Used by tests/transport/http_test.cc (an
// in-process HttpServer) and tests/roles/api_doors_test.cc (a real controller).
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>
#include <string_view>
#include <thread>

#include "dnnd_process.h"

namespace dnnd::testing {

// One TCP connection to 127.0.0.1:port; closed by the destructor.
class RawConnection {
 public:
  explicit RawConnection(int port) : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~RawConnection() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  bool connected() const { return fd_ >= 0; }

  // Writes all of `data`; false once the peer has closed or reset.
  bool Send(std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // True when the server has answered or closed (something to read, EOF or
  // reset) within `within`.
  bool ServerSpoke(std::chrono::milliseconds within) {
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, static_cast<int>(within.count())) > 0;
  }

  // Everything the server sends until it closes, or until `within` passes.
  std::string ReadUntilClose(std::chrono::milliseconds within = std::chrono::milliseconds(5000)) {
    std::string out;
    const auto end = std::chrono::steady_clock::now() + within;
    char buf[65536];
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          end - std::chrono::steady_clock::now());
      if (left.count() <= 0 || !ServerSpoke(left)) break;
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }

 private:
  int fd_;
};

// Milliseconds a fresh connection waits for GET /healthz to answer 200;
// a large number if it does not.
inline double HealthzMillis(int port) {
  const auto start = std::chrono::steady_clock::now();
  const std::string r = HttpGet(port, "/healthz");
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  return HttpStatus(r) == 200 ? ms : 1e9;
}

// Probes /healthz every `every` on fresh connections while `running` holds;
// the slowest answer in milliseconds (0 if none was probed).
inline double WorstHealthzWhile(int port, const std::atomic<bool>& running,
                                std::chrono::milliseconds every = std::chrono::milliseconds(50)) {
  double worst = 0;
  while (running.load()) {
    worst = std::max(worst, HealthzMillis(port));
    std::this_thread::sleep_for(every);
  }
  return worst;
}

// Sends `prefix`, then `filler` repeated up to `total` bytes in 64 KiB writes,
// stopping early when the server closes; returns the filler bytes sent.
inline uint64_t Flood(RawConnection& c, const std::string& prefix, char filler, uint64_t total) {
  if (!c.Send(prefix)) return 0;
  const std::string piece(64 * 1024, filler);
  uint64_t sent = 0;
  while (sent < total && c.Send(piece)) sent += piece.size();
  return sent;
}

struct DripOutcome {
  bool cut = false;  // the server answered or closed before `give_up`
  std::chrono::steady_clock::duration took{};
  double worst_healthz_ms = 0;  // /healthz on fresh connections between the pieces
};

// Sends `piece` every `every` (the wait is for the server's answer) until the
// server answers or closes, or `give_up` passes.
inline DripOutcome Drip(RawConnection& c, int port, const std::string& piece,
                        std::chrono::milliseconds every, std::chrono::milliseconds give_up) {
  DripOutcome out;
  const auto start = std::chrono::steady_clock::now();
  while (!out.cut && std::chrono::steady_clock::now() - start < give_up) {
    out.cut = !c.Send(piece) || c.ServerSpoke(every);
    if (!out.cut) out.worst_healthz_ms = std::max(out.worst_healthz_ms, HealthzMillis(port));
  }
  out.took = std::chrono::steady_clock::now() - start;
  return out;
}

// Finding 9's attack on a connection whose request header (chunked) is sent:
// a one-byte chunk every 300 ms, each well within a 1 s read timeout, against
// a server whose request deadline is 1.5 s. Expects the server to answer 408
// naming http.request_timeout_ms within 4 s, and /healthz to stay prompt.
inline void ExpectDripCutWith408(RawConnection& c, int port) {
  using namespace std::chrono_literals;
  const DripOutcome drip = Drip(c, port, "1\r\nx\r\n", 300ms, 6000ms);
  ASSERT_TRUE(drip.cut) << "a byte every 300 ms kept the request open for 6 s";
  EXPECT_LT(drip.took, 4s);
  const std::string r = c.ReadUntilClose();
  EXPECT_EQ(HttpStatus(r), 408) << r;
  EXPECT_NE(r.find("http.request_timeout_ms"), std::string::npos) << r;
  EXPECT_LT(drip.worst_healthz_ms, 100.0);
}

// A field of /proc/<pid>/status in bytes ("VmRSS", "VmHWM"), or -1.
inline int64_t ProcStatusBytes(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  const std::string status((std::istreambuf_iterator<char>(in)), {});
  const size_t p = status.find(field + ":");
  return p == std::string::npos ? -1 : std::atoll(status.c_str() + p + field.size() + 1) * 1024;
}

// Resets a process's peak resident set (VmHWM) to its current one, so a
// later VmHWM is the peak of what came after (Linux >= 4.0).
inline bool ResetPeakRss(pid_t pid) {
  std::ofstream out("/proc/" + std::to_string(pid) + "/clear_refs");
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

}  // namespace dnnd::testing
