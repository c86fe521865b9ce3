// The HELLO handshake (docs/wire.md, "Handshake"): each side proves it holds
// the shared token with an HMAC over both sides' fresh nonces, so the token
// never crosses the network and a recorded handshake cannot be replayed.
// Pure functions over Messages, so the socket code and the fuzzer share them.
#pragma once

#include <string>
#include <string_view>

#include "core/status.h"
#include "transport/wire.h"

namespace dnnd {
class Config;
}

namespace dnnd::wire {

inline constexpr size_t kNonceBytes = 32;

struct PeerIdentity {
  std::string role;  // "parameter-server", "worker", ...
  std::string node;  // node name from config
};

// The shared token: the contents of transport.token_file (trailing newline
// trimmed, as Kubernetes and Swarm secrets often carry one) or transport.token.
Result<std::string> LoadTransportToken(const Config& config);

// 32 bytes from the OS's CSPRNG.
std::string RandomNonce();
// HMAC-SHA256 (OpenSSL); 32 raw bytes.
std::string HmacSha256(std::string_view key, std::string_view data);

// Step 1, server -> client.
Message MakeHello(const PeerIdentity& server, const std::string& server_nonce);
// Step 2, client: checks the server's HELLO and answers it. `client_nonce` is
// fresh and kept for step 4.
Result<Message> MakeHelloAuth(const Message& hello, const PeerIdentity& client,
                              std::string_view token, const std::string& client_nonce);
// Step 3, server: checks the client's proof; on success returns who the
// client says it is and fills `response` with the server's proof. Errors say
// which check failed (version, missing field, bad proof), naming the peer.
Result<PeerIdentity> VerifyHelloAuth(const Message& auth, const PeerIdentity& server,
                                     std::string_view token, const std::string& server_nonce,
                                     Message* response);
// Step 4, client: checks the server's proof (or surfaces its error frame).
Result<PeerIdentity> VerifyHelloResponse(const Message& response, std::string_view token,
                                         const std::string& client_nonce,
                                         const std::string& server_nonce);

}  // namespace dnnd::wire
