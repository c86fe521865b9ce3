#include "core/toml_guard.h"

#include <cctype>
#include <cstdio>
#include <string>

namespace dnnd {
namespace {

Status At(std::string_view source, int line, int col, const std::string& what) {
  return InvalidArgument(std::string(source) + ":" + std::to_string(line) + ":" +
                         std::to_string(col) + ": " + what);
}

// Length of the valid UTF-8 sequence at s[i], or 0 if invalid.
size_t Utf8Length(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  if (c < 0x80) return 1;
  auto cont = [&](size_t k) { return k < s.size() && (b(k) & 0xC0) == 0x80; };
  if (c >= 0xC2 && c <= 0xDF) return cont(i + 1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(i + 1) || !cont(i + 2)) return 0;
    if (c == 0xE0 && b(i + 1) < 0xA0) return 0;   // overlong
    if (c == 0xED && b(i + 1) >= 0xA0) return 0;  // UTF-16 surrogate
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(i + 1) || !cont(i + 2) || !cont(i + 3)) return 0;
    if (c == 0xF0 && b(i + 1) < 0x90) return 0;   // overlong
    if (c == 0xF4 && b(i + 1) >= 0x90) return 0;  // > U+10FFFF
    return 4;
  }
  return 0;
}

// Debian's toml++ 3.3.0 classifies code points in [U+00A0, U+FEFF] as
// whitespace or not through a bucket table with holes; for code points in a
// hole (e.g. U+00E9 'é', U+FE7F) it reaches __builtin_unreachable(). That is
// harmless where it never classifies characters (strings, comments), but not
// right after a line-ending backslash in a multi-line basic string, where it
// trims "whitespace". This replicates the table to know which code points hit it.
bool TomlppWhitespaceIsUndefined(uint32_t c) {
  if (c <= 0xA0 || c > 0xFEFF) return false;
  const uint64_t bucket = (c - 0xA0) / 0x3FA;
  if ((uint64_t{1} << bucket) & 0x7FFFFFFFFFFFF75Eull) return false;
  if (c == 0x3000 || c == 0xFEFF) return false;
  return bucket != 5 && bucket != 7;
}

uint32_t DecodeUtf8(std::string_view s, size_t i, size_t n) {
  const auto b = [&](size_t k) { return static_cast<uint32_t>(static_cast<unsigned char>(s[k])); };
  if (n == 2) return ((b(i) & 0x1F) << 6) | (b(i + 1) & 0x3F);
  if (n == 3) return ((b(i) & 0x0F) << 12) | ((b(i + 1) & 0x3F) << 6) | (b(i + 2) & 0x3F);
  return ((b(i) & 0x07) << 18) | ((b(i + 1) & 0x3F) << 12) | ((b(i + 2) & 0x3F) << 6) |
         (b(i + 3) & 0x3F);
}

}  // namespace

Status GuardToml(std::string_view text, std::string_view source) {
  if (text.size() > kMaxConfigBytes)
    return InvalidArgument(std::string(source) + ": " + std::to_string(text.size()) +
                           " bytes exceeds the " + std::to_string(kMaxConfigBytes) +
                           "-byte limit for TOML files");
  int line = 1, col = 1;
  for (size_t i = 0; i < text.size();) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c == 0) return At(source, line, col, "NUL byte in TOML text");
    // TOML allows no control characters but tab, LF and CR (in strings and
    // comments alike); toml++ reaches undefined behaviour on some of them.
    if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02X", c);
      return At(source, line, col, std::string("control character ") + hex + " in TOML text");
    }
    const size_t n = Utf8Length(text, i);
    if (n == 0) return At(source, line, col, "invalid UTF-8 byte sequence");
    if (c == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
    i += n;
  }
  // A minimal lexer: track strings, comments and bracket depth so that a '['
  // opening a statement (a table header) is known; it must close on its line.
  enum class Str { kNone, kBasic, kLiteral, kMlBasic, kMlLiteral } str = Str::kNone;
  std::string open;  // [ and { open inside the current value, innermost last
  bool statement_start = true;
  char prev = '\n';  // last non-blank character outside strings and comments
  line = 1;
  col = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    ++col;
    auto starts = [&](std::string_view p) { return text.substr(i, p.size()) == p; };
    switch (str) {
      case Str::kBasic:
      case Str::kLiteral:
        // One-line strings must close on their line; toml++ has reached
        // undefined behaviour reading on past an unterminated one.
        if (c == '\n') return At(source, line, col, "unterminated string");
        if (str == Str::kBasic && c == '\\') {
          ++i;
          ++col;
        } else if (c == (str == Str::kBasic ? '"' : '\''))
          str = Str::kNone;
        continue;
      case Str::kMlBasic:
        if (c == '\\') {
          // toml++ classifies the character after a backslash (and, for a
          // line-ending backslash, the first one after the trimmed
          // whitespace) as whitespace or not: see TomlppWhitespaceIsUndefined.
          size_t k = i + 1;
          while (k < text.size() &&
                 (text[k] == ' ' || text[k] == '\t' || text[k] == '\r' || text[k] == '\n'))
            ++k;
          if (k < text.size() && static_cast<unsigned char>(text[k]) >= 0x80) {
            const uint32_t cp = DecodeUtf8(text, k, Utf8Length(text, k));
            if (TomlppWhitespaceIsUndefined(cp)) {
              char u[16];
              std::snprintf(u, sizeof u, "U+%04X", cp);
              return At(source, line, col,
                        std::string("character ") + u +
                            " after a backslash in a multi-line string cannot be "
                            "parsed safely by this toml++");
            }
          }
        }
        if (c == '\\') {
          ++i;
          ++col;
          continue;
        }
        if (starts("\"\"\"")) {
          str = Str::kNone;
          i += 2;
          col += 2;
        }
        if (c == '\n') {
          ++line;
          col = 0;
        }
        continue;
      case Str::kMlLiteral:
        if (starts("'''")) {
          str = Str::kNone;
          i += 2;
          col += 2;
        }
        if (c == '\n') {
          ++line;
          col = 0;
        }
        continue;
      case Str::kNone:
        break;
    }
    if (c == '#') {  // comment to end of line
      while (i + 1 < text.size() && text[i + 1] != '\n') ++i;
      continue;
    }
    if (c == '\n') {
      ++line;
      col = 0;
      prev = '\n';
      if (open.empty()) statement_start = true;
      continue;
    }
    if (c == ' ' || c == '\t' || c == '\r') continue;
    // TOML 1.0 allows non-ASCII only inside strings and comments; toml++
    // reaches an unreachable() (undefined behaviour) on some such keys.
    if (static_cast<unsigned char>(c) >= 0x80)
      return At(source, line, col, "non-ASCII character outside a string or comment");
    // A string starts a key or a value, never in the middle of a bare token:
    // toml++ has reached undefined behaviour on "1'x'1".
    if ((c == '"' || c == '\'') && (std::isalnum(static_cast<unsigned char>(prev)) || prev == '_' ||
                                    prev == '-' || prev == '+' || prev == ':'))
      return At(source, line, col,
                std::string("quote directly after '") + prev + "' in a bare value");
    if (starts("\"\"\"")) {
      str = Str::kMlBasic;
      i += 2;
      col += 2;
      statement_start = false;
      continue;
    }
    if (starts("'''")) {
      str = Str::kMlLiteral;
      i += 2;
      col += 2;
      statement_start = false;
      continue;
    }
    if (c == '"' || c == '\'') {
      str = c == '"' ? Str::kBasic : Str::kLiteral;
      statement_start = false;
      prev = c;
      continue;
    }
    if (c == '[' && open.empty() && statement_start) {
      // A table header: bare keys, dots, blanks and quoted keys up to the
      // closing bracket, all on this line. toml++ asserts on a header whose
      // key starts with anything else ("[}a]", "[\n]").
      size_t j = i + 1;
      if (j < text.size() && text[j] == '[') ++j;
      // key ( '.' key )* with blanks around; a key is bare or quoted.
      auto blank = [&](size_t k) { return k < text.size() && (text[k] == ' ' || text[k] == '\t'); };
      auto bare = [&](size_t k) {
        if (k >= text.size()) return false;
        const char h = text[k];
        return (h >= 'A' && h <= 'Z') || (h >= 'a' && h <= 'z') || (h >= '0' && h <= '9') ||
               h == '_' || h == '-';
      };
      auto fail = [&](size_t k, const std::string& what) {
        return At(source, line, col + static_cast<int>(k - i), what);
      };
      for (;;) {
        while (blank(j)) ++j;
        if (j >= text.size() || text[j] == '\n')
          return At(source, line, col, "table header '[' is not closed on its line");
        const char h = text[j];
        if (h == '"' || h == '\'') {
          size_t k = j + 1;
          while (k < text.size() && text[k] != h && text[k] != '\n')
            k += (h == '"' && text[k] == '\\') ? 2 : 1;
          if (k >= text.size() || text[k] != h)
            return fail(j, "unterminated quoted key in table header");
          j = k + 1;
        } else if (bare(j)) {
          while (bare(j)) ++j;
        } else {
          return fail(j, std::string("invalid character '") + h +
                             "' where a key should start in table header");
        }
        while (blank(j)) ++j;
        if (j < text.size() && text[j] == '.') {
          ++j;
          continue;
        }
        if (j < text.size() && text[j] == ']') break;
        return fail(j, "expected '.' or ']' in table header");
      }
      col += static_cast<int>(j - i);
      i = j;
      statement_start = false;
      continue;
    }
    statement_start = false;
    prev = c;
    if (c == '[' || c == '{') {
      open += c;
    } else if (c == ']' || c == '}') {
      // toml++ asserts on a bracket closing the other kind ("a = [}]").
      const char want = c == ']' ? '[' : '{';
      if (!open.empty() && open.back() != want)
        return At(source, line, col, std::string("'") + c + "' closes '" + open.back() + "'");
      if (!open.empty()) open.pop_back();
    }
  }
  if (str != Str::kNone) return At(source, line, col, "unterminated string at end of input");
  return Status::Ok();
}

}  // namespace dnnd
