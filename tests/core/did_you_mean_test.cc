// DidYouMean: the near-miss suggestion of config errors, ctl flags and roles.
#include "core/did_you_mean.h"

#include <gtest/gtest.h>

namespace dnnd {
namespace {

TEST(EditDistance, CountsEditsAndSwaps) {
  EXPECT_EQ(EditDistance("", ""), 0u);
  EXPECT_EQ(EditDistance("abc", ""), 3u);
  EXPECT_EQ(EditDistance("epochz", "epochs"), 1u);  // substitution
  EXPECT_EQ(EditDistance("epoch", "epochs"), 1u);   // insertion
  EXPECT_EQ(EditDistance("trian", "train"), 1u);    // adjacent swap
  EXPECT_EQ(EditDistance("Train", "train"), 0u);    // case-insensitive
  EXPECT_EQ(EditDistance("kitten", "sitting"), 3u);
}

TEST(DidYouMean, SuggestsTheClosestNearMiss) {
  const std::vector<std::string> sections = {"node", "log", "data", "train", "worker"};
  EXPECT_EQ(DidYouMean("trian", sections), "train");
  EXPECT_EQ(DidYouMean("wokrer", sections), "worker");
  EXPECT_EQ(DidYouMean("lgo", sections), "log");
  EXPECT_EQ(DidYouMean("epoch", {"epochs", "epochz"}), "epochs");  // the first of equals
}

TEST(DidYouMean, StaysQuietWhenNothingIsClose) {
  EXPECT_EQ(DidYouMean("listen", {"epochs", "seed"}), std::nullopt);
  EXPECT_EQ(DidYouMean("ps", {"log"}), std::nullopt);  // 2 edits in 2 letters: another word
  EXPECT_EQ(DidYouMean("train", {"train", "trains"}), std::nullopt);  // valid already
  EXPECT_EQ(DidYouMean("x", {}), std::nullopt);
}

}  // namespace
}  // namespace dnnd
