// The controller's data directory: one controller at a time (its lock), and
// nothing left in it by what the API refused.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <set>
#include <string>

#include "tests/roles/controller_process.h"

namespace dnnd::testing {
namespace {

TEST(ControllerDataDir, SecondControllerOnTheSameDirectoryIsRefusedAndTheFirstKeepsServing) {
  TempDir dir;
  ControllerProcess first(dir);
  ASSERT_GT(first.port(), 0) << first.daemon().output();
  // The same data directory (ControllerProcess puts it in <dir>/data).
  const Outcome second =
      Dnnd("--role=controller --config " + Src("configs/controller.toml") +
           " --set http.listen=127.0.0.1:0 --set controller.data_dir=" + dir.path() + "/data");
  EXPECT_EQ(second.code, 1) << second.output;
  EXPECT_NE(second.output.find("controller.data_dir " + dir.path() +
                               "/data is in use by another process (pid " +
                               std::to_string(first.daemon().pid()) + ")"),
            std::string::npos)
      << second.output;
  EXPECT_EQ(HttpStatus(first.Send("GET", "/api/v1/jobs")), 200);
  EXPECT_EQ(HttpStatus(first.Send("GET", "/healthz")), 200);
  // The lock dies with its holder, however it dies.
  first.daemon().Signal(SIGKILL);
  first.daemon().Wait();
  ControllerProcess next(dir);
  EXPECT_GT(next.port(), 0) << next.daemon().output();
}

// Every file under `root`, relative to it.
std::set<std::string> Tree(const std::string& root) {
  std::set<std::string> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(root))
    out.insert(std::filesystem::relative(e.path(), root).string());
  return out;
}

TEST(ControllerDataDir, RejectedUploadsLeaveNoFilesBehind) {
  TempDir dir;
  ControllerProcess c(dir,
                      "--set controller.local_workers=0");  // no worker scratch appearing meanwhile
  ASSERT_GT(c.port(), 0) << c.daemon().output();
  const std::string data = dir.path() + "/data";
  const std::set<std::string> before = Tree(data);
  // A part the API does not know, and a bad name.
  EXPECT_EQ(HttpStatus(c.Send("PUT", "/api/v1/datasets/bad/files/weights", "xxxx",
                              "application/octet-stream")),
            400);
  EXPECT_EQ(HttpStatus(c.Send("PUT", "/api/v1/datasets/-bad/files/train", "xxxx",
                              "application/octet-stream")),
            400);
  // Parts that upload fine but are no dataset: refused at registration.
  for (const char* part : {"train-images", "train-labels"}) {
    const std::string r = c.Send("PUT", std::string("/api/v1/datasets/bad/files/") + part,
                                 "not an idx file", "application/octet-stream");
    ASSERT_EQ(HttpStatus(r), 201) << r;
  }
  const std::string r = c.Send("POST", "/api/v1/datasets", R"({"name":"bad","format":"idx"})");
  EXPECT_EQ(HttpStatus(r), 400) << r;
  EXPECT_NE(ErrorMessage(r).find("invalid dataset 'bad'"), std::string::npos) << r;
  // A trained model from no running attempt.
  EXPECT_EQ(HttpStatus(c.Send("PUT", "/api/v1/jobs/7/model?attempt=x", "weights",
                              "application/octet-stream")),
            409);
  EXPECT_EQ(Tree(data), before);
  // The name is free again: nothing staged under it survives the refusal.
  EXPECT_EQ(HttpStatus(c.Send("POST", "/api/v1/datasets", R"({"name":"bad","format":"idx"})")),
            400);
  EXPECT_NE(ErrorMessage(c.Send("POST", "/api/v1/datasets", R"({"name":"bad","format":"idx"})"))
                .find("needs the file part 'train-images'"),
            std::string::npos);
}

}  // namespace
}  // namespace dnnd::testing
