#include "roles/controller/dashboard.h"

#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "transport/http.h"

namespace dnnd {
namespace {

// "\"<16 hex digits>\"": FNV-1a 64 of the bytes. Not a security property,
// only "did the bytes change", which a 64-bit hash answers for a handful of files.
std::string ETagOf(std::string_view bytes) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  char buf[24];
  std::snprintf(buf, sizeof buf, "\"%016llx\"", static_cast<unsigned long long>(h));
  return buf;
}

// True when the request's If-None-Match lists `etag` (or is "*").
bool ClientHas(const HttpRequest& r, const std::string& etag) {
  const std::string inm = r.header("If-None-Match");
  return !inm.empty() && (inm == "*" || inm.find(etag) != std::string::npos);
}

HttpResponse Redirect(std::string location) {
  HttpResponse res = HttpResponse::Text(302, "see " + location + "\n");
  res.headers.emplace_back("Location", std::move(location));
  return res;
}

// Serves one embedded file; the ETag is computed once, when the route is added.
HttpHandler ServeFile(const EmbeddedFile& file) {
  return [&file, etag = ETagOf(file.bytes)](const HttpRequest& r) {
    HttpResponse res;
    res.headers = {{"ETag", etag},
                   {"Cache-Control", "no-cache"},
                   {"X-Content-Type-Options", "nosniff"},
                   // Everything the page needs is on this origin: no CDN, no inline script.
                   {"Content-Security-Policy",
                    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
                    "frame-ancestors 'none'"}};
    if (ClientHas(r, etag)) {
      res.status = 304;
      return res;
    }
    res.content_type = std::string(file.content_type);
    res.body = std::string(file.bytes);
    return res;
  };
}

}  // namespace

void AddDashboardRoutes(HttpRouter& router) {
  const std::span<const EmbeddedFile> files = DashboardAssets();
  router.Handle("GET", "/", [](const HttpRequest&) { return Redirect("/ui/"); });
  router.Handle("GET", "/ui", [](const HttpRequest&) { return Redirect("/ui/"); });
  const EmbeddedFile* index = FindEmbeddedFile(files, "index.html");
  if (index) router.Handle("GET", "/ui/", ServeFile(*index));
  // One route per file would need a route per name; one {file} route keeps
  // the unknown-asset answer in one place.
  std::vector<std::pair<std::string_view, HttpHandler>> handlers;
  for (const EmbeddedFile& f : files) handlers.emplace_back(f.path, ServeFile(f));
  router.Handle("GET", "/ui/{file}", [handlers = std::move(handlers)](const HttpRequest& r) {
    const std::string& name = r.params.at("file");
    for (const auto& [path, handler] : handlers)
      if (path == name) return handler(r);
    return HttpResponse::Error(404, "not_found", "no dashboard asset '" + name + "'");
  });
}

}  // namespace dnnd
