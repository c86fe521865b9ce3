// Configuration: precedence, validation errors with positions, the toml++
// crash guard, and Dump() round trips.
#include "core/config.h"

#include <gtest/gtest.h>
#include <toml++/toml.h>

#include "core/toml_guard.h"

namespace dnnd {
namespace {

TEST(Config, DefaultsFileEnvSetPrecedence) {
  const char* text = "[train]\nepochs = 3\nbatch_size = 64\nseed = 5\n";
  auto cfg = Config::FromString(text, "c.toml", {"train.batch_size=32"},
                                {{"DNND_TRAIN__BATCH_SIZE", "16"}, {"DNND_TRAIN__SEED", "9"}});
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  EXPECT_EQ(cfg->GetInt("train.epochs"), 3);       // file
  EXPECT_EQ(cfg->GetInt("train.seed"), 9);         // env beats file
  EXPECT_EQ(cfg->GetInt("train.batch_size"), 32);  // --set beats env
  EXPECT_EQ(cfg->GetString("log.level"), "info");  // default
  EXPECT_EQ(cfg->Origin("train.epochs"), "c.toml:2:10");
  EXPECT_EQ(cfg->Origin("train.seed"), "env DNND_TRAIN__SEED");
  EXPECT_EQ(cfg->Origin("log.level"), "default");
  EXPECT_TRUE(cfg->Has("train.epochs"));
  EXPECT_FALSE(cfg->Has("log.level"));
}

TEST(Config, OverrideValuesAreTypedLikeToml) {
  auto cfg = Config::FromString(
      "", "c.toml", {"train.shuffle=false", "data.normalize_mean=0.5", "node.name=worker-7"});
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  EXPECT_FALSE(cfg->GetBool("train.shuffle"));
  EXPECT_DOUBLE_EQ(cfg->GetFloat("data.normalize_mean"), 0.5);
  EXPECT_EQ(cfg->GetString("node.name"), "worker-7");  // not TOML: taken as a string
}

TEST(Config, IntegerAcceptedWhereFloatExpected) {
  auto cfg = Config::FromString("[data]\nnormalize_std = 2\n", "c.toml");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  EXPECT_DOUBLE_EQ(cfg->GetFloat("data.normalize_std"), 2.0);
}

void ExpectError(const std::string& text, const std::vector<std::string>& needles,
                 const std::vector<std::string>& sets = {}) {
  auto cfg = Config::FromString(text, "bad.toml", sets);
  ASSERT_FALSE(cfg.ok()) << "accepted:\n" << text;
  for (const auto& n : needles)
    EXPECT_NE(cfg.status().message().find(n), std::string::npos)
        << "missing '" << n << "' in: " << cfg.status().message();
}

TEST(Config, UnknownKeyNamesPosition) {
  ExpectError("[train]\nepochz = 3\n", {"bad.toml:2:10", "unknown key train.epochz"});
}

TEST(Config, UnknownSection) { ExpectError("[trian]\nepochs = 3\n", {"bad.toml:1:1", "[trian]"}); }

TEST(Config, WrongType) {
  ExpectError("[train]\nepochs = \"five\"\n",
              {"bad.toml:2:10", "train.epochs", "expected integer"});
}

TEST(Config, OutOfRange) {
  ExpectError("[train]\nbatch_size = 0\n", {"bad.toml:2:14", "below the minimum"});
}

TEST(Config, EnumValue) {
  ExpectError("[log]\nlevel = \"loud\"\n", {"'loud' is not allowed", "debug, info, warn, error"});
}

TEST(Config, BadOverrideNamesTheFlag) {
  ExpectError("", {"--set train.epochs", "expected integer"}, {"train.epochs=many"});
  ExpectError("", {"expected section.key=value"}, {"nonsense"});
}

// An override of a section the schema does not know names the override, not
// a position in no file ("<config>:0:0").
TEST(Config, OverrideOfUnknownSectionKeepsItsOrigin) {
  auto set = Config::FromString("", "c.toml", {"rpc.listen=x"});
  ASSERT_FALSE(set.ok());
  EXPECT_EQ(set.status().message(), "--set rpc.listen: unknown section [rpc]");
  auto env = Config::FromString("", "c.toml", {}, {{"DNND_RPC__LISTEN", "x"}});
  ASSERT_FALSE(env.ok());
  EXPECT_EQ(env.status().message(), "env DNND_RPC__LISTEN: unknown section [rpc]");
}

// Errors come in file order (line, then column), whatever the sections'
// names; then the environment's and --set's in the order given.
TEST(Config, ErrorsAreSortedByPosition) {
  auto cfg = Config::FromString(
      "[train]\nbogus = 1\n[data]\nbogus = 2\n[log]\nlevel = \"x\"\n"
      "[train.extra]\n",
      "c.toml", {"zz.a=1", "aa.b=2"}, {{"DNND_MM__C", "3"}});
  ASSERT_FALSE(cfg.ok());
  EXPECT_EQ(cfg.status().message(),
            "c.toml:2:9: unknown key train.bogus\n"
            "c.toml:4:9: unknown key data.bogus\n"
            "c.toml:6:9: log.level: 'x' is not allowed (expected one of debug, info, warn, error)\n"
            "c.toml:7:1: unknown key train.extra\n"
            "env DNND_MM__C: unknown section [mm]\n"
            "--set zz.a: unknown section [zz]\n"
            "--set aa.b: unknown section [aa]");
}

TEST(Config, NearMissesGetADidYouMean) {
  ExpectError("[trian]\nepochs = 3\n",
              {"bad.toml:1:1: unknown section [trian]; did you mean [train]?"});
  ExpectError("[train]\nepochz = 3\n", {"unknown key train.epochz; did you mean train.epochs?"});
  ExpectError("", {"--set trian.epochs: unknown section [trian]; did you mean train.epochs?"},
              {"trian.epochs=3"});
  ExpectError("[log]\nlevel = \"inof\"\n", {"'inof' is not allowed; did you mean 'info'?"});
  // Far from every name: no guess.
  auto cfg = Config::FromString("[train]\nlisten = 1\n", "c.toml");
  ASSERT_FALSE(cfg.ok());
  EXPECT_EQ(cfg.status().message().find("did you mean"), std::string::npos)
      << cfg.status().message();
}

// The config chooses the role: [node] role, one of the roles (or "" for none).
TEST(Config, NodeRoleIsAnEnumOfTheRoles) {
  auto cfg = Config::FromString("[node]\nrole = \"splitter\"\n", "c.toml");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  EXPECT_EQ(cfg->GetString("node.role"), "splitter");
  EXPECT_EQ(cfg->Origin("node.role"), "c.toml:2:8");
  auto unset = Config::FromString("", "c.toml");
  ASSERT_TRUE(unset.ok());
  EXPECT_EQ(unset->GetString("node.role"), "");
  auto again = Config::FromString(unset->Dump(), "dump.toml");  // role = "" round-trips
  EXPECT_TRUE(again.ok()) << again.status().ToString();
  ExpectError("[node]\nrole = \"paramter-server\"\n",
              {"bad.toml:2:8: node.role: 'paramter-server' is not allowed; did you mean "
               "'parameter-server'?",
               "expected one of worker, parameter-server"});
  // The top-level form is not the canonical one; it points at it.
  ExpectError("role = \"worker\"\n",
              {"bad.toml:1:8: unknown top-level key 'role'", "did you mean node.role?"});
}

TEST(Config, CollectsEveryError) {
  ExpectError("[train]\nepochs = -1\nbatch_size = 0\nbogus = 1\n",
              {"train.epochs", "train.batch_size", "train.bogus"});
}

TEST(Config, SyntaxErrorHasPosition) { ExpectError("[train\nepochs = 1\n", {"bad.toml:1:"}); }

TEST(Config, MissingFileIsAnError) {
  auto cfg = Config::Load("/nonexistent/dnnd.toml", {}, {});
  ASSERT_FALSE(cfg.ok());
  EXPECT_NE(cfg.status().message().find("/nonexistent/dnnd.toml"), std::string::npos);
}

TEST(Config, OpaqueModelSectionIsKeptForItsParser) {
  auto cfg = Config::FromString("[model]\ninput = [3]\nwhatever = 1\n", "c.toml",
                                {"model.optimizer.lr=0.5"});
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  ASSERT_NE(cfg->Section("model"), nullptr);
  EXPECT_NE(cfg->Section("model")->get("whatever"), nullptr);
  EXPECT_NE(cfg->Section("model")->at_path("optimizer.lr").as_floating_point(), nullptr);
}

TEST(Config, DumpRoundTrips) {
  auto cfg = Config::FromString("[train]\nepochs = 7\n[model]\ninput = [1, 2]\n", "c.toml",
                                {"log.format=\"json\""});
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  auto again = Config::FromString(cfg->Dump(), "dump.toml");
  ASSERT_TRUE(again.ok()) << again.status().ToString() << "\n" << cfg->Dump();
  EXPECT_EQ(again->GetInt("train.epochs"), 7);
  EXPECT_EQ(again->GetString("log.format"), "json");
  EXPECT_NE(again->Section("model"), nullptr);
}

// Inputs on which Debian's toml++ 3.3.0 asserts or reaches undefined
// behaviour; each must come back as an error value.
TEST(TomlGuard, KnownCrashersAreErrors) {
  const std::vector<std::string> crashers = {
      "a = 1\n[\n  ]=bc\"x\"\n",
      "[\n]\n",
      "[[\n]]\n",
      std::string("a = \"\xff\"\n"),
      std::string("a = \"\xc0\xaf\"\n"),          // overlong '/'
      std::string("a = \"\xed\xa0\x80\"\n"),      // UTF-16 surrogate
      std::string("a = \"\xf4\x90\x80\x80\"\n"),  // > U+10FFFF
      std::string("a = 1\0b = 2\n", 12),
      "[model]\n[[}odel.layers]]\ntype = \"relu\"\n",  // found by tests/fuzz/run.sh
      "[ }a]\n",
      "[\"unterminated]\n",
      " \xc7\x98"
      "c\"x\"\n",            // UB in toml++'s unicode tables, found by tests/fuzz/run.sh
      "[[.dlemolayers]]\n",  // header starting with a dot, found by tests/fuzz/run.sh
      "[a..b]\n",
      "[a.]\n",
      "a =[  [\n}}}}\n",  // '}' closing '[': toml++ asserts; found by tests/fuzz/run.sh
      "a = {x=[}\n",
      "[model]\ninput = [3FFFF'\"\xcd\xbd"
      "FF = \"x\"\nout = 1\n",  // UB in toml++, found by fuzzing
      "a = \"open\n",
      "out = 10rno\x1b'\xcd\xbd\x1f_",  // control bytes and a string open at EOF (fuzzing)
      "a = 'open",
      "epochs = 111'\xcd\xbd'111\n",  // a string inside a bare number: UB in toml++ (fuzzing)
      "\"\"\"\"Nu-h\t\\\t\t\xef\xb9\xbf\t\"\"\"",  // U+FE7F in a multi-line string (fuzzing)
      "a = \"\"\"\\\n  \xc3\xa9\"\"\"\n",          // 'é' after a line-ending backslash
      "\"\"\"\"\\\\\\\\\\\xef\xb9\xbf"
      "b]tralu2d\"\"\"\"\"",  // U+FE7F right after a backslash (fuzzing)
  };
  for (const auto& text : crashers) {
    auto cfg = Config::FromString(text, "crash.toml");
    EXPECT_FALSE(cfg.ok()) << "accepted: " << text;
    EXPECT_NE(cfg.status().message().find("crash.toml:"), std::string::npos)
        << cfg.status().message();
  }
}

TEST(TomlGuard, AllowsValidMultiLineConstructs) {
  EXPECT_TRUE(GuardToml("[ a . \"b.c\" . 'd' ]\n[[x-y_1]]\n", "ok").ok());
  EXPECT_TRUE(GuardToml("a.\"b\" = 'x'\n'k' = [\"p\",'q']\nt = {u = \"v\", 'w' = 1}\n", "ok").ok());
  EXPECT_TRUE(GuardToml("a = [\n  [1, 2],\n  [3],\n]\n[t]\nb = \"\"\"\n[\n\"\"\"\n", "ok").ok());
  EXPECT_TRUE(
      GuardToml("# [ comment é\n[\"quoted.key\"]\nx = 'é'\ny = \"\"\"\né\n\"\"\"\n", "ok").ok());
}

TEST(TomlGuard, SizeLimit) {
  std::string big(kMaxConfigBytes + 1, '#');
  EXPECT_FALSE(GuardToml(big, "big.toml").ok());
}

}  // namespace
}  // namespace dnnd
