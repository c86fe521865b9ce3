// Pre-checks run on TOML text before toml++ sees it.
//
// Debian's toml++ 3.3.0 asserts (debug builds) or continues into undefined
// behaviour (release builds) on some malformed inputs, e.g. a table header
// split across lines ("a = 1\n[\n  ]=bc\"x\"\n"). These checks reject such
// inputs with a positioned error first, so a malformed file is always an
// error value, never a crash. Found by fuzzing config loading
// (tests/fuzz/config_fuzz.cc); every crasher is kept as a test.
#pragma once

#include <string_view>

#include "core/status.h"

namespace dnnd {

inline constexpr size_t kMaxConfigBytes = 1 << 20;

// Size limit, NUL bytes, strict UTF-8 (no overlongs, surrogates or code
// points past U+10FFFF), and table headers that do not close on their line.
// `source` names the input in "source:line:col: what" messages.
Status GuardToml(std::string_view text, std::string_view source);

}  // namespace dnnd
