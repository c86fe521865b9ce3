// The HTTP control plane every daemon role serves when `http.listen` is set:
// /healthz, /readyz (from the role's readiness) and /metrics (Prometheus).
// Roles with a REST API (the controller) add their routes to the same router.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "core/status.h"
#include "transport/http.h"

namespace dnnd {

class Config;

// (ready, reason-if-not).
using Readiness = std::function<std::pair<bool, std::string>()>;

// Starts the control plane on `http.listen`, or returns null when it is empty.
// `router` may carry role routes already; null means a fresh one.
// `max_body_bytes` > http.max_body_bytes raises the server's body limit (a
// role taking uploads then checks its other routes' bodies itself).
Result<std::unique_ptr<HttpServer>> StartControlPlane(const Config& config, Readiness readiness,
                                                      std::shared_ptr<HttpRouter> router = nullptr,
                                                      size_t max_body_bytes = 0);

}  // namespace dnnd
