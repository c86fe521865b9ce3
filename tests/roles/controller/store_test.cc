// The controller's SQLite store, opened directly, and the names it accepts.
#include "fixture.h"

namespace dnnd {
namespace {

using namespace dnnd::controller_testing;

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
    ASSERT_TRUE((*s)->RecordEpoch(*id, {1, 0.6, false, 0, 0, 1.0, 100}, 12, 30)
                    .ok());  // a resumed epoch replaces
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
  DatasetRecord d{
      .name = "d", .format = "idx", .sample_shape = "[1]", .histogram = "[]", .files = "{}"};
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
  ASSERT_EQ(sqlite3_exec(raw, "UPDATE schema_version SET version = 999", nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(raw);
  auto s = ControllerStore::Open(db);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("schema version 999"), std::string::npos)
      << s.status().ToString();
}

TEST(Controller, NamesCannotEscapeTheDataDirectory) {
  EXPECT_TRUE(IsValidName("fashion-mnist_v1.2"));
  for (const char* bad : {"", ".", "..", "../x", "a/b", ".hidden", "a b", "a\\b", "x%2F"})
    EXPECT_FALSE(IsValidName(bad)) << bad;
  EXPECT_FALSE(IsValidName(std::string(65, 'a')));
}

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
  sqlite3_exec(
      raw, "SELECT COUNT(*) FROM job_epochs",
      [](void* out, int, char** v, char**) { return *static_cast<int*>(out) = std::atoi(v[0]), 0; },
      &rows, nullptr);
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

}  // namespace
}  // namespace dnnd
