// A test RpcServer with a few handlers, and client/server options for
// tests over real loopback sockets (tests/transport/rpc_*_test.cc).
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include "transport/rpc_client.h"
#include "transport/rpc_server.h"

namespace dnnd::rpc {

using namespace std::chrono_literals;
inline constexpr uint16_t kAdd = 0x0F01, kSlow = 0x0F02, kHold = 0x0F03;

inline RpcServerOptions ServerOptions(std::string token = "tok") {
  RpcServerOptions o;
  o.listen = "127.0.0.1:0";
  o.self = {"test-server", "srv"};
  o.token = std::move(token);
  o.hello_timeout = 2000ms;
  return o;
}

inline RpcClientOptions ClientOptions(std::string token = "tok") {
  RpcClientOptions o;
  o.self = {"worker", "w0"};
  o.token = std::move(token);
  o.default_timeout = 5000ms;
  o.backoff_initial = 20ms;
  o.backoff_max = 200ms;
  return o;
}

inline wire::Message Request(uint16_t type) {
  wire::Message m;
  m.type = type;
  return m;
}

// A server with an adder (pool), a handler that answers after `ms` (inline,
// keeping its Responder), and one that parks its Responder until released.
struct TestServer {
  explicit TestServer(RpcServerOptions options = ServerOptions()) : server(options) {
    server.Handle(kAdd, "add",
                  RpcServer::SimpleHandler(
                      [](const wire::Message& req, const PeerInfo& peer) -> Result<wire::Message> {
                        DNND_ASSIGN_OR_RETURN(int64_t a, req.fields.GetInt("a"));
                        DNND_ASSIGN_OR_RETURN(int64_t b, req.fields.GetInt("b"));
                        wire::Message r;
                        r.fields.SetInt("sum", a + b);
                        r.fields.SetString("caller", peer.identity.node);
                        return r;
                      }));
    server.Handle(kSlow, "slow", RpcServer::Handler([](wire::Message req, Responder responder) {
                    const int64_t ms = req.fields.IntOr("ms", 0);
                    std::thread([ms, responder]() mutable {
                      std::this_thread::sleep_for(std::chrono::milliseconds(ms));
                      wire::Message r;
                      r.fields.SetInt("ms", ms);
                      responder.Send(std::move(r));
                    }).detach();
                  }),
                  RpcServer::Execution::kInline);
    server.Handle(kHold, "hold", RpcServer::Handler([this](wire::Message, Responder responder) {
                    std::lock_guard lock(mu);
                    held.push_back(responder);
                  }),
                  RpcServer::Execution::kInline);
    Status s = server.Start();
    EXPECT_TRUE(s.ok()) << s.ToString();
  }
  void ReleaseAll() {
    std::vector<Responder> r;
    {
      std::lock_guard lock(mu);
      r.swap(held);
    }
    for (auto& x : r) x.Send(wire::Message{});
  }
  size_t held_count() {
    std::lock_guard lock(mu);
    return held.size();
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(server.port()); }

  RpcServer server;
  std::mutex mu;
  std::vector<Responder> held;
};

inline void ExpectServing(RpcClient& client) {
  wire::Message add = Request(kAdd);
  add.fields.SetInt("a", 20);
  add.fields.SetInt("b", 22);
  auto r = client.Call(add, 2000ms);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r.value().fields.GetInt("sum").value(), 42);
}

}  // namespace dnnd::rpc
