#include "roles/ctl/client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <cstdio>
#include <limits>

namespace dnnd {
namespace {

namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace json = boost::json;
using tcp = boost::asio::ip::tcp;

bool IEquals(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

// A system error as people read it: "connection refused", not Boost's
// "connect: Connection refused [system:111 at .../reactive_socket_service.hpp:587:5 ...]".
std::string Plain(const boost::system::error_code& ec) {
  if (ec == beast::error::timeout) return "timed out";
  if (ec == boost::asio::error::eof || ec == http::error::end_of_stream)
    return "it closed the connection";
  std::string m = ec.message();
  if (!m.empty()) m[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(m[0])));
  return m;
}

// Sends `req` (its body already set) over a fresh connection and reads the
// reply; nullopt after a message on stderr when the controller is
// unreachable. `address` is host:port (ResolveCtlSettings checked it).
template <class Body>
std::optional<CtlReply> Exchange(const std::string& address, const std::string& token,
                                 http::request<Body>& req) {
  const size_t colon = address.rfind(':');
  std::string host = address.substr(0, colon);
  const std::string port = address.substr(colon + 1);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  auto fail = [&](const char* what, const boost::system::error_code& ec) {
    std::fprintf(stderr, "dnnd ctl: %s the controller at %s: %s\n", what, address.c_str(),
                 Plain(ec).c_str());
    return std::nullopt;
  };
  boost::asio::io_context io;
  tcp::resolver resolver(io);
  beast::tcp_stream stream(io);
  boost::system::error_code ec;
  const auto endpoints = resolver.resolve(host, port, ec);
  if (ec) {
    std::fprintf(stderr, "dnnd ctl: cannot find the controller's host '%s': %s\n", host.c_str(),
                 Plain(ec).c_str());
    return std::nullopt;
  }
  stream.expires_after(std::chrono::minutes(10));  // uploads of large datasets
  stream.connect(endpoints, ec);
  if (ec) return fail("cannot reach", ec);
  req.set(http::field::host, address);
  req.set(http::field::user_agent, "dnnd-ctl");
  if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
  http::write(stream, req, ec);
  if (ec) return fail("lost the connection to", ec);
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(std::numeric_limits<std::uint64_t>::max());
  http::read(stream, buffer, parser, ec);
  if (ec) return fail("no answer from", ec);
  stream.socket().shutdown(tcp::socket::shutdown_both, ec);
  CtlReply reply{static_cast<int>(parser.get().result_int()), parser.get().body(), {}};
  for (const auto& f : parser.get())
    reply.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
  return reply;
}

}  // namespace

std::string CtlReply::header(const std::string& name) const {
  for (const auto& [k, v] : headers)
    if (IEquals(k, name)) return v;
  return "";
}

std::optional<CtlReply> CtlClient::Request(const std::string& method, const std::string& target,
                                           const std::string& body,
                                           const std::string& content_type) const {
  http::request<http::string_body> req{http::string_to_verb(method), target, 11};
  if (!body.empty() || method == "POST" || method == "PUT") {
    req.set(http::field::content_type, content_type);
    req.body() = body;
    req.prepare_payload();
  }
  return Exchange(address_, token_, req);
}

std::optional<CtlReply> CtlClient::Upload(const std::string& target,
                                          const std::string& path) const {
  http::request<http::file_body> req{http::verb::put, target, 11};
  beast::error_code ec;
  req.body().open(path.c_str(), beast::file_mode::scan, ec);
  if (ec) {
    std::fprintf(stderr, "dnnd ctl: cannot read %s: %s\n", path.c_str(), ec.message().c_str());
    return std::nullopt;
  }
  req.set(http::field::content_type, "application/octet-stream");
  req.prepare_payload();  // Content-Length from the file's size
  return Exchange(address_, token_, req);
}

int CheckReply(const std::optional<CtlReply>& r, const CtlClient& client) {
  if (!r) return 1;
  if (r->status < 400) return 0;
  std::string message = r->body;
  boost::system::error_code ec;
  json::value v = json::parse(r->body, ec);
  if (!ec && v.is_object() && v.as_object().contains("error")) {
    const json::value& e = v.at("error");
    if (e.is_object() && e.as_object().contains("code") && e.as_object().contains("message"))
      message = json::value_to<std::string>(e.at("code")) + ": " +
                json::value_to<std::string>(e.at("message"));
  }
  std::fprintf(stderr, "dnnd ctl: HTTP %d: %s\n", r->status, message.c_str());
  if (r->status == 401)
    std::fprintf(
        stderr,
        "dnnd ctl: %s; pass --token, set DNND_TOKEN, or put token (or token_file) in "
        "~/.config/dnnd/ctl.toml\n",
        client.has_token() ? "the controller refused this token" : "the controller needs a token");
  return r->status < 500 ? 3 : 1;
}

}  // namespace dnnd
