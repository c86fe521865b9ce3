// libFuzzer target: the HTTP request as the server reads it (Beast's parser
// with HttpServer's default limits and chunk-extension budget, fed in two
// pieces as a socket would), the request target and path normalisation, and
// the router with a bearer guard. Any input must end as a refusal or a
// response; never a crash, a sanitizer report, a guarded handler run without
// the token, or a path the normalisation accepts that does not survive a
// canonical re-encoding unchanged. Run with tests/fuzz/run.sh http.
#include <atomic>
#include <boost/asio/buffer.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "transport/http.h"

namespace {

namespace beast = boost::beast;
namespace http = boost::beast::http;

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant violated: %s\n", what);
    std::abort();
  }
}

bool IsUnreserved(unsigned char c) {
  return std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

// The one spelling the normalisation must accept for these segments.
std::string Encode(const std::vector<std::string>& segments) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const std::string& seg : segments) {
    out += '/';
    for (unsigned char c : seg) {
      if (IsUnreserved(c)) {
        out += static_cast<char>(c);
      } else {
        out += '%';
        out += kHex[c >> 4];
        out += kHex[c & 15];
      }
    }
  }
  return out;
}

// What NormalizeRequestPath promises about what it accepts.
void CheckPath(std::string_view raw) {
  auto normalized = dnnd::NormalizeRequestPath(raw);
  if (!normalized.ok()) {
    Check(normalized.status().code() == dnnd::StatusCode::kInvalidArgument,
          "a refusal that is not InvalidArgument");
    return;
  }
  const auto& segments = normalized.value().segments;
  Check(!segments.empty(), "no segments");
  std::string joined;
  for (size_t i = 0; i < segments.size(); ++i) {
    const std::string& s = segments[i];
    Check(s != "." && s != "..", "a dot segment passed");
    Check(!s.empty() || i + 1 == segments.size(), "an empty segment before the last passed");
    for (unsigned char c : s)
      Check(c != '/' && c != '\\' && c >= 0x20 && c != 0x7F, "a separator or control byte passed");
    joined += "/" + s;
  }
  Check(joined == normalized.value().path, "path is not the joined segments");
  auto again = dnnd::NormalizeRequestPath(Encode(segments));
  Check(again.ok() && again.value().segments == segments,
        "the canonical spelling does not normalise the same");
}

// "Bearer t0k", the scheme in any case (as the guard accepts it).
bool HasToken(const dnnd::HttpRequest& r) {
  const std::string auth = r.header("Authorization");
  return auth.size() == 10 && auth.substr(6) == " t0k";
}

// One router for all inputs: a guarded mutating route, a parameter route and
// the control plane; it counts handler runs without the token.
struct Fixture {
  dnnd::HttpRouter router;
  std::atomic<int> unauthorized_runs{0};
  std::atomic<bool> last_had_token{false};
  Fixture() {
    router.RequireBearer({.token = "t0k"});
    router.Handle("POST", "/api/v1/models", [this](const dnnd::HttpRequest& r) {
      if (!HasToken(r)) ++unauthorized_runs;
      return dnnd::HttpResponse::Json(201, boost::json::object{{"ok", true}});
    });
    router.Handle("DELETE", "/api/v1/jobs/{id}", [this](const dnnd::HttpRequest& r) {
      if (!HasToken(r)) ++unauthorized_runs;
      return dnnd::HttpResponse::Text(200, r.params.at("id"));
    });
    router.Handle("GET", "/api/v1/jobs/{id}", [](const dnnd::HttpRequest& r) {
      return dnnd::HttpResponse::Text(200, r.params.at("id"));
    });
    router.Handle("GET", "/healthz",
                  [](const dnnd::HttpRequest&) { return dnnd::HttpResponse::Text(200, "ok"); });
  }
};

// HttpServer's chunk-extension budget (HttpServerOptions defaults).
struct Budget {
  uint64_t used = 0;
  void operator()(uint64_t, std::string_view ext, beast::error_code& ec) {
    used += ext.size();
    if (used > dnnd::HttpServerOptions{}.max_chunk_extension_bytes)
      ec = http::error::bad_chunk_extension;
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Fixture* fixture = new Fixture;  // leaked on purpose: lives for the process
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  CheckPath(input);  // the input as a bare path, too

  const dnnd::HttpServerOptions defaults;
  http::request_parser<http::string_body> parser;
  parser.eager(true);
  parser.header_limit(defaults.max_header_bytes);
  parser.body_limit(defaults.max_body_bytes);
  Budget budget;
  parser.on_chunk_header(budget);
  // Two pieces, as two reads from a socket: the parser must resume.
  size_t available = size / 2, pos = 0;
  while (!parser.is_done()) {
    beast::error_code ec;
    const size_t used = parser.put(boost::asio::buffer(input.data() + pos, available - pos), ec);
    pos += used;
    // Like Beast's read loop: no progress without an error also means "read more".
    if (ec == http::error::need_more || (!ec && used == 0)) {
      if (available == size) {
        if (!parser.got_some()) return 0;  // put_eof's precondition (Beast's read checks it too)
        parser.put_eof(ec);
        if (ec || !parser.is_done()) return 0;
        break;
      }
      available = size;
      continue;
    }
    if (ec) return 0;
  }
  const auto& msg = parser.get();
  dnnd::HttpRequest request;
  request.method = std::string(msg.method_string());
  request.target = std::string(msg.target());
  for (const auto& field : msg)
    request.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  request.body = msg.body();
  if (!dnnd::ParseRequestTarget(&request).ok()) return 0;
  CheckPath(request.path);
  const dnnd::HttpResponse response = fixture->router.Dispatch(request);
  Check(response.status >= 200 && response.status <= 599, "status out of range");
  Check(fixture->unauthorized_runs.load() == 0, "a guarded handler ran without the token");
  if (response.status == 201) {
    auto normalized = dnnd::NormalizeRequestPath(request.path);
    Check(normalized.ok() && normalized.value().path == "/api/v1/models",
          "201 from a path that is not the route");
  }
  return 0;
}
