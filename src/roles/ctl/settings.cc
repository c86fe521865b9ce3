#include "roles/ctl/settings.h"

#include <sys/stat.h>
#include <toml++/toml.h>

#include <cstdio>
#include <filesystem>

#include "core/files.h"
#include "core/toml_guard.h"

namespace dnnd {
namespace {

std::string Where(const std::string& path, const toml::node& node) {
  return path + ":" + std::to_string(node.source().begin.line) + ":" +
         std::to_string(node.source().begin.column);
}

struct CtlFile {
  std::string controller, token;
};

// The ctl file's settings; both empty when the file does not exist.
Result<CtlFile> ReadCtlFile(const std::string& path) {
  CtlFile out;
  std::error_code ec;
  if (path.empty() || !std::filesystem::exists(path, ec)) return out;
  DNND_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path, kMaxConfigBytes));
  DNND_RETURN_IF_ERROR(GuardToml(text, path));
  toml::table t;
  try {
    t = toml::parse(text, path);
  } catch (const toml::parse_error& e) {
    return InvalidArgument(path + ":" + std::to_string(e.source().begin.line) + ":" +
                           std::to_string(e.source().begin.column) + ": " +
                           std::string(e.description()));
  }
  std::string token_file;
  for (const auto& [key, node] : t) {
    const std::string k(key.str());
    if (k != "controller" && k != "token" && k != "token_file")
      return InvalidArgument(Where(path, node) + ": unknown key '" + k +
                             "' (expected controller, token, token_file)");
    if (!node.is_string())
      return InvalidArgument(Where(path, node) + ": '" + k + "' must be a string");
    const std::string v = std::string(*node.value<std::string>());
    (k == "controller" ? out.controller : k == "token" ? out.token : token_file) = v;
  }
  if (!out.token.empty() && !token_file.empty())
    return InvalidArgument(path + ": set token or token_file, not both");
  if (!out.token.empty()) {
    // A secret in a file others can read is no secret; say so, once per run.
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && (st.st_mode & 077) != 0)
      std::fprintf(
          stderr,
          "dnnd ctl: warning: %s holds a token and is readable by other users (chmod 600 it)\n",
          path.c_str());
  }
  if (!token_file.empty()) {
    std::filesystem::path p(token_file);
    if (p.is_relative()) p = std::filesystem::path(path).parent_path() / p;
    auto token = ReadFileToString(p.string(), 1 << 16);
    if (!token.ok()) return token.status().WithContext(path + ": token_file");
    out.token = std::move(token).value();
    while (!out.token.empty() && (out.token.back() == '\n' || out.token.back() == '\r'))
      out.token.pop_back();
    if (out.token.empty())
      return InvalidArgument(path + ": token_file " + p.string() + " is empty");
  }
  return out;
}

}  // namespace

Result<std::string> ControllerAddress(std::string text) {
  const std::string given = text;
  auto refuse = [&](const std::string& why) {
    return InvalidArgument("the controller address '" + given + "' " + why +
                           "; expected host:port or http://host:port");
  };
  bool url = false;
  if (const size_t scheme = text.find("://"); scheme != std::string::npos) {
    std::string name = text.substr(0, scheme);
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (name != "http")
      return refuse(name == "https"
                        ? "uses https, which dnnd ctl does not speak (the API is plain HTTP)"
                        : "has the scheme '" + name + "'");
    text = text.substr(scheme + 3);
    url = true;
    if (!text.empty() && text.back() == '/') text.pop_back();
  }
  if (text.find('/') != std::string::npos) return refuse("has a path");
  if (text.find('@') != std::string::npos) return refuse("has credentials (use --token)");
  const size_t colon = text.rfind(':');
  const bool bracketed_v6 = !text.empty() && text.back() == ']';
  if (colon == std::string::npos || bracketed_v6) {
    if (!url) return refuse("has no port");
    text += ":80";  // http://host
  }
  const size_t port_at = text.rfind(':') + 1;
  const std::string host = text.substr(0, port_at - 1), port = text.substr(port_at);
  if (host.empty()) return refuse("has no host");
  if (port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string::npos || std::stoi(port) < 1 ||
      std::stoi(port) > 65535)
    return refuse("has no valid port (1..65535)");
  return text;
}

std::string CtlFilePath(const EnvLookup& env) {
  const char* xdg = env("XDG_CONFIG_HOME");
  if (xdg && *xdg) return std::string(xdg) + "/dnnd/ctl.toml";
  const char* home = env("HOME");
  if (home && *home) return std::string(home) + "/.config/dnnd/ctl.toml";
  return "";
}

Result<CtlSettings> ResolveCtlSettings(const std::string& flag_controller,
                                       const std::string& flag_token, const EnvLookup& env) {
  const std::string path = CtlFilePath(env);
  DNND_ASSIGN_OR_RETURN(CtlFile file, ReadCtlFile(path));
  // The first non-empty of flag, environment, file.
  auto pick = [&](const std::string& flag, const char* flag_name, const char* var,
                  const std::string& from_file, std::string* value, std::string* from) {
    const char* e = env(var);
    if (!flag.empty())
      *value = flag, *from = flag_name;
    else if (e && *e)
      *value = e, *from = std::string("env ") + var;
    else if (!from_file.empty())
      *value = from_file, *from = path;
  };
  CtlSettings s;
  pick(flag_controller, "--controller", "DNND_CONTROLLER", file.controller, &s.controller,
       &s.controller_from);
  pick(flag_token, "--token", "DNND_TOKEN", file.token, &s.token, &s.token_from);
  if (s.controller.empty()) s.controller = "127.0.0.1:8080", s.controller_from = "default";
  auto address = ControllerAddress(s.controller);
  if (!address.ok()) return address.status().WithContext(s.controller_from);
  s.controller = *address;
  return s;
}

}  // namespace dnnd
