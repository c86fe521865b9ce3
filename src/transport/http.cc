// HttpServer (http.h): the listener, the accept loop with its connection
// limit, the I/O threads and Stop(). A connection is a Session
// (http_session.h); requests go to the HttpRouter (http_router.cc).
#include "transport/http.h"

#include <boost/asio.hpp>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/log.h"
#include "core/metrics.h"
#include "transport/connection.h"
#include "transport/http_internal.h"
#include "transport/http_session.h"

namespace dnnd {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

using http_internal::EndpointString;
using http_internal::kComponent;
using http_internal::Session;
using http_internal::SessionConfig;

// ---------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------
struct HttpServer::Impl {
  explicit Impl(HttpServerOptions o) : options(std::move(o)) {}

  HttpServerOptions options;
  std::shared_ptr<const SessionConfig> config;
  // Declared first: destroyed last, after everything that uses it.
  asio::io_context ioc;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  // On a strand: the accept handler and Stop()'s close never race.
  tcp::acceptor acceptor{asio::make_strand(ioc)};
  std::vector<std::thread> threads;
  tcp::endpoint local;

  std::mutex mu;
  std::condition_variable threads_done;
  int running = 0;
  bool stopped = false;
  std::vector<std::weak_ptr<Session>> sessions;
  std::mutex stop_mu;                             // serialises Stop()
  std::vector<std::shared_ptr<Session>> closing;  // sessions Stop() is closing

  rpc::LogThrottle accept_log, refuse_log;  // at most a line a second each, with a count

  // Over http.max_connections: one small 503 written without waiting (a
  // peer that does not read loses it), then the socket closes. Nothing is
  // read or allocated for the peer.
  void Refuse(tcp::socket socket) {
    static constexpr std::string_view kBusy =
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: "
        "close\r\n"
        "Retry-After: 1\r\nContent-Length: 107\r\n\r\n"
        "{\"error\":{\"code\":\"overloaded\",\"message\":\"too many connections "
        "(http.max_connections); "
        "retry in a second\"}}\n";
    static_assert(kBusy.size() - kBusy.find("\r\n\r\n") - 4 == 107,
                  "Content-Length of the 503 body");
    static Counter& refused =
        DefaultMetrics().Counter("dnnd_http_connections_refused_total",
                                 "HTTP connections refused over http.max_connections");
    refused.Inc();
    boost::system::error_code ignored;
    socket.non_blocking(true, ignored);
    socket.write_some(asio::buffer(kBusy.data(), kBusy.size()), ignored);
    socket.shutdown(tcp::socket::shutdown_both, ignored);
    socket.close(ignored);
    uint64_t held_back = 0;
    if (refuse_log.Allow(&held_back))
      Log(LogLevel::kWarn, std::string(kComponent), "connection refused: too many connections",
          {{"limit", static_cast<int64_t>(options.max_connections)},
           {"also_refused", static_cast<int64_t>(held_back)}});
  }

  void Accept() {
    acceptor.async_accept(
        asio::make_strand(ioc), [this](const boost::system::error_code& ec, tcp::socket socket) {
          if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
          if (ec) {
            // EMFILE and friends: keep accepting; a pause keeps a full fd table
            // from spinning, and the log from flooding.
            uint64_t held_back = 0;
            if (accept_log.Allow(&held_back))
              Log(LogLevel::kWarn, std::string(kComponent), "accept failed",
                  {{"error", ec.message()}, {"also_failed", static_cast<int64_t>(held_back)}});
            auto timer = std::make_shared<asio::steady_timer>(acceptor.get_executor(),
                                                              std::chrono::milliseconds(50));
            timer->async_wait([this, timer](const boost::system::error_code& e) {
              if (!e && acceptor.is_open()) Accept();
            });
            return;
          }
          bool full = false;
          {
            std::lock_guard lock(mu);
            if (stopped) return;  // the socket closes here
            std::erase_if(sessions, [](const std::weak_ptr<Session>& w) { return w.expired(); });
            full = sessions.size() >= options.max_connections;
          }
          if (full) {
            Refuse(std::move(socket));
            Accept();
            return;
          }
          auto session = std::make_shared<Session>(std::move(socket), config);
          {
            std::lock_guard lock(mu);
            if (stopped) return;  // the socket closes with the session
            sessions.push_back(session);
          }
          session->Run();
          Accept();
        });
  }
};

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() { Stop(); }

Result<std::unique_ptr<HttpServer>> HttpServer::Start(HttpServerOptions options,
                                                      std::shared_ptr<HttpRouter> router) {
  if (!router) return InvalidArgument("HttpServer: no router");
  if (options.threads < 1) return InvalidArgument("HttpServer: threads must be at least 1");
  if (options.read_timeout.count() <= 0)
    return InvalidArgument("HttpServer: read_timeout must be positive");
  if (options.request_timeout.count() <= 0)
    return InvalidArgument("HttpServer: request_timeout must be positive");
  if (options.max_header_bytes < 1024)
    return InvalidArgument("HttpServer: max_header_bytes must be at least 1024");
  DNND_ASSIGN_OR_RETURN(auto host_port, rpc::SplitHostPort(options.listen));

  auto impl = std::make_unique<Impl>(options);
  impl->config = std::make_shared<const SessionConfig>(SessionConfig{options, std::move(router)});

  boost::system::error_code ec;
  std::vector<tcp::endpoint> endpoints;
  // Literals skip the resolver (no NSS lookup, which a static binary may lack).
  const auto literal = asio::ip::make_address(host_port.first, ec);
  if (!ec) {
    endpoints.emplace_back(literal, host_port.second);
  } else {
    tcp::resolver resolver(impl->ioc);
    const auto resolved =
        resolver.resolve(host_port.first, std::to_string(host_port.second),
                         tcp::resolver::passive | tcp::resolver::numeric_service, ec);
    if (ec || resolved.empty())
      return Unavailable("cannot resolve listen address '" + options.listen + "': " + ec.message());
    for (const auto& entry : resolved) endpoints.push_back(entry.endpoint());
  }
  // A name may resolve to several addresses (localhost: ::1 and 127.0.0.1):
  // the first that binds wins.
  Status last_error;
  bool bound = false;
  for (const tcp::endpoint& ep : endpoints) {
    boost::system::error_code bec;
    impl->acceptor.open(ep.protocol(), bec);
    if (!bec)
      impl->acceptor.set_option(tcp::acceptor::reuse_address(true), bec);  // rebind past TIME_WAIT
    if (!bec) impl->acceptor.bind(ep, bec);
    if (!bec) impl->acceptor.listen(asio::socket_base::max_listen_connections, bec);
    if (!bec) {
      bound = true;
      break;
    }
    const std::string detail =
        EndpointString(ep) == options.listen ? "" : " (" + EndpointString(ep) + ")";
    last_error = IoError("cannot bind " + options.listen + detail + ": " + bec.message());
    boost::system::error_code ignored;
    impl->acceptor.close(ignored);
  }
  if (!bound) return last_error;
  impl->local = impl->acceptor.local_endpoint(ec);

  impl->work.emplace(impl->ioc.get_executor());
  Impl* raw = impl.get();
  raw->running = options.threads;
  for (int i = 0; i < options.threads; ++i) {
    raw->threads.emplace_back([raw] {
      for (;;) {
        try {
          raw->ioc.run();
          break;
        } catch (const std::exception& e) {
          Log(LogLevel::kError, std::string(kComponent),
              "I/O thread caught an exception; continuing", {{"error", e.what()}});
        }
      }
      std::lock_guard lock(raw->mu);
      --raw->running;
      raw->threads_done.notify_all();
    });
  }
  asio::post(raw->acceptor.get_executor(), [raw] { raw->Accept(); });
  Log(LogLevel::kInfo, std::string(kComponent), "listening",
      {{"address", EndpointString(raw->local)}});
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

uint16_t HttpServer::port() const { return impl_->local.port(); }

std::string HttpServer::address() const { return EndpointString(impl_->local); }

void HttpServer::Stop() {
  Impl& s = *impl_;
  std::lock_guard stop_lock(s.stop_mu);  // concurrent Stop() calls: one does the work
  bool first = false;
  {
    std::lock_guard lock(s.mu);
    if (!s.stopped) {
      first = true;
      s.stopped = true;
      for (const auto& w : s.sessions)
        if (auto p = w.lock()) s.closing.push_back(std::move(p));
      s.sessions.clear();
    }
  }
  if (first) {
    asio::post(s.acceptor.get_executor(), [&s] {
      boost::system::error_code ec;
      s.acceptor.close(ec);
    });
    for (const auto& session : s.closing)
      asio::post(session->executor(), [session] { session->Close(); });
    s.work.reset();
  }
  if (s.threads.empty()) return;  // joined by an earlier call
  if (s.ioc.get_executor().running_in_this_thread()) {
    // Joining would wait for this very thread; the destructor joins instead.
    Log(LogLevel::kError, std::string(kComponent),
        "HttpServer::Stop called from a handler; not joining");
    return;
  }
  {
    // With the listener and connections closed the threads run out of work;
    // a handler stuck in user code is the only thing that could hold them.
    std::unique_lock lock(s.mu);
    if (!s.threads_done.wait_for(lock, std::chrono::seconds(5), [&] { return s.running == 0; })) {
      Log(LogLevel::kWarn, std::string(kComponent),
          "I/O threads still busy after 5 s; stopping the io_context");
      s.ioc.stop();
    }
  }
  for (auto& t : s.threads) t.join();
  s.threads.clear();
  // No thread runs now: close directly whatever the posted closes missed.
  boost::system::error_code ec;
  s.acceptor.close(ec);
  for (const auto& session : s.closing) session->Close();
  s.closing.clear();
  Log(LogLevel::kInfo, std::string(kComponent), "stopped", {{"address", EndpointString(s.local)}});
}
}  // namespace dnnd
