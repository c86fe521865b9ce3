// The flag table behind every `dnnd ctl` verb, and the controller address a
// user may give, through their public functions.
#include "roles/ctl/flags.h"

#include <gtest/gtest.h>

#include "roles/ctl/settings.h"

namespace dnnd::ctl {
namespace {

const std::vector<Flag> kFlags = {{"epochs", "N", "passes"},
                                  {"lr", "X", "rate"},
                                  {"follow", "", "follow it", 'f'},
                                  {"output", "table|json", "format", 'o'}};

TEST(CtlFlags, TakesEveryFormAndKeepsPositionalWordsInOrder) {
  auto v = ParseFlags({"job", "--epochs", "3", "get", "--lr=0.5", "-f", "-o", "json", "7"}, kFlags);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->positional, (std::vector<std::string>{"job", "get", "7"}));
  EXPECT_EQ(v->get("epochs"), "3");
  EXPECT_EQ(v->get("lr"), "0.5");
  EXPECT_EQ(v->get("follow"), "true");
  EXPECT_EQ(v->get("output"), "json");
  EXPECT_FALSE(v->has("seed"));
  auto rest = ParseFlags({"a", "--", "--epochs", "-"}, kFlags);
  ASSERT_TRUE(rest.ok());
  EXPECT_EQ(rest->positional, (std::vector<std::string>{"a", "--epochs", "-"}));
  auto negative = ParseFlags({"--lr", "-1"}, kFlags);  // a value may look like a flag
  ASSERT_TRUE(negative.ok());
  EXPECT_EQ(negative->get("lr"), "-1");
}

TEST(CtlFlags, RefusesWhatTheTableDoesNotSay) {
  auto message = [](const std::vector<std::string>& args) {
    auto v = ParseFlags(args, kFlags);
    return v.ok() ? std::string("ok") : v.status().message();
  };
  EXPECT_EQ(message({"--epoch", "3"}), "unknown flag --epoch (did you mean --epochs?)");
  EXPECT_EQ(message({"--epoch=3"}), "unknown flag --epoch (did you mean --epochs?)");
  EXPECT_EQ(message({"--frobnicate"}), "unknown flag --frobnicate");
  EXPECT_EQ(message({"-x"}), "unknown flag -x");
  EXPECT_EQ(message({"--epochs"}), "--epochs needs a value (N)");
  EXPECT_EQ(message({"--follow=yes"}), "--follow is a switch; it takes no value");
  EXPECT_EQ(message({"-f", "--follow"}), "--follow is given twice");
  // Leniently, an unknown flag is recorded instead (finding the verb first).
  auto lenient = ParseFlags({"--epoch", "train", "--lr", "1"}, kFlags, /*lenient=*/true);
  ASSERT_TRUE(lenient.ok());
  EXPECT_EQ(lenient->unknown, (std::vector<std::string>{"--epoch"}));
  EXPECT_EQ(lenient->positional, (std::vector<std::string>{"train"}));
}

TEST(CtlFlags, UsageComesFromTheSameTable) {
  EXPECT_EQ(FlagUsage(kFlags),
            "      --epochs N           passes\n"
            "      --lr X               rate\n"
            "  -f, --follow             follow it\n"
            "  -o, --output table|json  format\n");
  EXPECT_EQ(FlagUsage({{"spec", "F", "the spec"}}), "  --spec F  the spec\n");
}

TEST(CtlAddress, HostPortOrAnHttpUrl) {
  for (const auto& [given, address] : std::vector<std::pair<std::string, std::string>>{
           {"10.0.0.1:8080", "10.0.0.1:8080"},
           {"http://ctl.example:8080", "ctl.example:8080"},
           {"http://ctl.example:8080/", "ctl.example:8080"},
           {"HTTP://ctl.example:9", "ctl.example:9"},
           {"http://ctl.example", "ctl.example:80"},
           {"[::1]:8080", "[::1]:8080"}}) {
    auto a = ControllerAddress(given);
    ASSERT_TRUE(a.ok()) << given << ": " << a.status().ToString();
    EXPECT_EQ(*a, address) << given;
  }
  for (const auto& [given, why] : std::vector<std::pair<std::string, std::string>>{
           {"https://ctl.example:8443", "uses https"},
           {"ftp://ctl.example:21", "has the scheme 'ftp'"},
           {"http://ctl.example:8080/api", "has a path"},
           {"ctl.example", "has no port"},
           {"ctl.example:http", "has no valid port"},
           {"ctl.example:70000", "has no valid port"},
           {":8080", "has no host"},
           {"http://u:p@ctl.example:8080", "has credentials"}}) {
    auto a = ControllerAddress(given);
    ASSERT_FALSE(a.ok()) << given;
    EXPECT_NE(a.status().message().find(why), std::string::npos) << a.status().message();
    EXPECT_NE(a.status().message().find("'" + given + "'"), std::string::npos);
  }
}

}  // namespace
}  // namespace dnnd::ctl
