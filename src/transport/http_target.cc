// The request target: ParseRequestTarget (path and query) and
// NormalizeRequestPath (the one canonical spelling the router and the bearer
// guard see). See http.h.
#include <cctype>
#include <string>
#include <string_view>
#include <vector>

#include "transport/http.h"
#include "transport/http_internal.h"

namespace dnnd {

using http_internal::IEquals;
using http_internal::SplitPath;

namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// %XX decoding; '+' means space only in query strings.
bool PercentDecode(std::string_view in, bool plus_is_space, std::string* out) {
  out->clear();
  out->reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) return false;
      const int hi = HexValue(in[i + 1]);
      const int lo = HexValue(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out->push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out->push_back(' ');
    } else {
      out->push_back(c);
    }
  }
  return true;
}

bool IsUnreserved(unsigned char c) {  // RFC 3986 section 2.3
  return std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

std::string HexByte(unsigned char c) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  return std::string{'%', kHex[c >> 4], kHex[c & 15]};
}

}  // namespace

Result<NormalizedPath> NormalizeRequestPath(std::string_view raw) {
  auto refuse = [](const std::string& why) { return InvalidArgument("request path " + why); };
  if (raw.empty() || raw[0] != '/') return refuse("must start with '/'");
  NormalizedPath out;
  const std::vector<std::string_view> raw_segments = SplitPath(raw);
  for (size_t i = 0; i < raw_segments.size(); ++i) {
    const std::string_view seg = raw_segments[i];
    if (seg.empty() && i + 1 < raw_segments.size()) return refuse("has an empty segment ('//')");
    if (seg == "." || seg == "..")
      return refuse("has a dot segment ('" + std::string(seg) + "'); send the resolved path");
    std::string decoded;
    decoded.reserve(seg.size());
    for (size_t j = 0; j < seg.size(); ++j) {
      const unsigned char c = static_cast<unsigned char>(seg[j]);
      if (c < 0x20 || c == 0x7F) return refuse("has a control character " + HexByte(c));
      // Some clients and proxies read '\' as '/': another spelling of a separator.
      if (c == '\\') return refuse("has a '\\' (the only separator is '/')");
      if (c != '%') {
        decoded.push_back(static_cast<char>(c));
        continue;
      }
      const int hi = j + 2 < seg.size() ? HexValue(seg[j + 1]) : -1;
      const int lo = hi >= 0 ? HexValue(seg[j + 2]) : -1;
      if (lo < 0)
        return refuse("has malformed percent-encoding ('" + std::string(seg.substr(j, 3)) + "')");
      const auto v = static_cast<unsigned char>(hi * 16 + lo);
      if (v == '/' || v == '\\')
        return refuse("has an encoded '" + std::string(1, static_cast<char>(v)) + "' (" +
                      HexByte(v) + "): separators may not be percent-encoded");
      if (v < 0x20 || v == 0x7F)
        return refuse("has an encoded control character (" + HexByte(v) + ")");
      if (IsUnreserved(v))
        return refuse("percent-encodes the unreserved character '" +
                      std::string(1, static_cast<char>(v)) + "' (" + HexByte(v) +
                      "); send it as is");
      decoded.push_back(static_cast<char>(v));
      j += 2;
    }
    out.path += "/" + decoded;
    out.segments.push_back(std::move(decoded));
  }
  return out;
}

Status ParseRequestTarget(HttpRequest* request) {
  std::string_view target = request->target;
  // Absolute form ("http://host/path"), which HTTP/1.1 servers must accept.
  for (std::string_view scheme : {"http://", "https://"}) {
    if (target.size() >= scheme.size() && IEquals(target.substr(0, scheme.size()), scheme)) {
      const size_t slash = target.find('/', scheme.size());
      target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
      break;
    }
  }
  if (target.empty() || target[0] != '/')
    return InvalidArgument("request target must be an absolute path");
  const size_t hash = target.find('#');
  if (hash != std::string_view::npos) target = target.substr(0, hash);
  const size_t qmark = target.find('?');
  request->path = std::string(target.substr(0, qmark));
  request->query.clear();
  if (qmark == std::string_view::npos) return Status::Ok();
  std::string_view query = target.substr(qmark + 1);
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) continue;
    const size_t eq = pair.find('=');
    std::string key, value;
    if (!PercentDecode(pair.substr(0, eq), true, &key) ||
        (eq != std::string_view::npos && !PercentDecode(pair.substr(eq + 1), true, &value)))
      return InvalidArgument("malformed percent-encoding in query string");
    request->query.emplace(std::move(key), std::move(value));
  }
  return Status::Ok();
}

}  // namespace dnnd
