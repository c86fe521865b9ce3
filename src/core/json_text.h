// JSON as text people read: the splitter's manifest and the aggregator's
// report are opened in editors and diffed, so they are indented rather than
// Boost.JSON's one-line serialize(). Short arrays of numbers (a label
// histogram, a shape) stay on one line.
#pragma once

#include <boost/json/value.hpp>

#include <string>

namespace dnnd {

// Indented by two spaces, keys in insertion order, a trailing newline.
std::string PrettyJson(const boost::json::value& v);

}  // namespace dnnd
