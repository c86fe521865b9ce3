// The REST API of a real controller process: errors, uploads, auth, the job list, datasets.
#include "fixture.h"

namespace dnnd {
namespace {

using namespace dnnd::controller_testing;

TEST(ControllerApi, RejectsBadInputWithPreciseErrorsAndKeepsServing) {
  TempDir dir;
  ControllerProcess c(dir, "--set controller.max_upload_bytes=4096");
  ASSERT_GT(c.port(), 0) << c.daemon().output();
  // Unknown routes and objects: JSON 404s.
  std::string r = c.Send("GET", "/api/v1/nope");
  EXPECT_EQ(HttpStatus(r), 404) << r;
  EXPECT_EQ(ErrorCode(r), "not_found");
  EXPECT_EQ(HttpStatus(c.Send("GET", "/api/v1/jobs/999")), 404);
  EXPECT_EQ(HttpStatus(c.Send("GET", "/api/v1/datasets/nope")), 404);
  EXPECT_EQ(HttpStatus(c.Send("GET", "/api/v1/models/nope")), 404);
  EXPECT_EQ(HttpStatus(c.Send("GET", "/api/v1/jobs/abc")), 400);
  // Path traversal in names, raw and percent-encoded: the router refuses the
  // path before a handler sees the name (tests/roles/api_doors_test.cc).
  r = c.Send("PUT", "/api/v1/datasets/..%2F..%2Fetc/files/train", "x");
  EXPECT_EQ(HttpStatus(r), 400) << r;
  EXPECT_NE(ErrorMessage(r).find("encoded '/'"), std::string::npos) << r;
  EXPECT_EQ(HttpStatus(c.Send("PUT", "/api/v1/datasets/../files/train", "x")), 400);
  EXPECT_EQ(HttpStatus(c.Send("POST", "/api/v1/datasets", R"({"name":"../x","format":"idx"})")),
            400);
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/x"));
  // Uploads: unknown part, over the limit.
  EXPECT_EQ(HttpStatus(c.Send("PUT", "/api/v1/datasets/d/files/weights", "x")), 400);
  r = c.Send("PUT", "/api/v1/datasets/d/files/train-images", std::string(5000, 'x'));
  EXPECT_EQ(HttpStatus(r), 413) << r;
  EXPECT_NE(ErrorMessage(r).find("controller.max_upload_bytes"), std::string::npos);
  // A dataset whose label count does not match its image count.
  ASSERT_EQ(HttpStatus(c.Send("PUT", "/api/v1/datasets/d/files/train-images", Idx({10, 4, 4}, 7))),
            201);
  r = c.Send("POST", "/api/v1/datasets", R"({"name":"d","format":"idx"})");
  EXPECT_EQ(HttpStatus(r), 400) << r;
  EXPECT_NE(ErrorMessage(r).find("train-labels"), std::string::npos)
      << r;  // the missing part is named
  ASSERT_EQ(HttpStatus(c.Send("PUT", "/api/v1/datasets/d/files/train-labels", Idx({9}, 1))), 201);
  r = c.Send("POST", "/api/v1/datasets", R"({"name":"d","format":"idx"})");
  EXPECT_EQ(HttpStatus(r), 400) << r;
  EXPECT_NE(ErrorMessage(r).find("invalid dataset 'd'"), std::string::npos) << r;
  EXPECT_NE(ErrorMessage(r).find("10"), std::string::npos) << r;
  // A truncated file.
  std::string truncated = Idx({10, 4, 4}, 7);
  truncated.resize(100);
  ASSERT_EQ(HttpStatus(c.Send("PUT", "/api/v1/datasets/d/files/train-images", truncated)), 201);
  EXPECT_EQ(HttpStatus(c.Send("POST", "/api/v1/datasets", R"({"name":"d","format":"idx"})")), 400);
  EXPECT_EQ(HttpStatus(c.Send("POST", "/api/v1/datasets", R"({"name":"d","format":"tar"})")), 400);
  // Now a good one: 10 samples of 4x4, labels 0..1.
  ASSERT_EQ(HttpStatus(c.Send("PUT", "/api/v1/datasets/d/files/train-images", Idx({10, 4, 4}, 7))),
            201);
  std::string labels = Idx({10}, 0);
  labels[labels.size() - 1] = 1;
  ASSERT_EQ(HttpStatus(c.Send("PUT", "/api/v1/datasets/d/files/train-labels", labels)), 201);
  r = c.Send("POST", "/api/v1/datasets", R"({"name":"d","format":"idx"})");
  ASSERT_EQ(HttpStatus(r), 201) << r;
  auto d = json::parse(HttpBody(r));
  EXPECT_EQ(d.at("train_samples").as_int64(), 10);
  EXPECT_EQ(json::serialize(d.at("class_histogram")), "[9,1]");
  EXPECT_EQ(HttpStatus(c.Send("POST", "/api/v1/datasets", R"({"name":"d","format":"idx"})")), 409);
  // Model specs: a typo'd layer, a shape that does not fit, not a spec at all.
  r = c.Send("POST", "/api/v1/models",
             R"({"name":"m","spec":{"input":[1,4,4],"layers":[{"type":"linaer","out":2}]}})");
  EXPECT_EQ(HttpStatus(r), 400) << r;
  EXPECT_NE(ErrorMessage(r).find("unknown layer type 'linaer'"), std::string::npos) << r;
  r = c.Send(
      "POST", "/api/v1/models",
      R"({"name":"m","spec":{"input":[1,4,4],"layers":[{"type":"flatten"},{"type":"linear","in":5,"out":2}]}})");
  EXPECT_EQ(HttpStatus(r), 400) << r;
  EXPECT_EQ(HttpStatus(c.Send("POST", "/api/v1/models", R"({"name":"m","spec":42})")), 400);
  EXPECT_EQ(HttpStatus(c.Send("POST", "/api/v1/models", R"({"name":"m","spec":"[model")")), 400);
  EXPECT_EQ(HttpStatus(c.Send("POST", "/api/v1/models", "{not json")), 400);
  r = c.Send(
      "POST", "/api/v1/models",
      R"({"name":"m","spec":{"model":{"input":[1,4,4],"layers":[{"type":"flatten"},{"type":"linear","out":2}],"optimizer":{"type":"sgd","lr":0.1}}}})");
  ASSERT_EQ(HttpStatus(r), 201) << r;
  EXPECT_EQ(json::parse(HttpBody(r)).at("parameters").as_int64(), 34);
  r = c.Send("POST", "/api/v1/models", R"({"name":"mlp","spec":)" + MlpSpecJson() + "}");
  ASSERT_EQ(HttpStatus(r), 201) << r;
  // Malformed jobs.
  r = c.Send("POST", "/api/v1/jobs", R"({"model":"nope","dataset":"d"})");
  EXPECT_EQ(HttpStatus(r), 400);
  EXPECT_NE(ErrorMessage(r).find("unknown model 'nope'"), std::string::npos) << r;
  r = c.Send("POST", "/api/v1/jobs", R"({"model":"m","dataset":"d","batch":0})");
  EXPECT_EQ(HttpStatus(r), 400);
  EXPECT_NE(ErrorMessage(r).find("'batch'"), std::string::npos) << r;
  EXPECT_EQ(
      HttpStatus(c.Send("POST", "/api/v1/jobs", R"({"model":"m","dataset":"d","workers":65})")),
      400);
  EXPECT_EQ(
      HttpStatus(c.Send("POST", "/api/v1/jobs", R"({"model":"m","dataset":"d","mode":"fast"})")),
      400);
  r = c.Send("POST", "/api/v1/jobs", R"({"model":"mlp","dataset":"d"})");
  EXPECT_EQ(HttpStatus(r), 400);
  EXPECT_NE(ErrorMessage(r).find("shape"), std::string::npos)
      << r;  // [1,28,28] model, [1,4,4] data
  // And a good one, which runs to the end.
  r = c.Send("POST", "/api/v1/jobs",
             R"({"model":"m","dataset":"d","epochs":3,"batch":5,"workers":2})");
  ASSERT_EQ(HttpStatus(r), 201) << r;
  const int64_t id = json::parse(HttpBody(r)).at("id").as_int64();
  std::string state;
  for (int i = 0; i < 200 && state != "succeeded" && state != "failed"; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    state = json::value_to<std::string>(
        c.Json("GET", "/api/v1/jobs/" + std::to_string(id)).at("state"));
  }
  auto job = c.Json("GET", "/api/v1/jobs/" + std::to_string(id));
  ASSERT_EQ(state, "succeeded") << job << c.daemon().output();
  EXPECT_EQ(job.at("history").as_array().size(), 3u);
  EXPECT_EQ(job.at("progress").to_number<double>(), 100.0);
  r = c.Send("GET", "/api/v1/models/m/checkpoint");
  ASSERT_EQ(HttpStatus(r), 200);
  EXPECT_NE(HttpBody(r).find("__metadata__"), std::string::npos);  // a safetensors header
  EXPECT_EQ(HttpStatus(c.Send("GET", "/api/v1/models/mlp/checkpoint")), 404);
  EXPECT_EQ(HttpStatus(c.Send("POST", "/api/v1/jobs/" + std::to_string(id) + "/cancel")), 409);
  EXPECT_EQ(HttpStatus(c.Send("GET", "/healthz")), 200);  // still serving
  c.daemon().Signal(SIGTERM);
  EXPECT_EQ(c.daemon().Wait(), 0) << c.daemon().output();
}

TEST(ControllerAuth, MutatingRoutesNeedTheTokenReadsStayOpenRefusalsAreLogged) {
  TempDir dir;
  const std::string token_file =
      dir.Write("token", "tok-3f9a\n");  // a mounted Secret ends in a newline
  const std::string wire_key_file = dir.Write("wire-key", "wire-5b1e\n");
  // One local worker: a second job stays queued, so cancelling and deleting it is immediate.
  ControllerProcess c(dir, "--set http.token_file=" + token_file + " --set transport.token_file=" +
                               wire_key_file + " --set controller.local_workers=1");
  ASSERT_GT(c.port(), 0) << c.daemon().output();
  EXPECT_EQ(c.daemon().output().find("UNAUTHENTICATED"), std::string::npos);
  const std::vector<std::pair<std::string, std::string>> mutating = {
      {"PUT", "/api/v1/datasets/d/files/train-images"},
      {"POST", "/api/v1/datasets"},
      {"DELETE", "/api/v1/datasets/d"},
      {"POST", "/api/v1/models"},
      {"POST", "/api/v1/jobs"},
      {"POST", "/api/v1/jobs/1/cancel"},
      {"DELETE", "/api/v1/jobs/1"}};
  // The wire key is no bearer token: the two secrets are different.
  for (const std::string& token :
       {std::string(), std::string("wrong-token-77"), std::string("wire-5b1e")}) {
    c.UseToken(token);
    for (const auto& [method, path] : mutating) {
      const std::string r = c.Send(method, path, "{}");
      EXPECT_EQ(HttpStatus(r), 401) << method << " " << path << "\n" << r;
      EXPECT_EQ(ErrorCode(r), "unauthorized") << r;
      EXPECT_EQ(HttpHeader(r, "WWW-Authenticate").rfind("Bearer", 0), 0u) << r;
    }
  }
  // Each refusal is logged with method, route and peer; the presented token never is.
  const std::string log = c.daemon().output();
  EXPECT_NE(
      log.find("unauthorized request refused method=PUT route=/api/v1/datasets/{name}/files/{part} "
               "remote=127.0.0.1:"),
      std::string::npos)
      << log;
  EXPECT_NE(log.find("method=DELETE route=/api/v1/jobs/{id}"), std::string::npos) << log;
  EXPECT_EQ(log.find("wrong-token-77"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/data/uploads/d"));  // nothing stored
  // Reads are open: dashboards and probes carry no secret.
  c.UseToken("");
  for (const char* path :
       {"/api/v1/jobs", "/api/v1/datasets", "/api/v1/models", "/healthz", "/metrics"})
    EXPECT_EQ(HttpStatus(c.Send("GET", path)), 200) << path;
  const int ready = HttpStatus(c.Send("GET", "/readyz"));  // 503 while the controller starts
  EXPECT_TRUE(ready == 200 || ready == 503) << ready;
  const std::string metrics = HttpBody(c.Send("GET", "/metrics"));
  EXPECT_NE(metrics.find("dnnd_http_unauthorized_total{method=\"POST\",route=\"/api/v1/jobs\"} 3"),
            std::string::npos)
      << metrics;
  // With the token: the same routes work.
  c.UseToken("tok-3f9a");
  TinyFiles files(dir);
  RegisterTiny(c, files);
  for (const char* part : {"train-images", "train-labels"})  // a second dataset, to delete
    EXPECT_EQ(HttpStatus(c.Send(
                  "PUT", std::string("/api/v1/datasets/e/files/") + part,
                  ReadFile(std::string(part) == "train-images" ? files.images : files.labels))),
              201);
  EXPECT_EQ(HttpStatus(c.Send("POST", "/api/v1/datasets", R"({"name":"e","format":"idx"})")), 201);
  const std::string job = R"({"model":"m","dataset":"d","epochs":100000,"batch":5,"workers":1})";
  std::string r = c.Send("POST", "/api/v1/jobs", job);  // runs on the one worker
  ASSERT_EQ(HttpStatus(r), 201) << r;
  r = c.Send("POST", "/api/v1/jobs", job);  // queued behind it
  ASSERT_EQ(HttpStatus(r), 201) << r;
  EXPECT_EQ(HttpStatus(c.Send("POST", "/api/v1/jobs/2/cancel")), 202);
  EXPECT_EQ(HttpStatus(c.Send("DELETE", "/api/v1/jobs/2")), 200);
  EXPECT_EQ(HttpStatus(c.Send("DELETE", "/api/v1/datasets/e")), 200);
}

TEST(ControllerAuth, NoTokenWarnsThatTheApiIsOpen) {
  TempDir dir;
  ControllerProcess c(dir);
  ASSERT_GT(c.port(), 0) << c.daemon().output();
  ASSERT_TRUE(c.daemon().WaitFor("UNAUTHENTICATED", std::chrono::seconds(5)))
      << c.daemon().output();
  EXPECT_EQ(HttpStatus(c.Send("POST", "/api/v1/models", "{}")), 400);  // served, just not guarded
}

TEST(ControllerUpload, StreamsToDiskByteIdenticalWithBoundedMemory) {
  TempDir dir;
  // Under the 64 MiB the server drains after an early 413, so the client can send it all.
  ControllerProcess c(dir, "--set controller.max_upload_bytes=30000000");
  ASSERT_GT(c.port(), 0) << c.daemon().output();
  // 24 MiB of varied bytes: 24x the JSON body limit (http.max_body_bytes).
  std::string data(24 << 20, '\0');
  uint64_t x = 88172645463325252ull;
  for (size_t i = 0; i + 8 <= data.size(); i += 8) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    std::memcpy(&data[i], &x, 8);
  }
  const int64_t before = PeakRss(c.daemon().pid());
  std::string r = c.Send("PUT", "/api/v1/datasets/big/files/train", data);
  ASSERT_EQ(HttpStatus(r), 201) << r;
  const int64_t growth = PeakRss(c.daemon().pid()) - before;
  std::printf("controller peak RSS %.1f MiB before, +%.1f MiB after a %zu MiB upload\n",
              before / 1048576.0, growth / 1048576.0, data.size() >> 20);
  EXPECT_LT(growth, 8 << 20) << "the upload was held in memory";
  EXPECT_TRUE(ReadFile(dir.path() + "/data/uploads/big/train") == data);
  // Over the limit: 413 naming the setting, and no file (partial or temporary) is left.
  data.resize(30000001);
  r = c.Send("PUT", "/api/v1/datasets/big/files/test", data);
  EXPECT_EQ(HttpStatus(r), 413) << r;
  EXPECT_NE(ErrorMessage(r).find("controller.max_upload_bytes"), std::string::npos) << r;
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/data/uploads/big/test"));
  for (const auto& e : std::filesystem::directory_iterator(dir.path() + "/data/uploads"))
    EXPECT_TRUE(e.is_directory()) << e.path();  // no .upload-* leftovers
  EXPECT_EQ(HttpStatus(c.Send("GET", "/healthz")), 200);
}

// GET /api/v1/jobs is answered from a cache while nothing changes: it must
// still show every store write (a new job, a state change, a deletion) and a
// running job's progress reports as soon as they happen.
TEST(ControllerApi, JobListFollowsWritesAndProgressThoughCached) {
  if (!std::filesystem::exists(kFm + "train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "dataset-fashion-mnist missing";
  TempDir dir;
  ControllerProcess c(dir, "--set controller.local_workers=1");
  ASSERT_GT(c.port(), 0) << c.daemon().output();
  RegisterFashionMnistAndMlp(c);
  auto listed = [&]() -> json::object {
    const auto jobs = c.Json("GET", "/api/v1/jobs").at("jobs").as_array();
    return jobs.empty() ? json::object{} : jobs[0].as_object();
  };
  EXPECT_TRUE(listed().empty());
  // 2 epochs of 469 steps (30000 samples, batch 64): a few seconds each, so
  // several heartbeats report progress inside the first epoch.
  const std::string r = c.Send(
      "POST", "/api/v1/jobs",
      R"({"model":"mlp","dataset":"fm","epochs":2,"workers":1,"limit_train":30000,"limit_test":500})");
  ASSERT_EQ(HttpStatus(r), 201) << r;
  ASSERT_FALSE(listed().empty());  // at once, not at the next progress report
  const int64_t id = listed().at("id").as_int64();
  // Progress moves in the list within an epoch (no store write happens
  // there, only progress reports), and the job ends succeeded there.
  constexpr int64_t kStepsPerEpoch = 469;
  std::set<int64_t> inside_first_epoch;
  std::string state;
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(90);
  while (std::chrono::steady_clock::now() < end) {
    const json::object j = listed();
    state = std::string(j.at("state").as_string());
    const int64_t step = j.at("step").as_int64();
    if (state == "running" && step > 0 && step < kStepsPerEpoch) inside_first_epoch.insert(step);
    if (state != "queued" && state != "running") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(state, "succeeded");
  EXPECT_GE(inside_first_epoch.size(), 1u)
      << "the listed step should move with the progress reports";
  EXPECT_EQ(listed().at("epoch").as_int64(), 2);
  EXPECT_EQ(listed().at("step").as_int64(), 2 * kStepsPerEpoch);
  ASSERT_EQ(HttpStatus(c.Send("DELETE", "/api/v1/jobs/" + std::to_string(id))), 200);
  EXPECT_TRUE(listed().empty());
}

// A dataset deleted and registered again under its name is another dataset:
// the next job gets the new samples (the shard service) and their statistics
// (normalize_mean), not what the controller had loaded for the old one.
TEST(ControllerDatasets, ReRegisteredNameServesTheNewDataToJobs) {
  TempDir dir;
  ControllerProcess c(dir, "--set controller.local_workers=1");
  ASSERT_GT(c.port(), 0) << c.daemon().output();
  TinyFiles files(dir);  // 10 samples of pixel value 7, the model 4x4 -> 2
  ASSERT_EQ(HttpStatus(c.Send("POST", "/api/v1/models",
                              R"({"name":"m","spec":)" +
                                  json::serialize(json::value(ReadFile(files.spec))) + "}")),
            201);
  auto register_d = [&](const std::string& images, const std::string& labels) {
    ASSERT_EQ(HttpStatus(c.Send("PUT", "/api/v1/datasets/d/files/train-images", images)), 201);
    ASSERT_EQ(HttpStatus(c.Send("PUT", "/api/v1/datasets/d/files/train-labels", labels)), 201);
    const std::string r = c.Send("POST", "/api/v1/datasets", R"({"name":"d","format":"idx"})");
    ASSERT_EQ(HttpStatus(r), 201) << r;
  };
  // One job: epochs of batches of 5 on one worker, so its steps count the samples it got.
  auto train = [&](int64_t samples, double pixel) {
    const std::string r = c.Send("POST", "/api/v1/jobs",
                                 R"({"model":"m","dataset":"d","epochs":1,"batch":5,"workers":1})");
    ASSERT_EQ(HttpStatus(r), 201) << r;
    const json::value created = json::parse(HttpBody(r));
    EXPECT_NEAR(created.at("params").at("normalize_mean").to_number<double>(), pixel / 255.0, 1e-9)
        << r;
    const json::value job =
        WaitForJob(c, created.at("id").as_int64(), JobOver, std::chrono::seconds(60));
    ASSERT_EQ(job.at("state"), "succeeded") << json::serialize(job) << "\n" << c.daemon().output();
    EXPECT_EQ(job.at("step").as_int64(), samples / 5) << json::serialize(job);
  };
  register_d(ReadFile(files.images), ReadFile(files.labels));
  train(10, 7);
  ASSERT_EQ(HttpStatus(c.Send("DELETE", "/api/v1/datasets/d")), 200);
  std::string labels = Idx({20}, 0);
  labels.back() = 1;
  register_d(Idx({20, 4, 4}, 200), labels);  // 20 samples of pixel value 200
  train(20, 200);
  EXPECT_EQ(HttpStatus(c.Send("GET", "/healthz")), 200);
}

}  // namespace
}  // namespace dnnd
