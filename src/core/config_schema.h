// The one list of every configuration section and key dnnd understands.
#pragma once

#include <string>
#include <vector>

namespace dnnd {

// kTableArray: an array of tables ([[worker.placement]]) whose fields are
// the strings named in `choices`, required unless they end in '?'. kFloats: a number or a
// non-empty array of numbers (one per channel), each within [min, max].
enum class ConfigType { kBool, kInt, kFloat, kString, kEnum, kStringArray, kTableArray, kFloats };

struct ConfigKey {
  std::string key;  // "section.name"
  ConfigType type;
  std::string default_value;  // as TOML text: "5", "0.1", "true", "\"idx\"", "[]"
  double min = -1e300, max = 1e300;
  std::vector<std::string> choices;  // kEnum: values; kTableArray: fields
  std::string doc;
};

const std::vector<ConfigKey>& ConfigSchema();
// Sections whose contents another parser validates (e.g. "model").
const std::vector<std::string>& OpaqueSections();

}  // namespace dnnd
