// Session (http_session.h): one HTTP connection's read / dispatch / write
// loop, its request deadline and its linger after a close.
#include "transport/http_session.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>

#include "core/log.h"
#include "transport/http_internal.h"

#ifndef DNND_VERSION
#define DNND_VERSION "unknown"
#endif

namespace dnnd::http_internal {

namespace {

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

bool HasCrLf(std::string_view s) { return s.find_first_of("\r\n") != std::string_view::npos; }

}  // namespace

Session::Session(tcp::socket socket, std::shared_ptr<const SessionConfig> config)
    : stream_(std::move(socket)),
      config_(std::move(config)),
      buffer_(config_->options.max_header_bytes + kBodyReadBuffer),
      deadline_(stream_.get_executor()) {
  boost::system::error_code ec;
  stream_.socket().set_option(tcp::no_delay(true), ec);  // responses go out whole
  const auto ep = stream_.socket().remote_endpoint(ec);
  remote_ = ec ? std::string("?") : EndpointString(ep);
}

void Session::Run() {
  asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->ReadHeader(); });
}

void Session::Close() {
  DisarmDeadline();
  boost::system::error_code ec;
  stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
  stream_.close();
}

void Session::ReadHeader() {
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

std::chrono::steady_clock::time_point Session::Deadline() const {
  auto deadline = request_start_ + options().request_timeout;
  if (options().min_body_bytes_per_second > 0)
    deadline += std::chrono::milliseconds(body_bytes_ * 1000 / options().min_body_bytes_per_second);
  return deadline;
}

void Session::ArmDeadline() {
  ++request_generation_;
  request_start_ = std::chrono::steady_clock::now();
  body_bytes_ = 0;
  deadline_hit_ = false;
  WaitForDeadline();
}

void Session::WaitForDeadline() {
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

void Session::DisarmDeadline() {
  ++request_generation_;
  deadline_.cancel();
}

template <class Message>
HttpRequest Session::Head(const Message& msg) const {
  HttpRequest request;
  request.method = std::string(msg.method_string());
  request.target = std::string(msg.target());
  request.remote = remote_;
  for (const auto& field : msg)
    request.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  return request;
}

void Session::OnHeader(beast::error_code ec) {
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
  if (!parser_done() && req.version() >= 11 && IEquals(req[http::field::expect], "100-continue")) {
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

bool Session::StartUpload(const HttpUploadOptions& upload) {
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

void Session::ReadBody() {
  if (upload_) return ReadBodyPiece(*upload_);
  if (const auto length = parser_->content_length())
    buffer_.reserve(static_cast<size_t>(
        std::min<uint64_t>({buffer_.size() + *length, kBodyReadBuffer, buffer_.max_size()})));
  ReadBodyPiece(*parser_);
}

template <class Parser>
void Session::ReadBodyPiece(Parser& parser) {
  if (parser.is_done()) return OnRequest();
  stream_.expires_after(options().read_timeout);
  http::async_read_some(stream_, buffer_, parser,
                        [self = shared_from_this(), &parser](beast::error_code ec, size_t n) {
                          if (ec) return self->OnReadError(ec);
                          self->body_bytes_ += n;
                          self->ReadBodyPiece(parser);
                        });
}

void Session::BodyTooLarge() {
  upload_file_.Remove();
  const std::string setting = limit_name_.empty() ? "" : " (" + limit_name_ + ")";
  ProtocolError(
      413, "payload_too_large",
      "request body exceeds the limit of " + std::to_string(body_limit_) + " bytes" + setting);
}

void Session::HeaderTooLarge(const std::string& what) {
  ProtocolError(431, "header_too_large",
                what + " exceed " + std::to_string(options().max_header_bytes) +
                    " bytes (http.max_header_bytes)");
}

void Session::OnReadError(beast::error_code ec) {
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
    Log(LogLevel::kDebug, std::string(kComponent), "read timed out; closing", {{"peer", remote_}});
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

void Session::ProtocolError(int status, std::string code, std::string message) {
  Log(LogLevel::kDebug, std::string(kComponent), "bad request",
      {{"peer", remote_}, {"status", status}, {"error", message}});
  HttpRequest request;
  request.method = method_;
  request.remote = remote_;
  HttpResponse response = HttpResponse::Error(status, std::move(code), std::move(message));
  config_->router->NotifyObservers(request, response, 0.0);
  Write(std::move(response), 11, /*keep_alive=*/false, /*head=*/false);
}

template <class Message>
size_t Session::TrailerBytes(const Message& msg) const {
  size_t bytes = 0, i = 0;
  for (const auto& field : msg)
    if (i++ >= header_fields_) bytes += field.name_string().size() + field.value().size() + 4;
  return bytes;
}

void Session::OnRequest() {
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

  if (Status st = ParseRequestTarget(&request); !st.ok()) {  // checked in OnHeader; kept for safety
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
  config_->router->DispatchAsync(
      std::move(request),
      [self = shared_from_this(), version, keep_alive, head](HttpRequest&, HttpResponse response) {
        asio::dispatch(self->stream_.get_executor(),
                       [self, version, keep_alive, head, response = std::move(response)]() mutable {
                         self->upload_file_.Remove();  // unless the handler moved it away
                         self->Write(std::move(response), version, keep_alive, head);
                       });
      });
}

void Session::Write(HttpResponse r, unsigned version, bool keep_alive, bool head) {
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

void Session::Linger() {
  boost::system::error_code ec;
  stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
  if (ec) return Close();
  drain_.resize(16 * 1024);
  drained_ = 0;
  stream_.expires_after(kLingerTime);
  Drain();
}

void Session::Drain() {
  stream_.async_read_some(asio::buffer(drain_),
                          [self = shared_from_this()](beast::error_code ec, size_t n) {
                            self->drained_ += n;
                            if (ec || self->drained_ > kLingerMaxBytes) return self->Close();
                            self->Drain();
                          });
}

}  // namespace dnnd::http_internal
