// One HTTP connection of HttpServer (http.h): reads a request (line and
// headers first, so the router can refuse it before any body is read),
// streams or buffers its body under the limits of HttpServerOptions, hands it
// to the router and writes the answer, then reads the next while the
// connection is kept alive. Internal to src/transport (http.cc creates and
// closes sessions; Beast types are fine here, unlike in http.h).
//
// Threading: all of a session's handlers run on its own strand; Run() and
// Close() are posted or dispatched there (Close() must run on it). Errors a
// client causes are answered (400, 408, 413, 431, ...) and close the
// connection; they never leave the session.
#pragma once

#include <unistd.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "transport/http.h"

namespace dnnd::http_internal {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

// "127.0.0.1:8080", "[::1]:8080".
inline std::string EndpointString(const tcp::endpoint& ep) {
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
  Session(tcp::socket socket, std::shared_ptr<const SessionConfig> config);

  asio::any_io_executor executor() { return stream_.get_executor(); }

  void Run();

  // On the strand. Idempotent.
  void Close();

 private:
  const HttpServerOptions& options() const { return config_->options; }

  void ReadHeader();

  // The request deadline (HttpServerOptions::request_timeout): from when the
  // server starts waiting for a request until its last body byte, extended
  // by the body bytes received at min_body_bytes_per_second. A timer on the
  // strand; on expiry it cancels the pending read, and OnReadError answers 408.
  std::chrono::steady_clock::time_point Deadline() const;

  void ArmDeadline();

  void WaitForDeadline();

  // The request is in (or the session ends): a late expiry must not cancel the response.
  void DisarmDeadline();

  // The request line and headers as an HttpRequest (no body yet).
  template <class Message>
  HttpRequest Head(const Message& msg) const;

  void OnHeader(beast::error_code ec);

  bool parser_done() const { return upload_ ? upload_->is_done() : parser_->is_done(); }

  // Moves the parser onto a file body in a fresh temporary file of
  // `upload.dir`; false (after answering 500) if the file cannot be created.
  bool StartUpload(const HttpUploadOptions& upload);

  void ReadBody();

  // A body is read piece by piece, each under the read timeout (silence);
  // the request deadline, which grows with the bytes received, bounds the
  // whole, so a large file at a sane rate passes and a drip does not.
  template <class Parser>
  void ReadBodyPiece(Parser& parser);

  void BodyTooLarge();

  void HeaderTooLarge(const std::string& what);

  void OnReadError(beast::error_code ec);

  // Answers a request the router never saw, then closes: after a framing
  // error the rest of the byte stream cannot be trusted.
  void ProtocolError(int status, std::string code, std::string message);

  // Bytes of the trailer fields (those after the header's), counted like header lines.
  template <class Message>
  size_t TrailerBytes(const Message& msg) const;

  void OnRequest();

  void Write(HttpResponse r, unsigned version, bool keep_alive, bool head);

  // Half-close, then read and discard until the client closes (see kLingerTime).
  void Linger();

  void Drain();

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

}  // namespace dnnd::http_internal
