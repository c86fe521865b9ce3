// The REST API refuses a JSON body with a field it does not know (400 naming
// the field, with a did-you-mean when one is near) on every endpoint that
// takes one, against a real controller process: a misspelled setting must
// never be silently replaced by its default.
#include <gtest/gtest.h>

#include "tests/roles/controller_process.h"

namespace dnnd::testing {
namespace {

void ExpectRefused(ControllerProcess& c, const std::string& path, const std::string& body,
                   const std::string& message, const std::string& type = "application/json") {
  const std::string r = c.Send("POST", path, body, type);
  EXPECT_EQ(HttpStatus(r), 400) << path << " " << body << "\n" << r;
  if (HttpStatus(r) != 400) return;
  EXPECT_EQ(ErrorCode(r), "invalid_argument") << r;
  EXPECT_NE(ErrorMessage(r).find(message), std::string::npos) << path << ": " << ErrorMessage(r);
}

TEST(ApiStrict, UnknownFieldsAreRefusedNamingThem) {
  TempDir dir;
  ControllerProcess c(dir);
  ASSERT_GT(c.port(), 0) << c.daemon().output();
  // The issue's example: neither field exists; the first is named, near "epochs".
  ExpectRefused(c, "/api/v1/jobs", R"({"epoch": 1, "learning_rate": 0.5})",
                "unknown field 'epoch' (did you mean 'epochs'?)");
  ExpectRefused(c, "/api/v1/jobs", R"({"model": "m", "dataset": "d", "learning_rate": 0.5})",
                "unknown field 'learning_rate'; expected model, dataset, epochs");
  ExpectRefused(c, "/api/v1/datasets", R"({"name": "d", "fromat": "idx"})",
                "unknown field 'fromat' (did you mean 'format'?)");
  ExpectRefused(c, "/api/v1/models", R"({"name": "m", "spec": "", "specs": ""})",
                "unknown field 'specs' (did you mean 'spec'?)");
  // A pool worker's heartbeat, and an epoch inside it.
  ExpectRefused(c, "/api/v1/nodes/n1/heartbeat", R"({"threads": 1, "thread": 2})",
                "heartbeat: unknown field 'thread' (did you mean 'threads'?)");
  ExpectRefused(c, "/api/v1/nodes/n1/heartbeat",
                R"({"threads": 1, "epochs": [{"epoch": 1, "train_los": 0.5}]})",
                "heartbeat: epoch: unknown field 'train_los' (did you mean 'train_loss'?)");
  // Nothing was created on the way.
  EXPECT_EQ(c.Json("GET", "/api/v1/jobs").at("jobs").as_array().size(), 0u);
  EXPECT_EQ(c.Json("GET", "/api/v1/models").at("models").as_array().size(), 0u);
  const json::value nodes = c.Json("GET", "/api/v1/nodes");
  for (const auto& n : nodes.at("nodes").as_array())
    EXPECT_NE(n.at("name"), "n1");  // the refused heartbeat did not join the pool
}

// Known fields still work, and a prediction's JSON body is as strict.
TEST(ApiStrict, KnownFieldsPassAndPredictionBodiesAreStrictToo) {
  if (!std::filesystem::exists(kFm + "train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "dataset-fashion-mnist missing";
  TempDir dir;
  ControllerProcess c(dir);
  ASSERT_GT(c.port(), 0) << c.daemon().output();
  RegisterFashionMnistAndMlp(c);
  const std::string r = c.Send("POST", "/api/v1/jobs",
                               R"({"model": "mlp", "dataset": "fm", "epochs": 1, "workers": 1,
                                   "limit_train": 256, "limit_test": 64, "normalize": true})");
  ASSERT_EQ(HttpStatus(r), 201) << r;
  const json::value job = WaitForJob(c, 1, JobOver, std::chrono::seconds(90));
  ASSERT_EQ(job.at("state"), "succeeded") << job;
  std::string pixels = "0";
  for (int i = 1; i < 784; ++i) pixels += ",0";
  const std::string ok =
      c.Send("POST", "/api/v1/models/mlp/predict", R"({"inputs": [[)" + pixels + "]]}");
  EXPECT_EQ(HttpStatus(ok), 200) << ok;
  ExpectRefused(c, "/api/v1/models/mlp/predict",
                R"({"inputs": [[)" + pixels + R"(]], "invert": true})",
                "unknown field 'invert'; expected inputs");
}

}  // namespace
}  // namespace dnnd::testing
