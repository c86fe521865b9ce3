// HttpRouter: routes, the bearer guard, Dispatch / DispatchAsync and the
// observers; and the control-plane routes (/healthz, /readyz, /metrics). See
// http.h.
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "core/log.h"
#include "core/metrics.h"
#include "core/work_queue.h"
#include "transport/http.h"
#include "transport/http_internal.h"

namespace dnnd {

namespace json = boost::json;
using http_internal::IEquals;
using http_internal::kComponent;
using http_internal::SplitPath;

namespace {

bool IsParamSegment(std::string_view s) {
  return s.size() >= 2 && s.front() == '{' && s.back() == '}';
}

// A bounded label value for the request method.
std::string MethodLabel(const std::string& method) {
  static const std::set<std::string, std::less<>> kKnown = {
      "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"};
  return kKnown.count(method) ? method : "other";
}

}  // namespace

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  // Digests first: equal lengths for CRYPTO_memcmp, and the time does not
  // depend on the secret's length either.
  unsigned char da[SHA256_DIGEST_LENGTH], db[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(a.data()), a.size(), da);
  SHA256(reinterpret_cast<const unsigned char*>(b.data()), b.size(), db);
  return CRYPTO_memcmp(da, db, sizeof da) == 0 && a.size() == b.size();
}

// ---------------------------------------------------------------------------
// Router
// ---------------------------------------------------------------------------
void HttpRouter::Handle(std::string method, std::string pattern, HttpHandler handler) {
  AddRoute(std::move(method), std::move(pattern), std::move(handler), std::nullopt);
}

void HttpRouter::HandleUpload(std::string method, std::string pattern, HttpUploadOptions upload,
                              HttpHandler handler, std::shared_ptr<WorkQueue> pool) {
  if (upload.dir.empty() || upload.max_bytes == 0)
    throw std::logic_error("route " + method + " " + pattern +
                           ": an upload needs a dir and max_bytes");
  AddRoute(std::move(method), std::move(pattern), std::move(handler), std::move(upload),
           std::move(pool));
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
