#include "transport/http.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "core/log.h"
#include "core/metrics.h"
#include "core/work_queue.h"
#include "transport/connection.h"

#ifndef DNND_VERSION
#define DNND_VERSION "unknown"
#endif

namespace dnnd {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace json = boost::json;
using tcp = asio::ip::tcp;

namespace {

constexpr std::string_view kComponent = "http";
// After an error response (or Connection: close) the server shuts down its
// sending side and keeps reading what the client still sends for this long /
// this much, so that unread request bytes do not make the kernel answer with
// a RST that could destroy the response before the client reads it.
constexpr std::chrono::milliseconds kLingerTime{2000};
constexpr size_t kLingerMaxBytes = 64u << 20;
// Beast reads into the session's buffer only as much as its free capacity,
// which starts small and grows little by little: a 15 kB JSON body took 16
// recv calls. Before an in-memory body is read the buffer is grown to hold
// it, up to this much (a session keeps the capacity it grew to).
constexpr size_t kBodyReadBuffer = 64 * 1024;

bool IEquals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// %XX decoding; '+' means space only in query strings.
bool PercentDecode(std::string_view in, bool plus_is_space, std::string* out) {
  out->clear();
  out->reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) return false;
      const int hi = HexValue(in[i + 1]);
      const int lo = HexValue(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out->push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out->push_back(' ');
    } else {
      out->push_back(c);
    }
  }
  return true;
}

// "/a/b" -> {"a", "b"}; "/" -> {""}; "/a/" -> {"a", ""}.
std::vector<std::string_view> SplitPath(std::string_view path) {
  std::vector<std::string_view> out;
  if (!path.empty() && path[0] == '/') path.remove_prefix(1);
  size_t start = 0;
  for (;;) {
    const size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) {
      out.push_back(path.substr(start));
      return out;
    }
    out.push_back(path.substr(start, slash - start));
    start = slash + 1;
  }
}

bool IsParamSegment(std::string_view s) {
  return s.size() >= 2 && s.front() == '{' && s.back() == '}';
}

// A bounded label value for the request method.
std::string MethodLabel(const std::string& method) {
  static const std::set<std::string, std::less<>> kKnown = {
      "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"};
  return kKnown.count(method) ? method : "other";
}

std::string SnakeCaseCode(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return "ok";
    case StatusCode::kInvalidArgument:
      return "invalid_argument";
    case StatusCode::kNotFound:
      return "not_found";
    case StatusCode::kAlreadyExists:
      return "already_exists";
    case StatusCode::kCorruption:
      return "corruption";
    case StatusCode::kUnsupported:
      return "unsupported";
    case StatusCode::kResourceExhausted:
      return "resource_exhausted";
    case StatusCode::kIoError:
      return "io_error";
    case StatusCode::kUnavailable:
      return "unavailable";
    case StatusCode::kDeadlineExceeded:
      return "deadline_exceeded";
    case StatusCode::kPermissionDenied:
      return "permission_denied";
    case StatusCode::kCancelled:
      return "cancelled";
    case StatusCode::kInternal:
      return "internal";
  }
  return "internal";
}

bool HasCrLf(std::string_view s) { return s.find_first_of("\r\n") != std::string_view::npos; }

}  // namespace

namespace {

bool IsUnreserved(unsigned char c) {  // RFC 3986 section 2.3
  return std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

std::string HexByte(unsigned char c) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  return std::string{'%', kHex[c >> 4], kHex[c & 15]};
}

}  // namespace

Result<NormalizedPath> NormalizeRequestPath(std::string_view raw) {
  auto refuse = [](const std::string& why) { return InvalidArgument("request path " + why); };
  if (raw.empty() || raw[0] != '/') return refuse("must start with '/'");
  NormalizedPath out;
  const std::vector<std::string_view> raw_segments = SplitPath(raw);
  for (size_t i = 0; i < raw_segments.size(); ++i) {
    const std::string_view seg = raw_segments[i];
    if (seg.empty() && i + 1 < raw_segments.size()) return refuse("has an empty segment ('//')");
    if (seg == "." || seg == "..")
      return refuse("has a dot segment ('" + std::string(seg) + "'); send the resolved path");
    std::string decoded;
    decoded.reserve(seg.size());
    for (size_t j = 0; j < seg.size(); ++j) {
      const unsigned char c = static_cast<unsigned char>(seg[j]);
      if (c < 0x20 || c == 0x7F) return refuse("has a control character " + HexByte(c));
      // Some clients and proxies read '\' as '/': another spelling of a separator.
      if (c == '\\') return refuse("has a '\\' (the only separator is '/')");
      if (c != '%') {
        decoded.push_back(static_cast<char>(c));
        continue;
      }
      const int hi = j + 2 < seg.size() ? HexValue(seg[j + 1]) : -1;
      const int lo = hi >= 0 ? HexValue(seg[j + 2]) : -1;
      if (lo < 0)
        return refuse("has malformed percent-encoding ('" + std::string(seg.substr(j, 3)) + "')");
      const auto v = static_cast<unsigned char>(hi * 16 + lo);
      if (v == '/' || v == '\\')
        return refuse("has an encoded '" + std::string(1, static_cast<char>(v)) + "' (" +
                      HexByte(v) + "): separators may not be percent-encoded");
      if (v < 0x20 || v == 0x7F)
        return refuse("has an encoded control character (" + HexByte(v) + ")");
      if (IsUnreserved(v))
        return refuse("percent-encodes the unreserved character '" +
                      std::string(1, static_cast<char>(v)) + "' (" + HexByte(v) +
                      "); send it as is");
      decoded.push_back(static_cast<char>(v));
      j += 2;
    }
    out.path += "/" + decoded;
    out.segments.push_back(std::move(decoded));
  }
  return out;
}

Status ParseRequestTarget(HttpRequest* request) {
  std::string_view target = request->target;
  // Absolute form ("http://host/path"), which HTTP/1.1 servers must accept.
  for (std::string_view scheme : {"http://", "https://"}) {
    if (target.size() >= scheme.size() && IEquals(target.substr(0, scheme.size()), scheme)) {
      const size_t slash = target.find('/', scheme.size());
      target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
      break;
    }
  }
  if (target.empty() || target[0] != '/')
    return InvalidArgument("request target must be an absolute path");
  const size_t hash = target.find('#');
  if (hash != std::string_view::npos) target = target.substr(0, hash);
  const size_t qmark = target.find('?');
  request->path = std::string(target.substr(0, qmark));
  request->query.clear();
  if (qmark == std::string_view::npos) return Status::Ok();
  std::string_view query = target.substr(qmark + 1);
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) continue;
    const size_t eq = pair.find('=');
    std::string key, value;
    if (!PercentDecode(pair.substr(0, eq), true, &key) ||
        (eq != std::string_view::npos && !PercentDecode(pair.substr(eq + 1), true, &value)))
      return InvalidArgument("malformed percent-encoding in query string");
    request->query.emplace(std::move(key), std::move(value));
  }
  return Status::Ok();
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  // Digests first: equal lengths for CRYPTO_memcmp, and the time does not
  // depend on the secret's length either.
  unsigned char da[SHA256_DIGEST_LENGTH], db[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(a.data()), a.size(), da);
  SHA256(reinterpret_cast<const unsigned char*>(b.data()), b.size(), db);
  return CRYPTO_memcmp(da, db, sizeof da) == 0 && a.size() == b.size();
}

// ---------------------------------------------------------------------------
// Request / response helpers
// ---------------------------------------------------------------------------
std::string HttpRequest::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (IEquals(k, name)) return v;
  return {};
}

HttpResponse HttpResponse::Json(int status, const boost::json::value& body) {
  HttpResponse r;
  r.status = status;
  r.content_type = "application/json";
  r.body = json::serialize(body);
  return r;
}

HttpResponse HttpResponse::Text(int status, std::string body, std::string content_type) {
  HttpResponse r;
  r.status = status;
  r.content_type = std::move(content_type);
  r.body = std::move(body);
  return r;
}

HttpResponse HttpResponse::Error(int status, std::string code, std::string message) {
  json::object error;
  error["code"] = std::move(code);
  error["message"] = std::move(message);
  json::object body;
  body["error"] = std::move(error);
  return Json(status, body);
}

int HttpStatusFor(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return 200;
    case StatusCode::kInvalidArgument:
      return 400;
    case StatusCode::kCorruption:
      return 400;
    case StatusCode::kNotFound:
      return 404;
    case StatusCode::kAlreadyExists:
      return 409;
    case StatusCode::kUnsupported:
      return 422;
    case StatusCode::kResourceExhausted:
      return 429;
    case StatusCode::kPermissionDenied:
      return 403;
    case StatusCode::kCancelled:
      return 499;  // "client closed request", as grpc-gateway maps it
    case StatusCode::kUnavailable:
      return 503;
    case StatusCode::kDeadlineExceeded:
      return 504;
    case StatusCode::kIoError:
      return 500;
    case StatusCode::kInternal:
      return 500;
  }
  return 500;
}

HttpResponse HttpResponse::FromStatus(const Status& status) {
  if (status.ok())
    return Error(500, "internal", "an error response was requested for an OK status");
  return Error(HttpStatusFor(status.code()), SnakeCaseCode(status.code()), status.message());
}

Result<boost::json::value> ParseJsonBody(const HttpRequest& request) {
  if (request.body.empty())
    return InvalidArgument("request body is empty; expected a JSON document");
  json::stream_parser parser;
  boost::system::error_code ec;
  size_t consumed = parser.write_some(request.body.data(), request.body.size(), ec);
  if (!ec) {
    // write_some stops after one complete value; anything but whitespace after it is an error.
    const size_t rest = request.body.find_first_not_of(" \t\r\n", consumed);
    if (!parser.done()) {
      parser.finish(ec);
      consumed = request.body.size();
    } else if (rest != std::string::npos) {
      ec = json::make_error_code(json::error::extra_data);
      consumed = rest;
    }
  }
  if (ec) {
    consumed = std::min(consumed, request.body.size());
    const size_t line =
        1 + static_cast<size_t>(
                std::count(request.body.begin(),
                           request.body.begin() + static_cast<std::ptrdiff_t>(consumed), '\n'));
    const size_t last_nl =
        request.body.rfind('\n', consumed == 0 ? std::string::npos : consumed - 1);
    const size_t column =
        last_nl == std::string::npos || consumed == 0 ? consumed + 1 : consumed - last_nl;
    return InvalidArgument("invalid JSON body at line " + std::to_string(line) + ", column " +
                           std::to_string(column) + " (byte " + std::to_string(consumed) +
                           "): " + ec.message());
  }
  return parser.release();
}

// ---------------------------------------------------------------------------
// Router
// ---------------------------------------------------------------------------
void HttpRouter::Handle(std::string method, std::string pattern, HttpHandler handler) {
  AddRoute(std::move(method), std::move(pattern), std::move(handler), std::nullopt);
}

void HttpRouter::HandleUpload(std::string method, std::string pattern, HttpUploadOptions upload,
                              HttpHandler handler) {
  if (upload.dir.empty() || upload.max_bytes == 0)
    throw std::logic_error("route " + method + " " + pattern +
                           ": an upload needs a dir and max_bytes");
  AddRoute(std::move(method), std::move(pattern), std::move(handler), std::move(upload));
}

void HttpRouter::HandleOffloaded(std::string method, std::string pattern,
                                 std::shared_ptr<WorkQueue> pool, HttpHandler handler) {
  if (!pool)
    throw std::logic_error("route " + method + " " + pattern + ": HandleOffloaded needs a pool");
  AddRoute(std::move(method), std::move(pattern), std::move(handler), std::nullopt,
           std::move(pool));
}

void HttpRouter::AddRoute(std::string method, std::string pattern, HttpHandler handler,
                          std::optional<HttpUploadOptions> upload,
                          std::shared_ptr<WorkQueue> pool) {
  const std::string where = "route " + method + " " + pattern + ": ";
  if (method.empty() ||
      !std::all_of(method.begin(), method.end(), [](char c) { return c >= 'A' && c <= 'Z'; }))
    throw std::logic_error(where + "method must be an upper-case token");
  if (pattern.empty() || pattern[0] != '/')
    throw std::logic_error(where + "pattern must start with '/'");
  if (!handler) throw std::logic_error(where + "empty handler");
  Route route;
  route.method = std::move(method);
  route.pattern = std::move(pattern);
  route.handler = std::make_shared<const HttpHandler>(std::move(handler));
  route.upload = std::move(upload);
  route.pool = std::move(pool);
  std::set<std::string_view> names;
  for (std::string_view seg : SplitPath(route.pattern)) {
    if (IsParamSegment(seg)) {
      const std::string_view name = seg.substr(1, seg.size() - 2);
      if (name.empty() || name.find_first_of("{}/") != std::string_view::npos)
        throw std::logic_error(where + "bad parameter segment '" + std::string(seg) + "'");
      if (!names.insert(name).second)
        throw std::logic_error(where + "parameter '" + std::string(name) + "' repeats");
    } else if (seg.find_first_of("{}") != std::string_view::npos) {
      throw std::logic_error(where + "a parameter must be a whole segment ('" + std::string(seg) +
                             "')");
    }
    route.segments.emplace_back(seg);
  }

  auto shape = [](const std::vector<std::string>& segs) {
    std::vector<std::string> s;
    for (const auto& seg : segs) s.push_back(IsParamSegment(seg) ? "{}" : seg);
    return s;
  };
  std::unique_lock lock(mu_);
  for (const Route& r : routes_)
    if (r.method == route.method && shape(r.segments) == shape(route.segments))
      throw std::logic_error(where + "conflicts with " + r.method + " " + r.pattern);
  routes_.push_back(std::move(route));
}

void HttpRouter::AddObserver(HttpObserver observer) {
  if (!observer) return;
  std::unique_lock lock(mu_);
  observers_.push_back(std::make_shared<const HttpObserver>(std::move(observer)));
}

void HttpRouter::NotifyObservers(const HttpRequest& request, const HttpResponse& response,
                                 double seconds) const {
  std::vector<std::shared_ptr<const HttpObserver>> observers;
  {
    std::shared_lock lock(mu_);
    observers = observers_;
  }
  for (const auto& o : observers) {
    try {
      (*o)(request, response, seconds);
    } catch (const std::exception& e) {
      Log(LogLevel::kError, std::string(kComponent), "request observer threw",
          {{"error", e.what()}});
    } catch (...) {
      Log(LogLevel::kError, std::string(kComponent), "request observer threw",
          {{"error", "unknown exception"}});
    }
  }
}

HttpRouter::Match HttpRouter::Find(HttpRequest& request) const {
  request.params.clear();
  request.route.clear();
  Match out;
  // One normalisation for the matcher and the guard (Refusal): a literal
  // matches the decoded segment, and a path with another spelling never gets here.
  Result<NormalizedPath> normalized = NormalizeRequestPath(request.path);
  if (!normalized.ok()) {
    out.bad_path = normalized.status();
    return out;
  }
  out.normalized = std::move(normalized.value().path);
  const std::vector<std::string>& segments = normalized.value().segments;

  const Route* best = nullptr;      // for the request's method
  const Route* best_get = nullptr;  // GET fallback for HEAD
  std::vector<bool> best_rank, best_get_rank;
  std::shared_lock lock(mu_);
  for (const Route& r : routes_) {
    if (r.segments.size() != segments.size()) continue;
    std::vector<bool> rank;  // true = literal, compared lexicographically
    bool match = true;
    for (size_t i = 0; match && i < segments.size(); ++i) {
      const bool param = IsParamSegment(r.segments[i]);
      match = param ? !segments[i].empty() : r.segments[i] == segments[i];
      rank.push_back(!param);
    }
    if (!match) continue;
    out.allowed.insert(r.method);
    if (r.method == request.method && (!best || rank > best_rank)) best = &r, best_rank = rank;
    if (r.method == "GET" && (!best_get || rank > best_get_rank))
      best_get = &r, best_get_rank = rank;
  }
  if (!best && request.method == "HEAD") best = best_get;
  if (best) {
    out.handler = best->handler;
    out.upload = best->upload;
    out.pool = best->pool;
    request.route = best->pattern;
    for (size_t i = 0; i < segments.size(); ++i) {
      const std::string& seg = best->segments[i];
      if (IsParamSegment(seg)) request.params[seg.substr(1, seg.size() - 2)] = segments[i];
    }
  }
  return out;
}

void HttpRouter::RequireBearer(BearerAuth auth) {
  std::unique_lock lock(mu_);
  auth_ = std::make_shared<const BearerAuth>(std::move(auth));
}

std::optional<HttpResponse> HttpRouter::CheckBearer(const HttpRequest& request,
                                                    const std::string& normalized_path) const {
  std::shared_ptr<const BearerAuth> auth;
  {
    std::shared_lock lock(mu_);
    auth = auth_;
  }
  // Ignoring case: routes match case-sensitively, so /API/ reaches none of
  // them, but a lookalike of a guarded path gets the guard's answer, not a 404.
  if (!auth || auth->token.empty() || !auth->methods.count(request.method) ||
      normalized_path.size() < auth->path_prefix.size() ||
      !IEquals(std::string_view(normalized_path).substr(0, auth->path_prefix.size()),
               auth->path_prefix))
    return std::nullopt;
  const std::string presented = request.header("Authorization");
  constexpr std::string_view kScheme = "Bearer ";  // the scheme is case-insensitive (RFC 7235)
  std::string_view why;
  if (presented.empty()) {
    why = "no Authorization header";
  } else if (presented.size() <= kScheme.size() ||
             !IEquals(std::string_view(presented).substr(0, kScheme.size()), kScheme)) {
    why = "Authorization is not a Bearer credential";
  } else if (!ConstantTimeEquals(std::string_view(presented).substr(kScheme.size()), auth->token)) {
    why = "wrong token";
  } else {
    return std::nullopt;
  }
  const std::string route = request.route.empty() ? "(unmatched)" : request.route;
  Log(LogLevel::kWarn, std::string(kComponent), "unauthorized request refused",
      {{"method", request.method},
       {"route", route},
       {"remote", request.remote},
       {"reason", std::string(why)}});
  if (auth->metrics)
    auth->metrics
        ->Counter("dnnd_http_unauthorized_total",
                  "Requests refused with 401 for a missing or wrong bearer token, by method and "
                  "route pattern.",
                  {{"method", MethodLabel(request.method)}, {"route", route}})
        .Inc();
  HttpResponse response = HttpResponse::Error(
      401, "unauthorized",
      std::string(why) + "; " + request.method + " requests under " + auth->path_prefix +
          " need \"Authorization: Bearer <token>\" with the controller's token");
  response.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"dnnd\"");
  return response;
}

std::optional<HttpResponse> HttpRouter::Refusal(const HttpRequest& request,
                                                const Match& match) const {
  if (!match.bad_path.ok()) {
    Log(LogLevel::kDebug, std::string(kComponent), "request path refused",
        {{"method", request.method},
         {"remote", request.remote},
         {"error", match.bad_path.message()}});
    return HttpResponse::Error(400, "bad_request", match.bad_path.message());
  }
  // The guard comes before 404/405: without the token nothing is revealed.
  return CheckBearer(request, match.normalized);
}

std::optional<HttpResponse> HttpRouter::Admit(HttpRequest& request,
                                              std::optional<HttpUploadOptions>* upload) const {
  Match match = Find(request);
  if (upload) *upload = match.upload;
  return Refusal(request, match);
}

HttpResponse HttpRouter::Dispatch(HttpRequest& request) const {
  const auto start = std::chrono::steady_clock::now();
  HttpResponse response;
  // A caller dispatching in-process (not through the server) hands an
  // upload route its body in memory: write it to the file the handler
  // expects, under the same limit.
  std::string spooled;
  auto SpoolBody = [&spooled](const std::optional<HttpUploadOptions>& upload,
                              HttpRequest& r) -> std::optional<HttpResponse> {
    if (!upload || !r.body_file.empty()) return std::nullopt;
    if (r.body.size() > upload->max_bytes)
      return HttpResponse::Error(413, "payload_too_large",
                                 "request body exceeds the limit of " +
                                     std::to_string(upload->max_bytes) + " bytes (" +
                                     upload->limit_name + ")");
    std::string path = upload->dir + "/" + kUploadFilePrefix + "XXXXXX";
    const int fd = ::mkstemp(path.data());
    bool ok = fd >= 0;
    for (size_t off = 0; ok && off < r.body.size();) {
      const ssize_t n = ::write(fd, r.body.data() + off, r.body.size() - off);
      ok = n > 0;
      if (ok) off += static_cast<size_t>(n);
    }
    if (fd >= 0) ::close(fd);
    if (!ok) {
      if (fd >= 0) ::unlink(path.c_str());
      return HttpResponse::Error(500, "internal", "cannot store the upload in " + upload->dir);
    }
    spooled = r.body_file = path;
    r.body_file_bytes = r.body.size();
    r.body.clear();
    return std::nullopt;
  };
  Match match = Find(request);
  std::set<std::string>& allowed = match.allowed;
  const std::shared_ptr<const HttpHandler>& handler = match.handler;
  std::optional<HttpResponse> refused = Refusal(request, match);

  if (refused) {
    response = std::move(*refused);
  } else if (!handler && allowed.empty()) {
    response = HttpResponse::Error(404, "not_found", "no route for " + request.path);
  } else if (!handler) {
    if (allowed.count("GET")) allowed.insert("HEAD");
    std::string allow;
    for (const auto& m : allowed) allow += (allow.empty() ? "" : ", ") + m;
    response = HttpResponse::Error(405, "method_not_allowed",
                                   "method " + request.method + " is not allowed for " +
                                       request.path + " (allowed: " + allow + ")");
    response.headers.emplace_back("Allow", allow);
  } else if (std::optional<HttpResponse> failed = SpoolBody(match.upload, request)) {
    response = std::move(*failed);
  } else {
    try {
      response = (*handler)(request);
    } catch (const StatusError& e) {
      response = HttpResponse::FromStatus(e.status());
      if (response.status >= 500)
        Log(LogLevel::kError, std::string(kComponent), "handler failed",
            {{"method", request.method},
             {"route", request.route},
             {"error", e.status().ToString()}});
    } catch (const std::exception& e) {
      Log(LogLevel::kError, std::string(kComponent), "handler threw",
          {{"method", request.method}, {"route", request.route}, {"error", e.what()}});
      response = HttpResponse::Error(500, "internal", "internal error while handling the request");
    } catch (...) {
      Log(LogLevel::kError, std::string(kComponent), "handler threw",
          {{"method", request.method}, {"route", request.route}, {"error", "unknown exception"}});
      response = HttpResponse::Error(500, "internal", "internal error while handling the request");
    }
  }
  if (!spooled.empty()) {
    ::unlink(spooled.c_str());  // unless the handler moved it away
    request.body_file.clear();
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  NotifyObservers(request, response, seconds);
  return response;
}

void HttpRouter::DispatchAsync(HttpRequest request,
                               std::function<void(HttpRequest&, HttpResponse)> done) const {
  std::shared_ptr<WorkQueue> pool = Find(request).pool;
  if (!pool) {
    HttpResponse response = Dispatch(request);
    return done(request, std::move(response));
  }
  // The guard and the route are decided again by Dispatch on the pool thread
  // (cheap); the request and `done` travel with the task.
  auto task =
      std::make_shared<std::pair<HttpRequest, std::function<void(HttpRequest&, HttpResponse)>>>(
          std::move(request), std::move(done));
  if (pool->TrySubmit([this, task] {
        HttpResponse response = Dispatch(task->first);
        task->second(task->first, std::move(response));
      }))
    return;
  HttpResponse busy =
      HttpResponse::Error(503, "overloaded",
                          "the server is busy: " + std::to_string(pool->threads()) +
                              " heavy requests run and " + std::to_string(pool->max_queued()) +
                              " wait (" + pool->queue_setting() + "); retry shortly");
  busy.headers.emplace_back("Retry-After", "1");
  NotifyObservers(task->first, busy, 0.0);
  task->second(task->first, std::move(busy));
}

// ---------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------
namespace {

std::string EndpointString(const tcp::endpoint& ep) {
  const std::string host =
      ep.address().is_v6() ? "[" + ep.address().to_string() + "]" : ep.address().to_string();
  return host + ":" + std::to_string(ep.port());
}

struct SessionConfig {
  HttpServerOptions options;
  std::shared_ptr<HttpRouter> router;
};

// Counts the chunk extensions of one request against
// HttpServerOptions::max_chunk_extension_bytes; called by the Beast parser
// once per chunk header (it must outlive the parser: a Session member).
struct ChunkExtensionBudget {
  uint64_t limit = 0;
  uint64_t used = 0;
  bool exceeded = false;
  void operator()(uint64_t /*size*/, std::string_view extensions, beast::error_code& ec) {
    used += extensions.size();
    if (used > limit) {
      exceeded = true;
      ec = http::error::bad_chunk_extension;  // stops the parser; OnReadError names the limit
    }
  }
};

// One connection: read a request, answer it, repeat while kept alive. All of
// its handlers run on its own strand.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, std::shared_ptr<const SessionConfig> config)
      : stream_(std::move(socket)),
        config_(std::move(config)),
        buffer_(config_->options.max_header_bytes + kBodyReadBuffer),
        deadline_(stream_.get_executor()) {
    boost::system::error_code ec;
    stream_.socket().set_option(tcp::no_delay(true), ec);  // responses go out whole
    const auto ep = stream_.socket().remote_endpoint(ec);
    remote_ = ec ? std::string("?") : EndpointString(ep);
  }

  asio::any_io_executor executor() { return stream_.get_executor(); }

  void Run() {
    asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->ReadHeader(); });
  }

  // On the strand. Idempotent.
  void Close() {
    DisarmDeadline();
    boost::system::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.close();
  }

 private:
  const HttpServerOptions& options() const { return config_->options; }

  void ReadHeader() {
    parser_.emplace();
    // Body limits are decided per route once the header is in (OnHeader).
    parser_->body_limit(boost::none);
    parser_->header_limit(options().max_header_bytes);
    upload_.reset();
    body_limit_ = options().max_body_bytes;
    limit_name_ = options().max_body_setting;
    extensions_ = {.limit = options().max_chunk_extension_bytes};
    ArmDeadline();
    stream_.expires_after(options().read_timeout);
    http::async_read_header(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnHeader(ec); });
  }

  // The request deadline (HttpServerOptions::request_timeout): from when the
  // server starts waiting for a request until its last body byte, extended
  // by the body bytes received at min_body_bytes_per_second. A timer on the
  // strand; on expiry it cancels the pending read, and OnReadError answers 408.
  std::chrono::steady_clock::time_point Deadline() const {
    auto deadline = request_start_ + options().request_timeout;
    if (options().min_body_bytes_per_second > 0)
      deadline +=
          std::chrono::milliseconds(body_bytes_ * 1000 / options().min_body_bytes_per_second);
    return deadline;
  }

  void ArmDeadline() {
    ++request_generation_;
    request_start_ = std::chrono::steady_clock::now();
    body_bytes_ = 0;
    deadline_hit_ = false;
    WaitForDeadline();
  }

  void WaitForDeadline() {
    deadline_.expires_at(Deadline());
    deadline_.async_wait(
        [self = shared_from_this(), generation = request_generation_](beast::error_code ec) {
          if (ec || generation != self->request_generation_)
            return;  // disarmed, or a later request's
          if (std::chrono::steady_clock::now() < self->Deadline())
            return self->WaitForDeadline();  // bytes came in
          self->deadline_hit_ = true;
          beast::error_code ignored;
          self->stream_.socket().cancel(ignored);  // the read ends with operation_aborted
        });
  }

  // The request is in (or the session ends): a late expiry must not cancel the response.
  void DisarmDeadline() {
    ++request_generation_;
    deadline_.cancel();
  }

  // The request line and headers as an HttpRequest (no body yet).
  template <class Message>
  HttpRequest Head(const Message& msg) const {
    HttpRequest request;
    request.method = std::string(msg.method_string());
    request.target = std::string(msg.target());
    request.remote = remote_;
    for (const auto& field : msg)
      request.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
    return request;
  }

  void OnHeader(beast::error_code ec) {
    if (ec) return OnReadError(ec);
    start_ = std::chrono::steady_clock::now();
    const auto& req = parser_->get();
    method_ = std::string(req.method_string());
    header_fields_ = static_cast<size_t>(std::distance(req.begin(), req.end()));
    // Decide from the header alone: refuse (400 for the target, 401) without
    // reading the body, stream it to a file, or read it into memory under the
    // server's limit.
    HttpRequest head = Head(req);
    if (Status st = ParseRequestTarget(&head); !st.ok())
      return ProtocolError(400, "bad_request", st.message());
    std::optional<HttpUploadOptions> upload;
    if (std::optional<HttpResponse> refusal = config_->router->Admit(head, &upload)) {
      config_->router->NotifyObservers(head, *refusal, 0.0);
      // The body (if any) stays unread: answer and close.
      return Write(std::move(*refusal), req.version(), /*keep_alive=*/false, /*head=*/false);
    }
    if (upload) {
      body_limit_ = upload->max_bytes;
      limit_name_ = upload->limit_name;
    }
    if (req.has_content_length() && parser_->content_length().value_or(0) > body_limit_)
      return BodyTooLarge();
    parser_->body_limit(body_limit_);  // chunked bodies: checked as they arrive
    if (upload && !StartUpload(*upload)) return;
    // No body byte is parsed yet, so the callback may still be set (Beast's rule).
    if (upload_)
      upload_->on_chunk_header(extensions_);
    else
      parser_->on_chunk_header(extensions_);
    if (!parser_done() && req.version() >= 11 &&
        IEquals(req[http::field::expect], "100-continue")) {
      // The client waits for this before sending the body (curl: up to 1 s).
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      asio::async_write(stream_, asio::buffer(kContinue.data(), kContinue.size()),
                        [self = shared_from_this()](beast::error_code ec2, size_t) {
                          if (ec2) return self->Close();
                          self->ReadBody();
                        });
      return;
    }
    ReadBody();
  }

  bool parser_done() const { return upload_ ? upload_->is_done() : parser_->is_done(); }

  // Moves the parser onto a file body in a fresh temporary file of
  // `upload.dir`; false (after answering 500) if the file cannot be created.
  bool StartUpload(const HttpUploadOptions& upload) {
    std::string path = upload.dir + "/" + kUploadFilePrefix + "XXXXXX";
    const int fd = ::mkstemp(path.data());
    beast::error_code ec;
    if (fd >= 0) {
      ::close(fd);
      upload_.emplace(std::move(*parser_));
      upload_file_.path = path;
      upload_->get().body().open(path.c_str(), beast::file_mode::write, ec);
    }
    if (fd < 0 || ec) {
      const std::string why = fd < 0 ? std::strerror(errno) : ec.message();
      Log(LogLevel::kError, std::string(kComponent), "cannot create an upload file",
          {{"dir", upload.dir}, {"error", why}});
      ProtocolError(500, "internal", "cannot store the upload: " + why);
      return false;
    }
    return true;
  }

  void ReadBody() {
    if (upload_) return ReadBodyPiece(*upload_);
    if (const auto length = parser_->content_length())
      buffer_.reserve(static_cast<size_t>(
          std::min<uint64_t>({buffer_.size() + *length, kBodyReadBuffer, buffer_.max_size()})));
    ReadBodyPiece(*parser_);
  }

  // A body is read piece by piece, each under the read timeout (silence);
  // the request deadline, which grows with the bytes received, bounds the
  // whole, so a large file at a sane rate passes and a drip does not.
  template <class Parser>
  void ReadBodyPiece(Parser& parser) {
    if (parser.is_done()) return OnRequest();
    stream_.expires_after(options().read_timeout);
    http::async_read_some(stream_, buffer_, parser,
                          [self = shared_from_this(), &parser](beast::error_code ec, size_t n) {
                            if (ec) return self->OnReadError(ec);
                            self->body_bytes_ += n;
                            self->ReadBodyPiece(parser);
                          });
  }

  void BodyTooLarge() {
    upload_file_.Remove();
    const std::string setting = limit_name_.empty() ? "" : " (" + limit_name_ + ")";
    ProtocolError(
        413, "payload_too_large",
        "request body exceeds the limit of " + std::to_string(body_limit_) + " bytes" + setting);
  }

  void HeaderTooLarge(const std::string& what) {
    ProtocolError(431, "header_too_large",
                  what + " exceed " + std::to_string(options().max_header_bytes) +
                      " bytes (http.max_header_bytes)");
  }

  void OnReadError(beast::error_code ec) {
    upload_file_.Remove();
    if (ec == http::error::end_of_stream) return Linger();  // clean close between requests
    if (deadline_hit_) {
      // Nothing of a request yet (an idle kept-alive connection): just close.
      if (buffer_.size() == 0 && !(upload_ ? upload_->got_some() : parser_->got_some()))
        return Close();
      Log(LogLevel::kInfo, std::string(kComponent), "request deadline passed; answering 408",
          {{"peer", remote_}, {"body_bytes", static_cast<int64_t>(body_bytes_)}});
      return ProtocolError(408, "request_timeout",
                           "the request did not arrive within " +
                               std::to_string(options().request_timeout.count()) +
                               " ms (http.request_timeout_ms) plus 1 s per " +
                               std::to_string(options().min_body_bytes_per_second) +
                               " body bytes received (http.min_body_bytes_per_second)");
    }
    if (ec == beast::error::timeout) {
      Log(LogLevel::kDebug, std::string(kComponent), "read timed out; closing",
          {{"peer", remote_}});
      return Close();
    }
    if (ec == http::error::body_limit) return BodyTooLarge();
    if (ec == http::error::header_limit) return HeaderTooLarge("request line and headers");
    if (ec == http::error::buffer_overflow)  // a chunk-size line or trailers that never end
      return ProtocolError(431, "header_too_large",
                           "a chunk-size line or the trailers exceed the read buffer of " +
                               std::to_string(buffer_.max_size()) +
                               " bytes (http.max_header_bytes + 64 KiB)");
    if (extensions_.exceeded)
      return ProtocolError(400, "chunk_extensions_too_large",
                           "chunk extensions exceed " + std::to_string(extensions_.limit) +
                               " bytes in this request (http.max_chunk_extension_bytes)");
    if (ec.category() == http::make_error_code(http::error::bad_method).category() &&
        ec != http::error::partial_message)
      return ProtocolError(400, "bad_request", "malformed HTTP request: " + ec.message());
    Close();  // reset, aborted by Stop(), closed mid-message: nobody to answer
  }

  // Answers a request the router never saw, then closes: after a framing
  // error the rest of the byte stream cannot be trusted.
  void ProtocolError(int status, std::string code, std::string message) {
    Log(LogLevel::kDebug, std::string(kComponent), "bad request",
        {{"peer", remote_}, {"status", status}, {"error", message}});
    HttpRequest request;
    request.method = method_;
    request.remote = remote_;
    HttpResponse response = HttpResponse::Error(status, std::move(code), std::move(message));
    config_->router->NotifyObservers(request, response, 0.0);
    Write(std::move(response), 11, /*keep_alive=*/false, /*head=*/false);
  }

  // Bytes of the trailer fields (those after the header's), counted like header lines.
  template <class Message>
  size_t TrailerBytes(const Message& msg) const {
    size_t bytes = 0, i = 0;
    for (const auto& field : msg)
      if (i++ >= header_fields_) bytes += field.name_string().size() + field.value().size() + 4;
    return bytes;
  }

  void OnRequest() {
    DisarmDeadline();
    const size_t trailers = upload_ ? TrailerBytes(upload_->get()) : TrailerBytes(parser_->get());
    if (trailers > options().max_header_bytes) {
      upload_file_.Remove();
      return HeaderTooLarge("the trailers");
    }
    HttpRequest request;
    bool keep_alive;
    unsigned version;
    if (upload_) {
      auto& msg = upload_->get();
      msg.body().close();  // flushed; the handler reads or moves the file
      request = Head(msg);
      keep_alive = msg.keep_alive();
      version = msg.version();
      request.body_file = upload_file_.path;
      std::error_code size_ec;
      request.body_file_bytes = std::filesystem::file_size(upload_file_.path, size_ec);
    } else {
      http::request<http::string_body> msg = parser_->release();
      request = Head(msg);
      request.body = std::move(msg.body());
      keep_alive = msg.keep_alive();
      version = msg.version();
    }

    if (Status st = ParseRequestTarget(&request);
        !st.ok()) {  // checked in OnHeader; kept for safety
      upload_file_.Remove();
      HttpResponse response = HttpResponse::Error(400, "bad_request", st.message());
      config_->router->NotifyObservers(
          request, response,
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
      return Write(std::move(response), version, false, false);
    }
    const bool head = request.method == "HEAD";
    // Answered here, or later from an offloaded route's pool thread: the
    // answer comes back to this session's strand either way.
    config_->router->DispatchAsync(std::move(request), [self = shared_from_this(), version,
                                                        keep_alive,
                                                        head](HttpRequest&, HttpResponse response) {
      asio::dispatch(self->stream_.get_executor(),
                     [self, version, keep_alive, head, response = std::move(response)]() mutable {
                       self->upload_file_.Remove();  // unless the handler moved it away
                       self->Write(std::move(response), version, keep_alive, head);
                     });
    });
  }

  void Write(HttpResponse r, unsigned version, bool keep_alive, bool head) {
    DisarmDeadline();
    if (r.status < 200 || r.status > 599) {
      Log(LogLevel::kError, std::string(kComponent),
          "handler returned an invalid status; sending 500", {{"status", r.status}});
      r = HttpResponse::Error(500, "internal", "internal error while handling the request");
    }
    auto res = std::make_shared<http::response<http::string_body>>();
    res->version(version == 10 ? 10 : 11);
    res->result(static_cast<unsigned>(r.status));
    res->set(http::field::server, "dnnd/" DNND_VERSION);
    for (auto& [name, value] : r.headers) {
      if (name.empty() || HasCrLf(name) || HasCrLf(value) || name.find(':') != std::string::npos) {
        Log(LogLevel::kError, std::string(kComponent), "dropping malformed response header",
            {{"name", name}});
        continue;
      }
      res->insert(name, value);
    }
    res->keep_alive(keep_alive);
    const bool bodiless = r.status == 204 || r.status == 304;
    if (!bodiless) {
      if (!r.content_type.empty() && !HasCrLf(r.content_type))
        res->set(http::field::content_type, r.content_type);
      if (head) {
        res->content_length(r.body.size());  // what GET would send, without the body
      } else {
        res->body() = std::move(r.body);
        res->prepare_payload();
      }
    }
    response_ = std::move(res);
    stream_.expires_after(options().read_timeout);
    http::async_write(stream_, *response_,
                      [self = shared_from_this(), keep_alive](beast::error_code ec, size_t) {
                        self->response_.reset();
                        if (ec) return self->Close();
                        if (!keep_alive) return self->Linger();
                        self->ReadHeader();
                      });
  }

  // Half-close, then read and discard until the client closes (see kLingerTime).
  void Linger() {
    boost::system::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    if (ec) return Close();
    drain_.resize(16 * 1024);
    drained_ = 0;
    stream_.expires_after(kLingerTime);
    Drain();
  }

  void Drain() {
    stream_.async_read_some(asio::buffer(drain_),
                            [self = shared_from_this()](beast::error_code ec, size_t n) {
                              self->drained_ += n;
                              if (ec || self->drained_ > kLingerMaxBytes) return self->Close();
                              self->Drain();
                            });
  }

  beast::tcp_stream stream_;
  std::shared_ptr<const SessionConfig> config_;
  std::string remote_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  // Set instead of parser_ (moved into it) while a body streams to a file.
  std::optional<http::request_parser<http::file_body>> upload_;
  // The upload's temporary file; removed on every path that does not hand
  // it to a handler, and when the session ends mid-upload.
  struct TempFile {
    std::string path;
    void Remove() {
      if (path.empty()) return;
      ::unlink(path.c_str());
      path.clear();
    }
    ~TempFile() { Remove(); }
  } upload_file_;
  uint64_t body_limit_ = 0;  // of the current request
  std::string limit_name_;   // the setting behind body_limit_, for the 413 message
  std::string method_;       // of the current request, for ProtocolError
  std::shared_ptr<http::response<http::string_body>> response_;  // alive while being written
  std::chrono::steady_clock::time_point start_;
  std::vector<char> drain_;
  size_t drained_ = 0;
  size_t header_fields_ = 0;         // fields in the header; those after them are trailers
  ChunkExtensionBudget extensions_;  // of the current request; the parser calls it
  // The request deadline (ArmDeadline): a generation tells a stale expiry
  // from the current request's.
  asio::steady_timer deadline_;
  std::chrono::steady_clock::time_point request_start_;
  uint64_t body_bytes_ = 0;  // of the current request, as parsed
  uint64_t request_generation_ = 0;
  bool deadline_hit_ = false;
};

}  // namespace

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

// ---------------------------------------------------------------------------
// Control plane
// ---------------------------------------------------------------------------
void AddControlPlaneRoutes(HttpRouter& router,
                           std::function<std::pair<bool, std::string>()> readiness,
                           MetricsRegistry& metrics) {
  router.Handle("GET", "/healthz", [](const HttpRequest&) {
    return HttpResponse::Json(200, json::object{{"status", "ok"}});
  });
  router.Handle("GET", "/readyz", [readiness = std::move(readiness)](const HttpRequest&) {
    if (!readiness) return HttpResponse::Json(200, json::object{{"ready", true}});
    auto [ready, reason] = readiness();
    if (ready) return HttpResponse::Json(200, json::object{{"ready", true}});
    return HttpResponse::Json(503, json::object{{"ready", false}, {"reason", reason}});
  });
  router.Handle("GET", "/metrics", [&metrics](const HttpRequest&) {
    return HttpResponse::Text(200, metrics.RenderPrometheusText(),
                              "text/plain; version=0.0.4; charset=utf-8");
  });
  router.AddObserver(
      [&metrics](const HttpRequest& request, const HttpResponse& response, double seconds) {
        // The route pattern, never the raw path: label values must stay bounded.
        const std::string route = request.route.empty() ? "(unmatched)" : request.route;
        metrics
            .Counter("dnnd_http_requests_total",
                     "HTTP requests answered, by method, route pattern and status code.",
                     {{"method", MethodLabel(request.method)},
                      {"route", route},
                      {"code", std::to_string(response.status)}})
            .Inc();
        metrics
            .Histogram("dnnd_http_request_duration_seconds",
                       "Time from routing an HTTP request to its response being ready, in seconds.",
                       {{"route", route}})
            .Observe(seconds);
      });
}

}  // namespace dnnd
