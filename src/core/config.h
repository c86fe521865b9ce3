// Node configuration: one TOML file per node, validated against one schema.
//
// Precedence: built-in defaults < file < environment DNND_SECTION__KEY
// (double underscore separates path parts: DNND_TRAIN__EPOCHS=3) < --set
// section.key=value. Override values are parsed as TOML values (5, 0.1,
// true, [1, 2]) and fall back to strings.
//
// Validation collects every error: unknown sections and keys, wrong types
// (an integer is accepted where a float is expected), out-of-range numbers,
// values outside an enum. Each names where the value came from:
//   configs/x.toml:12:10: train.epochs: -1 is below the minimum 0 (expected integer >= 0)
//   env DNND_TRAIN__EPOCHS: ...        --set train.epochs: ...
// "Opaque" sections ([model]) are kept as raw TOML for their own parser.
//
//   auto cfg = Config::Load("configs/worker-mlp.toml", {"train.epochs=1"}, ProcessEnvironment());
//   if (!cfg) { print(cfg.status()); exit(2); }
//   int64_t epochs = cfg->GetInt("train.epochs");
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace toml {
inline namespace v3 {
class table;
class node;
}  // namespace v3
}  // namespace toml

namespace dnnd {

// "file:line:col" of a parsed TOML node (for parsers of opaque sections).
std::string SourceWhere(const toml::node& node);

// `s` as a TOML basic string, quotes included (for generated configs).
std::string TomlQuote(std::string_view s);

// The DNND_* variables of this process.
std::map<std::string, std::string> ProcessEnvironment();

class Config {
 public:
  static Result<Config> Load(const std::string& path, const std::vector<std::string>& set_overrides,
                             const std::map<std::string, std::string>& env);
  static Result<Config> FromString(std::string_view toml_text, std::string_view source_name,
                                   const std::vector<std::string>& set_overrides = {},
                                   const std::map<std::string, std::string>& env = {});

  // Values of schema keys ("train.epochs"); defaults fill in what was not set.
  // A key not in the schema is a programming error (std::logic_error).
  int64_t GetInt(std::string_view key) const;
  double GetFloat(std::string_view key) const;
  bool GetBool(std::string_view key) const;
  std::string GetString(std::string_view key) const;
  std::vector<std::string> GetStrings(std::string_view key) const;
  // A number-or-array key (ConfigType::kFloats): one value, or the array's.
  std::vector<double> GetFloats(std::string_view key) const;
  // An array of tables (kTableArray), each as field -> value.
  std::vector<std::map<std::string, std::string>> GetTables(std::string_view key) const;
  // True when the key was set by the file, the environment or --set.
  bool Has(std::string_view key) const;
  // "configs/x.toml:3:10", "env DNND_TRAIN__EPOCHS", "--set", or "default".
  std::string Origin(std::string_view key) const;
  // The raw table of an opaque section ("model"), or nullptr if absent.
  const toml::table* Section(std::string_view name) const;
  // The resolved configuration as TOML, each value commented with its origin.
  std::string Dump() const;
  const std::string& path() const { return path_; }

 private:
  Config() = default;
  static Result<Config> Build(std::string_view text, std::string_view source,
                              const std::vector<std::string>& set_overrides,
                              const std::map<std::string, std::string>& env);

  std::string path_;
  std::shared_ptr<toml::table> root_;           // file + overrides + defaults
  std::map<std::string, std::string> origins_;  // for values not from the file
};

}  // namespace dnnd
