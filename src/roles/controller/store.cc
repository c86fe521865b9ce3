#include "roles/controller/store.h"

#include <sqlite3.h>

#include <ctime>
#include <functional>

namespace dnnd {
namespace {

// Numbered migrations: entry i brings the schema from version i to i + 1.
// Append only.
const std::vector<std::string>& Migrations() {
  static const std::vector<std::string> m = {
      // 1: datasets, models, jobs, per-epoch history.
      R"(CREATE TABLE datasets (
           name TEXT PRIMARY KEY, format TEXT NOT NULL, bytes INTEGER NOT NULL,
           train_samples INTEGER NOT NULL, test_samples INTEGER NOT NULL, num_classes INTEGER NOT NULL,
           sample_shape TEXT NOT NULL, histogram TEXT NOT NULL, files TEXT NOT NULL, created TEXT NOT NULL);
         CREATE TABLE models (
           name TEXT PRIMARY KEY, spec TEXT NOT NULL, parameters INTEGER NOT NULL, created TEXT NOT NULL);
         CREATE TABLE jobs (
           id INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT NOT NULL, dataset TEXT NOT NULL,
           params TEXT NOT NULL, state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
           epoch INTEGER NOT NULL DEFAULT 0, step INTEGER NOT NULL DEFAULT 0,
           total_steps INTEGER NOT NULL DEFAULT 0,
           created TEXT NOT NULL, started TEXT NOT NULL DEFAULT '', finished TEXT NOT NULL DEFAULT '');
         CREATE TABLE job_epochs (
           job_id INTEGER NOT NULL REFERENCES jobs(id), epoch INTEGER NOT NULL,
           train_loss REAL NOT NULL, evaluated INTEGER NOT NULL, test_loss REAL NOT NULL,
           test_accuracy REAL NOT NULL, seconds REAL NOT NULL, samples_per_s REAL NOT NULL,
           PRIMARY KEY (job_id, epoch));)",
      // 2: restarts are counted (a job resumed after a controller crash has
      // attempts > 1), and the scheduler's lookup by state is indexed.
      R"(ALTER TABLE jobs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
         CREATE INDEX jobs_by_state ON jobs(state, id);)",
      // 3: elastic jobs run in segments of epochs on a changing number of
      // workers; the current segment survives a controller restart, and
      // each epoch records the parallelism it ran at.
      R"(ALTER TABLE jobs ADD COLUMN segment_epoch INTEGER NOT NULL DEFAULT 0;
         ALTER TABLE jobs ADD COLUMN segment_step INTEGER NOT NULL DEFAULT 0;
         ALTER TABLE jobs ADD COLUMN parallelism INTEGER NOT NULL DEFAULT 0;
         ALTER TABLE jobs ADD COLUMN reference_seconds REAL NOT NULL DEFAULT 0;
         ALTER TABLE job_epochs ADD COLUMN parallelism INTEGER NOT NULL DEFAULT 0;)",
      // 4: a dataset's class names (a JSON array of strings; [] = unnamed).
      R"(ALTER TABLE datasets ADD COLUMN classes TEXT NOT NULL DEFAULT '[]';)",
  };
  return m;
}

Status SqlError(sqlite3* db, const std::string& what) {
  return IoError("sqlite: " + what + ": " + sqlite3_errmsg(db));
}

// A prepared statement with positional binds; finalised on scope exit.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &s_, nullptr) != SQLITE_OK) {
      error_ = SqlError(db, std::string("prepare ") + sql);
      s_ = nullptr;
    }
  }
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt& Bind(const std::string& v) {
    if (s_) sqlite3_bind_text(s_, ++n_, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& Bind(int64_t v) {
    if (s_) sqlite3_bind_int64(s_, ++n_, v);
    return *this;
  }
  Stmt& Bind(double v) {
    if (s_) sqlite3_bind_double(s_, ++n_, v);
    return *this;
  }
  // SQLITE_ROW -> true, SQLITE_DONE -> false, else error_.
  Result<bool> Step() {
    if (!s_) return error_;
    const int rc = sqlite3_step(s_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    if (rc == SQLITE_CONSTRAINT) return AlreadyExists(sqlite3_errmsg(db_));
    return SqlError(db_, "step");
  }
  Status Run() {
    auto r = Step();
    return r.ok() ? Status::Ok() : r.status();
  }
  int64_t Int(int c) { return sqlite3_column_int64(s_, c); }
  double Real(int c) { return sqlite3_column_double(s_, c); }
  std::string Text(int c) {
    const unsigned char* t = sqlite3_column_text(s_, c);
    return t ? std::string(reinterpret_cast<const char*>(t),
                           static_cast<size_t>(sqlite3_column_bytes(s_, c)))
             : "";
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* s_ = nullptr;
  int n_ = 0;
  Status error_ = Status::Ok();
};

// Runs fn inside BEGIN IMMEDIATE ... COMMIT (ROLLBACK if it fails).
template <typename Fn>
Status InTransaction(sqlite3* db, Fn fn) {
  char* err = nullptr;
  if (sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, &err) != SQLITE_OK) {
    sqlite3_free(err);
    return SqlError(db, "begin");
  }
  Status s = fn();
  if (s.ok() && sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr) == SQLITE_OK) return s;
  if (s.ok()) s = SqlError(db, "commit");
  sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
  return s;
}

const char* kJobColumns =
    "id, model, dataset, params, state, reason, epoch, step, total_steps, attempts, created, "
    "started, finished, "
    "segment_epoch, segment_step, parallelism, reference_seconds";

JobRecord ReadJob(Stmt& q) {
  JobRecord j;
  j.id = q.Int(0);
  j.model = q.Text(1);
  j.dataset = q.Text(2);
  j.params = q.Text(3);
  j.state = q.Text(4);
  j.reason = q.Text(5);
  j.epoch = q.Int(6);
  j.step = q.Int(7);
  j.total_steps = q.Int(8);
  j.attempts = q.Int(9);
  j.created = q.Text(10);
  j.started = q.Text(11);
  j.finished = q.Text(12);
  j.segment = {q.Int(13), q.Int(14), q.Int(15), q.Real(16)};
  return j;
}

DatasetRecord ReadDataset(Stmt& q) {
  DatasetRecord d;
  d.name = q.Text(0);
  d.format = q.Text(1);
  d.bytes = q.Int(2);
  d.train_samples = q.Int(3);
  d.test_samples = q.Int(4);
  d.num_classes = q.Int(5);
  d.sample_shape = q.Text(6);
  d.histogram = q.Text(7);
  d.files = q.Text(8);
  d.created = q.Text(9);
  d.classes = q.Text(10);
  return d;
}

const char* kDatasetColumns =
    "name, format, bytes, train_samples, test_samples, num_classes, sample_shape, histogram, "
    "files, created, classes";

}  // namespace

class ControllerStore::Write {
 public:
  explicit Write(ControllerStore& store) : store_(store), lock_(store.mu_) {}
  // Runs before lock_ is released: a reader that then takes mu_ reads the
  // written rows under the new generation, never the old rows under it.
  ~Write() { store_.generation_.fetch_add(1, std::memory_order_release); }

 private:
  ControllerStore& store_;
  MutexLock lock_;
};

const int64_t ControllerStore::kSchemaVersion = static_cast<int64_t>(Migrations().size());

std::string UtcNow() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

Result<std::unique_ptr<ControllerStore>> ControllerStore::Open(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                      nullptr) != SQLITE_OK) {
    Status s = IoError("cannot open " + path + ": " + (db ? sqlite3_errmsg(db) : "out of memory"));
    sqlite3_close(db);
    return s;
  }
  std::unique_ptr<ControllerStore> store(new ControllerStore(db));
  sqlite3_busy_timeout(db, 5000);
  {
    MutexLock lock(store->mu_);
    DNND_RETURN_IF_ERROR(
        store->Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")
            .WithContext(path));
  }
  DNND_RETURN_IF_ERROR(store->Migrate().WithContext(path));
  return store;
}

ControllerStore::~ControllerStore() { sqlite3_close(db_); }

Status ControllerStore::Exec(const std::string& sql) {
  mu_.AssertHeld();
  char* err = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string m = err ? err : "unknown error";
    sqlite3_free(err);
    return IoError("sqlite: " + m);
  }
  return Status::Ok();
}

Status ControllerStore::Migrate() {
  MutexLock lock(mu_);
  DNND_RETURN_IF_ERROR(
      Exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"));
  return InTransaction(db_, [&]() -> Status {
    mu_.AssertHeld();  // runs within Migrate's lock
    Stmt q(db_, "SELECT version FROM schema_version");
    DNND_ASSIGN_OR_RETURN(bool row, q.Step());
    int64_t version = row ? q.Int(0) : 0;
    if (!row) DNND_RETURN_IF_ERROR(Exec("INSERT INTO schema_version VALUES (0)"));
    const auto& m = Migrations();
    if (version > static_cast<int64_t>(m.size()))
      return Unsupported("the database has schema version " + std::to_string(version) +
                         "; this dnnd knows up to " + std::to_string(m.size()) +
                         " (written by a newer dnnd?)");
    for (; version < static_cast<int64_t>(m.size()); ++version) {
      DNND_RETURN_IF_ERROR(
          Exec(m[version]).WithContext("migration " + std::to_string(version + 1)));
      DNND_RETURN_IF_ERROR(
          Exec("UPDATE schema_version SET version = " + std::to_string(version + 1)));
    }
    return Status::Ok();
  });
}

int64_t ControllerStore::SchemaVersion() {
  MutexLock lock(mu_);
  Stmt q(db_, "SELECT version FROM schema_version");
  auto row = q.Step();
  return row.ok() && *row ? q.Int(0) : 0;
}

Status ControllerStore::PutDataset(const DatasetRecord& d) {
  Write lock(*this);
  Stmt q(db_, (std::string("INSERT INTO datasets (") + kDatasetColumns +
               ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
                  .c_str());
  q.Bind(d.name)
      .Bind(d.format)
      .Bind(d.bytes)
      .Bind(d.train_samples)
      .Bind(d.test_samples)
      .Bind(d.num_classes);
  q.Bind(d.sample_shape)
      .Bind(d.histogram)
      .Bind(d.files)
      .Bind(d.created.empty() ? UtcNow() : d.created)
      .Bind(d.classes.empty() ? std::string("[]") : d.classes);
  Status s = q.Run();
  if (s.code() == StatusCode::kAlreadyExists)
    return AlreadyExists("dataset '" + d.name + "' already exists");
  return s;
}

Result<DatasetRecord> ControllerStore::GetDataset(const std::string& name) {
  MutexLock lock(mu_);
  Stmt q(db_, (std::string("SELECT ") + kDatasetColumns + " FROM datasets WHERE name = ?").c_str());
  q.Bind(name);
  DNND_ASSIGN_OR_RETURN(bool row, q.Step());
  if (!row) return NotFound("no dataset '" + name + "'");
  return ReadDataset(q);
}

Result<std::vector<DatasetRecord>> ControllerStore::ListDatasets() {
  MutexLock lock(mu_);
  Stmt q(db_, (std::string("SELECT ") + kDatasetColumns + " FROM datasets ORDER BY name").c_str());
  std::vector<DatasetRecord> out;
  while (true) {
    DNND_ASSIGN_OR_RETURN(bool row, q.Step());
    if (!row) break;
    out.push_back(ReadDataset(q));
  }
  return out;
}

Result<std::vector<int64_t>> ControllerStore::DeleteDataset(const std::string& name) {
  Write lock(*this);
  std::vector<int64_t> users;
  Status s = InTransaction(db_, [&]() -> Status {
    Stmt u(db_,
           "SELECT id FROM jobs WHERE dataset = ? AND state IN ('queued', 'running') ORDER BY id");
    u.Bind(name);
    while (true) {
      DNND_ASSIGN_OR_RETURN(bool row, u.Step());
      if (!row) break;
      users.push_back(u.Int(0));
    }
    if (!users.empty()) return Status::Ok();
    Stmt d(db_, "DELETE FROM datasets WHERE name = ?");
    d.Bind(name);
    DNND_RETURN_IF_ERROR(d.Run());
    if (sqlite3_changes(db_) == 0) return NotFound("no dataset '" + name + "'");
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return users;
}

Status ControllerStore::PutModel(const ModelRecord& m) {
  Write lock(*this);
  Stmt q(db_, "INSERT INTO models VALUES (?, ?, ?, ?)");
  q.Bind(m.name).Bind(m.spec).Bind(m.parameters).Bind(m.created.empty() ? UtcNow() : m.created);
  Status s = q.Run();
  if (s.code() == StatusCode::kAlreadyExists)
    return AlreadyExists("model '" + m.name + "' already exists");
  return s;
}

Result<ModelRecord> ControllerStore::GetModel(const std::string& name) {
  MutexLock lock(mu_);
  Stmt q(db_, "SELECT name, spec, parameters, created FROM models WHERE name = ?");
  q.Bind(name);
  DNND_ASSIGN_OR_RETURN(bool row, q.Step());
  if (!row) return NotFound("no model '" + name + "'");
  return ModelRecord{q.Text(0), q.Text(1), q.Int(2), q.Text(3)};
}

Result<std::vector<ModelRecord>> ControllerStore::ListModels() {
  MutexLock lock(mu_);
  Stmt q(db_, "SELECT name, spec, parameters, created FROM models ORDER BY name");
  std::vector<ModelRecord> out;
  while (true) {
    DNND_ASSIGN_OR_RETURN(bool row, q.Step());
    if (!row) break;
    out.push_back({q.Text(0), q.Text(1), q.Int(2), q.Text(3)});
  }
  return out;
}

Result<int64_t> ControllerStore::CreateJob(const std::string& model, const std::string& dataset,
                                           const std::string& params_json) {
  Write lock(*this);
  Stmt q(db_,
         "INSERT INTO jobs (model, dataset, params, state, created) VALUES (?, ?, ?, 'queued', ?)");
  q.Bind(model).Bind(dataset).Bind(params_json).Bind(UtcNow());
  DNND_RETURN_IF_ERROR(q.Run());
  return static_cast<int64_t>(sqlite3_last_insert_rowid(db_));
}

Result<JobRecord> ControllerStore::GetJob(int64_t id) {
  MutexLock lock(mu_);
  Stmt q(db_, (std::string("SELECT ") + kJobColumns + " FROM jobs WHERE id = ?").c_str());
  q.Bind(id);
  DNND_ASSIGN_OR_RETURN(bool row, q.Step());
  if (!row) return NotFound("no job " + std::to_string(id));
  JobRecord j = ReadJob(q);
  Stmt h(db_,
         "SELECT epoch, train_loss, evaluated, test_loss, test_accuracy, seconds, samples_per_s, "
         "parallelism "
         "FROM job_epochs WHERE job_id = ? ORDER BY epoch");
  h.Bind(id);
  while (true) {
    DNND_ASSIGN_OR_RETURN(bool r, h.Step());
    if (!r) break;
    j.history.push_back(
        {h.Int(0), h.Real(1), h.Int(2) != 0, h.Real(3), h.Real(4), h.Real(5), h.Real(6), h.Int(7)});
  }
  return j;
}

Result<std::vector<JobRecord>> ControllerStore::ListJobs() {
  MutexLock lock(mu_);
  Stmt q(db_, (std::string("SELECT ") + kJobColumns + " FROM jobs ORDER BY id DESC").c_str());
  std::vector<JobRecord> out;
  while (true) {
    DNND_ASSIGN_OR_RETURN(bool row, q.Step());
    if (!row) break;
    out.push_back(ReadJob(q));
  }
  return out;
}

Status ControllerStore::SetJobState(int64_t id, const std::string& state,
                                    const std::string& reason) {
  Write lock(*this);
  const bool terminal = state == kJobSucceeded || state == kJobFailed || state == kJobCancelled;
  const char* sql = state == kJobRunning ? "UPDATE jobs SET state = ?, reason = ?, started = ?, "
                                           "attempts = attempts + 1 WHERE id = ?"
                    : terminal ? "UPDATE jobs SET state = ?, reason = ?, finished = ? WHERE id = ?"
                               : "UPDATE jobs SET state = ?, reason = ? WHERE id = ?";
  Stmt q(db_, sql);
  q.Bind(state).Bind(reason);
  if (state == kJobRunning || terminal) q.Bind(UtcNow());
  q.Bind(id);
  DNND_RETURN_IF_ERROR(q.Run());
  if (sqlite3_changes(db_) == 0) return NotFound("no job " + std::to_string(id));
  return Status::Ok();
}

Result<bool> ControllerStore::CancelIfQueued(int64_t id) {
  Write lock(*this);
  Stmt q(db_,
         "UPDATE jobs SET state = 'cancelled', reason = 'cancelled while queued', finished = ? "
         "WHERE id = ? AND state = 'queued'");
  q.Bind(UtcNow()).Bind(id);
  DNND_RETURN_IF_ERROR(q.Run());
  return sqlite3_changes(db_) > 0;
}

Result<bool> ControllerStore::DeleteFinishedJob(int64_t id) {
  Write lock(*this);
  bool deleted = false;
  Status s = InTransaction(db_, [&]() -> Status {
    Stmt q(db_, "SELECT state FROM jobs WHERE id = ?");
    q.Bind(id);
    DNND_ASSIGN_OR_RETURN(bool row, q.Step());
    if (!row) return NotFound("no job " + std::to_string(id));
    const std::string state = q.Text(0);
    if (state == kJobQueued || state == kJobRunning) return Status::Ok();
    Stmt e(db_, "DELETE FROM job_epochs WHERE job_id = ?");
    e.Bind(id);
    DNND_RETURN_IF_ERROR(e.Run());
    Stmt j(db_, "DELETE FROM jobs WHERE id = ?");
    j.Bind(id);
    DNND_RETURN_IF_ERROR(j.Run());
    deleted = true;
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return deleted;
}

Status ControllerStore::RecordEpoch(int64_t id, const EpochRow& r, int64_t step,
                                    int64_t total_steps) {
  Write lock(*this);
  return InTransaction(db_, [&]() -> Status {
    Stmt e(db_,
           "INSERT OR REPLACE INTO job_epochs (job_id, epoch, train_loss, evaluated, test_loss, "
           "test_accuracy, "
           "seconds, samples_per_s, parallelism) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
    e.Bind(id).Bind(r.epoch).Bind(r.train_loss).Bind(int64_t{r.evaluated}).Bind(r.test_loss);
    e.Bind(r.test_accuracy).Bind(r.seconds).Bind(r.samples_per_s).Bind(r.parallelism);
    DNND_RETURN_IF_ERROR(e.Run());
    Stmt j(db_, "UPDATE jobs SET epoch = ?, step = ?, total_steps = ? WHERE id = ?");
    j.Bind(r.epoch).Bind(step).Bind(total_steps).Bind(id);
    return j.Run();
  });
}

Status ControllerStore::SetJobSegment(int64_t id, const JobSegment& g) {
  Write lock(*this);
  Stmt q(db_,
         "UPDATE jobs SET segment_epoch = ?, segment_step = ?, parallelism = ?, reference_seconds "
         "= ? WHERE id = ?");
  q.Bind(g.epoch).Bind(g.step).Bind(g.workers).Bind(g.reference_seconds).Bind(id);
  DNND_RETURN_IF_ERROR(q.Run());
  if (sqlite3_changes(db_) == 0) return NotFound("no job " + std::to_string(id));
  return Status::Ok();
}

Status ControllerStore::SetProgress(int64_t id, int64_t step, int64_t total_steps) {
  Write lock(*this);
  Stmt q(db_,
         "UPDATE jobs SET step = MAX(step, ?), total_steps = MAX(total_steps, ?) WHERE id = ?");
  q.Bind(step).Bind(total_steps).Bind(id);
  return q.Run();
}

Result<std::optional<int64_t>> ControllerStore::NextRunnable() {
  MutexLock lock(mu_);
  Stmt q(db_,
         "SELECT id FROM jobs WHERE state IN ('running', 'queued') "
         "ORDER BY state = 'running' DESC, id LIMIT 1");
  DNND_ASSIGN_OR_RETURN(bool row, q.Step());
  if (!row) return std::optional<int64_t>();
  return std::optional<int64_t>(q.Int(0));
}

Result<std::optional<int64_t>> ControllerStore::NewestSucceededJob(const std::string& model) {
  MutexLock lock(mu_);
  Stmt q(db_,
         "SELECT id FROM jobs WHERE model = ? AND state = 'succeeded' ORDER BY id DESC LIMIT 1");
  q.Bind(model);
  DNND_ASSIGN_OR_RETURN(bool row, q.Step());
  if (!row) return std::optional<int64_t>();
  return std::optional<int64_t>(q.Int(0));
}

}  // namespace dnnd
