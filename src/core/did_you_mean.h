// The near miss a typo most likely meant: "--epoch" -> "--epochs",
// "learning_rate" -> nothing (too far from "lr" to guess).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace dnnd {

// The candidate nearest to `word` by Levenshtein distance (insertions,
// deletions, substitutions), if that distance is at most max(1, |word| / 3);
// on a tie the first such candidate in `candidates`. nullopt when none is
// near enough.
std::optional<std::string> DidYouMean(std::string_view word,
                                      const std::vector<std::string>& candidates);

}  // namespace dnnd
