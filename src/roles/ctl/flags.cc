#include "roles/ctl/flags.h"

#include <algorithm>

#include "core/did_you_mean.h"

namespace dnnd::ctl {
namespace {

const Flag* Find(const std::vector<Flag>& flags, std::string_view name, bool short_form) {
  for (const auto& f : flags)
    if (short_form ? (f.short_name && name.size() == 1 && name[0] == f.short_name) : f.name == name)
      return &f;
  return nullptr;
}

// "unknown flag --epoch (did you mean --epochs?)"
Status Unknown(const std::string& spelled, std::string_view name, const std::vector<Flag>& flags) {
  std::vector<std::string> names;
  for (const auto& f : flags) names.emplace_back(f.name);
  const auto near = DidYouMean(name, names);
  return InvalidArgument("unknown flag " + spelled +
                         (near ? " (did you mean --" + *near + "?)" : ""));
}

}  // namespace

std::string FlagValues::get(std::string_view name) const {
  auto it = values.find(name);
  return it == values.end() ? "" : it->second;
}

Result<FlagValues> ParseFlags(const std::vector<std::string>& args, const std::vector<Flag>& flags,
                              bool lenient) {
  FlagValues out;
  bool only_positional = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (only_positional || a.size() < 2 || a[0] != '-') {
      out.positional.push_back(a);
      continue;
    }
    if (a == "--") {
      only_positional = true;
      continue;
    }
    const bool short_form = a[1] != '-';
    std::string spelled = a, name = a.substr(short_form ? 1 : 2), value;
    const size_t eq = name.find('=');
    const bool inline_value = eq != std::string::npos;
    if (inline_value) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      spelled = spelled.substr(0, spelled.find('='));
    }
    const Flag* f = Find(flags, name, short_form);
    if (!f) {
      if (!lenient) return Unknown(spelled, name, flags);
      out.unknown.push_back(spelled);
      continue;
    }
    const std::string canonical(f->name);
    if (out.has(canonical) && !lenient)
      return InvalidArgument("--" + canonical + " is given twice");
    if (f->value.empty()) {
      if (inline_value && !lenient)
        return InvalidArgument("--" + canonical + " is a switch; it takes no value");
      value = "true";
    } else if (!inline_value) {
      if (i + 1 >= args.size()) {
        if (lenient) break;
        return InvalidArgument(spelled + " needs a value (" + std::string(f->value) + ")");
      }
      value = args[++i];
    }
    out.values[canonical] = value;
  }
  return out;
}

std::string FlagUsage(const std::vector<Flag>& flags) {
  std::vector<std::string> left;
  size_t width = 0;
  // Long names line up whether or not a flag has a short one too.
  const bool any_short =
      std::any_of(flags.begin(), flags.end(), [](auto& f) { return f.short_name; });
  for (const auto& f : flags) {
    std::string l = f.short_name ? std::string("-") + f.short_name + ", " : any_short ? "    " : "";
    l.append("--").append(f.name);
    if (!f.value.empty()) l.append(" ").append(f.value);
    width = std::max(width, l.size());
    left.push_back(std::move(l));
  }
  std::string out;
  for (size_t i = 0; i < flags.size(); ++i)
    out += "  " + left[i] + std::string(width - left[i].size() + 2, ' ') +
           std::string(flags[i].help) + "\n";
  return out;
}

}  // namespace dnnd::ctl
