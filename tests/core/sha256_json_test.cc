// SHA-256 against the FIPS 180-2 test vectors, and the readable JSON writer.
#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "core/json_text.h"
#include "core/sha256.h"

namespace dnnd {
namespace {

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  auto missing = Sha256FileHex("/nonexistent/shard.npz");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("/nonexistent/shard.npz"), std::string::npos);
}

TEST(PrettyJson, IndentsAndReadsBackTheSameValue) {
  boost::json::value v = boost::json::object{
      {"name", "a\"b"},
      {"accuracy", 0.8582},
      {"histogram", boost::json::array{1, 2, 3}},
      {"shards", boost::json::array{boost::json::object{{"n", 1}}, boost::json::object{}}},
      {"empty", boost::json::array{}}};
  const std::string text = PrettyJson(v);
  EXPECT_EQ(boost::json::parse(text), v);
  EXPECT_NE(text.find("\n  \"accuracy\": 0.8582,\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\"histogram\": [1, 2, 3]"), std::string::npos) << text;
}

// A float32 setting sent as JSON: the decimal a person wrote, not the
// float's binary value widened to a double.
TEST(DecimalOf, IsTheFloatsShortestDecimal) {
  EXPECT_EQ(DecimalOf(0.001f), 0.001);
  EXPECT_NE(static_cast<double>(0.001f), 0.001);
  EXPECT_EQ(DecimalOf(0.5f), 0.5);
  EXPECT_EQ(static_cast<float>(DecimalOf(3e-4f)), 3e-4f);  // round-trips to the same float
}

TEST(ShortestText, ReadsBackExactlyInTheFewestDigits) {
  EXPECT_EQ(ShortestText(0.001f), "0.001");  // not 0.00100000005
  EXPECT_EQ(ShortestText(static_cast<double>(0.001f)), "0.0010000000474974513");  // a double
  EXPECT_EQ(ShortestText(0.001), "0.001");
  EXPECT_EQ(ShortestText(0.0005), "0.0005");  // positional, as Python's repr
  EXPECT_EQ(ShortestText(1e-8f), "1e-08");
  EXPECT_EQ(ShortestText(0.1 + 0.2), "0.30000000000000004");
  EXPECT_EQ(ShortestText(5.0), "5");
  EXPECT_EQ(ShortestText(1e16), "1e+16");
  EXPECT_EQ(ShortestText(-2.5f), "-2.5");
}

TEST(SettingsText, NumbersExactAndShortFloatsAsTheFloatTheyWere) {
  const boost::json::object settings{{"epochs", 5},
                                     {"lr", static_cast<double>(0.001f)},  // a float widened
                                     {"goal_accuracy", 0.875},
                                     {"mean", 0.2857566359877283},  // a double stays exact
                                     {"mode", "sync"},
                                     {"elastic", true}};
  EXPECT_EQ(SettingsText(settings),
            "epochs = 5, lr = 0.001, goal_accuracy = 0.875, mean = 0.2857566359877283, "
            "mode = sync, elastic = true");
}

}  // namespace
}  // namespace dnnd
