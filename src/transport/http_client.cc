#include "transport/http_client.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <limits>

namespace dnnd {
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = boost::asio::ip::tcp;

Result<HttpReply> HttpCall(const HttpCallOptions& o) {
  const size_t colon = o.address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == o.address.size())
    return InvalidArgument("'" + o.address + "' is not host:port");
  std::string host = o.address.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  const std::string port = o.address.substr(colon + 1);
  boost::asio::io_context io;
  beast::tcp_stream stream(io);
  http::response_parser<http::string_body> parser;
  parser.body_limit(std::numeric_limits<std::uint64_t>::max());
  beast::flat_buffer buffer;
  beast::error_code ec, failed;
  const char* stage = "resolve";
  http::request<http::string_body> req{http::string_to_verb(o.method), o.target, 11};
  req.set(http::field::host, o.address);
  req.set(http::field::user_agent, "dnnd");
  if (!o.token.empty()) req.set(http::field::authorization, "Bearer " + o.token);
  if (!o.body.empty() || o.method == "POST" || o.method == "PUT") {
    req.set(http::field::content_type, o.content_type);
    req.body() = o.body;
    req.prepare_payload();
  }
  // Asynchronous steps on one io_context, so a single deadline bounds the
  // whole call, resolution included.
  tcp::resolver resolver(io);
  auto fail = [&](const char* what, beast::error_code e) {
    stage = what;
    failed = e;
  };
  resolver.async_resolve(host, port, [&](beast::error_code e, tcp::resolver::results_type results) {
    if (e) return fail("resolve", e);
    stream.expires_after(o.timeout);
    stream.async_connect(results, [&](beast::error_code e2, const tcp::endpoint&) {
      if (e2) return fail("connect", e2);
      http::async_write(stream, req, [&](beast::error_code e3, size_t) {
        if (e3) return fail("write", e3);
        http::async_read(stream, buffer, parser, [&](beast::error_code e4, size_t) {
          if (e4) return fail("read", e4);
          stream.socket().shutdown(tcp::socket::shutdown_both, ec);
        });
      });
    });
  });
  io.run_for(o.timeout + std::chrono::seconds(1));
  if (!io.stopped())
    return DeadlineExceeded(o.method + " http://" + o.address + o.target + " timed out");
  if (failed) {
    if (failed == beast::error::timeout)
      return DeadlineExceeded(o.method + " http://" + o.address + o.target + " timed out");
    return Unavailable(std::string("cannot ") + stage + " http://" + o.address + o.target + ": " +
                       failed.message());
  }
  return HttpReply{static_cast<int>(parser.get().result_int()), parser.get().body()};
}

}  // namespace dnnd
