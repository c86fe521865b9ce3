#include "roles/base/control_plane.h"

#include <algorithm>

#include "core/config.h"
#include "core/log.h"
#include "core/metrics.h"

namespace dnnd {

Result<std::unique_ptr<HttpServer>> StartControlPlane(const Config& config, Readiness readiness,
                                                      std::shared_ptr<HttpRouter> router,
                                                      size_t max_body_bytes) {
  const std::string listen = config.GetString("http.listen");
  if (listen.empty()) return std::unique_ptr<HttpServer>();
  if (!router) router = std::make_shared<HttpRouter>();
  AddControlPlaneRoutes(*router, std::move(readiness), DefaultMetrics());
  HttpServerOptions options;
  options.listen = listen;
  options.max_body_bytes =
      std::max(static_cast<size_t>(config.GetInt("http.max_body_bytes")), max_body_bytes);
  options.threads = static_cast<int>(config.GetInt("http.threads"));
  options.max_body_setting = "http.max_body_bytes";
  // The limits of every connection (issue 15): the transport names these settings in its errors.
  options.max_header_bytes = static_cast<uint32_t>(config.GetInt("http.max_header_bytes"));
  options.max_chunk_extension_bytes =
      static_cast<uint64_t>(config.GetInt("http.max_chunk_extension_bytes"));
  options.read_timeout = std::chrono::milliseconds(config.GetInt("http.read_timeout_ms"));
  options.request_timeout = std::chrono::milliseconds(config.GetInt("http.request_timeout_ms"));
  options.min_body_bytes_per_second =
      static_cast<uint64_t>(config.GetInt("http.min_body_bytes_per_second"));
  options.max_connections = static_cast<size_t>(config.GetInt("http.max_connections"));
  auto server = HttpServer::Start(options, router);
  if (!server.ok()) return server.status().WithContext("http.listen");
  Log(LogLevel::kInfo, "http", "control plane listening",
      {{"address", server.value()->address()}, {"routes", "/healthz /readyz /metrics"}});
  return server;
}

}  // namespace dnnd
