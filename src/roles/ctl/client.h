// The HTTP side of `dnnd ctl`: one request per connection to the controller,
// with the bearer token on every request when one is set, and file uploads
// streamed from disk (a dataset file is never read whole into memory).
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace dnnd {

struct CtlReply {
  int status = 0;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  // First header with this name (case-insensitive), or "".
  std::string header(const std::string& name) const;
};

class CtlClient {
 public:
  CtlClient(std::string address, std::string token)
      : address_(std::move(address)), token_(std::move(token)) {}

  // nullopt (after a message on stderr) when the controller cannot be reached.
  std::optional<CtlReply> Request(const std::string& method, const std::string& target,
                                  const std::string& body = "",
                                  const std::string& content_type = "application/json") const;
  // PUTs the file at `path` as the body, read from disk as it is sent.
  std::optional<CtlReply> Upload(const std::string& target, const std::string& path) const;

  const std::string& address() const { return address_; }
  bool has_token() const { return !token_.empty(); }

 private:
  std::string address_, token_;
};

// Exit code for a reply: 0 for 2xx/3xx, 3 for 4xx (refused), 1 for 5xx or no
// reply; prints the controller's error (and, on 401, where a token comes from).
int CheckReply(const std::optional<CtlReply>& reply, const CtlClient& client);

}  // namespace dnnd
