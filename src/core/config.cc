#include "core/config.h"

#include <toml++/toml.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <stdexcept>
#include <tuple>

#include "core/config_schema.h"
#include "core/did_you_mean.h"
#include "core/files.h"
#include "core/toml_guard.h"

extern char** environ;

namespace dnnd {

std::string TomlQuote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned char>(c));
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}
namespace {

const char* TypeName(const ConfigKey& k) {
  switch (k.type) {
    case ConfigType::kBool:
      return "true or false";
    case ConfigType::kInt:
      return "integer";
    case ConfigType::kFloat:
      return "number";
    case ConfigType::kString:
      return "string";
    case ConfigType::kEnum:
      return "one of";
    case ConfigType::kStringArray:
      return "array of strings";
    case ConfigType::kTableArray:
      return "array of tables with string fields";
    case ConfigType::kFloats:
      return "number or array of numbers";
  }
  return "?";
}

std::string Expected(const ConfigKey& k) {
  std::string s = TypeName(k);
  if (k.type == ConfigType::kEnum || k.type == ConfigType::kTableArray) {
    // An enum may allow "" for "not chosen" (node.role); the list names the choices.
    const char* sep = " ";
    for (const auto& c : k.choices) {
      if (c.empty()) continue;
      s += sep + (c.back() == '?' ? c.substr(0, c.size() - 1) + " (optional)" : c);
      sep = ", ";
    }
  } else if ((k.type == ConfigType::kInt || k.type == ConfigType::kFloat ||
              k.type == ConfigType::kFloats) &&
             (k.min > -1e299 || k.max < 1e299)) {
    std::ostringstream o;
    o << " in [" << k.min << ", " << k.max << "]";
    s += o.str();
  }
  return s;
}

const ConfigKey* FindKey(std::string_view key) {
  for (const auto& k : ConfigSchema())
    if (k.key == key) return &k;
  return nullptr;
}

bool IsOpaque(std::string_view section) {
  for (const auto& s : OpaqueSections())
    if (s == section) return true;
  return false;
}

std::vector<std::string> SplitDots(std::string_view key) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (;;) {
    size_t dot = key.find('.', start);
    parts.emplace_back(key.substr(start, dot == key.npos ? key.npos : dot - start));
    if (dot == key.npos) break;
    start = dot + 1;
  }
  return parts;
}

// Parses an override's value as a TOML value, or takes it as a string; the
// value is the table's one entry "v".
toml::table ParseValue(const std::string& text) {
  // Guard the document toml++ will see: the bare text "[...]" would look like
  // a table header to the guard, and arrays are values here.
  const std::string doc = "v = " + text;
  if (GuardToml(doc, "override").ok()) {
    try {
      toml::table t = toml::parse(doc, std::string_view("override"));
      if (t.size() == 1 && t.get("v")) return t;
    } catch (const toml::parse_error&) {
    }
  }
  return toml::table{{"v", text}};
}

// Sets `dotted` in `root` (creating tables), returning an error message if a
// non-table is in the way.
std::string SetPath(toml::table& root, std::string_view dotted, toml::table holder) {
  std::vector<std::string> parts = SplitDots(dotted);
  for (const auto& p : parts)
    if (p.empty()) return "empty key part in '" + std::string(dotted) + "'";
  toml::table* t = &root;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    toml::node* n = t->get(parts[i]);
    if (!n) {
      t->insert(parts[i], toml::table{});
      n = t->get(parts[i]);
    }
    if (!n->is_table()) return "'" + parts[i] + "' is not a table";
    t = n->as_table();
  }
  t->insert_or_assign(parts.back(), std::move(*holder.get("v")));
  return "";
}

// One validation error and where its value came from: the file (sorted by
// line and column), then the environment and --set in the order given.
struct Problem {
  int layer = 0;  // 0 file, 1 env, 2 --set
  uint32_t line = 0, column = 0;
  size_t order = 0;  // of the override, for layers 1 and 2
  std::string text;  // "where: what"
};

// Where the value of `key` (node `n`) came from. A value set by env or
// --set has its origin; a file value its position; a table that an override
// created has no position of its own, so it takes the origin of the first
// override beneath it (--set rpc.listen=x creates [rpc]).
Problem Locate(const toml::node& n, const std::map<std::string, std::string>& origins,
               const std::map<std::string, size_t>& order, const std::string& key) {
  auto it = origins.find(key);
  if (it == origins.end() && n.source().begin.line == 0) {
    it = origins.lower_bound(key + ".");
    if (it != origins.end() && it->first.rfind(key + ".", 0) != 0) it = origins.end();
  }
  Problem p;
  if (it != origins.end()) {
    p.layer = it->second.rfind("env ", 0) == 0 ? 1 : 2;
    auto o = order.find(it->first);
    p.order = o == order.end() ? 0 : o->second;
    p.text = it->second;
  } else {
    p.line = n.source().begin.line;
    p.column = n.source().begin.column;
    p.text = SourceWhere(n);
  }
  return p;
}

std::string Suggest(std::string_view word, const std::vector<std::string>& candidates,
                    std::string_view prefix = "", std::string_view suffix = "") {
  auto best = DidYouMean(word, candidates);
  if (!best) return "";
  return "; did you mean " + std::string(prefix) + *best + std::string(suffix) + "?";
}

// The schema's sections (opaque ones included), in schema order.
std::vector<std::string> SectionNames() {
  std::vector<std::string> names;
  for (const auto& k : ConfigSchema()) {
    std::string s = k.key.substr(0, k.key.find('.'));
    if (std::find(names.begin(), names.end(), s) == names.end()) names.push_back(s);
  }
  for (const auto& s : OpaqueSections()) names.push_back(s);
  return names;
}

// The key names of `section` in the schema ("epochs", "batch_size", ...).
std::vector<std::string> KeyNames(const std::string& section) {
  std::vector<std::string> names;
  for (const auto& k : ConfigSchema())
    if (k.key.rfind(section + ".", 0) == 0) names.push_back(k.key.substr(section.size() + 1));
  return names;
}

// Why `section` is not a section, and what might have been meant: a near-miss
// section, or, for a bare top-level value (role = "worker"), the keys of that
// name in sections.
std::string UnknownSection(const std::string& section, const toml::node& n) {
  if (!n.is_table()) {
    std::string keys;
    for (const auto& k : ConfigSchema())
      if (k.key.substr(k.key.find('.') + 1) == section)
        keys += (keys.empty() ? "" : " or ") + k.key;
    return "unknown top-level key '" + section + "' (every key is in a section)" +
           (keys.empty() ? Suggest(section, SectionNames(), "[", "]")
                         : "; did you mean " + keys + "?");
  }
  std::string what = "unknown section [" + section + "]";
  auto near = DidYouMean(section, SectionNames());
  if (!near) return what;
  // --set trian.epochs=3 (a table no file line made): name the key meant.
  const toml::table& t = *n.as_table();
  if (n.source().begin.line == 0 && t.size() == 1) {
    const std::string key(t.begin()->first.str());
    const std::vector<std::string> keys = KeyNames(*near);
    if (std::find(keys.begin(), keys.end(), key) != keys.end())
      return what + "; did you mean " + *near + "." + key + "?";
  }
  return what + "; did you mean [" + *near + "]?";
}

// Checks one value against its schema entry; returns "" or the problem.
std::string CheckValue(const ConfigKey& k, const toml::node& n) {
  switch (k.type) {
    case ConfigType::kBool:
      return n.is_boolean() ? "" : "expected " + Expected(k);
    case ConfigType::kInt: {
      if (!n.is_integer()) return "expected " + Expected(k);
      const auto v = *n.value<int64_t>();
      if (v < k.min)
        return std::to_string(v) + " is below the minimum (expected " + Expected(k) + ")";
      if (v > k.max)
        return std::to_string(v) + " is above the maximum (expected " + Expected(k) + ")";
      return "";
    }
    case ConfigType::kFloat: {
      if (!n.is_number()) return "expected " + Expected(k);
      const double v = *n.value<double>();
      std::ostringstream o;
      o << v;
      if (!std::isfinite(v) || v < k.min || v > k.max)
        return o.str() + " is out of range (expected " + Expected(k) + ")";
      return "";
    }
    case ConfigType::kFloats: {
      std::vector<const toml::node*> values;
      if (const toml::array* a = n.as_array()) {
        if (a->empty()) return "an empty array (expected " + Expected(k) + ")";
        for (const auto& e : *a) values.push_back(&e);
      } else {
        values.push_back(&n);
      }
      for (const toml::node* e : values) {
        if (!e->is_number()) return "expected " + Expected(k);
        const double v = *e->value<double>();
        std::ostringstream o;
        o << v;
        if (!std::isfinite(v) || v < k.min || v > k.max)
          return o.str() + " is out of range (expected " + Expected(k) + ")";
      }
      return "";
    }
    case ConfigType::kString:
      return n.is_string() ? "" : "expected " + Expected(k);
    case ConfigType::kEnum: {
      if (!n.is_string()) return "expected " + Expected(k);
      const std::string v = *n.value<std::string>();
      for (const auto& c : k.choices)
        if (c == v) return "";
      return "'" + v + "' is not allowed" + Suggest(v, k.choices, "'", "'") + " (expected " +
             Expected(k) + ")";
    }
    case ConfigType::kStringArray: {
      const toml::array* a = n.as_array();
      if (!a) return "expected " + Expected(k);
      for (const auto& e : *a)
        if (!e.is_string()) return "expected " + Expected(k);
      return "";
    }
    case ConfigType::kTableArray: {
      const toml::array* a = n.as_array();
      if (!a) return "expected " + Expected(k);
      for (size_t i = 0; i < a->size(); ++i) {
        const toml::table* t = (*a)[i].as_table();
        const std::string at = "entry " + std::to_string(i + 1) + " (" + SourceWhere((*a)[i]) + ")";
        if (!t) return at + ": expected a table with " + Expected(k);
        for (const auto& [key, v] : *t) {
          const std::string field(key.str());
          if (std::find(k.choices.begin(), k.choices.end(), field) == k.choices.end() &&
              std::find(k.choices.begin(), k.choices.end(), field + "?") == k.choices.end())
            return at + ": unknown field '" + std::string(key.str()) + "' (expected " +
                   Expected(k) + ")";
          if (!v.is_string())
            return at + ": field '" + std::string(key.str()) + "' must be a string";
        }
        for (const auto& field : k.choices)  // "name?": optional
          if (field.back() != '?' && !t->contains(field))
            return at + ": missing field '" + field + "'";
      }
      return "";
    }
  }
  return "";
}

}  // namespace

std::string SourceWhere(const toml::node& node) {
  const auto& src = node.source();
  const std::string file = src.path ? *src.path : std::string("<config>");
  return file + ":" + std::to_string(src.begin.line) + ":" + std::to_string(src.begin.column);
}

std::map<std::string, std::string> ProcessEnvironment() {
  std::map<std::string, std::string> env;
  for (char** e = environ; e && *e; ++e) {
    std::string_view kv(*e);
    if (kv.rfind("DNND_", 0) != 0) continue;
    size_t eq = kv.find('=');
    if (eq == kv.npos) continue;
    env.emplace(kv.substr(0, eq), kv.substr(eq + 1));
  }
  return env;
}

Result<Config> Config::Load(const std::string& path, const std::vector<std::string>& set_overrides,
                            const std::map<std::string, std::string>& env) {
  auto text = ReadFileToString(path, kMaxConfigBytes);
  if (!text) {
    if (text.status().code() == StatusCode::kResourceExhausted)
      return InvalidArgument(path + ": larger than the " + std::to_string(kMaxConfigBytes) +
                             "-byte limit for config files");
    return text.status();
  }
  return Build(*text, path, set_overrides, env);
}

Result<Config> Config::FromString(std::string_view text, std::string_view source,
                                  const std::vector<std::string>& set_overrides,
                                  const std::map<std::string, std::string>& env) {
  return Build(text, source, set_overrides, env);
}

Result<Config> Config::Build(std::string_view text, std::string_view source,
                             const std::vector<std::string>& set_overrides,
                             const std::map<std::string, std::string>& env) {
  DNND_RETURN_IF_ERROR(GuardToml(text, source));
  Config cfg;
  cfg.path_ = std::string(source);
  cfg.root_ = std::make_shared<toml::table>();
  try {
    *cfg.root_ = toml::parse(text, std::string(source));
  } catch (const toml::parse_error& e) {
    const auto& b = e.source().begin;
    return InvalidArgument(std::string(source) + ":" + std::to_string(b.line) + ":" +
                           std::to_string(b.column) + ": " + std::string(e.description()));
  }
  std::vector<Problem> errors;
  std::map<std::string, size_t> order;  // override key -> its place among the overrides
  size_t overrides = 0;
  auto override_error = [&](int layer, std::string text) {
    errors.push_back({layer, 0, 0, overrides++, std::move(text)});
  };
  // Environment, then --set: later layers win.
  for (const auto& [name, value] : env) {
    if (name.rfind("DNND_", 0) != 0 || name.find("__") == std::string::npos) continue;
    std::string key;
    for (size_t i = 5; i < name.size(); ++i) {
      if (name.compare(i, 2, "__") == 0) {
        key += '.';
        ++i;
      } else {
        key += static_cast<char>(std::tolower(static_cast<unsigned char>(name[i])));
      }
    }
    std::string err = SetPath(*cfg.root_, key, ParseValue(value));
    if (!err.empty()) override_error(1, "env " + name + ": " + err);
    cfg.origins_[key] = "env " + name;
    order[key] = overrides++;
  }
  for (const auto& kv : set_overrides) {
    size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      override_error(2, "--set " + kv + ": expected section.key=value");
      continue;
    }
    std::string key = kv.substr(0, eq);
    std::string err = SetPath(*cfg.root_, key, ParseValue(kv.substr(eq + 1)));
    if (!err.empty()) override_error(2, "--set " + key + ": " + err);
    cfg.origins_[key] = "--set " + key;
    order[key] = overrides++;
  }
  auto report = [&](const toml::node& n, const std::string& key, const std::string& what) {
    Problem p = Locate(n, cfg.origins_, order, key);
    p.text += ": " + what;
    errors.push_back(std::move(p));
  };
  // Validate every section and key present.
  for (const auto& [skey, snode] : *cfg.root_) {
    const std::string section(skey.str());
    if (IsOpaque(section)) {
      if (!snode.is_table()) report(snode, section, section + ": expected a table");
      continue;
    }
    bool known = false;
    for (const auto& k : ConfigSchema()) known |= k.key.rfind(section + ".", 0) == 0;
    if (!known) {
      report(snode, section, UnknownSection(section, snode));
      continue;
    }
    if (!snode.is_table()) {
      report(snode, section, section + ": expected a table");
      continue;
    }
    for (const auto& [kkey, knode] : *snode.as_table()) {
      const std::string name(kkey.str());
      const std::string full = section + "." + name;
      const ConfigKey* k = FindKey(full);
      if (!k) {
        report(knode, full,
               "unknown key " + full + Suggest(name, KeyNames(section), section + "."));
        continue;
      }
      std::string problem = CheckValue(*k, knode);
      if (!problem.empty()) report(knode, full, full + ": " + problem);
    }
  }
  if (!errors.empty()) {
    std::stable_sort(errors.begin(), errors.end(), [](const Problem& a, const Problem& b) {
      return std::tie(a.layer, a.line, a.column, a.order) <
             std::tie(b.layer, b.line, b.column, b.order);
    });
    std::string msg;
    for (const auto& e : errors) msg += (msg.empty() ? "" : "\n") + e.text;
    return InvalidArgument(msg);
  }
  // Defaults for everything not set.
  for (const auto& k : ConfigSchema()) {
    std::vector<std::string> parts = SplitDots(k.key);
    toml::node* sec = cfg.root_->get(parts[0]);
    if (sec && sec->as_table() && sec->as_table()->get(parts[1])) continue;
    SetPath(*cfg.root_, k.key, ParseValue(k.default_value));
    cfg.origins_[k.key] = "default";
  }
  return cfg;
}

namespace {
const toml::node& Lookup(const toml::table& root, std::string_view key) {
  if (!FindKey(key)) throw std::logic_error("config key not in schema: " + std::string(key));
  std::vector<std::string> parts = SplitDots(key);
  const toml::node* n = root.get(parts[0])->as_table()->get(parts[1]);
  return *n;
}
}  // namespace

int64_t Config::GetInt(std::string_view key) const { return *Lookup(*root_, key).value<int64_t>(); }
double Config::GetFloat(std::string_view key) const { return *Lookup(*root_, key).value<double>(); }
bool Config::GetBool(std::string_view key) const { return *Lookup(*root_, key).value<bool>(); }
std::string Config::GetString(std::string_view key) const {
  return *Lookup(*root_, key).value<std::string>();
}
std::vector<std::map<std::string, std::string>> Config::GetTables(std::string_view key) const {
  std::vector<std::map<std::string, std::string>> out;
  for (const auto& e : *Lookup(*root_, key).as_array()) {
    auto& row = out.emplace_back();
    for (const auto& [k, v] : *e.as_table()) row[std::string(k.str())] = *v.value<std::string>();
  }
  return out;
}

std::vector<double> Config::GetFloats(std::string_view key) const {
  const toml::node& n = Lookup(*root_, key);
  if (!n.is_array()) return {*n.value<double>()};
  std::vector<double> out;
  for (const auto& e : *n.as_array()) out.push_back(*e.value<double>());
  return out;
}

std::vector<std::string> Config::GetStrings(std::string_view key) const {
  std::vector<std::string> out;
  for (const auto& e : *Lookup(*root_, key).as_array()) out.push_back(*e.value<std::string>());
  return out;
}

bool Config::Has(std::string_view key) const {
  auto it = origins_.find(std::string(key));
  return it == origins_.end() || it->second != "default";
}

std::string Config::Origin(std::string_view key) const {
  auto it = origins_.find(std::string(key));
  if (it != origins_.end()) return it->second;
  return SourceWhere(Lookup(*root_, key));
}

const toml::table* Config::Section(std::string_view name) const {
  const toml::node* n = root_->get(name);
  return n ? n->as_table() : nullptr;
}

std::string Config::Dump() const {
  std::ostringstream out;
  out << "# resolved configuration of " << path_ << "\n";
  std::string section;
  for (const auto& k : ConfigSchema()) {
    std::vector<std::string> parts = SplitDots(k.key);
    if (parts[0] != section) {
      section = parts[0];
      out << "\n[" << section << "]\n";
    }
    std::ostringstream v;
    if (k.type == ConfigType::kTableArray) {
      // Inline tables: the formatter would write [[section.key]] blocks.
      v << "[";
      const auto tables = GetTables(k.key);
      for (size_t i = 0; i < tables.size(); ++i) {
        v << (i ? ", " : "") << "{ ";
        size_t j = 0;
        for (const auto& [field, value] : tables[i]) {
          std::ostringstream q;
          q << toml::toml_formatter{toml::table{{"v", value}}};
          std::string s = q.str();
          s = s.substr(s.find('=') + 2);
          while (!s.empty() && s.back() == '\n') s.pop_back();
          v << (j++ ? ", " : "") << field << " = " << s;
        }
        v << " }";
      }
      v << "]";
    } else
      v << Lookup(*root_, k.key).visit([](const auto& n) {
        std::ostringstream o;
        o << toml::toml_formatter{toml::table{{"v", n}}};
        std::string s = o.str();
        return s.substr(s.find('=') + 2);
      });
    std::string value = v.str();
    while (!value.empty() && value.back() == '\n') value.pop_back();
    out << parts[1] << " = " << value << "  # " << Origin(k.key) << "\n";
  }
  for (const auto& s : OpaqueSections()) {
    if (const toml::table* t = Section(s)) {
      toml::table wrapper;
      wrapper.insert(s, *t);
      out << "\n" << toml::toml_formatter{wrapper} << "\n";
    }
  }
  return out.str();
}

}  // namespace dnnd
