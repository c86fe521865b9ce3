// The two secrets of a dnnd cluster, and the rule about listening without
// them (docs/security.md).
//
//  - The wire key (transport.token / transport.token_file) is proven in the
//    wire protocol's HELLO handshake by an HMAC over fresh nonces; it never
//    crosses the network, in any protocol.
//  - The API token (http.token / http.token_file) is the controller's HTTP
//    bearer token. It does cross the network (every mutating request and
//    every pool heartbeat carries it), so it must not be the wire key. When it
//    is not set, it is derived from the wire key by a one-way function
//    (HMAC-SHA256 with a fixed label, hex): nodes that hold the wire key
//    compute it, while a captured bearer token reveals nothing about the key.
//    `dnnd api-token --config <file>` prints it for ctl users.
//
// Pure functions of a validated Config; thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "core/status.h"

namespace dnnd {
class Config;
}

namespace dnnd::wire {

struct Secrets {
  std::string wire_key;   // empty: the wire handshake proves nothing
  std::string api_token;  // empty: the API checks nothing
  bool api_token_derived = false;
};

// One secret setting pair: <section>.token_file (read, a trailing newline
// trimmed, as Kubernetes and Swarm secrets often carry one) or else
// <section>.token. Errors name the setting.
Result<std::string> LoadSecretSetting(const Config& config, std::string_view section);

// Reads transport.token(_file) and http.token(_file). Errors name the setting
// (an unreadable or empty file, an API token equal to the wire key).
Result<Secrets> LoadSecrets(const Config& config);

// hex(HMAC-SHA256(wire_key, "dnnd api token v1")); "" for an empty key.
std::string DeriveApiToken(std::string_view wire_key);

// True when a listen address ("host:port") is reachable only from this host:
// 127.0.0.0/8, ::1, localhost.
bool IsLoopbackListen(std::string_view listen);

// The rule for a socket that will accept peers: listening beyond loopback
// with no secret (`secret_set` false) is refused, naming `what` (the listen
// setting) and how to fix it, unless transport.insecure is true (then it is
// logged as a warning once per listener).
Status CheckListenSecurity(const Config& config, std::string_view listen, std::string_view what,
                           bool secret_set);

}  // namespace dnnd::wire
