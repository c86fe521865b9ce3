// The cluster's two secrets and the rule about listening without them
// (transport/secrets.h, docs/security.md), through the real binary and real
// sockets: the wire key never crosses the network, not even in the pool's
// heartbeats; the API token is a different value; a role that would accept
// peers beyond loopback with no token refuses to start.
#include "transport/secrets.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/config.h"
#include "tests/roles/dnnd_process.h"

namespace dnnd::testing {
namespace {

TEST(Secrets, ApiTokenIsDerivedFromTheWireKeyOneWayAndNeverEqualsIt) {
  const std::string derived = wire::DeriveApiToken("wire-key-1");
  EXPECT_EQ(derived.size(), 64u);  // hex of an HMAC-SHA256
  EXPECT_EQ(derived.find("wire-key-1"), std::string::npos);
  EXPECT_NE(derived, wire::DeriveApiToken("wire-key-2"));
  EXPECT_EQ(wire::DeriveApiToken(""), "");

  // What an operator hands to ctl users: the derived token, never the key.
  Outcome o = Dnnd("api-token --set transport.token=wire-key-1");
  EXPECT_EQ(o.code, 0) << o.output;
  EXPECT_EQ(o.output, derived + "\n");
  // An explicit API token wins.
  o = Dnnd("api-token --set transport.token=wire-key-1 --set http.token=api-2");
  EXPECT_EQ(o.output, "api-2\n");
  // Configuring the wire key as the API token is refused, naming both settings.
  o = Dnnd("api-token --set transport.token=same --set http.token=same");
  EXPECT_EQ(o.code, 1) << o.output;
  EXPECT_NE(o.output.find("http.token is the same secret as transport.token"), std::string::npos)
      << o.output;
  o = Dnnd("api-token");
  EXPECT_EQ(o.code, 1) << o.output;
  EXPECT_NE(o.output.find("no token is configured"), std::string::npos) << o.output;
}

// A listening socket on 127.0.0.1 standing in for a controller: the pool
// worker's first heartbeat arrives here and is read raw.
class FakeController {
 public:
  FakeController() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    listen(fd_, 8);
    socklen_t len = sizeof addr;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~FakeController() { close(fd_); }
  int port() const { return port_; }

  // The bytes of the first request (headers and body), or "" after `timeout`.
  std::string FirstRequest(std::chrono::milliseconds timeout) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(timeout.count())) != 1) return "";
    const int c = accept(fd_, nullptr, nullptr);
    std::string got;
    char buf[4096];
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
      pollfd q{c, POLLIN, 0};
      if (poll(&q, 1, 100) != 1) {
        if (got.find("\r\n\r\n") != std::string::npos) break;  // headers and whatever body came
        continue;
      }
      const ssize_t n = read(c, buf, sizeof buf);
      if (n <= 0) break;
      got.append(buf, static_cast<size_t>(n));
    }
    close(c);
    return got;
  }

 private:
  int fd_ = -1;
  int port_ = 0;
};

TEST(Secrets, PoolHeartbeatsCarryTheApiTokenNeverTheWireKey) {
  TempDir dir;
  FakeController controller;
  const std::string key_file = dir.Write("wire-key", "wire-secret-91\n");
  Daemon worker("--role=worker --config " + Src("configs/worker-pool.toml") +
                    " --set worker.controller=127.0.0.1:" + std::to_string(controller.port()) +
                    " --set transport.token_file=" + key_file + " --set worker.heartbeat_ms=100",
                dir.path() + "/worker.log");
  const std::string request = controller.FirstRequest(std::chrono::seconds(10));
  ASSERT_NE(request.find("POST /api/v1/nodes/"), std::string::npos) << request << worker.output();
  EXPECT_NE(request.find("Bearer " + wire::DeriveApiToken("wire-secret-91") + "\r\n"),
            std::string::npos)
      << request;
  EXPECT_EQ(request.find("wire-secret-91"), std::string::npos)
      << "the wire key crossed the network:\n"
      << request;
}

TEST(Secrets, ListeningBeyondLoopbackWithoutATokenIsRefusedAtStart) {
  TempDir dir;
  // Both refusals happen before any socket is opened.
  Outcome o = Shell("timeout 30 " + std::string(DNND_BINARY) +
                    " --role=parameter-server --config " + Src("configs/parameter-server.toml") +
                    " --set ps.listen=0.0.0.0:0 --set http.listen=127.0.0.1:0 " +
                    "--set ps.checkpoint_dir=" + dir.path() + "/ps");
  EXPECT_NE(o.code, 0) << o.output;
  EXPECT_NE(o.code, 124) << "still running after 30 s:\n" << o.output;
  EXPECT_NE(o.output.find("0.0.0.0:0"), std::string::npos) << o.output;
  EXPECT_NE(o.output.find("transport.insecure"), std::string::npos) << o.output;
  EXPECT_NE(o.output.find("transport.token_file"), std::string::npos) << o.output;

  o = Shell("timeout 30 " + std::string(DNND_BINARY) + " --role=controller --config " +
            Src("configs/controller.toml") +
            " --set http.listen=0.0.0.0:0 --set controller.data_dir=" + dir.path() + "/data");
  EXPECT_NE(o.code, 0) << o.output;
  EXPECT_NE(o.code, 124) << "still running after 30 s:\n" << o.output;
  EXPECT_NE(o.output.find("http.listen = \"0.0.0.0:0\""), std::string::npos) << o.output;

  // The rule itself, for every address form (no socket needed).
  auto config = [](const std::string& sets) {
    std::vector<std::string> s;
    if (!sets.empty()) s.push_back(sets);
    return Config::FromString("", "test", s).value();
  };
  const Config strict = config("");
  const Config open = config("transport.insecure=true");
  for (const char* loopback : {"127.0.0.1:7000", "127.3.4.5:1", "localhost:80", "[::1]:7000"})
    EXPECT_TRUE(wire::CheckListenSecurity(strict, loopback, "ps.listen", false).ok()) << loopback;
  for (const char* beyond :
       {"0.0.0.0:7000", "[::]:7000", "10.0.0.1:7000", "ps-0.example:7000", ":7000"}) {
    const Status s = wire::CheckListenSecurity(strict, beyond, "ps.listen", false);
    EXPECT_EQ(s.code(), StatusCode::kPermissionDenied) << beyond;
    EXPECT_NE(s.message().find("ps.listen"), std::string::npos) << s.ToString();
    EXPECT_TRUE(wire::CheckListenSecurity(strict, beyond, "ps.listen", true).ok()) << beyond;
    EXPECT_TRUE(wire::CheckListenSecurity(open, beyond, "ps.listen", false).ok()) << beyond;
  }
}

}  // namespace
}  // namespace dnnd::testing
