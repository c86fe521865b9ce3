// Where `dnnd ctl` finds the controller and its bearer token.
//
// Each setting comes from the first of:
//   flag            --controller host:port      --token T   (or http://host:port)
//   environment     DNND_CONTROLLER             DNND_TOKEN
//   the ctl file    controller = "host:port"    token = "T"  or  token_file = "path"
//   default         127.0.0.1:8080              none (requests go without Authorization)
//
// The ctl file is $XDG_CONFIG_HOME/dnnd/ctl.toml, or ~/.config/dnnd/ctl.toml
// when XDG_CONFIG_HOME is unset; a missing file is not an error. A relative
// token_file is relative to the ctl file's directory; its trailing newline is
// trimmed (as for transport.token_file).
#pragma once

#include <functional>
#include <string>

#include "core/status.h"

namespace dnnd {

struct CtlSettings {
  std::string controller;       // "host:port" (an http:// URL given is reduced to this)
  std::string token;            // empty: none
  std::string controller_from;  // "--controller", "env DNND_CONTROLLER", "<file>", "default"
  std::string token_from;       // likewise; "" when there is no token
};

// Looks up an environment variable; nullptr when unset (std::getenv's contract).
using EnvLookup = std::function<const char*(const char*)>;

// The ctl file's path for this environment ("" when neither XDG_CONFIG_HOME
// nor HOME is set).
std::string CtlFilePath(const EnvLookup& env);

// The controller's address as host:port from what a user gives: host:port
// or an http:// URL (http://host:port, a trailing "/", http://host for
// port 80). Anything else is InvalidArgument saying why (https, a path, no
// port, a port outside 1..65535).
Result<std::string> ControllerAddress(std::string text);

// Resolves both settings; the controller's address through ControllerAddress. Errors (an unreadable
// or malformed ctl file, an unknown key, token and token_file both set, an empty token file) name
// the file and, for TOML errors, the line and column.
Result<CtlSettings> ResolveCtlSettings(const std::string& flag_controller,
                                       const std::string& flag_token, const EnvLookup& env);

}  // namespace dnnd
