// The controller: its SQLite store (migrations, transactions, the in-use
// check) directly, and its REST API and durability against the real dnnd
// binary (real sockets, files and processes; SIGKILL mid-job, then resume).
#include <sqlite3.h>

#include <boost/json.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <memory>
#include <thread>

#include <gtest/gtest.h>

#include "controller_process.h"
#include "dnnd_process.h"
#include "roles/controller/controller.h"
#include "roles/controller/store.h"

namespace dnnd {
namespace {

using namespace dnnd::testing;
namespace json = boost::json;

// ---- store ----------------------------------------------------------------

TEST(ControllerStore, MigratesOnceAndKeepsDataAcrossReopen) {
  TempDir dir;
  const std::string db = dir.path() + "/c.db";
  {
    auto s = ControllerStore::Open(db);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    EXPECT_EQ((*s)->SchemaVersion(), ControllerStore::kSchemaVersion);
    ASSERT_TRUE((*s)->PutModel({"m", "[model]", 3, ""}).ok());
    EXPECT_EQ((*s)->PutModel({"m", "[model]", 3, ""}).code(), StatusCode::kAlreadyExists);
    auto id = (*s)->CreateJob("m", "d", "{}");
    ASSERT_TRUE(id.ok());
    ASSERT_TRUE((*s)->SetJobState(*id, kJobRunning, "").ok());
    ASSERT_TRUE((*s)->RecordEpoch(*id, {1, 0.5, true, 0.4, 0.8, 1.0, 100}, 10, 30).ok());
    ASSERT_TRUE((*s)->RecordEpoch(*id, {1, 0.6, false, 0, 0, 1.0, 100}, 12, 30).ok());  // a resumed epoch replaces
  }
  auto s = ControllerStore::Open(db);  // a second open applies nothing and loses nothing
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ((*s)->SchemaVersion(), ControllerStore::kSchemaVersion);
  auto job = (*s)->GetJob(1);
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->state, kJobRunning);
  EXPECT_EQ(job->attempts, 1);
  EXPECT_EQ(job->step, 12);
  ASSERT_EQ(job->history.size(), 1u);
  EXPECT_DOUBLE_EQ(job->history[0].train_loss, 0.6);
  auto next = (*s)->NextRunnable();  // a job left running comes first
  ASSERT_TRUE(next.ok() && next->has_value());
  EXPECT_EQ(**next, 1);
  EXPECT_EQ((*s)->GetModel("nope").status().code(), StatusCode::kNotFound);
}

TEST(ControllerStore, DatasetDeleteRefusedWhileAJobUsesIt) {
  TempDir dir;
  auto s = ControllerStore::Open(dir.path() + "/c.db");
  ASSERT_TRUE(s.ok());
  DatasetRecord d{.name = "d", .format = "idx", .sample_shape = "[1]", .histogram = "[]", .files = "{}"};
  ASSERT_TRUE((*s)->PutDataset(d).ok());
  auto id = (*s)->CreateJob("m", "d", "{}");
  ASSERT_TRUE(id.ok());
  auto users = (*s)->DeleteDataset("d");
  ASSERT_TRUE(users.ok());
  EXPECT_EQ(*users, std::vector<int64_t>{*id});
  EXPECT_TRUE((*s)->GetDataset("d").ok());
  auto cancelled = (*s)->CancelIfQueued(*id);
  ASSERT_TRUE(cancelled.ok() && *cancelled);
  users = (*s)->DeleteDataset("d");
  ASSERT_TRUE(users.ok());
  EXPECT_TRUE(users->empty());
  EXPECT_EQ((*s)->GetDataset("d").status().code(), StatusCode::kNotFound);
  EXPECT_EQ((*s)->DeleteDataset("d").status().code(), StatusCode::kNotFound);
}

TEST(ControllerStore, RefusesADatabaseFromANewerSchema) {
  TempDir dir;
  const std::string db = dir.path() + "/c.db";
  ASSERT_TRUE(ControllerStore::Open(db).ok());
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(db.c_str(), &raw), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(raw, "UPDATE schema_version SET version = 999", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(raw);
  auto s = ControllerStore::Open(db);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("schema version 999"), std::string::npos) << s.status().ToString();
}

TEST(Controller, NamesCannotEscapeTheDataDirectory) {
  EXPECT_TRUE(IsValidName("fashion-mnist_v1.2"));
  for (const char* bad : {"", ".", "..", "../x", "a/b", ".hidden", "a b", "a\\b", "x%2F"}) EXPECT_FALSE(IsValidName(bad)) << bad;
  EXPECT_FALSE(IsValidName(std::string(65, 'a')));
}

// ---- the real controller process ------------------------------------------

// An IDX file: magic (type 0x08 = uint8, `dims.size()` dimensions), sizes, data.
std::string Idx(const std::vector<int>& dims, uint8_t fill) {
  std::string s = {0, 0, 8, static_cast<char>(dims.size())};
  size_t n = 1;
  for (int d : dims) {
    s += {static_cast<char>(d >> 24), static_cast<char>(d >> 16), static_cast<char>(d >> 8), static_cast<char>(d)};
    n *= static_cast<size_t>(d);
  }
  return s + std::string(n, static_cast<char>(fill));
}

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
  EXPECT_EQ(HttpStatus(c.Send("POST", "/api/v1/datasets", R"({"name":"../x","format":"idx"})")), 400);
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/x"));
  // Uploads: unknown part, over the limit.
  EXPECT_EQ(HttpStatus(c.Send("PUT", "/api/v1/datasets/d/files/weights", "x")), 400);
  r = c.Send("PUT", "/api/v1/datasets/d/files/train-images", std::string(5000, 'x'));
  EXPECT_EQ(HttpStatus(r), 413) << r;
  EXPECT_NE(ErrorMessage(r).find("controller.max_upload_bytes"), std::string::npos);
  // A dataset whose label count does not match its image count.
  ASSERT_EQ(HttpStatus(c.Send("PUT", "/api/v1/datasets/d/files/train-images", Idx({10, 4, 4}, 7))), 201);
  r = c.Send("POST", "/api/v1/datasets", R"({"name":"d","format":"idx"})");
  EXPECT_EQ(HttpStatus(r), 400) << r;
  EXPECT_NE(ErrorMessage(r).find("train-labels"), std::string::npos) << r;  // the missing part is named
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
  ASSERT_EQ(HttpStatus(c.Send("PUT", "/api/v1/datasets/d/files/train-images", Idx({10, 4, 4}, 7))), 201);
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
  r = c.Send("POST", "/api/v1/models", R"({"name":"m","spec":{"input":[1,4,4],"layers":[{"type":"linaer","out":2}]}})");
  EXPECT_EQ(HttpStatus(r), 400) << r;
  EXPECT_NE(ErrorMessage(r).find("unknown layer type 'linaer'"), std::string::npos) << r;
  r = c.Send("POST", "/api/v1/models",
             R"({"name":"m","spec":{"input":[1,4,4],"layers":[{"type":"flatten"},{"type":"linear","in":5,"out":2}]}})");
  EXPECT_EQ(HttpStatus(r), 400) << r;
  EXPECT_EQ(HttpStatus(c.Send("POST", "/api/v1/models", R"({"name":"m","spec":42})")), 400);
  EXPECT_EQ(HttpStatus(c.Send("POST", "/api/v1/models", R"({"name":"m","spec":"[model")")), 400);
  EXPECT_EQ(HttpStatus(c.Send("POST", "/api/v1/models", "{not json")), 400);
  r = c.Send("POST", "/api/v1/models",
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
  EXPECT_EQ(HttpStatus(c.Send("POST", "/api/v1/jobs", R"({"model":"m","dataset":"d","workers":65})")), 400);
  EXPECT_EQ(HttpStatus(c.Send("POST", "/api/v1/jobs", R"({"model":"m","dataset":"d","mode":"fast"})")), 400);
  r = c.Send("POST", "/api/v1/jobs", R"({"model":"mlp","dataset":"d"})");
  EXPECT_EQ(HttpStatus(r), 400);
  EXPECT_NE(ErrorMessage(r).find("shape"), std::string::npos) << r;  // [1,28,28] model, [1,4,4] data
  // And a good one, which runs to the end.
  r = c.Send("POST", "/api/v1/jobs", R"({"model":"m","dataset":"d","epochs":3,"batch":5,"workers":2})");
  ASSERT_EQ(HttpStatus(r), 201) << r;
  const int64_t id = json::parse(HttpBody(r)).at("id").as_int64();
  std::string state;
  for (int i = 0; i < 200 && state != "succeeded" && state != "failed"; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    state = json::value_to<std::string>(c.Json("GET", "/api/v1/jobs/" + std::to_string(id)).at("state"));
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

TEST(ControllerCtl, DrivesTheApiWithScriptableExitCodes) {
  TempDir dir;
  ControllerProcess c(dir);
  ASSERT_GT(c.port(), 0) << c.daemon().output();
  const std::string ctl = "ctl --controller 127.0.0.1:" + std::to_string(c.port()) + " ";
  std::string labels = Idx({10}, 0);
  labels[labels.size() - 1] = 1;
  const std::string images = dir.Write("x.idx", Idx({10, 4, 4}, 7)), ys = dir.Write("y.idx", labels);
  Outcome r = Dnnd(ctl + "dataset upload d --format idx --train-images " + images + " --train-labels " + ys);
  ASSERT_EQ(r.code, 0) << r.output;
  r = Dnnd(ctl + "dataset list");
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.output.find("[9,1]"), std::string::npos) << r.output;  // the class histogram
  const std::string spec = dir.Write("m.toml",
      "[model]\ninput = [1, 4, 4]\n[[model.layers]]\ntype = \"flatten\"\n[[model.layers]]\ntype = \"linear\"\nout = 2\n");
  ASSERT_EQ(Dnnd(ctl + "model create m --spec " + spec).code, 0);
  r = Shell(std::string(DNND_BINARY) + " " + ctl + "job create --model m --dataset d --epochs 2 --batch 5 2>/dev/null");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(r.output, "1\n");  // just the id, for scripts
  r = Dnnd(ctl + "-o json job get 1");
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.output.find("\"model\": \"m\""), std::string::npos) << r.output;
  // Refused (4xx) is 3 with the controller's message; unreachable is 1; usage is 2.
  r = Dnnd(ctl + "job create --model nope --dataset d");
  EXPECT_EQ(r.code, 3);
  EXPECT_NE(r.output.find("unknown model 'nope'"), std::string::npos) << r.output;
  EXPECT_EQ(Dnnd(ctl + "job get 42").code, 3);
  EXPECT_EQ(Dnnd(ctl + "dataset get ../../etc").code, 3);
  EXPECT_EQ(Dnnd(ctl + "job frobnicate").code, 2);
  EXPECT_EQ(Dnnd(ctl + "job create --model m --epochs many").code, 2);
  EXPECT_EQ(Dnnd("ctl --controller 127.0.0.1:1 job list").code, 1);
}

TEST(ControllerDurability, SigkilledMidJobResumesFromCheckpointAndFinishes) {
  if (!std::filesystem::exists(kFm + "train-images-idx3-ubyte.gz")) GTEST_SKIP() << "dataset-fashion-mnist missing";
  TempDir dir;
  int64_t id = 0;
  {
    ControllerProcess c(dir, "--set controller.checkpoint_every_steps=10");
    ASSERT_GT(c.port(), 0) << c.daemon().output();
    RegisterFashionMnistAndMlp(c);
    const std::string r = c.Send(
        "POST", "/api/v1/jobs",
        R"({"model":"mlp","dataset":"fm","epochs":4,"batch":64,"workers":2,"limit_train":12000,"limit_test":1000})");
    ASSERT_EQ(HttpStatus(r), 201) << r;
    id = json::parse(HttpBody(r)).at("id").as_int64();
    // Kill it hard once an epoch is in the store and the next is under way.
    auto job = WaitForJob(c, id, [](const json::value& j) {
      return j.at("history").as_array().size() >= 1 && j.at("progress").to_number<double>() > 30;
    }, std::chrono::seconds(40));
    ASSERT_EQ(job.at("state").as_string(), "running") << job << c.daemon().output();
    ASSERT_GE(job.at("history").as_array().size(), 1u);
    EXPECT_GT(job.at("eta_seconds").to_number<double>(), 0.0) << job;
    EXPECT_EQ(HttpStatus(c.Send("DELETE", "/api/v1/datasets/fm")), 409);  // in use
    c.daemon().Signal(SIGKILL);
    c.daemon().Wait();
  }
  ControllerProcess c(dir);
  ASSERT_GT(c.port(), 0) << c.daemon().output();
  auto listed = c.Json("GET", "/api/v1/jobs");
  ASSERT_EQ(listed.at("jobs").as_array().size(), 1u);
  EXPECT_EQ(listed.at("jobs").as_array()[0].at("id").as_int64(), id);
  // The history recorded before the kill survived it.
  EXPECT_GE(c.Json("GET", "/api/v1/jobs/" + std::to_string(id)).at("history").as_array().size(), 1u);
  auto job = WaitForJob(c, id, JobOver, std::chrono::seconds(60));
  ASSERT_EQ(job.at("state").as_string(), "succeeded") << job << c.daemon().output();
  EXPECT_EQ(job.at("attempts").as_int64(), 2);
  const auto& history = job.at("history").as_array();
  ASSERT_EQ(history.size(), 4u) << job;
  for (size_t e = 0; e < 4; ++e) EXPECT_EQ(history[e].at("epoch").as_int64(), static_cast<int64_t>(e + 1));
  EXPECT_GT(history[3].at("test_accuracy").to_number<double>(), 0.7) << job;
  EXPECT_NE(c.daemon().output().find("resumed from checkpoint"), std::string::npos);  // the parameter servers'
  const std::string log = HttpBody(c.Send("GET", "/api/v1/jobs/" + std::to_string(id) + "/logs"));
  EXPECT_NE(log.find("resumed after a controller restart"), std::string::npos) << log;
  EXPECT_NE(log.find("succeeded"), std::string::npos) << log;
  // The second attempt started from the parameter servers' checkpoint, not from step 0.
  const size_t second = log.find("training from step ", log.find("resumed after a controller restart"));
  ASSERT_NE(second, std::string::npos) << log;
  EXPECT_GT(std::atoll(log.c_str() + second + 19), 0) << log;
  const std::string ckpt = c.Send("GET", "/api/v1/jobs/" + std::to_string(id) + "/checkpoint");
  EXPECT_EQ(HttpStatus(ckpt), 200);
  EXPECT_GT(HttpBody(ckpt).size(), 535818u * 4);  // every float32 weight of the MLP

  // Cancel: a long job stops, is recorded cancelled, and frees its dataset.
  std::string r = c.Send("POST", "/api/v1/jobs",
                         R"({"model":"mlp","dataset":"fm","epochs":100,"workers":1,"limit_train":2000,"limit_test":100})");
  ASSERT_EQ(HttpStatus(r), 201) << r;
  const int64_t long_id = json::parse(HttpBody(r)).at("id").as_int64();
  WaitForJob(c, long_id, [](const json::value& j) { return j.at("state") == "running"; }, std::chrono::seconds(20));
  EXPECT_EQ(HttpStatus(c.Send("DELETE", "/api/v1/datasets/fm")), 409);
  EXPECT_EQ(HttpStatus(c.Send("POST", "/api/v1/jobs/" + std::to_string(long_id) + "/cancel")), 202);
  job = WaitForJob(c, long_id, [](const json::value& j) { return j.at("state") != "running"; }, std::chrono::seconds(20));
  EXPECT_EQ(job.at("state").as_string(), "cancelled") << job;
  EXPECT_EQ(HttpStatus(c.Send("DELETE", "/api/v1/datasets/fm")), 200);
  EXPECT_EQ(HttpStatus(c.Send("GET", "/api/v1/datasets/fm")), 404);
}


// ---- the worker pool --------------------------------------------------------

// What a broken or hostile pool worker can send: each a precise 4xx, and the
// pool keeps working.
TEST(ControllerPool, BadHeartbeatsAndUploadsAreRefusedPrecisely) {
  TempDir dir;
  ControllerProcess c(dir, "--set controller.local_workers=0");
  ASSERT_GT(c.port(), 0) << c.daemon().output();
  auto refused = [&](const std::string& r, int status, const std::string& words) {
    EXPECT_EQ(HttpStatus(r), status) << r;
    EXPECT_NE(ErrorMessage(r).find(words), std::string::npos) << r;
  };
  refused(c.Send("POST", "/api/v1/nodes/w1/heartbeat", "{not json"), 400, "line 1");
  refused(c.Send("POST", "/api/v1/nodes/w1/heartbeat", "[1,2]"), 400, "JSON object");
  refused(c.Send("POST", "/api/v1/nodes/w1/heartbeat", R"({"state":"dancing"})"), 400, "'state' is 'dancing'");
  refused(c.Send("POST", "/api/v1/nodes/w1/heartbeat", R"({"job":"one"})"), 400, "'job' must be an integer");
  refused(c.Send("POST", "/api/v1/nodes/w1/heartbeat", R"({"epochs":[{"epoch":0}]})"), 400, "epoch number");
  refused(c.Send("POST", "/api/v1/nodes/..%2Fx/heartbeat", "{}"), 400, "encoded '/'");
  refused(c.Send("POST", "/api/v1/nodes/.x/heartbeat", "{}"), 400, "invalid node name");
  refused(c.Send("PUT", "/api/v1/jobs/1/model?attempt=forged", "weights"), 409, "not running that attempt");
  EXPECT_EQ(c.Json("GET", "/api/v1/nodes").at("nodes").as_array().size(), 0u);  // none registered by them
  // A well-formed heartbeat registers the node, and a report of a task the
  // controller never gave is answered "stop".
  auto order = c.Json("POST", "/api/v1/nodes/w1/heartbeat", R"({"threads":1})");
  EXPECT_EQ(order.at("order"), "idle") << order;
  order = c.Json("POST", "/api/v1/nodes/w1/heartbeat", R"({"job":7,"attempt":"x","state":"running"})");
  EXPECT_EQ(order.at("order"), "stop") << order;
  EXPECT_EQ(c.Json("GET", "/api/v1/nodes").at("nodes").as_array().size(), 1u);
}


// A pool worker process: `dnnd --role=worker` with worker.controller set.
std::unique_ptr<Daemon> StartPoolWorker(TempDir& dir, int port, const std::string& name) {
  const std::string config = dir.Write(name + ".toml", "[node]\nname = \"" + name +
                                                           "\"\nthreads = 1\n[worker]\ncontroller = \"127.0.0.1:" +
                                                           std::to_string(port) + "\"\nheartbeat_ms = 200\n");
  return std::make_unique<Daemon>("--role=worker --config " + config, dir.path() + "/" + name + ".log");
}

json::array PoolNodes(ControllerProcess& c) { return c.Json("GET", "/api/v1/nodes").at("nodes").as_array(); }

bool WaitForNodes(ControllerProcess& c, size_t n, std::chrono::seconds timeout) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    size_t idle = 0;
    for (const auto& node : PoolNodes(c)) idle += node.at("state") == "idle";
    if (idle >= n) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

// Controller + 3 registered worker processes on the real Fashion-MNIST: a
// 2-worker sync job reaches 88 %, a second job waits queued for all its
// workers, a job asking for more workers than the pool has is refused, and
// SIGKILLing a worker mid-job moves its part to the idle one without failing
// the job.
TEST(ControllerPool, RegisteredWorkersTrainAndSurviveAWorkerKill) {
  if (!std::filesystem::exists(kFm + "train-images-idx3-ubyte.gz")) GTEST_SKIP() << "dataset-fashion-mnist missing";
  TempDir dir;
  ControllerProcess c(dir, "--set controller.local_workers=0 --set controller.node_timeout_ms=1500"
                           " --set controller.checkpoint_every_steps=20");
  ASSERT_GT(c.port(), 0) << c.daemon().output();
  std::map<std::string, std::unique_ptr<Daemon>> workers;
  for (const char* name : {"w1", "w2", "w3"}) workers[name] = StartPoolWorker(dir, c.port(), name);
  ASSERT_TRUE(WaitForNodes(c, 3, std::chrono::seconds(20))) << c.Send("GET", "/api/v1/nodes");
  const Outcome nodes = Dnnd("ctl --controller 127.0.0.1:" + std::to_string(c.port()) + " node list");
  EXPECT_EQ(nodes.code, 0) << nodes.output;
  for (const char* name : {"w1-", "w2-", "w3-"}) EXPECT_NE(nodes.output.find(name), std::string::npos) << nodes.output;
  EXPECT_NE(nodes.output.find("idle"), std::string::npos) << nodes.output;
  const std::string ctl = "ctl --controller 127.0.0.1:" + std::to_string(c.port()) + " ";
  const Outcome created = Dnnd(ctl + "dataset create fm --format idx --train-images " + kFm +
                               "train-images-idx3-ubyte.gz --train-labels " + kFm + "train-labels-idx1-ubyte.gz" +
                               " --test-images " + kFm + "t10k-images-idx3-ubyte.gz --test-labels " + kFm +
                               "t10k-labels-idx1-ubyte.gz");
  ASSERT_EQ(created.code, 0) << created.output;
  ASSERT_EQ(Dnnd(ctl + "model create mlp --spec " + Src("configs/models/mlp.toml")).code, 0);

  std::string r = c.Send("POST", "/api/v1/jobs", R"({"model":"mlp","dataset":"fm","workers":4})");
  ASSERT_EQ(HttpStatus(r), 400) << r;
  EXPECT_NE(ErrorMessage(r).find("asks for 4 workers but the pool has 3"), std::string::npos) << r;

  // `dnnd ctl train --follow` prints the id, follows the job to its end and
  // exits 0 only if it succeeded.
  Daemon follow(ctl + "train --model mlp --dataset fm --epochs 5 --batch 64 --workers 2 --servers 2 --follow",
                dir.path() + "/follow.log");
  ASSERT_TRUE(follow.WaitFor("\n", std::chrono::seconds(30))) << follow.output();
  const int64_t id = std::atoll(follow.output().c_str());
  ASSERT_GT(id, 0) << follow.output();
  r = c.Send("POST", "/api/v1/jobs", R"({"model":"mlp","dataset":"fm","epochs":1,"workers":2})");
  ASSERT_EQ(HttpStatus(r), 201) << r;
  const int64_t second = json::parse(HttpBody(r)).at("id").as_int64();

  // Kill the worker running part 1 once training is well under way.
  auto job = WaitForJob(c, id, [](const json::value& j) { return j.at("progress").to_number<double>() > 30; },
                        std::chrono::seconds(60));
  ASSERT_EQ(job.at("state"), "running") << job << c.daemon().output();
  // All or nothing: one node is idle, but the second job needs two.
  EXPECT_EQ(c.Json("GET", "/api/v1/jobs/" + std::to_string(second)).at("state"), "queued");
  std::string victim, spare;
  for (const auto& node : PoolNodes(c)) {
    const std::string name(node.at("name").as_string());
    if (node.at("index") == 1) victim = name.substr(0, name.find('-'));
    if (node.at("state") == "idle") spare = name.substr(0, name.find('-'));
  }
  ASSERT_FALSE(victim.empty()) << c.Send("GET", "/api/v1/nodes");
  ASSERT_FALSE(spare.empty()) << c.Send("GET", "/api/v1/nodes");
  workers[victim]->Signal(SIGKILL);
  workers[victim]->Wait();

  EXPECT_EQ(follow.Wait(), 0) << follow.output();
  EXPECT_NE(follow.output().find("succeeded"), std::string::npos) << follow.output();
  job = WaitForJob(c, id, [](const json::value& j) { return j.at("state") != "running"; }, std::chrono::seconds(120));
  ASSERT_EQ(job.at("state"), "succeeded") << job << c.daemon().output();
  const auto& history = job.at("history").as_array();
  ASSERT_EQ(history.size(), 5u) << job;
  EXPECT_GE(history.back().at("test_accuracy").to_number<double>(), 0.88) << job;
  EXPECT_NE(c.daemon().output().find("part replaced"), std::string::npos) << c.daemon().output();
  EXPECT_NE(workers[spare]->output().find("index=1"), std::string::npos) << workers[spare]->output();
  bool lost = false;
  for (const auto& node : PoolNodes(c)) lost |= node.at("name").as_string().starts_with(victim) && node.at("state") == "lost";
  EXPECT_TRUE(lost) << c.Send("GET", "/api/v1/nodes");
  EXPECT_EQ(HttpStatus(c.Send("GET", "/api/v1/jobs/" + std::to_string(id) + "/checkpoint")), 200);
  const std::string metrics = HttpBody(c.Send("GET", "/metrics"));
  for (const std::string series : {"dnnd_job_validation_accuracy{job=\"" + std::to_string(id) + "\"} 0.8",
                                   std::string("dnnd_controller_nodes{state=\"lost\"} 1"),
                                   "dnnd_job_epoch{job=\"" + std::to_string(id) + "\"} 5"})
    EXPECT_NE(metrics.find(series), std::string::npos) << series << "\n" << metrics;

  // The queued job got its two workers once the first finished.
  job = WaitForJob(c, second, JobOver,
                   std::chrono::seconds(60));
  EXPECT_EQ(job.at("state"), "succeeded") << job << c.daemon().output();
  // Two live nodes now: a 3-worker job is refused.
  r = c.Send("POST", "/api/v1/jobs", R"({"model":"mlp","dataset":"fm","workers":3})");
  EXPECT_EQ(HttpStatus(r), 400) << r;

  // Cancelling a running job frees its workers at once: the next job starts
  // on them within seconds, and no node is taken for lost meanwhile.
  r = c.Send("POST", "/api/v1/jobs", R"({"model":"mlp","dataset":"fm","epochs":100,"workers":2,"limit_train":2000})");
  ASSERT_EQ(HttpStatus(r), 201) << r;
  const int64_t long_id = json::parse(HttpBody(r)).at("id").as_int64();
  job = WaitForJob(c, long_id, [](const json::value& j) { return j.at("progress").to_number<double>() > 0.5; },
                   std::chrono::seconds(60));
  ASSERT_EQ(job.at("state"), "running") << job;
  ASSERT_EQ(HttpStatus(c.Send("POST", "/api/v1/jobs/" + std::to_string(long_id) + "/cancel")), 202);
  r = c.Send("POST", "/api/v1/jobs", R"({"model":"mlp","dataset":"fm","epochs":1,"workers":2,"limit_train":2000})");
  ASSERT_EQ(HttpStatus(r), 201) << r;
  const int64_t next = json::parse(HttpBody(r)).at("id").as_int64();
  const auto cancelled_at = std::chrono::steady_clock::now();
  job = WaitForJob(c, next, [](const json::value& j) { return j.at("state") == "running" || j.at("state") == "succeeded"; },
                   std::chrono::seconds(60));
  EXPECT_LT(std::chrono::steady_clock::now() - cancelled_at, std::chrono::seconds(20)) << c.daemon().output();
  EXPECT_EQ(c.Json("GET", "/api/v1/jobs/" + std::to_string(long_id)).at("state"), "cancelled");
  job = WaitForJob(c, next, [](const json::value& j) { return j.at("state") == "succeeded"; }, std::chrono::seconds(60));
  EXPECT_EQ(job.at("state"), "succeeded") << job;
  int lost_now = 0;
  for (const auto& node : PoolNodes(c)) lost_now += node.at("state") == "lost";
  EXPECT_EQ(lost_now, 1) << c.Send("GET", "/api/v1/nodes");  // only the SIGKILLed one
}

// ---- bearer token, streamed uploads, ctl follow/delete ----------------------

// The 10-sample 4x4 dataset and the 2-class linear model most tests here use.
struct TinyFiles {
  std::string images, labels, spec;
  explicit TinyFiles(TempDir& dir) {
    std::string ys = Idx({10}, 0);
    ys[ys.size() - 1] = 1;
    images = dir.Write("x.idx", Idx({10, 4, 4}, 7));
    labels = dir.Write("y.idx", ys);
    spec = dir.Write("m.toml", "[model]\ninput = [1, 4, 4]\n[[model.layers]]\ntype = \"flatten\"\n"
                               "[[model.layers]]\ntype = \"linear\"\nout = 2\n");
  }
};

TEST(ControllerStore, DeletesOnlyFinishedJobsWithTheirHistory) {
  TempDir dir;
  auto s = ControllerStore::Open(dir.path() + "/c.db");
  ASSERT_TRUE(s.ok());
  auto id = (*s)->CreateJob("m", "d", "{}");
  ASSERT_TRUE(id.ok());
  auto deleted = (*s)->DeleteFinishedJob(*id);  // queued
  ASSERT_TRUE(deleted.ok());
  EXPECT_FALSE(*deleted);
  ASSERT_TRUE((*s)->SetJobState(*id, kJobRunning, "").ok());
  ASSERT_TRUE((*s)->RecordEpoch(*id, {1, 0.5, true, 0.4, 0.8, 1.0, 100}, 10, 30).ok());
  EXPECT_FALSE(*(*s)->DeleteFinishedJob(*id));  // running
  ASSERT_TRUE((*s)->SetJobState(*id, kJobFailed, "boom").ok());
  EXPECT_TRUE(*(*s)->DeleteFinishedJob(*id));
  EXPECT_EQ((*s)->GetJob(*id).status().code(), StatusCode::kNotFound);
  EXPECT_EQ((*s)->DeleteFinishedJob(*id).status().code(), StatusCode::kNotFound);
  // Its history went with it.
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open((dir.path() + "/c.db").c_str(), &raw), SQLITE_OK);
  int rows = -1;
  sqlite3_exec(raw, "SELECT COUNT(*) FROM job_epochs",
               [](void* out, int, char** v, char**) { return *static_cast<int*>(out) = std::atoi(v[0]), 0; }, &rows,
               nullptr);
  sqlite3_close(raw);
  EXPECT_EQ(rows, 0);
}


// What the predictor's kept resolutions rely on: every write, and only a
// write, moves the generation.
TEST(ControllerStore, EveryWriteAndNoReadChangesTheGeneration) {
  TempDir dir;
  auto s = ControllerStore::Open(dir.path() + "/c.db");
  ASSERT_TRUE(s.ok());
  ControllerStore& store = **s;
  uint64_t seen = store.Generation();
  auto changed = [&] {
    const uint64_t now = store.Generation();
    const bool moved = now != seen;
    seen = now;
    return moved;
  };
  ASSERT_TRUE(store.PutModel({"m", "spec", 1, ""}).ok());
  EXPECT_TRUE(changed());
  auto id = store.CreateJob("m", "d", "{}");
  ASSERT_TRUE(id.ok());
  EXPECT_TRUE(changed());
  ASSERT_TRUE(store.SetJobState(*id, kJobRunning, "").ok());
  EXPECT_TRUE(changed());
  ASSERT_TRUE(store.RecordEpoch(*id, {1, 0.5, true, 0.4, 0.8, 1.0, 100}, 10, 10).ok());
  EXPECT_TRUE(changed());
  ASSERT_TRUE(store.SetJobSegment(*id, {1, 10, 2, 1.0}).ok());
  EXPECT_TRUE(changed());
  EXPECT_EQ(store.GetJob(*id)->segment.workers, 2);
  ASSERT_TRUE(store.SetJobState(*id, kJobSucceeded, "").ok());
  EXPECT_TRUE(changed());
  // Reads leave it alone.
  ASSERT_TRUE(store.GetModel("m").ok());
  ASSERT_TRUE(store.GetJob(*id).ok());
  ASSERT_TRUE(store.ListJobs().ok());
  EXPECT_EQ(*store.NewestSucceededJob("m"), std::optional<int64_t>(*id));
  EXPECT_FALSE(changed());
  EXPECT_TRUE(*store.DeleteFinishedJob(*id));
  EXPECT_TRUE(changed());
  // A refused write counts too (a reader re-reads once; never misses a change).
  EXPECT_EQ(store.PutModel({"m", "spec", 1, ""}).code(), StatusCode::kAlreadyExists);
  EXPECT_TRUE(changed());
}

TEST(ControllerAuth, MutatingRoutesNeedTheTokenReadsStayOpenRefusalsAreLogged) {
  TempDir dir;
  const std::string token_file = dir.Write("token", "tok-3f9a\n");  // a mounted Secret ends in a newline
  const std::string wire_key_file = dir.Write("wire-key", "wire-5b1e\n");
  // One local worker: a second job stays queued, so cancelling and deleting it is immediate.
  ControllerProcess c(dir, "--set http.token_file=" + token_file + " --set transport.token_file=" + wire_key_file +
                               " --set controller.local_workers=1");
  ASSERT_GT(c.port(), 0) << c.daemon().output();
  EXPECT_EQ(c.daemon().output().find("UNAUTHENTICATED"), std::string::npos);
  const std::vector<std::pair<std::string, std::string>> mutating = {
      {"PUT", "/api/v1/datasets/d/files/train-images"}, {"POST", "/api/v1/datasets"},
      {"DELETE", "/api/v1/datasets/d"},                 {"POST", "/api/v1/models"},
      {"POST", "/api/v1/jobs"},                         {"POST", "/api/v1/jobs/1/cancel"},
      {"DELETE", "/api/v1/jobs/1"}};
  // The wire key is no bearer token: the two secrets are different.
  for (const std::string& token : {std::string(), std::string("wrong-token-77"), std::string("wire-5b1e")}) {
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
  EXPECT_NE(log.find("unauthorized request refused method=PUT route=/api/v1/datasets/{name}/files/{part} "
                     "remote=127.0.0.1:"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("method=DELETE route=/api/v1/jobs/{id}"), std::string::npos) << log;
  EXPECT_EQ(log.find("wrong-token-77"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/data/uploads/d"));  // nothing stored
  // Reads are open: dashboards and probes carry no secret.
  c.UseToken("");
  for (const char* path : {"/api/v1/jobs", "/api/v1/datasets", "/api/v1/models", "/healthz", "/metrics"})
    EXPECT_EQ(HttpStatus(c.Send("GET", path)), 200) << path;
  const int ready = HttpStatus(c.Send("GET", "/readyz"));  // 503 while the controller starts
  EXPECT_TRUE(ready == 200 || ready == 503) << ready;
  const std::string metrics = HttpBody(c.Send("GET", "/metrics"));
  EXPECT_NE(metrics.find("dnnd_http_unauthorized_total{method=\"POST\",route=\"/api/v1/jobs\"} 3"), std::string::npos)
      << metrics;
  // With the token: the same routes work.
  c.UseToken("tok-3f9a");
  TinyFiles files(dir);
  EXPECT_EQ(HttpStatus(c.Send("PUT", "/api/v1/datasets/d/files/train-images", ReadFile(files.images))), 201);
  EXPECT_EQ(HttpStatus(c.Send("PUT", "/api/v1/datasets/d/files/train-labels", ReadFile(files.labels))), 201);
  EXPECT_EQ(HttpStatus(c.Send("POST", "/api/v1/datasets", R"({"name":"d","format":"idx"})")), 201);
  EXPECT_EQ(HttpStatus(c.Send("POST", "/api/v1/models", R"({"name":"m","spec":)" +
                                                            json::serialize(json::value(ReadFile(files.spec))) + "}")),
            201);
  for (const char* part : {"train-images", "train-labels"})  // a second dataset, to delete
    EXPECT_EQ(HttpStatus(c.Send("PUT", std::string("/api/v1/datasets/e/files/") + part,
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
  ASSERT_TRUE(c.daemon().WaitFor("UNAUTHENTICATED", std::chrono::seconds(5))) << c.daemon().output();
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
  std::printf("controller peak RSS %.1f MiB before, +%.1f MiB after a %zu MiB upload\n", before / 1048576.0,
              growth / 1048576.0, data.size() >> 20);
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

TEST(ControllerCtl, TokenFromEnvOrFileTrainFollowLogsFollowDelete) {
  TempDir dir;
  const std::string token_file = dir.Write("token", "tok-ctl\n");
  const std::string wire_key_file = dir.Write("wire-key", "wire-ctl\n");
  // One worker: a second one-worker job waits queued while the first runs.
  ControllerProcess c(dir, "--set http.token_file=" + token_file + " --set transport.token_file=" + wire_key_file +
                               " --set controller.local_workers=1");
  ASSERT_GT(c.port(), 0) << c.daemon().output();
  const std::string address = "127.0.0.1:" + std::to_string(c.port());
  TinyFiles files(dir);
  // A clean environment: nothing inherited decides where the token comes from.
  const std::string home = dir.path() + "/home";
  std::filesystem::create_directories(home + "/.config/dnnd");
  const std::string env = "env -u DNND_TOKEN -u DNND_CONTROLLER -u XDG_CONFIG_HOME HOME=" + home + " ";
  auto ctl = [&](const std::string& args) { return Shell(env + DNND_BINARY + " ctl " + args); };
  // No token: refused (3), with a hint where a token comes from.
  Outcome o = ctl("--controller " + address + " model create m --spec " + files.spec);
  EXPECT_EQ(o.code, 3) << o.output;
  EXPECT_NE(o.output.find("DNND_TOKEN"), std::string::npos) << o.output;
  // From the environment (address too).
  o = Shell(env + "DNND_CONTROLLER=" + address + " DNND_TOKEN=tok-ctl " + DNND_BINARY +
            " ctl dataset upload d --format idx --train-images " + files.images + " --train-labels " + files.labels +
            " --test-images " + files.images + " --test-labels " + files.labels);
  EXPECT_EQ(o.code, 0) << o.output;
  EXPECT_TRUE(c.Json("GET", "/api/v1/datasets/d").as_object().contains("train_samples"));
  // From ~/.config/dnnd/ctl.toml: address and a token_file next to it.
  std::ofstream(home + "/.config/dnnd/ctl.toml") << "controller = \"" << address << "\"\ntoken_file = \"tok\"\n";
  std::ofstream(home + "/.config/dnnd/tok") << "tok-ctl\n";
  o = ctl("model create m --spec " + files.spec);
  ASSERT_EQ(o.code, 0) << o.output;
  o = ctl("--token nope model list");  // the flag wins over the file; GETs need no token anyway
  EXPECT_EQ(o.code, 0) << o.output;
  o = ctl("--token nope model create m2 --spec " + files.spec);
  EXPECT_EQ(o.code, 3) << o.output;
  EXPECT_NE(o.output.find("refused this token"), std::string::npos) << o.output;

  // train --follow: a progress line per epoch, exit 0 when the job succeeded.
  o = ctl("train --model m --dataset d --epochs 3 --batch 5 --workers 1 --follow");
  ASSERT_EQ(o.code, 0) << o.output;
  EXPECT_NE(o.output.find("job 1 succeeded epoch 3/3 [####################] 100%  loss "), std::string::npos)
      << o.output;
  EXPECT_NE(o.output.find("acc "), std::string::npos) << o.output;
  // A longer job, followed; a second job queued behind it, its log followed.
  Daemon follow_train("ctl --controller " + address + " --token tok-ctl train --model m --dataset d --epochs 150 "
                      "--batch 5 --workers 1 --follow",
                      dir.path() + "/follow-train.log");
  auto job2 = WaitForJob(c, 2, [](const json::value& j) { return j.at("state") == "running"; }, std::chrono::seconds(20));
  ASSERT_EQ(job2.at("state"), "running") << job2;
  o = ctl("train --model m --dataset d --epochs 2 --batch 5 --workers 1");
  ASSERT_EQ(o.code, 0) << o.output;
  EXPECT_EQ(o.output, "3\n");
  Daemon follow_logs("ctl --controller " + address + " job logs 3 -f", dir.path() + "/follow-logs.log");
  ASSERT_TRUE(follow_logs.WaitFor("queued: model m", std::chrono::seconds(10))) << follow_logs.output();
  EXPECT_EQ(follow_logs.output().find("running"), std::string::npos);  // job 3 waits for job 2's worker
  // Delete is refused while a job is active, allowed once it is over.
  o = ctl("job delete 2");
  EXPECT_EQ(o.code, 3) << o.output;
  EXPECT_NE(o.output.find("job_active"), std::string::npos) << o.output;
  EXPECT_EQ(follow_train.Wait(), 0) << follow_train.output();  // the followed job succeeded
  EXPECT_NE(follow_train.output().find("job 2 succeeded"), std::string::npos) << follow_train.output();
  // The log follower saw job 3's lines appear, and stopped when it ended.
  EXPECT_EQ(follow_logs.Wait(), 0) << follow_logs.output();
  const std::string followed = follow_logs.output();
  EXPECT_NE(followed.find("running"), std::string::npos) << followed;
  EXPECT_NE(followed.find("epoch 2:"), std::string::npos) << followed;
  EXPECT_NE(followed.find("succeeded"), std::string::npos) << followed;
  EXPECT_EQ(followed, HttpBody(c.Send("GET", "/api/v1/jobs/3/logs")));  // all of it, once
  ASSERT_TRUE(std::filesystem::exists(dir.path() + "/data/jobs/2"));
  o = ctl("job delete 2");
  EXPECT_EQ(o.code, 0) << o.output;
  EXPECT_EQ(HttpStatus(c.Send("GET", "/api/v1/jobs/2")), 404);
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/data/jobs/2"));
  EXPECT_EQ(ctl("job delete 2").code, 3);
  // A followed job that is cancelled: exit 4. (Last: after a cancel the pool
  // worker is busy for a while before it takes the next job.)
  Daemon follow_cancelled("ctl --controller " + address + " --token tok-ctl train --model m --dataset d "
                          "--epochs 100000 --batch 5 --workers 1 --follow",
                          dir.path() + "/follow-cancelled.log");
  auto job4 = WaitForJob(c, 4, [](const json::value& j) { return j.at("state") == "running"; }, std::chrono::seconds(20));
  ASSERT_EQ(job4.at("state"), "running") << job4;
  ASSERT_EQ(ctl("job cancel 4").code, 0);
  EXPECT_EQ(follow_cancelled.Wait(), 4) << follow_cancelled.output();
  EXPECT_NE(follow_cancelled.output().find("cancelled"), std::string::npos) << follow_cancelled.output();
  // The logs endpoint pages by offset.
  const std::string r = c.Send("GET", "/api/v1/jobs/3/logs?offset=5");
  EXPECT_EQ(HttpBody(r), followed.substr(5));
  EXPECT_EQ(HttpHeader(r, "X-Log-Offset"), std::to_string(followed.size()));
  EXPECT_EQ(HttpHeader(r, "X-Job-State"), "succeeded");
  EXPECT_EQ(HttpStatus(c.Send("GET", "/api/v1/jobs/3/logs?offset=-1")), 400);
}

TEST(ControllerCtl, HelpOnEveryVerb) {
  for (const char* verb : {"train", "dataset list", "dataset get", "dataset delete", "dataset upload", "model list",
                           "model get", "model create", "job list", "job get", "job create", "job cancel",
                           "job delete", "job logs", "node list"}) {
    Outcome o = Dnnd(std::string("ctl ") + verb + " --help");
    EXPECT_EQ(o.code, 0) << verb << ": " << o.output;
    EXPECT_EQ(o.output.rfind(std::string("dnnd ctl ") + verb, 0), 0u) << verb << ": " << o.output;
  }
  EXPECT_NE(Dnnd("ctl train --help").output.find("--epochs"), std::string::npos);
  EXPECT_EQ(Dnnd("ctl job logs").code, 2);  // missing <id>
}

// The README's run command: the standalone role is the controller with its
// workers in one process; it registers the config's data and model once,
// submits the job through its own API and exits 0 when the job succeeded.
TEST(ControllerStandalone, RunsTheConfigsJobThroughTheControllerAndKeepsItsHistory) {
  if (!std::filesystem::exists(kFm + "train-images-idx3-ubyte.gz")) GTEST_SKIP() << "dataset-fashion-mnist missing";
  TempDir dir;
  const std::string args = "--role=standalone --config " + Src("configs/standalone.toml") +
                           " --set http.listen=127.0.0.1:0 --set controller.data_dir=" + dir.path() +
                           "/c --set data.limit_train=4096 --set data.limit_test=1000 --set train.epochs=1"
                           " --set train.progress=none";
  const Outcome first = Dnnd(args);
  ASSERT_EQ(first.code, 0) << first.output;
  EXPECT_NE(first.output.find("dashboard: http://127.0.0.1:"), std::string::npos) << first.output;
  EXPECT_NE(first.output.find("registering dataset fashion-mnist-"), std::string::npos) << first.output;
  EXPECT_NE(first.output.find("job 1 succeeded"), std::string::npos) << first.output;
  EXPECT_NE(first.output.find("test accuracy"), std::string::npos) << first.output;
  // A second run reuses the registered data and model and adds job 2.
  const Outcome second = Dnnd(args);
  ASSERT_EQ(second.code, 0) << second.output;
  EXPECT_EQ(second.output.find("registering dataset"), std::string::npos) << second.output;
  EXPECT_NE(second.output.find("job 2 succeeded"), std::string::npos) << second.output;
  auto store = ControllerStore::Open(dir.path() + "/c/controller.db");
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  auto jobs = (*store)->ListJobs();
  ASSERT_TRUE(jobs.ok());
  ASSERT_EQ(jobs->size(), 2u);
  for (const auto& j : *jobs) EXPECT_EQ(j.state, kJobSucceeded) << j.id << " " << j.reason;
}

// GET /api/v1/jobs is answered from a cache while nothing changes: it must
// still show every store write (a new job, a state change, a deletion) and a
// running job's progress reports as soon as they happen.
TEST(ControllerApi, JobListFollowsWritesAndProgressThoughCached) {
  if (!std::filesystem::exists(kFm + "train-images-idx3-ubyte.gz")) GTEST_SKIP() << "dataset-fashion-mnist missing";
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
  const std::string r = c.Send("POST", "/api/v1/jobs",
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
  EXPECT_GE(inside_first_epoch.size(), 1u) << "the listed step should move with the progress reports";
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
  ASSERT_EQ(HttpStatus(c.Send("POST", "/api/v1/models", R"({"name":"m","spec":)" +
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
    const std::string r = c.Send("POST", "/api/v1/jobs", R"({"model":"m","dataset":"d","epochs":1,"batch":5,"workers":1})");
    ASSERT_EQ(HttpStatus(r), 201) << r;
    const json::value created = json::parse(HttpBody(r));
    EXPECT_NEAR(created.at("params").at("normalize_mean").to_number<double>(), pixel / 255.0, 1e-9) << r;
    const json::value job = WaitForJob(c, created.at("id").as_int64(), JobOver, std::chrono::seconds(60));
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
