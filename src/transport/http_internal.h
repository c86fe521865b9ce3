// Internals shared by the pieces of the HTTP server (http*.cc, see http.h):
// the log component and the helpers that both the request-target parser
// (http_target.cc) and the router (http_router.cc) or the session
// (http_session.cc) use. Not an API: nothing outside src/transport includes
// it. Pure functions; thread-safe; no errors.
#pragma once

#include <algorithm>
#include <cctype>
#include <string>
#include <string_view>
#include <vector>

namespace dnnd::http_internal {

inline constexpr std::string_view kComponent = "http";

inline bool IEquals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

// "/a/b" -> {"a", "b"}; "/" -> {""}; "/a/" -> {"a", ""}.
inline std::vector<std::string_view> SplitPath(std::string_view path) {
  std::vector<std::string_view> out;
  if (!path.empty() && path[0] == '/') path.remove_prefix(1);
  size_t start = 0;
  for (;;) {
    const size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) {
      out.push_back(path.substr(start));
      return out;
    }
    out.push_back(path.substr(start, slash - start));
    start = slash + 1;
  }
}

}  // namespace dnnd::http_internal
