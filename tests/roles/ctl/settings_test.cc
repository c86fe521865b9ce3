// Where `dnnd ctl` takes the controller address and token from: flags, then
// the environment, then the ctl file (real files in a temporary HOME).
#include "roles/ctl/settings.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "tests/roles/dnnd_process.h"

namespace dnnd {
namespace {

using dnnd::testing::TempDir;

struct FakeEnv {
  std::map<std::string, std::string> vars;
  EnvLookup lookup() const {
    return [this](const char* name) -> const char* {
      auto it = vars.find(name);
      return it == vars.end() ? nullptr : it->second.c_str();
    };
  }
};

class CtlSettingsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    env_.vars["HOME"] = dir_.path();
    std::filesystem::create_directories(dir_.path() + "/.config/dnnd");
  }
  void WriteCtlFile(const std::string& text) {
    const std::string path = dir_.path() + "/.config/dnnd/ctl.toml";
    std::ofstream(path) << text;
    ::chmod(path.c_str(), 0600);
  }
  TempDir dir_;
  FakeEnv env_;
};

TEST_F(CtlSettingsTest, DefaultsWithoutFlagsEnvOrFile) {
  auto s = ResolveCtlSettings("", "", env_.lookup());
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->controller, "127.0.0.1:8080");
  EXPECT_EQ(s->controller_from, "default");
  EXPECT_EQ(s->token, "");
}

TEST_F(CtlSettingsTest, FlagBeatsEnvBeatsFile) {
  WriteCtlFile("controller = \"file:1\"\ntoken = \"file-token\"\n");
  auto s = ResolveCtlSettings("", "", env_.lookup());
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->controller, "file:1");
  EXPECT_EQ(s->token, "file-token");
  EXPECT_EQ(s->token_from, dir_.path() + "/.config/dnnd/ctl.toml");
  env_.vars["DNND_CONTROLLER"] = "env:2";
  env_.vars["DNND_TOKEN"] = "env-token";
  s = ResolveCtlSettings("", "", env_.lookup());
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->controller, "env:2");
  EXPECT_EQ(s->token, "env-token");
  EXPECT_EQ(s->token_from, "env DNND_TOKEN");
  s = ResolveCtlSettings("flag:3", "flag-token", env_.lookup());
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->controller, "flag:3");
  EXPECT_EQ(s->token, "flag-token");
  EXPECT_EQ(s->controller_from, "--controller");
}

TEST_F(CtlSettingsTest, TokenFileIsRelativeToTheCtlFileAndTrimmed) {
  std::ofstream(dir_.path() + "/.config/dnnd/secret") << "s3cret\n";
  WriteCtlFile("token_file = \"secret\"\n");
  auto s = ResolveCtlSettings("", "", env_.lookup());
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->token, "s3cret");
}

TEST_F(CtlSettingsTest, XdgConfigHomeWins) {
  env_.vars["XDG_CONFIG_HOME"] = dir_.path() + "/xdg";
  EXPECT_EQ(CtlFilePath(env_.lookup()), dir_.path() + "/xdg/dnnd/ctl.toml");
}

TEST_F(CtlSettingsTest, BadFilesAreErrorsNamingWhere) {
  const std::string path = dir_.path() + "/.config/dnnd/ctl.toml";
  WriteCtlFile("controller = \"a:1\"\ntokn = \"x\"\n");
  auto s = ResolveCtlSettings("", "", env_.lookup());
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find(path + ":2:"), std::string::npos) << s.status().ToString();
  EXPECT_NE(s.status().message().find("unknown key 'tokn'"), std::string::npos);
  WriteCtlFile("controller = 8080\n");
  s = ResolveCtlSettings("", "", env_.lookup());
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("must be a string"), std::string::npos);
  WriteCtlFile("token = \"a\"\ntoken_file = \"b\"\n");
  EXPECT_FALSE(ResolveCtlSettings("", "", env_.lookup()).ok());
  WriteCtlFile("token_file = \"missing\"\n");
  s = ResolveCtlSettings("", "", env_.lookup());
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("token_file"), std::string::npos) << s.status().ToString();
  WriteCtlFile("controller = \"a:1\n");
  s = ResolveCtlSettings("", "", env_.lookup());
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find(path + ":1:"), std::string::npos) << s.status().ToString();
}

}  // namespace
}  // namespace dnnd
