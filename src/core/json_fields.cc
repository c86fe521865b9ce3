#include "core/json_fields.h"

#include <algorithm>
#include <boost/json/value.hpp>
#include <vector>

#include "core/did_you_mean.h"

namespace dnnd {

Status JsonFields::Error(const char* key, const std::string& what) const {
  return InvalidArgument((where.empty() ? "" : where + ": ") + "field '" + key + "' " + what);
}

Result<std::string> JsonFields::String(const char* key, std::string def, bool required) const {
  const boost::json::value* v = o.if_contains(key);
  if (!v) {
    if (required)
      return InvalidArgument((where.empty() ? "" : where + ": ") + "missing field '" + key + "'");
    return def;
  }
  if (!v->is_string()) return Error(key, "must be a string");
  return std::string(v->get_string());
}

Result<int64_t> JsonFields::Int(const char* key, int64_t def, int64_t lo, int64_t hi) const {
  const boost::json::value* v = o.if_contains(key);
  if (!v) return def;
  int64_t x;
  if (v->is_int64())
    x = v->get_int64();
  else if (v->is_uint64() && v->get_uint64() < (1ull << 62))
    x = static_cast<int64_t>(v->get_uint64());
  else
    return Error(key, "must be an integer");
  if (x < lo || x > hi)
    return Error(key, "is " + std::to_string(x) + "; expected " + std::to_string(lo) + ".." +
                          std::to_string(hi));
  return x;
}

Result<double> JsonFields::Number(const char* key, double def) const {
  const boost::json::value* v = o.if_contains(key);
  if (!v) return def;
  if (v->is_double()) return v->get_double();
  if (v->is_int64()) return static_cast<double>(v->get_int64());
  if (v->is_uint64()) return static_cast<double>(v->get_uint64());
  return Error(key, "must be a number");
}

Result<bool> JsonFields::Bool(const char* key, bool def) const {
  const boost::json::value* v = o.if_contains(key);
  if (!v) return def;
  if (!v->is_bool()) return Error(key, "must be true or false");
  return v->get_bool();
}

Status JsonFields::RejectUnknown(std::initializer_list<std::string_view> known) const {
  for (const auto& [key, value] : o) {
    if (std::find(known.begin(), known.end(), std::string_view(key)) != known.end()) continue;
    const std::vector<std::string> names(known.begin(), known.end());
    std::string list;
    for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
    const auto near = DidYouMean(key, names);
    return InvalidArgument((where.empty() ? "" : where + ": ") + "unknown field '" +
                           std::string(key) + "'" +
                           (near ? " (did you mean '" + *near + "'?)" : "") + "; expected " +
                           (list.empty() ? "no fields" : list));
  }
  return Status::Ok();
}

}  // namespace dnnd
