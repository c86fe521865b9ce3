// Typed fields of a JSON object (a request body, a worker's report), with
// errors that name the field and, when given, where the object came from:
//
//   JsonFields f{body, "heartbeat"};
//   DNND_ASSIGN_OR_RETURN(int64_t job, f.Int("job"));        // absent: 0
//   DNND_ASSIGN_OR_RETURN(int64_t n, f.Int("epochs", 5, 1, 100000));
//   -> InvalidArgument("heartbeat: field 'job' must be an integer")
#pragma once

#include <boost/json/object.hpp>
#include <cstdint>
#include <limits>
#include <string>

#include "core/status.h"

namespace dnnd {

struct JsonFields {
  const boost::json::object& o;
  std::string where;  // prefixed to errors ("heartbeat: ..."); may be empty

  // An absent field is `def` (or, if `required`, an error); a present one
  // must have the type (and, for Int, lie in [lo, hi]).
  Result<std::string> String(const char* key, std::string def = "", bool required = false) const;
  Result<int64_t> Int(const char* key, int64_t def = 0, int64_t lo = std::numeric_limits<int64_t>::min(),
                      int64_t hi = std::numeric_limits<int64_t>::max()) const;
  Result<double> Number(const char* key, double def = 0) const;
  Result<bool> Bool(const char* key, bool def = false) const;

 private:
  Status Error(const char* key, const std::string& what) const;
};

}  // namespace dnnd
