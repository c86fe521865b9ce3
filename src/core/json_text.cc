#include "core/json_text.h"

#include <boost/json.hpp>

#include <charconv>
#include <cmath>

namespace dnnd {
namespace {

bool IsFlatNumbers(const boost::json::array& a) {
  for (const auto& e : a)
    if (!e.is_number()) return false;
  return true;
}

void Write(const boost::json::value& v, int indent, std::string& out) {
  const std::string pad(static_cast<size_t>(indent) + 2, ' ');
  if (v.is_object() && !v.as_object().empty()) {
    out += "{\n";
    size_t i = 0;
    for (const auto& [key, value] : v.as_object()) {
      out += pad + boost::json::serialize(boost::json::value(key)) + ": ";
      Write(value, indent + 2, out);
      out += ++i < v.as_object().size() ? ",\n" : "\n";
    }
    out += std::string(static_cast<size_t>(indent), ' ') + "}";
  } else if (v.is_array() && !v.as_array().empty() && !IsFlatNumbers(v.as_array())) {
    out += "[\n";
    size_t i = 0;
    for (const auto& e : v.as_array()) {
      out += pad;
      Write(e, indent + 2, out);
      out += ++i < v.as_array().size() ? ",\n" : "\n";
    }
    out += std::string(static_cast<size_t>(indent), ' ') + "]";
  } else if (v.is_array()) {  // empty, or numbers only: one line
    out += "[";
    for (const auto& e : v.as_array()) {
      if (&e != v.as_array().begin()) out += ", ";
      Write(e, indent, out);
    }
    out += "]";
  } else if (v.is_double() && std::isfinite(v.as_double())) {
    // Shortest text that reads back exactly: 0.8582, where serialize() says 8.582E-1.
    char buf[64];
    auto r = std::to_chars(buf, buf + sizeof buf, v.as_double());
    out.append(buf, r.ptr);
  } else {
    out += boost::json::serialize(v);
  }
}

}  // namespace

std::string PrettyJson(const boost::json::value& v) {
  std::string out;
  Write(v, 0, out);
  out += "\n";
  return out;
}

}  // namespace dnnd
