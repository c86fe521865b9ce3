// Typed fields of a JSON object (a request body, a worker's report), with
// errors that name the field and, when given, where the object came from:
//
//   JsonFields f{body, "heartbeat"};
//   DNND_ASSIGN_OR_RETURN(int64_t job, f.Int("job"));        // absent: 0
//   DNND_ASSIGN_OR_RETURN(int64_t n, f.Int("epochs", 5, 1, 100000));
//   -> InvalidArgument("heartbeat: field 'job' must be an integer")
//
// A request body is strict: a field the endpoint does not know is an error,
// never silently ignored ({"epoch": 1} must not train the default 5 epochs):
//
//   DNND_RETURN_IF_ERROR(f.RejectUnknown({"model", "dataset", "epochs"}));
//   -> InvalidArgument("unknown field 'epoch' (did you mean 'epochs'?); expected model, ...")
#pragma once

#include <boost/json/object.hpp>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <string>
#include <string_view>

#include "core/status.h"

namespace dnnd {

struct JsonFields {
  const boost::json::object& o;
  std::string where;  // prefixed to errors ("heartbeat: ..."); may be empty

  // An absent field is `def` (or, if `required`, an error); a present one
  // must have the type (and, for Int, lie in [lo, hi]).
  Result<std::string> String(const char* key, std::string def = "", bool required = false) const;
  Result<int64_t> Int(const char* key, int64_t def = 0,
                      int64_t lo = std::numeric_limits<int64_t>::min(),
                      int64_t hi = std::numeric_limits<int64_t>::max()) const;
  Result<double> Number(const char* key, double def = 0) const;
  Result<bool> Bool(const char* key, bool def = false) const;

  // InvalidArgument naming the first field (in the object's order) that is
  // not in `known`, with the nearest known name as a did-you-mean and the
  // known ones listed; Ok when every field is known.
  Status RejectUnknown(std::initializer_list<std::string_view> known) const;

 private:
  Status Error(const char* key, const std::string& what) const;
};

}  // namespace dnnd
