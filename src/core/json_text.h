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

// The shortest text that reads back as exactly `v` (std::to_chars): 0.8582
// where serialize() says 8.582E-1; for a float, 0.001 where printf's %.9g
// says 0.00100000005 and its value widened to double says 0.0010000000474974513.
// Positional unless the exponent is below -4 or above 15 (0.0005, 1e-08), as
// Python's repr; integral values have no decimal point ("5"). `v` must be finite.
std::string ShortestText(double v);
std::string ShortestText(float v);
// The double a person means by a float32 setting (0.001f -> 0.001, not
// 0.0010000000474974513): stored and sent as JSON, it reads back as written.
double DecimalOf(float v);

// Settings as people read them, "epochs = 5, lr = 0.001, mode = sync": each
// number exact in its shortest form, and a double that is exactly a float32
// (a float setting widened, as a model spec's lr is) in the float's
// shortest form -- 0.001, not 0.0010000000474974513. Strings bare; other
// values (arrays, null) as JSON. SettingText is one value of them.
std::string SettingsText(const boost::json::object& settings);
std::string SettingText(const boost::json::value& v);

}  // namespace dnnd
