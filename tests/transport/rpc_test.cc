// RpcServer and RpcClient over real loopback sockets: dispatch, out-of-order
// responses, deadlines, reconnects, back-pressure, shutdown, and hostile
// peers that must not disturb anyone else.
#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <chrono>
#include <future>
#include <thread>

#include "core/config.h"
#include "rpc_fixture.h"
#include "wire_peer.h"

namespace dnnd::rpc {
namespace {

using namespace std::chrono_literals;
using wire_test::RawPeer;

TEST(Rpc, CallsAHandlerAndEchoesTensorsWithPing) {
  TestServer ts;
  auto client = RpcClient::Create(ts.address(), ClientOptions());
  wire::Message add = Request(kAdd);
  add.fields.SetInt("a", 2);
  add.fields.SetInt("b", 40);
  auto r = client->Call(add);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r.value().fields.GetInt("sum").value(), 42);
  EXPECT_EQ(r.value().fields.GetString("caller").value(), "w0")
      << "the server knows who authenticated";
  EXPECT_EQ(client->server_identity().role, "test-server");

  wire::Message ping = Request(wire::type::kPing);
  Tensor t = Tensor::FromVector({2, 2}, {1, 2, 3, 4});
  ping.tensors.push_back(wire::WireTensor::FromTensor("t", t));
  ping.tensors.push_back(
      wire::WireTensor::FromTensor("z", Tensor::Zeros({1000}), wire::Codec::kShuffleZstd));
  auto echo = client->Call(ping);
  ASSERT_TRUE(echo.ok()) << echo.status().ToString();
  EXPECT_EQ(echo.value().tensors[0].ToTensor().value().ToVector(), t.ToVector());
  EXPECT_EQ(echo.value().tensors[1].ToTensor().value().ToVector(), std::vector<float>(1000, 0.f));
}

TEST(Rpc, HandlerErrorsAndUnknownTypesComeBackAsStatus) {
  TestServer ts;
  auto client = RpcClient::Create(ts.address(), ClientOptions());
  auto missing = client->Call(Request(kAdd));  // no fields
  EXPECT_EQ(missing.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(missing.status().message(), "missing field 'a'");
  auto unknown = client->Call(Request(0x0FFF));
  EXPECT_EQ(unknown.status().code(), StatusCode::kNotFound);
  EXPECT_NE(unknown.status().message().find("no handler for message type 4095"), std::string::npos);
}

TEST(Rpc, ResponsesArriveOutOfOrderOnOneConnection) {
  TestServer ts;
  auto client = RpcClient::Create(ts.address(), ClientOptions());
  std::mutex mu;
  std::vector<int64_t> order;
  std::promise<void> both;
  auto record = [&](Result<wire::Message> r) {
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    std::lock_guard lock(mu);
    order.push_back(r.value().fields.GetInt("ms").value());
    if (order.size() == 2) both.set_value();
  };
  wire::Message slow = Request(kSlow), fast = Request(kSlow);
  slow.fields.SetInt("ms", 300);
  fast.fields.SetInt("ms", 0);
  client->CallAsync(slow, Clock::now() + 5s, record);
  client->CallAsync(fast, Clock::now() + 5s, record);
  ASSERT_EQ(both.get_future().wait_for(5s), std::future_status::ready);
  EXPECT_EQ(order, (std::vector<int64_t>{0, 300}));
}

TEST(Rpc, DeadlineExpiresAndTheConnectionStaysUsable) {
  TestServer ts;
  auto client = RpcClient::Create(ts.address(), ClientOptions());
  wire::Message slow = Request(kSlow);
  slow.fields.SetInt("ms", 500);
  const auto start = Clock::now();
  auto r = client->Call(slow, 100ms);
  EXPECT_EQ(r.status().code(), StatusCode::kDeadlineExceeded) << r.status().ToString();
  EXPECT_LT(Clock::now() - start, 450ms);
  std::this_thread::sleep_for(600ms);  // the late response arrives and is dropped
  wire::Message add = Request(kAdd);
  add.fields.SetInt("a", 1);
  add.fields.SetInt("b", 1);
  EXPECT_TRUE(client->Call(add).ok());
}

TEST(Rpc, WrongTokenIsRefusedClearly) {
  TestServer ts;
  auto client = RpcClient::Create(ts.address(), ClientOptions("not-the-token"));
  auto r = client->Call(Request(kAdd), 2000ms);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kPermissionDenied) << r.status().ToString();
  EXPECT_NE(r.status().message().find("bad token proof from node 'w0' (role worker)"),
            std::string::npos)
      << r.status().ToString();
  EXPECT_GE(ts.server.stats().handshake_failures, 1u);
}

TEST(Rpc, ClientWaitsForAServerThatStartsLaterAndReconnectsAfterARestart) {
  // Reserve a port, then free it for the server that comes up later.
  uint16_t port;
  {
    TestServer probe;
    port = probe.server.port();
  }
  const std::string address = "127.0.0.1:" + std::to_string(port);
  auto client = RpcClient::Create(address, ClientOptions());
  auto early = std::async(std::launch::async, [&] {
    wire::Message add = Request(kAdd);
    add.fields.SetInt("a", 1);
    add.fields.SetInt("b", 2);
    return client->Call(add, 5000ms);
  });
  std::this_thread::sleep_for(300ms);
  auto options = ServerOptions();
  options.listen = address;
  {
    auto ts = std::make_unique<TestServer>(options);
    auto r = early.get();
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r.value().fields.GetInt("sum").value(), 3);
  }
  // Server gone: calls fail fast-ish with Unavailable, not hang.
  auto down = client->Call(Request(kAdd), 300ms);
  EXPECT_FALSE(down.ok());
  // Back up: the client reconnects by itself.
  TestServer again(options);
  wire::Message add = Request(kAdd);
  add.fields.SetInt("a", 5);
  add.fields.SetInt("b", 5);
  auto r = client->Call(add, 5000ms);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r.value().fields.GetInt("sum").value(), 10);
  EXPECT_GE(client->stats().reconnects, 1u);
}

TEST(Rpc, BackPressureBoundsBytesInFlight) {
  TestServer ts;
  auto options = ClientOptions();
  options.max_inflight_bytes = 64 * 1024;
  auto client = RpcClient::Create(ts.address(), options);
  auto big = [] {
    wire::Message m = Request(kHold);
    m.tensors.push_back(wire::WireTensor::FromTensor("x", Tensor::Zeros({10000})));  // 40 KB
    return m;
  };
  std::promise<Status> first;
  client->CallAsync(big(), Clock::now() + 5s,
                    [&](Result<wire::Message> r) { first.set_value(r.status()); });
  // The second 40 KB request does not fit next to the first.
  auto second = client->Call(big(), 200ms);
  EXPECT_EQ(second.status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_NE(second.status().message().find("back-pressure"), std::string::npos)
      << second.status().ToString();
  EXPECT_GT(client->stats().inflight_bytes, 40000u) << "the first request's frame";
  EXPECT_LT(client->stats().inflight_bytes, 40200u);
  // Once the first is answered the budget frees up.
  for (int i = 0; i < 100 && ts.held_count() == 0; ++i) std::this_thread::sleep_for(10ms);
  ts.ReleaseAll();
  EXPECT_TRUE(first.get_future().get().ok());
  std::promise<Status> third;
  client->CallAsync(big(), Clock::now() + 5s,
                    [&](Result<wire::Message> r) { third.set_value(r.status()); });
  for (int i = 0; i < 100 && ts.held_count() == 0; ++i) std::this_thread::sleep_for(10ms);
  ts.ReleaseAll();
  EXPECT_TRUE(third.get_future().get().ok());
}

TEST(Rpc, StopFinishesInFlightRequestsAndRefusesNewOnes) {
  auto ts = std::make_unique<TestServer>();
  auto client = RpcClient::Create(ts->address(), ClientOptions());
  wire::Message slow = Request(kSlow);
  slow.fields.SetInt("ms", 300);
  std::promise<Result<wire::Message>> result;
  client->CallAsync(slow, Clock::now() + 5s,
                    [&](Result<wire::Message> r) { result.set_value(std::move(r)); });
  std::this_thread::sleep_for(50ms);
  std::thread stopper([&] { ts->server.Stop(5000ms); });
  std::this_thread::sleep_for(50ms);
  auto refused = client->Call(Request(kAdd), 1000ms);
  EXPECT_EQ(refused.status().code(), StatusCode::kUnavailable) << refused.status().ToString();
  auto r = result.get_future().get();
  EXPECT_TRUE(r.ok()) << "in-flight request finished during shutdown: " << r.status().ToString();
  stopper.join();
}

// A Canceller wakes at once every call of the clients created under its
// scope: one retrying a server that is gone (as a cancelled job's parameter
// servers are), one awaiting a reply that is not coming; and clients bound
// after the cancel fail at once too. Clients outside the scope are untouched.
TEST(Rpc, CancellerWakesCallsWaitingToConnectOrForAReply) {
  uint16_t dead_port;
  {
    TestServer probe;
    dead_port = probe.server.port();
  }
  TestServer ts;
  auto cancel = std::make_shared<Canceller>();
  std::unique_ptr<RpcClient> dead, held;
  {
    CancelScope scope(cancel);
    dead = RpcClient::Create("127.0.0.1:" + std::to_string(dead_port), ClientOptions());
    held = RpcClient::Create(ts.address(), ClientOptions());
  }
  auto outside = RpcClient::Create(ts.address(), ClientOptions());
  auto connecting = std::async(std::launch::async, [&] { return dead->Call(Request(kAdd), 30s); });
  auto waiting = std::async(std::launch::async, [&] { return held->Call(Request(kHold), 30s); });
  for (int i = 0; i < 200 && ts.held_count() == 0; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(ts.held_count(), 1u);
  std::this_thread::sleep_for(200ms);  // `dead` is retrying with backoff by now
  const auto start = Clock::now();
  cancel->Cancel();
  ASSERT_EQ(connecting.wait_for(2s), std::future_status::ready);
  ASSERT_EQ(waiting.wait_for(2s), std::future_status::ready);
  EXPECT_LT(Clock::now() - start, 1s);
  EXPECT_EQ(connecting.get().status().code(), StatusCode::kCancelled);
  EXPECT_EQ(waiting.get().status().code(), StatusCode::kCancelled);
  EXPECT_TRUE(cancel->cancelled());
  EXPECT_EQ(held->Call(Request(kAdd), 5s).status().code(), StatusCode::kCancelled);
  {
    CancelScope scope(cancel);
    auto late = RpcClient::Create(ts.address(), ClientOptions());
    EXPECT_EQ(late->Call(Request(kAdd), 5s).status().code(), StatusCode::kCancelled);
  }
  ExpectServing(*outside);
  ts.ReleaseAll();
}

// --- hostile peers ----------------------------------------------------------------

TEST(RpcHostile, BadFramesCloseOnlyTheirConnection) {
  TestServer ts;
  auto good = RpcClient::Create(ts.address(), ClientOptions());
  ExpectServing(*good);

  {  // garbage instead of a handshake
    RawPeer raw(ts.server.port());
    ASSERT_TRUE(raw.ReadFrame().ok());  // HELLO
    raw.Write(std::string(64, 'x'));
    auto err = raw.ReadFrame();
    ASSERT_TRUE(err.ok());
    EXPECT_TRUE(err.value().is_error());
    EXPECT_NE(err.value().ErrorStatus().message().find("not a dnnd frame"), std::string::npos);
    EXPECT_TRUE(raw.ClosedByServer());
  }
  ExpectServing(*good);

  {  // authenticated, then a header declaring a 2^63-byte body
    RawPeer raw(ts.server.port());
    ASSERT_TRUE(raw.Handshake("tok").ok());
    wire::FrameHeader h;
    h.type = wire::type::kPing;
    h.request_id = 9;
    h.body_len = uint64_t{1} << 63;
    uint8_t bytes[wire::kHeaderBytes];
    wire::WriteHeader(h, bytes);
    raw.Write(std::string(reinterpret_cast<char*>(bytes), sizeof bytes));
    auto err = raw.ReadFrame();
    ASSERT_TRUE(err.ok());
    EXPECT_EQ(err.value().request_id, 9u);
    EXPECT_EQ(err.value().ErrorStatus().code(), StatusCode::kResourceExhausted);
    EXPECT_TRUE(raw.ClosedByServer());
  }
  ExpectServing(*good);

  {  // authenticated, then a frame of another protocol version
    RawPeer raw(ts.server.port());
    ASSERT_TRUE(raw.Handshake("tok").ok());
    wire::Message ping = Request(wire::type::kPing);
    std::string frame = wire::FlattenFrame(wire::EncodeFrame(ping).value());
    frame[4] = 7;
    raw.Write(frame);
    auto err = raw.ReadFrame();
    ASSERT_TRUE(err.ok());
    EXPECT_EQ(err.value().ErrorStatus().code(), StatusCode::kUnsupported);
    EXPECT_NE(err.value().ErrorStatus().message().find("protocol version 7"), std::string::npos);
  }
  {  // a request before the handshake
    RawPeer raw(ts.server.port());
    ASSERT_TRUE(raw.ReadFrame().ok());
    raw.Write(wire::FlattenFrame(wire::EncodeFrame(Request(kAdd)).value()));
    auto err = raw.ReadFrame();
    ASSERT_TRUE(err.ok());
    EXPECT_EQ(err.value().ErrorStatus().code(), StatusCode::kPermissionDenied);
    EXPECT_TRUE(raw.ClosedByServer());
  }
  ExpectServing(*good);
  EXPECT_GE(ts.server.stats().bad_frames, 2u);
}

TEST(RpcHostile, SilentPeersAreDroppedAfterTheHandshakeTimeout) {
  auto options = ServerOptions();
  options.hello_timeout = 200ms;
  TestServer ts(options);
  RawPeer raw(ts.server.port());
  ASSERT_TRUE(raw.ReadFrame().ok());
  const auto start = Clock::now();
  EXPECT_TRUE(raw.ClosedByServer());
  EXPECT_LT(Clock::now() - start, 2s);
  auto good = RpcClient::Create(ts.address(), ClientOptions());
  ExpectServing(*good);
}

// Options come from [transport]; the token from a mounted secret file, with
// the trailing newline secrets usually carry trimmed.
TEST(RpcConfig, OptionsAndTokenFileComeFromTheConfig) {
  const std::string token_file = ::testing::TempDir() + "/dnnd_token";
  {
    FILE* f = std::fopen(token_file.c_str(), "w");
    std::fputs("s3cret\n", f);
    std::fclose(f);
  }
  auto config = Config::FromString(
      "[node]\nname = \"ps-0\"\n[transport]\nmax_tensor_bytes = 4096\n"
      "io_threads = 3\nconnections_per_peer = 2\ntoken_file = \"" +
          token_file + "\"\n",
      "t.toml");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  auto server = RpcServerOptions::FromConfig(config.value(), "127.0.0.1:0", "parameter-server");
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  EXPECT_EQ(server.value().token, "s3cret");
  EXPECT_EQ(server.value().limits.max_tensor_bytes, 4096u);
  EXPECT_EQ(server.value().io_threads, 3);
  EXPECT_EQ(server.value().self.node, "ps-0");
  auto client = RpcClientOptions::FromConfig(config.value(), "worker");
  ASSERT_TRUE(client.ok());
  EXPECT_EQ(client.value().token, "s3cret");
  EXPECT_EQ(client.value().connections, 2);

  // A server and client built from it talk, and the tensor limit applies.
  RpcServer srv(server.value());
  ASSERT_TRUE(srv.Start().ok());
  auto cli = RpcClient::Create(srv.address(), client.value());
  wire::Message small = Request(wire::type::kPing);
  small.tensors.push_back(wire::WireTensor::FromTensor("x", Tensor::Zeros({16})));
  EXPECT_TRUE(cli->Call(small).ok());
  wire::Message big = Request(wire::type::kPing);
  big.tensors.push_back(wire::WireTensor::FromTensor("x", Tensor::Zeros({4096})));
  EXPECT_EQ(cli->Call(big).status().code(), StatusCode::kResourceExhausted)
      << "refused before sending";

  auto missing = Config::FromString("[transport]\ntoken_file = \"/nonexistent/token\"\n", "t.toml");
  ASSERT_TRUE(missing.ok());
  auto bad = RpcServerOptions::FromConfig(missing.value(), "127.0.0.1:0", "parameter-server");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("transport.token_file"), std::string::npos)
      << bad.status().ToString();
}

}  // namespace
}  // namespace dnnd::rpc
