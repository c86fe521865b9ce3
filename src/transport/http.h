// A small HTTP/1.1 server (Boost.Beast over Asio TCP) with a path router: the
// control plane of every role (/healthz, /readyz, /metrics), later extended
// by the REST controller.
//
//   auto router = std::make_shared<HttpRouter>();
//   AddControlPlaneRoutes(*router, [&] { return std::pair{ready, reason}; }, DefaultMetrics());
//   router->Handle("GET", "/api/v1/jobs/{id}", [&](const HttpRequest& r) {
//     return HttpResponse::Json(200, {{"id", r.params.at("id")}});
//   });
//   DNND_ASSIGN_OR_RETURN(auto server, HttpServer::Start({.listen = "0.0.0.0:8080"}, router));
//   ...
//   server->Stop();
//
// Why this shape:
//  - Handlers are plain synchronous functions from request to response and run
//    on the server's I/O threads: control-plane requests are cheap, and a
//    synchronous handler cannot forget to answer. Anything slow belongs on
//    another thread: a route added with HandleOffloaded runs its handler on a
//    bounded WorkQueue (core/work_queue.h), answering 503 when that is full,
//    while the I/O threads keep serving /healthz and everything else.
//  - Every failure a client can cause is answered with a JSON error body
//    ({"error":{"code":...,"message":...}}) and never takes the process down:
//    unknown path 404, wrong method 405 + Allow, oversize body 413, malformed
//    HTTP 400 (then close), handler exception 500.
//  - Uploads do not sit in memory: a route added with HandleUpload receives
//    its body as a temporary file, written as it arrives, with its own size
//    limit enforced on Content-Length and again while streaming.
//  - A bearer token can guard mutating methods (RequireBearer); the check runs
//    after the request line and headers, before any body is read, so an
//    unauthenticated client cannot make the server store anything.
//  - The guard and the route matcher see one path: NormalizeRequestPath's.
//    A path that is not the one canonical spelling of itself (encoded
//    separators or unreserved characters, dot or empty segments, control
//    characters) is answered 400 before the guard, the matcher or a handler
//    looks at it, so no spelling reaches a route the guard did not check.
//  - What a client can make the server hold or wait for is bounded: the
//    request line + headers and the trailers (max_header_bytes), chunk
//    extensions (max_chunk_extension_bytes), the read buffer (so a chunk-size
//    line or a trailer section without its CRLF cannot grow), silence
//    (read_timeout) and the whole request (request_timeout, extended by the
//    body bytes at min_body_bytes_per_second; 408 after it).
//  - Beast types stay out of this header (pimpl), so including it is cheap.
#pragma once

#include <boost/json/value.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"

namespace dnnd {

class MetricsRegistry;
class WorkQueue;

struct HttpRequest {
  std::string method;  // as sent, e.g. "GET" (methods are case-sensitive)
  std::string target;  // raw request target, "/api/v1/jobs/a%20b?x=1"
  std::string path;    // target without the query, still percent-encoded
  // Query parameters, percent- and '+'-decoded; the first of repeated keys wins.
  std::map<std::string, std::string> query;
  // Values of the route's {name} segments, percent-decoded (filled by Dispatch).
  std::map<std::string, std::string> params;
  // The pattern that matched ("/api/v1/jobs/{id}"), empty if none did. A
  // bounded label for metrics and logs, unlike the raw path.
  std::string route;
  std::vector<std::pair<std::string, std::string>> headers;  // in arrival order
  std::string body;
  // Routes added with HandleUpload: the temporary file holding the whole body
  // (`body` stays empty) and its size. The handler may move the file away
  // (same filesystem as HttpUploadOptions::dir, so a rename is atomic);
  // whatever is still there after the handler returns is removed. Dispatch
  // called in-process with `body` set writes it to such a file first.
  std::string body_file;
  uint64_t body_file_bytes = 0;
  std::string remote;  // peer "ip:port"

  // First header with this name (case-insensitive), or "" if absent.
  std::string header(std::string_view name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers

  static HttpResponse Json(int status, const boost::json::value& body);
  static HttpResponse Text(int status, std::string body,
                           std::string content_type = "text/plain; charset=utf-8");
  // {"error":{"code":"<code>","message":"<message>"}}; `code` is a stable
  // machine-readable snake_case word, `message` is for humans.
  static HttpResponse Error(int status, std::string code, std::string message);
  // An error response for a Status: InvalidArgument 400, NotFound 404,
  // AlreadyExists 409, ResourceExhausted 429, Unavailable 503, ... Internal 500.
  static HttpResponse FromStatus(const Status& status);
};

// The HTTP status FromStatus uses for a StatusCode.
int HttpStatusFor(StatusCode code);

// Parses the body as one JSON text. The error names the line, column and byte
// offset and the reason; callers answer it with a 400
// (HttpResponse::FromStatus does).
Result<boost::json::value> ParseJsonBody(const HttpRequest& request);

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

// The name prefix of the temporary files upload bodies stream into (in
// HttpUploadOptions::dir; mkstemp completes the name). A process killed
// mid-upload leaves them: the owner of the dir sweeps them at start
// (SweepTempFiles in core/files.h).
inline constexpr const char* kUploadFilePrefix = ".upload-";

// A route whose request body is streamed into a file instead of memory.
struct HttpUploadOptions {
  // Where the temporary file is created; must exist. Put it on the
  // filesystem the handler moves the file to.
  std::string dir;
  // Larger bodies get 413 (Content-Length is checked before reading, chunked
  // bodies while streaming); the partial file is removed.
  uint64_t max_bytes = 0;
  // The setting named in the 413 message, e.g. "controller.max_upload_bytes".
  std::string limit_name;
};

// A shared secret that requests must present as "Authorization: Bearer
// <token>" (RFC 6750). Refusals are 401 {"error":{"code":"unauthorized"}}
// with "WWW-Authenticate: Bearer", logged with method, route and peer
// address (never what was presented), and counted in
// dnnd_http_unauthorized_total{method,route} when `metrics` is set.
struct BearerAuth {
  std::string token;  // empty: nothing is checked
  // Guarded requests: one of these methods on a path whose normalised form
  // (NormalizeRequestPath) starts with `path_prefix`, compared ignoring case.
  std::set<std::string> methods = {"POST", "PUT", "DELETE", "PATCH"};
  std::string path_prefix = "/api/";
  MetricsRegistry* metrics = nullptr;  // must outlive the router
};

// A request path as the router matches it and the bearer guard checks it.
struct NormalizedPath {
  // Percent-decoded; none contains '/', '\\' or a control character, none is
  // "." or "..", and only the last may be empty ("/" is {""}, "/ui/" {"ui", ""}).
  std::vector<std::string> segments;
  std::string path;  // "/" + the segments joined with '/' (unambiguous: no segment holds a '/')
};

// Decodes `raw_path` (HttpRequest::path: no query, still percent-encoded) if
// it is the canonical spelling of its path, else InvalidArgument naming what
// is wrong: not starting with '/', malformed %XX, a '\\' or an encoded '/'
// or '\\' (%2F, %5C), an encoded unreserved character (ALPHA DIGIT - . _ ~, e.g.
// %61 for 'a': the same path spelt another way), a NUL or other control
// character (%00-%1F, %7F), a "." or ".." segment, or an empty segment other
// than the last ("//"). Other encodings (%20, %C3%A9, %3F...) are decoded:
// they are the only spelling of those bytes in a segment. Pure; thread-safe.
Result<NormalizedPath> NormalizeRequestPath(std::string_view raw_path);

// Fills request->path and request->query from request->target (origin or
// absolute form; the fragment is dropped; query keys and values are
// percent- and '+'-decoded). InvalidArgument for a target that is not a
// path or a malformed query. Pure; thread-safe.
Status ParseRequestTarget(HttpRequest* request);

// Compares in time that depends only on the lengths' being equal, not on
// where the strings differ (for secrets).
bool ConstantTimeEquals(std::string_view a, std::string_view b);
// Called after every request the router answered (and for protocol errors the
// server answered itself), with the handling time in seconds.
using HttpObserver = std::function<void(const HttpRequest&, const HttpResponse&, double seconds)>;

// Routes (method, pattern) to handlers. Patterns are '/'-separated segments,
// each either literal or "{name}" (matching one non-empty segment). When
// several patterns match a path, literal segments win over parameters,
// leftmost first ("/jobs/stats" beats "/jobs/{id}"). Thread-safe: routes may
// be added while the server runs. HEAD is answered by a GET route when no
// HEAD route exists (the server then sends the headers only).
class HttpRouter {
 public:
  // Throws std::logic_error on a malformed pattern or a duplicate route (bugs).
  void Handle(std::string method, std::string pattern, HttpHandler handler);
  // Like Handle, but the server streams the body to a file (HttpRequest::body_file).
  // With `pool`, the handler runs there once the body is on disk (as
  // HandleOffloaded's).
  void HandleUpload(std::string method, std::string pattern, HttpUploadOptions upload,
                    HttpHandler handler, std::shared_ptr<WorkQueue> pool = nullptr);
  // Like Handle, but the server runs the handler on `pool` (DispatchAsync),
  // answering 503 {"error":{"code":"overloaded"}} naming pool's setting when
  // it is full. The pool must be stopped before the server is destroyed.
  void HandleOffloaded(std::string method, std::string pattern, std::shared_ptr<WorkQueue> pool,
                       HttpHandler handler);
  void AddObserver(HttpObserver observer);
  // Guards every matching request, routed or not (an unauthenticated client
  // learns nothing about which routes exist). Replaces an earlier guard.
  void RequireBearer(BearerAuth auth);

  // What the server decides from the request line and headers alone, before
  // reading a body: refuses a non-canonical path (400), matches the route
  // (fills request.params and request.route) and applies the bearer guard.
  // Returns the refusal to send instead of reading the body, or nullopt;
  // sets *upload when the route takes its body as a file.
  std::optional<HttpResponse> Admit(HttpRequest& request,
                                    std::optional<HttpUploadOptions>* upload) const;

  // Normalises the path, matches the request, fills request.params and
  // request.route, applies the bearer guard and runs the handler. Never
  // throws: 400 (a path NormalizeRequestPath refuses), 401/404/405/500 are
  // answered as JSON errors, and a StatusError thrown by a handler becomes
  // FromStatus(its status).
  HttpResponse Dispatch(HttpRequest& request) const;

  // Dispatch, run where the route says: at once on this thread, or (routes
  // added with HandleOffloaded) on the route's WorkQueue. `done` is called
  // exactly once with the request (params filled) and the response: on this
  // thread, or on a pool thread; never, if the pool is stopped with the
  // request still queued (the caller's connection then closes).
  void DispatchAsync(HttpRequest request,
                     std::function<void(HttpRequest&, HttpResponse)> done) const;

  // Runs the observers (exceptions from them are logged and swallowed).
  void NotifyObservers(const HttpRequest& request, const HttpResponse& response,
                       double seconds) const;

 private:
  struct Route {
    std::string method;
    std::string pattern;
    std::vector<std::string> segments;  // "{name}" kept as is
    std::shared_ptr<const HttpHandler> handler;
    std::optional<HttpUploadOptions> upload;
    std::shared_ptr<WorkQueue> pool;  // null: the handler runs on the I/O thread
  };
  struct Match {
    Status bad_path;         // not OK: NormalizeRequestPath's refusal, nothing matched
    std::string normalized;  // NormalizedPath::path, what the guard checks
    std::shared_ptr<const HttpHandler> handler;  // null: no route for this method
    std::optional<HttpUploadOptions> upload;
    std::set<std::string> allowed;  // methods with a route for this path
    std::shared_ptr<WorkQueue> pool;
  };
  void AddRoute(std::string method, std::string pattern, HttpHandler handler,
                std::optional<HttpUploadOptions> upload, std::shared_ptr<WorkQueue> pool = nullptr);
  // Normalises the path and finds the route; fills request.params and request.route.
  Match Find(HttpRequest& request) const;
  // The response the router gives before any handler: 400 for a refused
  // path, the guard's 401, or nullopt (go on).
  std::optional<HttpResponse> Refusal(const HttpRequest& request, const Match& match) const;
  // The 401 for a guarded request without the token (logged and counted), or nullopt.
  std::optional<HttpResponse> CheckBearer(const HttpRequest& request,
                                          const std::string& normalized_path) const;

  mutable std::shared_mutex mu_;
  std::shared_ptr<const BearerAuth> auth_;
  std::vector<Route> routes_;
  std::vector<std::shared_ptr<const HttpObserver>> observers_;
};

struct HttpServerOptions {
  // "host:port"; host an IPv4/IPv6 literal ("[::1]:8080") or a name; port 0
  // picks an ephemeral port (see HttpServer::port()).
  std::string listen = "127.0.0.1:0";
  size_t max_body_bytes =
      1 << 20;  // bodies read into memory; larger get 413 (uploads: HttpUploadOptions)
  std::string max_body_setting;  // the setting behind max_body_bytes, named in the 413 message
  int threads = 1;               // I/O threads running the handlers
  // The longest silence while reading a request (including idle time on a
  // kept-alive connection before it, and the whole request line + headers),
  // and the bound on writing one response; the connection is closed when
  // it expires. (http.read_timeout_ms)
  std::chrono::milliseconds read_timeout{30000};
  // The whole request (line, headers, body) must have arrived this long after
  // the server started waiting for it, plus one second per
  // min_body_bytes_per_second body bytes received (so a large upload at a
  // sane rate is never cut, and a drip is); else 408 and close.
  // (http.request_timeout_ms, http.min_body_bytes_per_second; 0 = no extension)
  std::chrono::milliseconds request_timeout{60000};
  uint64_t min_body_bytes_per_second = 16384;
  // Request line + headers, and separately the trailers of a chunked body;
  // more gets 431. The read buffer holds at most this + 64 KiB, which bounds
  // a chunk-size line or a trailer section still waiting for its CRLF.
  // (http.max_header_bytes)
  uint32_t max_header_bytes = 16 * 1024;
  // Chunk extensions (";name=value" after a chunk size; nothing reads them)
  // in all chunks of one request; more gets 400. (http.max_chunk_extension_bytes)
  uint64_t max_chunk_extension_bytes = 4096;
  // Connections held at once; the next one is answered 503 (one small write,
  // nothing read) and closed, so a flood of idle clients cannot take every
  // descriptor or buffer. (http.max_connections)
  size_t max_connections = 512;
};

class HttpServer {
 public:
  // Binds, listens and starts serving. A bind failure is an IoError naming
  // the address and the OS reason ("cannot bind 127.0.0.1:80: Permission denied").
  static Result<std::unique_ptr<HttpServer>> Start(HttpServerOptions options,
                                                   std::shared_ptr<HttpRouter> router);
  ~HttpServer();  // Stop()s
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  uint16_t port() const;
  std::string address() const;  // "127.0.0.1:41234"

  // Closes the listener and every connection (in-flight responses are
  // dropped) and joins the threads, so the port can be bound again at once.
  // Idempotent and thread-safe. Called from a handler it only closes (it
  // cannot join its own thread); the destructor then joins.
  void Stop();

  struct Impl;

 private:
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// GET /healthz  -> 200 {"status":"ok"} while the process can answer at all.
// GET /readyz   -> 200 {"ready":true} or 503 {"ready":false,"reason":"..."}
//                  from `readiness` (an empty function means always ready).
// GET /metrics  -> 200 text/plain; version=0.0.4, metrics.RenderPrometheusText().
// Also makes the router count dnnd_http_requests_total{method,route,code} and
// observe dnnd_http_request_duration_seconds{route} in `metrics`, which must
// outlive the router.
void AddControlPlaneRoutes(HttpRouter& router,
                           std::function<std::pair<bool, std::string>()> readiness,
                           MetricsRegistry& metrics);

}  // namespace dnnd
