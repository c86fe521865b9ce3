#include "transport/http_probe.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <optional>

#include "transport/connection.h"

namespace dnnd {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

Result<ProbeTarget> ParseProbeUrl(const std::string& url) {
  for (const unsigned char c : url)
    if (c <= ' ' || c == 0x7f)
      return InvalidArgument("probe URL '" + url + "' contains a space or control character");
  std::string rest = url;
  const size_t scheme_end = rest.find("://");
  if (scheme_end != std::string::npos) {
    const std::string scheme = rest.substr(0, scheme_end);
    if (scheme != "http")
      return InvalidArgument("probe URL '" + url +
                             "': only http:// is supported (the control plane has no TLS)");
    rest = rest.substr(scheme_end + 3);
  }
  const size_t slash = rest.find('/');
  const std::string authority = rest.substr(0, slash);
  ProbeTarget t;
  t.path = slash == std::string::npos ? "/healthz" : rest.substr(slash);
  auto hp = rpc::SplitHostPort(authority);
  if (!hp) return InvalidArgument("probe URL '" + url + "': " + hp.status().message());
  if (hp->second == 0) return InvalidArgument("probe URL '" + url + "': port 0");
  t.host = hp->first;
  t.port = hp->second;
  return t;
}

Result<ProbeResult> HttpProbe(const ProbeTarget& target, std::chrono::milliseconds timeout) {
  if (timeout.count() <= 0) return InvalidArgument("probe timeout must be positive");
  const std::string where = target.host + ":" + std::to_string(target.port);
  asio::io_context ioc;
  tcp::resolver resolver(ioc);
  beast::tcp_stream stream(ioc);
  beast::flat_buffer buffer;
  http::request<http::empty_body> request{http::verb::get, target.path, 11};
  request.set(http::field::host, where);
  request.set(http::field::user_agent, "dnnd-probe");
  request.set(http::field::connection, "close");
  http::response_parser<http::string_body> parser;
  parser.header_limit(16 * 1024);
  parser.body_limit(1 << 20);

  std::optional<Status> failed;
  bool done = false;
  auto fail = [&](Status s) {
    if (!failed) failed = std::move(s);
  };
  resolver.async_resolve(
      target.host, std::to_string(target.port), tcp::resolver::numeric_service,
      [&](beast::error_code ec, tcp::resolver::results_type results) {
        if (ec) return fail(Unavailable("cannot resolve " + where + ": " + ec.message()));
        stream.async_connect(results, [&](beast::error_code ec, const tcp::endpoint&) {
          if (ec) return fail(Unavailable("cannot connect to " + where + ": " + ec.message()));
          http::async_write(stream, request, [&](beast::error_code ec, size_t) {
            if (ec) return fail(Unavailable("sending to " + where + ": " + ec.message()));
            http::async_read(stream, buffer, parser, [&](beast::error_code ec, size_t) {
              if (ec)
                return fail(Corruption("reading the answer of " + where + ": " + ec.message()));
              done = true;
            });
          });
        });
      });
  ioc.run_for(timeout);
  if (!done && !failed) {
    // Stop whatever is pending; handlers still queued run (and are ignored)
    // before the objects they reference go away.
    resolver.cancel();
    beast::error_code ignored;
    stream.socket().close(ignored);
    ioc.restart();
    ioc.run();
    return DeadlineExceeded("no answer from " + where + target.path + " within " +
                            std::to_string(timeout.count()) + " ms");
  }
  if (failed) return *failed;
  ProbeResult r;
  r.status = static_cast<int>(parser.get().result_int());
  r.body = parser.get().body().substr(0, 4096);
  return r;
}

}  // namespace dnnd
