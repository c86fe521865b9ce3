#include "core/json_text.h"

#include <boost/json.hpp>
#include <charconv>
#include <cmath>
#include <string_view>

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
    out += ShortestText(v.as_double());
  } else {
    out += boost::json::serialize(v);
  }
}

}  // namespace

namespace {

// Like Python's repr: the shortest digits that read back exactly, positional
// (0.0005, 1234.5) unless the exponent is below -4 or above 15 (1e-08, 1e+20).
template <class T>
std::string Shortest(T v) {
  char buf[64];
  const auto sci = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  const std::string_view s(buf, static_cast<size_t>(sci.ptr - buf));
  int exponent = 0;
  const size_t e = s.find('e') + 1;
  std::from_chars(s.data() + e + (s[e] == '+'), s.data() + s.size(), exponent);
  if (exponent < -4 || exponent > 15) return std::string(s);
  const auto fixed = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed);
  return std::string(buf, fixed.ptr);
}

}  // namespace

std::string ShortestText(double v) { return Shortest(v); }
std::string ShortestText(float v) { return Shortest(v); }

std::string SettingText(const boost::json::value& v) {
  if (v.is_string()) return std::string(v.get_string());
  if (v.is_int64()) return std::to_string(v.get_int64());
  if (v.is_uint64()) return std::to_string(v.get_uint64());
  if (!v.is_double() || !std::isfinite(v.get_double())) return boost::json::serialize(v);
  const double d = v.get_double();
  const float f = static_cast<float>(d);
  return static_cast<double>(f) == d ? ShortestText(f) : ShortestText(d);
}

std::string SettingsText(const boost::json::object& settings) {
  std::string out;
  for (const auto& [key, value] : settings)
    out += (out.empty() ? "" : ", ") + std::string(key) + " = " + SettingText(value);
  return out;
}

std::string PrettyJson(const boost::json::value& v) {
  std::string out;
  Write(v, 0, out);
  out += "\n";
  return out;
}

double DecimalOf(float v) { return std::stod(ShortestText(v)); }

}  // namespace dnnd
