// `dnnd wait`, the ordering of pipeline stages in containers without a shell:
// what counts as ready, exit codes, messages, and a real splitter releasing a
// waiting process by writing its manifest.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/wait_files.h"
#include "tests/roles/dnnd_process.h"

namespace {

using dnnd::testing::Daemon;
using dnnd::testing::Dnnd;
using dnnd::testing::Outcome;
using dnnd::testing::Src;
using dnnd::testing::TempDir;
namespace fs = std::filesystem;

TEST(Wait, WhatCountsAsReady) {
  TempDir dir;
  const std::string m = dir.path() + "/manifest.json";
  EXPECT_EQ(dnnd::FileNotReady(m, ""), "does not exist");
  EXPECT_EQ(dnnd::FileNotReady(dir.path(), ""), "is not a regular file");
  dir.Write("manifest.json", R"({"format": "dnnd-shards", "shards": [)");  // a torn write
  EXPECT_EQ(dnnd::FileNotReady(m, ""), "");                                // existence only
  EXPECT_NE(dnnd::FileNotReady(m, "shards").find("is not valid JSON (yet)"), std::string::npos);
  dir.Write("manifest.json", R"({"format": "dnnd-shards"})");
  EXPECT_EQ(dnnd::FileNotReady(m, "shards"), "has no key \"shards\"");
  dir.Write("manifest.json", R"([1, 2])");
  EXPECT_EQ(dnnd::FileNotReady(m, "shards"), "is JSON but not an object");
  dir.Write("manifest.json", R"({"shards": []})");
  EXPECT_EQ(dnnd::FileNotReady(m, "shards"), "");
}

TEST(Wait, UsageErrorsExitTwo) {
  for (const char* args :
       {"", "--json-key shards", "--file", "--file a --timeout soon", "--file a --timeout -1",
        "--files ,", "--file a --frobnicate 1", "a.json", "--file a --interval-ms 1"}) {
    Outcome r = Dnnd(std::string("wait ") + args);
    EXPECT_EQ(r.code, 2) << args << "\n" << r.output;
    EXPECT_NE(r.output.find("usage: dnnd wait"), std::string::npos) << args;
  }
  Outcome r = Dnnd("wait --file a --timeout soon");
  EXPECT_NE(r.output.find("--timeout must be an integer in [0, 604800], got 'soon'"),
            std::string::npos)
      << r.output;
}

TEST(Wait, TimeoutNamesWhatIsMissingAndWhy) {
  TempDir dir;
  dir.Write("a.json", R"({"shards": []})");
  dir.Write("b.json", R"({"other": 1})");
  const auto t0 = std::chrono::steady_clock::now();
  Outcome r = Dnnd("wait --files " + dir.path() + "/a.json," + dir.path() + "/b.json --file " +
                   dir.path() + "/c.json --json-key shards --timeout 1 --interval-ms 50");
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_GE(took, 1.0);
  EXPECT_LT(took, 10.0);
  EXPECT_NE(r.output.find("timed out after 1 s, 2 of 3 not ready"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(dir.path() + "/b.json: has no key \"shards\""), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find(dir.path() + "/c.json: does not exist"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find(dir.path() + "/a.json:"), std::string::npos)
      << r.output;  // a.json was ready
}

TEST(Wait, ReturnsOnceEveryFileIsThere) {
  TempDir dir;
  const std::string a = dir.path() + "/shard-0/model.safetensors",
                    b = dir.path() + "/shard-1/model.safetensors";
  Daemon waiter("wait --file " + a + " --file " + b + " --timeout 60 --interval-ms 20",
                dir.path() + "/wait.log");
  ASSERT_TRUE(waiter.WaitFor("waiting for 2 file(s)", std::chrono::seconds(10))) << waiter.output();
  fs::create_directories(dir.path() + "/shard-0");
  std::ofstream(a) << "x";
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  fs::create_directories(dir.path() + "/shard-1");
  std::ofstream(b) << "x";
  EXPECT_EQ(waiter.Wait(), 0) << waiter.output();
  // It waited for the second file: "ready after" at least the 0.4 s between them.
  const std::string out = waiter.output();
  const size_t at = out.find("all 2 file(s) ready after ");
  ASSERT_NE(at, std::string::npos) << out;
  EXPECT_GE(std::atof(out.c_str() + at + 26), 0.35) << out;
}

// Without init containers (Swarm), `-- <dnnd args>` runs the next stage in
// the same process once the files are there; its exit code is the result.
TEST(Wait, ThenRunsDnndWithTheRest) {
  TempDir dir;
  dir.Write("manifest.json", R"({"shards": []})");
  Outcome r = Dnnd("wait --file " + dir.path() + "/manifest.json --json-key shards -- version");
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("all 1 file(s) ready"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("blas="), std::string::npos) << r.output;  // `dnnd version` ran
  // The next stage's failure is the exit code; nothing runs after a timeout.
  EXPECT_EQ(
      Dnnd("wait --file " + dir.path() + "/manifest.json -- --role=trainer --config x.toml").code,
      2);
  r = Dnnd("wait --file " + dir.path() + "/missing.json --timeout 1 --interval-ms 50 -- version");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_EQ(r.output.find("blas="), std::string::npos) << r.output;
  EXPECT_EQ(Dnnd("wait --file " + dir.path() + "/manifest.json --").code, 2);
}

// The real order of split -> train -> aggregate: a waiter on the splitter's
// manifest is released by the splitter, which writes the manifest last.
TEST(Wait, ReleasedByTheSplittersManifest) {
  if (!fs::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  TempDir dir;
  const std::string out_dir = dir.path() + "/shards";
  Daemon waiter(
      "wait --file " + out_dir + "/manifest.json --json-key shards --timeout 60 --interval-ms 20",
      dir.path() + "/wait.log");
  ASSERT_TRUE(
      waiter.WaitFor("waiting for 1 file(s) with JSON key shards", std::chrono::seconds(10)));
  Outcome split = Dnnd("--role=splitter --config " + Src("configs/splitter.toml") +
                       " --set data.limit_train=600 --set splitter.output_dir=" + out_dir);
  ASSERT_EQ(split.code, 0) << split.output;
  EXPECT_EQ(waiter.Wait(), 0) << waiter.output();
  EXPECT_TRUE(fs::exists(out_dir + "/shard-002.npz"));  // the shards were there before the manifest
}

}  // namespace
