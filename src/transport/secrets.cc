#include "transport/secrets.h"

#include "core/config.h"
#include "core/files.h"
#include "core/log.h"
#include "core/sha256.h"
#include "transport/connection.h"
#include "transport/hello.h"

namespace dnnd::wire {
namespace {

constexpr std::string_view kApiTokenLabel = "dnnd api token v1";

}  // namespace

Result<std::string> LoadSecretSetting(const Config& config, std::string_view section_name) {
  const std::string section(section_name);
  const std::string file = config.GetString(section + ".token_file");
  if (file.empty()) return config.GetString(section + ".token");
  auto token = ReadFileToString(file, 1 << 16);
  if (!token.ok()) return token.status().WithContext(section + ".token_file");
  std::string t = std::move(token).value();
  while (!t.empty() && (t.back() == '\n' || t.back() == '\r')) t.pop_back();
  if (t.empty()) return InvalidArgument(section + ".token_file " + file + " is empty");
  return t;
}

std::string DeriveApiToken(std::string_view wire_key) {
  if (wire_key.empty()) return "";
  return LowerHex(HmacSha256(wire_key, kApiTokenLabel));
}

Result<Secrets> LoadSecrets(const Config& config) {
  Secrets s;
  DNND_ASSIGN_OR_RETURN(s.wire_key, LoadSecretSetting(config, "transport"));
  DNND_ASSIGN_OR_RETURN(s.api_token, LoadSecretSetting(config, "http"));
  if (s.api_token.empty()) {
    s.api_token = DeriveApiToken(s.wire_key);
    s.api_token_derived = !s.api_token.empty();
  } else if (s.api_token == s.wire_key) {
    // The bearer token crosses the network in clear; the wire key must not.
    return InvalidArgument(
        "http.token is the same secret as transport.token: the API token travels in every request, "
        "the wire key "
        "must never; leave http.token unset (it is then derived from the wire key) or use another "
        "secret");
  }
  return s;
}

bool IsLoopbackListen(std::string_view listen) {
  auto hp = rpc::SplitHostPort(std::string(listen));
  if (!hp.ok()) return false;
  const std::string& host = hp.value().first;
  return host.rfind("127.", 0) == 0 || host == "::1" || host == "localhost";
}

Status CheckListenSecurity(const Config& config, std::string_view listen, std::string_view what,
                           bool secret_set) {
  if (secret_set || IsLoopbackListen(listen)) return Status::Ok();
  if (!config.GetBool("transport.insecure"))
    return PermissionDenied(
        std::string(what) + " = \"" + std::string(listen) +
        "\" accepts peers beyond this host but no token is set: any peer that can connect would "
        "be trusted. Set transport.token_file (or env DNND_TRANSPORT__TOKEN), listen on "
        "127.0.0.1, or set transport.insecure = true to run open on purpose");
  Log(LogLevel::kWarn, "security",
      "listening beyond loopback WITHOUT a token (transport.insecure = true)",
      {{"setting", std::string(what)}, {"listen", std::string(listen)}});
  return Status::Ok();
}

}  // namespace dnnd::wire
