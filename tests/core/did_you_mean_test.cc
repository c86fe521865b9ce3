#include "core/did_you_mean.h"

#include <gtest/gtest.h>

namespace dnnd {
namespace {

TEST(DidYouMean, TheNearestWithinAThirdOfTheWord) {
  const std::vector<std::string> flags = {"epochs", "batch", "lr", "lr-schedule", "job"};
  EXPECT_EQ(DidYouMean("epoch", flags), "epochs");
  EXPECT_EQ(DidYouMean("jobb", flags), "job");
  EXPECT_EQ(DidYouMean("batc", flags), "batch");
  EXPECT_EQ(DidYouMean("bacth", flags), std::nullopt);          // two edits; five letters allow one
  EXPECT_EQ(DidYouMean("lr_schedules", flags), "lr-schedule");  // twelve letters allow four
  EXPECT_EQ(DidYouMean("learning_rate", flags), std::nullopt);
  EXPECT_EQ(DidYouMean("x", {"lr"}), std::nullopt);
  EXPECT_EQ(DidYouMean("l", {"lr"}), "lr");         // a short word may still miss by one
  EXPECT_EQ(DidYouMean("ab", {"ax", "ay"}), "ax");  // a tie: the first
  EXPECT_EQ(DidYouMean("epochs", {}), std::nullopt);
}

}  // namespace
}  // namespace dnnd
