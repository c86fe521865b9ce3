// A blocking HTTP/1.1 client call (Boost.Beast), one connection per call:
// what a pool worker uses to heartbeat to the controller and upload a model.
//
//   auto r = HttpCall({.address = "dnnd-controller:8080", .method = "POST",
//                      .target = "/api/v1/nodes/w1/heartbeat", .body = text,
//                      .token = token});
//   if (r.ok() && r->status == 200) ...
#pragma once

#include <chrono>
#include <string>

#include "core/status.h"

namespace dnnd {

struct HttpCallOptions {
  std::string address;  // host:port (a name is resolved on every call)
  std::string method = "GET";
  std::string target = "/";
  std::string body;
  std::string content_type = "application/json";
  std::string token;                         // non-empty: sent as "Authorization: Bearer <token>"
  std::chrono::milliseconds timeout{10000};  // the whole call
};

struct HttpReply {
  int status = 0;
  std::string body;
};

// Unavailable when the server cannot be reached or the exchange breaks,
// DeadlineExceeded on timeout. Any HTTP status is a reply; the caller judges.
Result<HttpReply> HttpCall(const HttpCallOptions& options);

}  // namespace dnnd
