// HttpRequest and HttpResponse helpers: header lookup, JSON/text/error
// responses, the Status -> HTTP status mapping, and JSON body parsing. See
// http.h.
#include <algorithm>
#include <boost/json.hpp>
#include <string>
#include <string_view>

#include "transport/http.h"
#include "transport/http_internal.h"

namespace dnnd {

namespace json = boost::json;
using http_internal::IEquals;

namespace {

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

}  // namespace

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

}  // namespace dnnd
