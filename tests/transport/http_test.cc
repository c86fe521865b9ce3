// HttpServer / HttpRouter over real sockets on 127.0.0.1.
#include "transport/http.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

#include "../roles/http_attack.h"
#include "core/metrics.h"
#include "core/work_queue.h"

namespace dnnd {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace json = boost::json;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using Response = http::response<http::string_body>;
using testing::ExpectDripCutWith408;
using testing::Flood;
using testing::HealthzMillis;
using testing::HttpStatus;
using testing::ProcStatusBytes;
using testing::RawConnection;
using testing::ResetPeakRss;
using testing::WorstHealthzWhile;

// A blocking-style client built on async operations with a deadline, so a
// server bug fails the test instead of hanging it.
class TestClient {
 public:
  explicit TestClient(uint16_t port) : stream_(ioc_) {
    stream_.expires_after(5s);
    stream_.async_connect(tcp::endpoint(asio::ip::address_v4::loopback(), port),
                          [this](beast::error_code ec) { ec_ = ec; });
    Run();
    if (ec_) throw std::runtime_error("connect: " + ec_.message());
  }

  beast::error_code SendRaw(const std::string& data) {
    stream_.expires_after(5s);
    asio::async_write(stream_, asio::buffer(data),
                      [this](beast::error_code ec, size_t) { ec_ = ec; });
    Run();
    return ec_;
  }

  // Reads one response (a 100 Continue counts as one).
  std::optional<Response> Read(bool head = false) {
    http::response_parser<http::string_body> parser;
    parser.body_limit(boost::none);
    parser.skip(head);
    stream_.expires_after(5s);
    http::async_read(stream_, buffer_, parser, [this](beast::error_code ec, size_t) { ec_ = ec; });
    Run();
    if (ec_) return std::nullopt;
    return parser.release();
  }

  std::optional<Response> Request(const std::string& method, const std::string& target,
                                  const std::string& body = "",
                                  const std::string& extra_headers = "") {
    std::string raw = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + extra_headers;
    if (!body.empty() || method == "POST" || method == "PUT")
      raw += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    raw += "\r\n" + body;
    if (SendRaw(raw)) return std::nullopt;
    return Read(method == "HEAD");
  }

  // True if the server closes the connection (EOF or reset) within `within`.
  bool PeerClosed(std::chrono::milliseconds within = 5000ms) {
    if (buffer_.size() > 0) return false;  // unread response bytes
    char byte;
    stream_.expires_after(within);
    stream_.async_read_some(asio::buffer(&byte, 1),
                            [this](beast::error_code ec, size_t) { ec_ = ec; });
    Run();
    return ec_ == asio::error::eof || ec_ == asio::error::connection_reset;
  }

 private:
  void Run() {
    ioc_.restart();
    ioc_.run();
  }

  asio::io_context ioc_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  beast::error_code ec_;
};

json::value Body(const Response& r) { return json::parse(r.body()); }
std::string ErrorCode(const Response& r) {
  return json::value_to<std::string>(Body(r).at("error").at("code"));
}

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    router_ = std::make_shared<HttpRouter>();
    AddControlPlaneRoutes(
        *router_,
        [this] {
          std::lock_guard lock(mu_);
          return std::pair<bool, std::string>{ready_, reason_};
        },
        metrics_);
    router_->Handle("POST", "/echo", [](const HttpRequest& r) {
      auto parsed = ParseJsonBody(r);
      if (!parsed) return HttpResponse::FromStatus(parsed.status());
      return HttpResponse::Json(200, json::object{{"got", *parsed}});
    });
    router_->Handle("GET", "/api/v1/jobs/{id}", [](const HttpRequest& r) {
      json::object o{{"id", r.params.at("id")}, {"route", r.route}};
      if (auto q = r.query.find("x"); q != r.query.end()) o["x"] = q->second;
      if (auto q = r.query.find("y"); q != r.query.end()) o["y"] = q->second;
      return HttpResponse::Json(200, o);
    });
    router_->Handle("DELETE", "/api/v1/jobs/{id}", [](const HttpRequest&) {
      HttpResponse r;
      r.status = 204;
      return r;
    });
    router_->Handle("GET", "/api/v1/jobs/stats", [](const HttpRequest&) {
      return HttpResponse::Json(200, json::object{{"stats", true}});
    });
    router_->Handle("GET", "/boom",
                    [](const HttpRequest&) -> HttpResponse { throw std::runtime_error("kaboom"); });
    router_->Handle("GET", "/missing", [](const HttpRequest&) -> HttpResponse {
      throw StatusError(NotFound("no job 7"));
    });
    router_->Handle("GET", "/header", [](const HttpRequest& r) {
      return HttpResponse::Text(200, r.header("x-test"));
    });
  }

  std::unique_ptr<HttpServer> StartServer(HttpServerOptions options = {}) {
    auto server = HttpServer::Start(options, router_);
    if (!server.ok()) {
      ADD_FAILURE() << server.status().ToString();
      return nullptr;
    }
    return std::move(server).value();
  }

  void SetReady(bool ready, std::string reason) {
    std::lock_guard lock(mu_);
    ready_ = ready;
    reason_ = std::move(reason);
  }

  MetricsRegistry metrics_;
  std::shared_ptr<HttpRouter> router_;
  std::mutex mu_;
  bool ready_ = true;
  std::string reason_;
};

TEST_F(HttpServerTest, HealthzAndReadyz) {
  auto server = StartServer();
  ASSERT_TRUE(server);
  EXPECT_NE(server->port(), 0);
  TestClient c(server->port());

  auto r = c.Request("GET", "/healthz");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 200);
  EXPECT_EQ((*r)[http::field::content_type], "application/json");
  EXPECT_EQ(r->body(), R"({"status":"ok"})");

  r = c.Request("GET", "/readyz");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 200);
  EXPECT_EQ(r->body(), R"({"ready":true})");

  SetReady(false, "waiting for \"trainer\"");
  r = c.Request("GET", "/readyz");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 503);
  EXPECT_EQ(Body(*r), json::parse(R"({"ready":false,"reason":"waiting for \"trainer\""})"));

  SetReady(true, "");
  r = c.Request("GET", "/readyz");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 200);
}

TEST_F(HttpServerTest, MetricsEndpoint) {
  auto server = StartServer();
  ASSERT_TRUE(server);
  TestClient c(server->port());
  ASSERT_TRUE(c.Request("GET", "/healthz"));
  ASSERT_TRUE(c.Request("GET", "/nope/123"));
  ASSERT_TRUE(c.Request("GET", "/api/v1/jobs/a1"));
  ASSERT_TRUE(c.Request("GET", "/api/v1/jobs/b2"));
  auto r = c.Request("GET", "/metrics");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 200);
  EXPECT_EQ((*r)[http::field::content_type], "text/plain; version=0.0.4; charset=utf-8");
  const std::string& text = r->body();
  EXPECT_NE(text.find("# TYPE dnnd_http_requests_total counter\n"), std::string::npos) << text;
  EXPECT_NE(
      text.find("dnnd_http_requests_total{method=\"GET\",route=\"/healthz\",code=\"200\"} 1\n"),
      std::string::npos)
      << text;
  // Bounded labels: the pattern, not the raw paths.
  EXPECT_NE(
      text.find(
          "dnnd_http_requests_total{method=\"GET\",route=\"/api/v1/jobs/{id}\",code=\"200\"} 2\n"),
      std::string::npos)
      << text;
  EXPECT_NE(
      text.find("dnnd_http_requests_total{method=\"GET\",route=\"(unmatched)\",code=\"404\"} 1\n"),
      std::string::npos)
      << text;
  EXPECT_EQ(text.find("a1"), std::string::npos);
  EXPECT_NE(text.find("# TYPE dnnd_http_request_duration_seconds histogram\n"), std::string::npos);
  EXPECT_NE(text.find("dnnd_http_request_duration_seconds_count{route=\"/healthz\"} 1\n"),
            std::string::npos);
  EXPECT_NE(
      text.find("dnnd_http_request_duration_seconds_bucket{route=\"/healthz\",le=\"+Inf\"} 1\n"),
      std::string::npos);
  EXPECT_NE(text.find("\nprocess_resident_memory_bytes "), std::string::npos);
  EXPECT_NE(text.find("\nprocess_open_fds "), std::string::npos);
  EXPECT_NE(text.find("dnnd_build_info{version=\""), std::string::npos);
}

TEST_F(HttpServerTest, NotFoundAndMethodNotAllowed) {
  auto server = StartServer();
  ASSERT_TRUE(server);
  TestClient c(server->port());

  auto r = c.Request("GET", "/nope");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 404);
  EXPECT_EQ((*r)[http::field::content_type], "application/json");
  EXPECT_EQ(ErrorCode(*r), "not_found");
  EXPECT_TRUE(Body(*r).at("error").at("message").is_string());

  r = c.Request("POST", "/healthz", "{}");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 405);
  EXPECT_EQ((*r)[http::field::allow], "GET, HEAD");
  EXPECT_EQ(ErrorCode(*r), "method_not_allowed");

  r = c.Request("PUT", "/api/v1/jobs/7", "{}");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 405);
  EXPECT_EQ((*r)[http::field::allow], "DELETE, GET, HEAD");

  r = c.Request("DELETE", "/api/v1/jobs/7");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 204);
  EXPECT_EQ(r->body(), "");
  EXPECT_EQ(r->count(http::field::content_length), 0u);

  // The connection survived all of that.
  r = c.Request("GET", "/healthz");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 200);
}

TEST_F(HttpServerTest, HandlerFailures) {
  auto server = StartServer();
  ASSERT_TRUE(server);
  TestClient c(server->port());
  auto r = c.Request("GET", "/boom");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 500);
  EXPECT_EQ(ErrorCode(*r), "internal");
  EXPECT_EQ(r->body().find("kaboom"), std::string::npos);  // internals stay in the log

  r = c.Request("GET", "/missing");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 404);
  EXPECT_EQ(Body(*r), json::parse(R"({"error":{"code":"not_found","message":"no job 7"}})"));

  r = c.Request("GET", "/healthz");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 200);
}

TEST_F(HttpServerTest, PayloadTooLarge) {
  HttpServerOptions options;
  options.max_body_bytes = 1024;
  auto server = StartServer(options);
  ASSERT_TRUE(server);

  {  // Content-Length over the limit, body sent anyway.
    TestClient c(server->port());
    auto r = c.Request("POST", "/echo", std::string(5000, 'x'));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->result_int(), 413);
    EXPECT_EQ(ErrorCode(*r), "payload_too_large");
    EXPECT_FALSE(r->keep_alive());
    EXPECT_TRUE(c.PeerClosed());
  }
  {  // A body far larger than the socket buffers: the server drains it after
     // answering, so the client can finish sending and still read the 413.
    TestClient c(server->port());
    auto r = c.Request("POST", "/echo", std::string(8 << 20, 'x'));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->result_int(), 413);
  }
  {  // Expect: 100-continue: refused before the body is sent.
    TestClient c(server->port());
    ASSERT_FALSE(
        c.SendRaw("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n"
                  "Expect: 100-continue\r\n\r\n"));
    auto r = c.Read();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->result_int(), 413);
  }
  {  // Chunked: the limit is hit while reading the body.
    TestClient c(server->port());
    const std::string chunk(1000, 'y');
    ASSERT_FALSE(
        c.SendRaw("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n" +
                  chunk + "\r\n3e8\r\n" + chunk + "\r\n0\r\n\r\n"));
    auto r = c.Read();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->result_int(), 413);
  }
  {  // At the limit is fine.
    TestClient c(server->port());
    auto r = c.Request("POST", "/echo", "\"" + std::string(1022, 'z') + "\"");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->result_int(), 200);
  }
}

TEST_F(HttpServerTest, JsonBodies) {
  auto server = StartServer();
  ASSERT_TRUE(server);
  TestClient c(server->port());

  auto r =
      c.Request("POST", "/echo", R"({"a": [1, 2.5, "x"]})", "Content-Type: application/json\r\n");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 200);
  EXPECT_EQ(Body(*r), json::parse(R"({"got":{"a":[1,2.5,"x"]}})"));

  r = c.Request("POST", "/echo", "{\"a\": 1,\n \"b\": }");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 400);
  EXPECT_EQ(ErrorCode(*r), "invalid_argument");
  const std::string message = json::value_to<std::string>(Body(*r).at("error").at("message"));
  EXPECT_NE(message.find("line 2"), std::string::npos) << message;

  r = c.Request("POST", "/echo", "");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 400);

  // Expect: 100-continue with an acceptable body.
  const std::string body = R"({"k":"v"})";
  ASSERT_FALSE(
      c.SendRaw("POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: " +
                std::to_string(body.size()) + "\r\n\r\n"));
  r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 100);
  ASSERT_FALSE(c.SendRaw(body));
  r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 200);
  EXPECT_EQ(Body(*r), json::parse(R"({"got":{"k":"v"}})"));
}

TEST(ParseJsonBody, Errors) {
  HttpRequest req;
  EXPECT_FALSE(ParseJsonBody(req).ok());
  req.body = "{}  \n";
  EXPECT_TRUE(ParseJsonBody(req).ok());
  req.body = "{} x";
  auto r = ParseJsonBody(req);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("column 4"), std::string::npos) << r.status().message();
  req.body = "[1, 2";
  r = ParseJsonBody(req);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("byte"), std::string::npos) << r.status().message();
  req.body = "[1,\n\n  nul]";
  r = ParseJsonBody(req);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("line 3"), std::string::npos) << r.status().message();
}

TEST_F(HttpServerTest, PathParamsAndQuery) {
  auto server = StartServer();
  ASSERT_TRUE(server);
  TestClient c(server->port());

  auto r = c.Request("GET", "/api/v1/jobs/abc%20d?x=1&y=a+b%21&x=2");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 200);
  EXPECT_EQ(Body(*r),
            json::parse(R"({"id":"abc d","route":"/api/v1/jobs/{id}","x":"1","y":"a b!"})"));

  r = c.Request("GET", "/api/v1/jobs/stats");  // a literal beats a parameter
  ASSERT_TRUE(r);
  EXPECT_EQ(Body(*r), json::parse(R"({"stats":true})"));

  r = c.Request("GET", "/api/v1/jobs/");  // a parameter needs a non-empty segment
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 404);

  {  // Refused before the body is read, so the connection closes (like a 401).
    TestClient bad(server->port());
    r = bad.Request("GET", "/api/v1/jobs/%zz");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->result_int(), 400);
    EXPECT_TRUE(bad.PeerClosed());
  }

  r = c.Request("GET", "/header", "", "X-Test: hello\r\n");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body(), "hello");
  EXPECT_EQ((*r)[http::field::content_type], "text/plain; charset=utf-8");

  r = c.Request("HEAD", "/healthz");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 200);
  EXPECT_EQ((*r)[http::field::content_length], "15");  // {"status":"ok"}
  EXPECT_EQ(r->body(), "");
  r = c.Request("GET", "/healthz");  // nothing left over from the HEAD response
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body(), R"({"status":"ok"})");
}

TEST_F(HttpServerTest, KeepAliveAndPipelining) {
  auto server = StartServer();
  ASSERT_TRUE(server);
  TestClient c(server->port());
  auto r1 = c.Request("GET", "/healthz");
  ASSERT_TRUE(r1);
  EXPECT_TRUE(r1->keep_alive());
  auto r2 = c.Request("GET", "/readyz");
  ASSERT_TRUE(r2);
  EXPECT_EQ(r2->result_int(), 200);

  // Two requests in one write; the answers come back in order.
  ASSERT_FALSE(
      c.SendRaw("GET /api/v1/jobs/1 HTTP/1.1\r\nHost: x\r\n\r\nGET /api/v1/jobs/2 "
                "HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto p1 = c.Read();
  auto p2 = c.Read();
  ASSERT_TRUE(p1 && p2);
  EXPECT_EQ(Body(*p1).at("id"), "1");
  EXPECT_EQ(Body(*p2).at("id"), "2");

  // Connection: close is honoured.
  auto r3 = c.Request("GET", "/healthz", "", "Connection: close\r\n");
  ASSERT_TRUE(r3);
  EXPECT_FALSE(r3->keep_alive());
  EXPECT_TRUE(c.PeerClosed());
}

TEST_F(HttpServerTest, MalformedRequestsGet400AndServerKeepsServing) {
  auto server = StartServer();  // one I/O thread: a stuck client would block the others
  ASSERT_TRUE(server);

  TestClient stalled(server->port());
  ASSERT_FALSE(stalled.SendRaw("GET /heal"));  // partial request, never finished

  for (const std::string bad :
       {"NOT A REQUEST\r\n\r\n", "GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nContent-Length: abc\r\n\r\n", "\x01\x02\x03\r\n\r\n"}) {
    TestClient c(server->port());
    ASSERT_FALSE(c.SendRaw(bad));
    auto r = c.Read();
    ASSERT_TRUE(r) << bad;
    EXPECT_EQ(r->result_int(), 400) << bad;
    EXPECT_EQ(ErrorCode(*r), "bad_request");
    EXPECT_TRUE(c.PeerClosed()) << bad;
  }
  {  // A target that is not a path.
    TestClient c(server->port());
    auto r = c.Request("GET", "healthz");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->result_int(), 400);
  }
  {  // Oversized headers.
    TestClient c(server->port());
    auto r = c.Request("GET", "/healthz", "", "X-Big: " + std::string(20000, 'a') + "\r\n");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->result_int(), 431);
  }
  {  // A client that disconnects mid-request.
    TestClient c(server->port());
    ASSERT_FALSE(c.SendRaw("POST /echo HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc"));
  }

  TestClient good(server->port());
  auto r = good.Request("GET", "/healthz");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 200);

  // The stalled client can still finish its request.
  ASSERT_FALSE(stalled.SendRaw("thz HTTP/1.1\r\nHost: x\r\n\r\n"));
  r = stalled.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 200);
}

TEST_F(HttpServerTest, ReadTimeoutClosesIdleConnections) {
  HttpServerOptions options;
  options.read_timeout = 200ms;
  auto server = StartServer(options);
  ASSERT_TRUE(server);
  TestClient c(server->port());
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(c.PeerClosed(5000ms));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
}

// A flood of idle connections: past http.max_connections each new one gets
// a 503 naming the setting at once and is closed; the held ones and a freed
// slot still work, and /healthz answers again as soon as a slot frees.
TEST_F(HttpServerTest, ConnectionsOverTheCapAreRefusedCheaply) {
  HttpServerOptions options;
  options.max_connections = 3;
  auto server = StartServer(options);
  ASSERT_TRUE(server);
  std::vector<std::unique_ptr<RawConnection>> held;
  for (int i = 0; i < 3; ++i) {
    held.push_back(std::make_unique<RawConnection>(server->port()));
    ASSERT_TRUE(held.back()->Send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
    ASSERT_TRUE(held.back()->ServerSpoke(2000ms));  // accepted and answered: the slot is taken
  }
  for (int i = 0; i < 20; ++i) {
    RawConnection extra(server->port());
    const auto start = std::chrono::steady_clock::now();
    const std::string reply = extra.ReadUntilClose(2000ms);
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    EXPECT_EQ(reply.rfind("HTTP/1.1 503", 0), 0u) << reply;
    EXPECT_NE(reply.find("http.max_connections"), std::string::npos) << reply;
    EXPECT_LT(ms, 100) << "refusal " << i;
  }
  held.pop_back();  // a slot frees: the next client is served
  bool served = false;
  for (int attempt = 0; attempt < 50 && !served; ++attempt) {
    RawConnection next(server->port());
    next.Send("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    served = next.ReadUntilClose(2000ms).rfind("HTTP/1.1 200", 0) == 0;
    if (!served) std::this_thread::sleep_for(20ms);  // the server sees the close a moment later
  }
  EXPECT_TRUE(served);
}

TEST_F(HttpServerTest, StopThenStartOnSamePort) {
  auto server = StartServer();
  ASSERT_TRUE(server);
  const uint16_t port = server->port();
  {
    TestClient c(port);
    ASSERT_TRUE(c.Request("GET", "/healthz"));
    TestClient idle(port);
    server->Stop();
    server->Stop();  // idempotent
    EXPECT_TRUE(c.PeerClosed());
    EXPECT_TRUE(idle.PeerClosed());
  }
  HttpServerOptions options;
  options.listen = "127.0.0.1:" + std::to_string(port);
  auto again = StartServer(options);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->port(), port);
  TestClient c(port);
  auto r = c.Request("GET", "/healthz");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 200);
}

TEST_F(HttpServerTest, BindFailureNamesAddress) {
  auto server = StartServer();
  ASSERT_TRUE(server);
  HttpServerOptions options;
  options.listen = "127.0.0.1:" + std::to_string(server->port());
  auto second = HttpServer::Start(options, router_);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kIoError);
  EXPECT_NE(second.status().message().find(options.listen), std::string::npos)
      << second.status().message();
  EXPECT_NE(second.status().message().find("in use"), std::string::npos)
      << second.status().message();

  options.listen = "127.0.0.1";
  EXPECT_EQ(HttpServer::Start(options, router_).status().code(), StatusCode::kInvalidArgument);
  options.listen = "127.0.0.1:99999";
  EXPECT_EQ(HttpServer::Start(options, router_).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(HttpServerTest, SeveralThreadsManyClients) {
  HttpServerOptions options;
  options.threads = 4;
  auto server = StartServer(options);
  ASSERT_TRUE(server);
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      TestClient c(server->port());
      for (int i = 0; i < 25; ++i) {
        auto r = c.Request("GET", "/api/v1/jobs/" + std::to_string(t * 100 + i));
        if (r && r->result_int() == 200 &&
            json::value_to<std::string>(Body(*r).at("id")) == std::to_string(t * 100 + i))
          ok++;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 200);
  server->Stop();
}

// Offloaded routes run on their WorkQueue: with one I/O thread busy handlers
// would hold everything up; here /healthz answers at once while the pool's
// only thread is held, a request beyond the queue gets 503 naming the
// setting, and the held requests are answered when released.
TEST_F(HttpServerTest, OffloadedRoutesRunOnTheirPoolAndAFullPoolAnswers503) {
  auto pool = std::make_shared<WorkQueue>(1, 1, "test.heavy_queue");
  std::mutex gate;
  std::unique_lock hold(gate);
  std::atomic<int> entered{0};
  router_->HandleOffloaded("POST", "/heavy", pool, [&](const HttpRequest& r) {
    ++entered;
    std::lock_guard wait(gate);
    return HttpResponse::Json(200, json::object{{"body", r.body}});
  });
  HttpServerOptions options;
  options.threads = 1;  // a handler on the I/O thread would block /healthz
  auto server = StartServer(options);
  ASSERT_TRUE(server);
  std::optional<Response> first, second;
  std::thread a([&] { first = TestClient(server->port()).Request("POST", "/heavy", "one"); });
  while (entered == 0) std::this_thread::sleep_for(1ms);
  std::thread b(
      [&] { second = TestClient(server->port()).Request("POST", "/heavy", "two"); });  // queued
  std::this_thread::sleep_for(50ms);
  auto busy = TestClient(server->port()).Request("POST", "/heavy", "three");
  ASSERT_TRUE(busy);
  EXPECT_EQ(busy->result_int(), 503);
  EXPECT_EQ(ErrorCode(*busy), "overloaded");
  EXPECT_NE(busy->body().find("test.heavy_queue"), std::string::npos) << busy->body();
  EXPECT_EQ((*busy)[http::field::retry_after], "1");
  const auto start = std::chrono::steady_clock::now();
  auto health = TestClient(server->port()).Request("GET", "/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->result_int(), 200);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 100ms);
  hold.unlock();
  a.join();
  b.join();
  ASSERT_TRUE(first && second);
  EXPECT_EQ(Body(*first).at("body"), "one");
  EXPECT_EQ(Body(*second).at("body"), "two");
  pool->Stop();
  server->Stop();
}

TEST(HttpRouter, BadPatternsAndConflictsThrow) {
  HttpRouter router;
  auto h = [](const HttpRequest&) { return HttpResponse{}; };
  router.Handle("GET", "/a/{id}", h);
  EXPECT_THROW(router.Handle("GET", "/a/{other}", h), std::logic_error);
  EXPECT_THROW(router.Handle("GET", "no-slash", h), std::logic_error);
  EXPECT_THROW(router.Handle("GET", "/a/x{id}", h), std::logic_error);
  EXPECT_THROW(router.Handle("GET", "/a/{id}/{id}", h), std::logic_error);
  EXPECT_THROW(router.Handle("get", "/b", h), std::logic_error);
  EXPECT_NO_THROW(router.Handle("POST", "/a/{id}", h));

  HttpRequest req;
  req.method = "GET";
  req.path = "/a/42";
  EXPECT_EQ(router.Dispatch(req).status, 200);
  EXPECT_EQ(req.params.at("id"), "42");
  EXPECT_EQ(req.route, "/a/{id}");
}

// ---- bearer token -----------------------------------------------------------

TEST_F(HttpServerTest, BearerTokenGuardsMutatingMethodsOnly) {
  router_->RequireBearer({.token = "s3cret", .path_prefix = "/", .metrics = &metrics_});
  auto server = StartServer();
  ASSERT_TRUE(server);
  TestClient c(server->port());
  const std::string ok = "Authorization: Bearer s3cret\r\n";
  // Reads stay open: dashboards and probes need no secret.
  for (const char* path : {"/healthz", "/metrics", "/api/v1/jobs/7"}) {
    auto r = c.Request("GET", path);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->result_int(), 200) << path;
  }
  // Missing, wrong, wrong scheme, empty: 401 with a challenge; the connection closes.
  for (const std::string& auth : {std::string(), std::string("Authorization: Bearer s3cre\r\n"),
                                  std::string("Authorization: Bearer s3cret2\r\n"),
                                  std::string("Authorization: Basic czNjcmV0\r\n"),
                                  std::string("Authorization: Bearer \r\n")}) {
    TestClient bad(server->port());
    auto r = bad.Request("POST", "/echo", "{}", auth);
    ASSERT_TRUE(r) << auth;
    EXPECT_EQ(r->result_int(), 401) << auth;
    EXPECT_EQ(ErrorCode(*r), "unauthorized");
    EXPECT_EQ((*r)[http::field::www_authenticate].substr(0, 6), "Bearer");
    EXPECT_TRUE(bad.PeerClosed());
  }
  // The right token, any case of the scheme.
  auto r = c.Request("POST", "/echo", "{\"a\":1}", ok);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 200) << r->body();
  r = c.Request("DELETE", "/api/v1/jobs/7", "", "authorization: bearer s3cret\r\n");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 204);
  {  // Unknown routes too: no probing which exist without the token.
    TestClient probe(server->port());
    r = probe.Request("DELETE", "/api/v1/nothing-here");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->result_int(), 401);
  }
  r = c.Request("DELETE", "/api/v1/nothing-here", "", ok);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 404);
  {  // Expect: 100-continue: refused before the client sends the body.
    TestClient early(server->port());
    ASSERT_FALSE(
        early.SendRaw("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n"
                      "Expect: 100-continue\r\n\r\n"));
    r = early.Read();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->result_int(), 401);
  }
  const std::string text = metrics_.RenderPrometheusText();
  EXPECT_NE(text.find("dnnd_http_unauthorized_total{method=\"POST\",route=\"/echo\"} 6"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("dnnd_http_unauthorized_total{method=\"DELETE\",route=\"(unmatched)\"} 1"),
            std::string::npos)
      << text;
}

TEST_F(HttpServerTest, NoTokenMeansNoGuard) {
  router_->RequireBearer({.token = "", .path_prefix = "/"});
  auto server = StartServer();
  ASSERT_TRUE(server);
  TestClient c(server->port());
  auto r = c.Request("POST", "/echo", "{}");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 200);
}

// Issue 15, finding 1: the guard compared the raw path with "/api/" while the
// router matched the decoded one, so POST /%61pi/v1/models ran without the
// token. Now both decide on one normalised path, and a path that is not the
// canonical spelling of itself is refused before any handler runs.
TEST_F(HttpServerTest, GuardAndRouterDecideOnTheSameNormalisedPath) {
  std::atomic<int> created{0};
  router_->Handle("POST", "/api/v1/models", [&](const HttpRequest&) {
    ++created;
    return HttpResponse::Json(201, json::object{{"created", true}});
  });
  router_->RequireBearer(
      {.token = "s3cret", .metrics = &metrics_});  // POST/PUT/DELETE/PATCH under /api/
  auto server = StartServer();
  ASSERT_TRUE(server);
  const std::string token = "Authorization: Bearer s3cret\r\n";
  // Other spellings of /api/v1/models (or of a path that resolves to it): 400
  // naming what is wrong, with the token or without.
  const std::vector<std::pair<std::string, std::string>> refused = {
      {"/%61pi/v1/models", "'a' (%61)"},
      {"/%61%70%69/v1/models", "(%61)"},
      {"/api/v1/m%6Fdels", "'o' (%6F)"},
      {"/api/%761/models", "'v' (%76)"},
      {"/api/v1/models%2D", "'-' (%2D)"},
      {"/api%2Fv1%2Fmodels", "encoded '/'"},
      {"/api/v1%2fmodels", "encoded '/'"},
      {"/api%5Cv1/models", "(%5C)"},
      {"/api/v1/./models", "dot segment"},
      {"/api/v1/x/../models", "dot segment"},
      {"/x/../api/v1/models", "dot segment"},
      {"/api/v1/%2e/models", "'.' (%2E)"},
      {"/api/v1/x/%2E%2E/models", "'.' (%2E)"},
      {"/api//v1/models", "empty segment"},
      {"//api/v1/models", "empty segment"},
      {"/api/v1//models", "empty segment"},
      {"/api/v1/models%00", "control character (%00)"},
      {"/api/v1/mod%0Aels", "control character (%0A)"},
      {"/api/v1/models%zz", "malformed percent-encoding"},
      {"http://127.0.0.1/%61pi/v1/models", "(%61)"},
  };
  for (const std::string& auth : {std::string(), token}) {
    for (const auto& [path, why] : refused) {
      TestClient c(server->port());
      auto r = c.Request("POST", path, "{}", auth);
      ASSERT_TRUE(r) << path;
      EXPECT_EQ(r->result_int(), 400) << path << (auth.empty() ? "" : " (with the token)") << "\n"
                                      << r->body();
      EXPECT_EQ(ErrorCode(*r), "bad_request") << path;
      EXPECT_NE(r->body().find(why), std::string::npos) << path << ": " << r->body();
    }
  }
  // Not another spelling, but not the route either: unauthenticated they are
  // guarded (401) like the route; with the token, 404.
  for (const std::string path : {"/API/v1/models", "/Api/v1/models", "/api/v1/models/"}) {
    TestClient c(server->port());
    auto r = c.Request("POST", path, "{}");
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->result_int(), 401) << path << "\n" << r->body();
    TestClient t(server->port());
    r = t.Request("POST", path, "{}", token);
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->result_int(), 404) << path << "\n" << r->body();
  }
  EXPECT_EQ(created.load(), 0) << "a refused spelling reached the handler";
  // The canonical request still works, and so do encodings that are not
  // another spelling (a space in a name) on any method.
  TestClient c(server->port());
  auto r = c.Request("POST", "/api/v1/models", "{}", token);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 201) << r->body();
  EXPECT_EQ(created.load(), 1);
  r = c.Request("GET", "/api/v1/jobs/a%20b%C3%A9");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 200) << r->body();
  EXPECT_EQ(json::value_to<std::string>(Body(*r).at("id")), "a b\xC3\xA9");
  r = c.Request("GET", "/api/v1/jobs/%37");  // "7", spelt another way: reads follow the same rule
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 400);
  EXPECT_LT(HealthzMillis(server->port()), 100.0);
}

// The normalisation itself, as the fuzzer (tests/fuzz/http_fuzz.cc) drives it.
TEST(NormalizeRequestPath, CanonicalPathsOnly) {
  auto ok = NormalizeRequestPath("/api/v1/jobs/a%20b");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok.value().path, "/api/v1/jobs/a b");
  EXPECT_EQ(ok.value().segments, (std::vector<std::string>{"api", "v1", "jobs", "a b"}));
  EXPECT_EQ(NormalizeRequestPath("/").value().segments, std::vector<std::string>{""});
  EXPECT_EQ(NormalizeRequestPath("/ui/").value().path, "/ui/");
  for (const char* bad : {"", "api", "/a\\b", "/%61pi", "/a//b", "//", "/a/./b", "/..", "/a%2Fb",
                          "/a%5cb", "/a%00", "/a%7F", "/a%", "/a%4", "/a%g0", "/a%7E"}) {
    auto r = NormalizeRequestPath(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

// Issue 15, finding 9: a chunk-size line or the trailers are held until
// their CRLF arrives, and nothing bounded them: 512 MiB of chunk extensions
// on a GET of /healthz were all buffered. Now the read buffer has a cap, so
// the flood is refused early; a probe on a second connection (the same, only
// I/O thread) stays prompt and the process's peak RSS stays within 16 MiB.
TEST_F(HttpServerTest, ChunkExtensionAndTrailerFloodsAreCutWithBoundedMemory) {
  auto server = StartServer();  // one I/O thread: the attack and the probes share it
  ASSERT_TRUE(server);
  const int port = server->port();
  const std::string chunked =
      "GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  const std::pair<const char*, std::string> floods[] = {{"chunk extension", chunked + "1;ext="},
                                                        {"trailer", chunked + "0\r\nX-Trailer: "}};
  constexpr uint64_t kFlood = 60u << 20;  // under the 64 MiB the server drains after answering
  for (const auto& [what, prefix] : floods) {
    ASSERT_TRUE(ResetPeakRss(::getpid()));
    const int64_t before = ProcStatusBytes(::getpid(), "VmHWM");
    std::atomic<bool> attacking{true};
    std::string response;
    std::thread attacker([&, prefix = prefix] {
      RawConnection c(port);
      Flood(c, prefix, 'a', kFlood);
      response = c.ReadUntilClose(3000ms);
      attacking = false;
    });
    const double worst_ms = WorstHealthzWhile(port, attacking);
    attacker.join();
    const int64_t grew = ProcStatusBytes(::getpid(), "VmHWM") - before;
    EXPECT_EQ(HttpStatus(response), 431) << what << ": " << response.substr(0, 300);
    EXPECT_NE(response.find("http.max_header_bytes"), std::string::npos)
        << what << ": " << response.substr(0, 300);
    EXPECT_LT(worst_ms, 100.0) << what;
    EXPECT_LT(grew, 16 << 20) << what << ": peak RSS grew by " << (grew >> 20) << " MiB";
  }
  EXPECT_LT(HealthzMillis(port), 100.0);
}

// Short lines, but many of them: chunk extensions count across the body
// (nothing reads them), and trailers count like headers.
TEST_F(HttpServerTest, ChunkExtensionsAndTrailersAreBoundedAcrossTheBody) {
  auto server = StartServer();
  ASSERT_TRUE(server);
  const std::string head = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  {  // 100 chunks of one byte, each with a 1000-byte extension.
    std::string raw = head + "1;a=b\r\n{\r\n";
    for (int i = 0; i < 100; ++i) raw += "1;x=" + std::string(1000, 'e') + "\r\n \r\n";
    raw += "1\r\n}\r\n0\r\n\r\n";
    TestClient c(server->port());
    ASSERT_FALSE(c.SendRaw(raw));
    auto r = c.Read();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->result_int(), 400) << r->body();
    EXPECT_NE(r->body().find("http.max_chunk_extension_bytes"), std::string::npos) << r->body();
  }
  {  // 20 trailer fields of 1000 bytes: more than http.max_header_bytes in all.
    std::string raw = head + "2\r\n{}\r\n0\r\n";
    for (int i = 0; i < 20; ++i)
      raw += "X-T" + std::to_string(i) + ": " + std::string(1000, 't') + "\r\n";
    TestClient c(server->port());
    ASSERT_FALSE(c.SendRaw(raw + "\r\n"));
    auto r = c.Read();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->result_int(), 431) << r->body();
    EXPECT_NE(r->body().find("http.max_header_bytes"), std::string::npos) << r->body();
  }
  // What a real client sends (a short extension, a trailer) still works.
  TestClient c(server->port());
  ASSERT_FALSE(c.SendRaw(head + "2;name=value\r\n{}\r\n0\r\nX-Checksum: 1\r\n\r\n"));
  auto r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 200) << r->body();
}

TEST(ConstantTimeEquals, ComparesWholeStrings) {
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abcd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", ""));
}

// ---- streamed uploads -------------------------------------------------------

class HttpUploadTest : public HttpServerTest {
 protected:
  void SetUp() override {
    HttpServerTest::SetUp();
    dir_ =
        std::filesystem::temp_directory_path() / ("dnnd_http_upload_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    // Answers with the streamed file's bytes, so the test compares them.
    router_->HandleUpload("PUT", "/files/{name}",
                          {.dir = dir_.string(), .max_bytes = 256 * 1024, .limit_name = "test.max"},
                          [this](const HttpRequest& r) {
                            EXPECT_TRUE(r.body.empty());
                            std::ifstream in(r.body_file, std::ios::binary);
                            std::string bytes((std::istreambuf_iterator<char>(in)), {});
                            EXPECT_EQ(bytes.size(), r.body_file_bytes);
                            if (r.params.at("name") == "keep")
                              std::filesystem::rename(r.body_file, dir_ / "kept");
                            return HttpResponse::Text(201, bytes, "application/octet-stream");
                          });
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  size_t FilesInDir() const {
    size_t n = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir_)) ++n;
    return n;
  }
  std::unique_ptr<HttpServer> Start() {
    HttpServerOptions options;
    options.max_body_bytes = 1024;  // in-memory bodies: far below the uploads
    return StartServer(options);
  }

  std::filesystem::path dir_;
};

std::string Pattern(size_t n) {
  std::string s(n, '\0');
  uint32_t x = 12345;
  for (auto& c : s) c = static_cast<char>((x = x * 1103515245u + 12345u) >> 24);
  return s;
}

TEST_F(HttpUploadTest, LargerThanTheBodyLimitArrivesByteIdenticalAndTheFileIsCleanedUp) {
  auto server = Start();
  ASSERT_TRUE(server);
  TestClient c(server->port());
  const std::string data = Pattern(200 * 1024);
  auto r = c.Request("PUT", "/files/a", data);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->result_int(), 201) << r->body().substr(0, 200);
  EXPECT_TRUE(r->body() == data);
  EXPECT_EQ(FilesInDir(), 0u);  // the handler left it: removed
  // Chunked, on the same connection; then the handler moves the file away and keeps it.
  std::string chunked = "PUT /files/keep HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (size_t off = 0; off < data.size(); off += 4096) {
    char size[16];
    std::snprintf(size, sizeof size, "%zx\r\n", std::min<size_t>(4096, data.size() - off));
    chunked += size + data.substr(off, 4096) + "\r\n";
  }
  ASSERT_FALSE(c.SendRaw(chunked + "0\r\n\r\n"));
  r = c.Read();
  ASSERT_TRUE(r);
  ASSERT_EQ(r->result_int(), 201);
  EXPECT_TRUE(r->body() == data);
  EXPECT_EQ(FilesInDir(), 1u);
  std::ifstream kept(dir_ / "kept", std::ios::binary);
  EXPECT_TRUE(std::string((std::istreambuf_iterator<char>(kept)), {}) == data);
  // Ordinary routes keep the in-memory limit.
  r = c.Request("POST", "/echo", std::string(2000, ' '));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 413);
}

TEST_F(HttpUploadTest, OverTheLimitIs413AndLeavesNoFile) {
  auto server = Start();
  ASSERT_TRUE(server);
  {  // Content-Length over the limit: refused before anything is written.
    TestClient c(server->port());
    auto r = c.Request("PUT", "/files/a", Pattern(300 * 1024));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->result_int(), 413);
    EXPECT_NE(r->body().find("262144 bytes (test.max)"), std::string::npos) << r->body();
  }
  {  // Chunked: the limit is hit while streaming; the partial file goes.
    TestClient c(server->port());
    std::string raw = "PUT /files/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    const std::string piece = Pattern(64 * 1024);
    for (int i = 0; i < 5; ++i) raw += "10000\r\n" + piece + "\r\n";
    ASSERT_FALSE(c.SendRaw(raw + "0\r\n\r\n"));
    auto r = c.Read();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->result_int(), 413);
  }
  {  // A client that goes away mid-upload leaves nothing behind either.
    TestClient c(server->port());
    ASSERT_FALSE(c.SendRaw("PUT /files/a HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" +
                           Pattern(5000)));
    // Leave only once the server holds the partial file: checking for "no
    // file" before it had even opened one passed at once and then found the
    // file (CI's TSan run, where the server is slower than this thread).
    for (int i = 0; i < 1000 && FilesInDir() == 0; ++i) std::this_thread::sleep_for(10ms);
    ASSERT_EQ(FilesInDir(), 1u);
  }
  for (int i = 0; i < 1000 && FilesInDir() > 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(FilesInDir(), 0u);
}

// Issue 15, finding 9: an upload was read piece by piece, each piece under
// the read timeout, so a byte every 20 s kept it open for ever. Now the whole
// request has a deadline (http.request_timeout_ms, extended by the body bytes
// at http.min_body_bytes_per_second): the drip is answered 408 near the
// deadline, its partial file is removed, and /healthz stays prompt.
TEST_F(HttpUploadTest, SlowDripUploadIsCutAtTheRequestDeadlineAndLeavesNoFile) {
  HttpServerOptions options;
  options.max_body_bytes = 1024;
  options.read_timeout = 1000ms;     // every byte arrives well within it...
  options.request_timeout = 1500ms;  // ...but the request as a whole may not take longer
  auto server = StartServer(options);
  ASSERT_TRUE(server);
  RawConnection drip(server->port());
  ASSERT_TRUE(drip.Send("PUT /files/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"));
  ExpectDripCutWith408(drip, server->port());
  for (int i = 0; i < 100 && FilesInDir() > 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(FilesInDir(), 0u);
  // A fast upload on the same server is not affected.
  TestClient c(server->port());
  auto ok = c.Request("PUT", "/files/a", Pattern(100 * 1024));
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->result_int(), 201);
}

TEST_F(HttpUploadTest, UnauthenticatedUploadIsRefusedBeforeAnyByteIsStored) {
  router_->RequireBearer({.token = "t", .path_prefix = "/"});
  auto server = Start();
  ASSERT_TRUE(server);
  TestClient c(server->port());
  auto r = c.Request("PUT", "/files/a", Pattern(100 * 1024));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 401);
  EXPECT_EQ(FilesInDir(), 0u);
  TestClient ok(server->port());
  r = ok.Request("PUT", "/files/a", "abc", "Authorization: Bearer t\r\n");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 201);
  EXPECT_EQ(r->body(), "abc");
}

}  // namespace
}  // namespace dnnd
