// "Did you mean ...?" for a misspelt name: the closest of a list of valid
// names, if it is close enough to be the one meant (a typo, not a different
// word). Used by config validation (keys, sections, enum values, roles).
//
//   DidYouMean("trian", {"train", "data"})  -> "train"
//   DidYouMean("epochz", {"epochs"})        -> "epochs"
//   DidYouMean("listen", {"epochs"})        -> nullopt
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace dnnd {

// Edit distance between a and b, case-insensitive: insertions, deletions,
// substitutions and swaps of two adjacent characters each count 1 (optimal
// string alignment).
size_t EditDistance(std::string_view a, std::string_view b);

// The candidate closest to `word` when within a typo's reach (1 edit for
// words up to 4 characters, 2 up to 8, 3 beyond); the first of equally close
// ones; nullopt when none is close or `word` is itself a candidate.
std::optional<std::string> DidYouMean(std::string_view word,
                                      const std::vector<std::string>& candidates);

}  // namespace dnnd
