// A one-shot HTTP GET for health checks: `dnnd probe <url>`. The container
// image has no shell and no curl, so a Swarm/compose healthcheck (which runs
// a command inside the container, unlike Kubernetes' httpGet probes) calls
// dnnd itself:
//
//   healthcheck: { test: ["CMD", "/usr/local/bin/dnnd", "probe", "http://127.0.0.1:9400/healthz"] }
//
// The exit code is the verdict: 0 for a 2xx answer, 1 otherwise.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "core/status.h"

namespace dnnd {

struct ProbeTarget {
  std::string host;  // a name or an IP literal (IPv6 without brackets)
  uint16_t port = 0;
  std::string path;  // starts with '/'
};

// Accepts "http://host:port/path", "host:port/path" and "host:port" (path
// "/healthz"); IPv6 hosts in brackets ("[::1]:9400"). InvalidArgument for
// anything else (other schemes, no port, a path that does not start with '/'
// after the authority, control characters or spaces).
Result<ProbeTarget> ParseProbeUrl(const std::string& url);

struct ProbeResult {
  int status = 0;    // the HTTP status code
  std::string body;  // at most 4 KB of it
};

// GET target.path from target.host:target.port within `timeout` (name
// resolution, connect, request and response together; the resolver's own
// timeout comes from resolv.conf). Unavailable when the server cannot be
// reached, DeadlineExceeded on timeout, Corruption for a malformed answer.
// Any HTTP status is a successful probe here; the caller judges it.
Result<ProbeResult> HttpProbe(const ProbeTarget& target, std::chrono::milliseconds timeout);

}  // namespace dnnd
