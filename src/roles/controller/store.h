// The controller's durable state: datasets, models, jobs and their per-epoch
// history in one SQLite database (<controller.data_dir>/controller.db).
//
// Why SQLite: one writer process (the controller) and many readers (its HTTP
// threads); every write is a transaction, so a SIGKILL leaves either the old
// or the new row, never a torn JSON file. WAL journal + synchronous=FULL: a
// committed write survives a crash of the process (and of the machine).
//
// Schema migrations: `schema_version` holds the number of the last applied
// migration; Open() applies the missing ones in order, each in its own
// transaction together with the version bump. Never edit a shipped
// migration; append a new one.
//
// Thread-safe: one connection behind a mutex (the controller's writes are a
// handful per epoch, far below what this serialises). Every write bumps
// Generation(), so readers can keep what they derived from the store (the
// predictor's model -> job resolution) until something changed.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "core/thread_annotations.h"

struct sqlite3;

namespace dnnd {

struct DatasetRecord {
  std::string name;
  std::string format;  // idx | npy | npz | csv
  int64_t bytes = 0;   // on disk, all files
  int64_t train_samples = 0, test_samples = 0;
  int64_t num_classes = 0;
  std::string sample_shape;  // JSON array, e.g. [1,28,28]
  std::string histogram;     // JSON array: training samples per class
  std::string files;         // JSON object: part -> file name in the dataset's directory
  std::string created;       // UTC, ISO 8601
  std::string classes;       // JSON array of class names in label order; [] = unnamed
};

struct ModelRecord {
  std::string name;
  std::string spec;  // canonical TOML ([model] table), as ModelSpecToToml writes it
  int64_t parameters = 0;
  std::string created;
};

// Job states. queued -> running -> succeeded | failed | cancelled;
// queued -> cancelled. A job left `running` by a dead controller is resumed.
inline constexpr const char* kJobQueued = "queued";
inline constexpr const char* kJobRunning = "running";
inline constexpr const char* kJobSucceeded = "succeeded";
inline constexpr const char* kJobFailed = "failed";
inline constexpr const char* kJobCancelled = "cancelled";

struct EpochRow {
  int64_t epoch = 0;  // 1-based
  double train_loss = 0;
  bool evaluated = false;
  double test_loss = 0, test_accuracy = 0;
  double seconds = 0, samples_per_s = 0;
  int64_t parallelism = 0;  // workers the epoch ran on (0: not recorded)
};

// Where an elastic job is: its current segment began at epoch `epoch`
// (0-based) and step `step`, on `workers` workers; `reference_seconds` is
// the throughput policy's reference epoch time (0: none yet). All 0 for a
// job that has not been re-sharded.
struct JobSegment {
  int64_t epoch = 0, step = 0, workers = 0;
  double reference_seconds = 0;
};

struct JobRecord {
  int64_t id = 0;
  std::string model, dataset;
  std::string
      params;  // JSON object: epochs, batch, lr, optimizer, workers, servers, mode, seed, ...
  std::string state, reason;
  int64_t epoch = 0;        // epochs completed
  int64_t step = 0;         // steps completed at the last record
  int64_t total_steps = 0;  // 0 until the job has started once
  int64_t attempts = 0;     // times the job was started (> 1: resumed after a restart)
  std::string created, started, finished;
  JobSegment segment;
  std::vector<EpochRow> history;  // by epoch
};

class ControllerStore {
 public:
  // Opens (creating if needed) the database at `path` and migrates it.
  static Result<std::unique_ptr<ControllerStore>> Open(const std::string& path);
  ~ControllerStore();
  ControllerStore(const ControllerStore&) = delete;
  ControllerStore& operator=(const ControllerStore&) = delete;

  // The number of the last migration applied (== kSchemaVersion after Open).
  int64_t SchemaVersion();
  static const int64_t kSchemaVersion;

  Status PutDataset(const DatasetRecord& d);  // AlreadyExists if the name is taken
  Result<DatasetRecord> GetDataset(const std::string& name);
  Result<std::vector<DatasetRecord>> ListDatasets();
  // Deletes the row unless a queued or running job trains on it, checked in
  // the same transaction. Returns the ids of those jobs (empty: deleted).
  Result<std::vector<int64_t>> DeleteDataset(const std::string& name);

  Status PutModel(const ModelRecord& m);  // AlreadyExists if the name is taken
  Result<ModelRecord> GetModel(const std::string& name);
  Result<std::vector<ModelRecord>> ListModels();

  // A new queued job; returns its id.
  Result<int64_t> CreateJob(const std::string& model, const std::string& dataset,
                            const std::string& params_json);
  Result<JobRecord> GetJob(int64_t id);       // with history
  Result<std::vector<JobRecord>> ListJobs();  // newest first, without history
  // Sets the state (and reason); sets `started` (and counts an attempt) on
  // running, `finished` on a terminal state.
  Status SetJobState(int64_t id, const std::string& state, const std::string& reason);
  // Cancels a queued job atomically; false if it was not queued.
  Result<bool> CancelIfQueued(int64_t id);
  // Deletes a finished job (succeeded, failed, cancelled) and its history in
  // one transaction; false, deleting nothing, while it is queued or running.
  // NotFound if there is no such job.
  Result<bool> DeleteFinishedJob(int64_t id);
  // Records (or replaces, after a resume) one epoch and the job's progress,
  // in one transaction.
  Status RecordEpoch(int64_t id, const EpochRow& row, int64_t step, int64_t total_steps);
  // Raises the job's step and total steps to at least these (its last
  // progress report, kept when it ends).
  Status SetProgress(int64_t id, int64_t step, int64_t total_steps);
  Status SetJobSegment(int64_t id, const JobSegment& segment);
  // The job to run next: one left running by a previous controller (resume)
  // first, else the oldest queued one.
  Result<std::optional<int64_t>> NextRunnable();
  // The id of the model's newest succeeded job (whose checkpoint is the
  // model's trained weights), or nullopt when none has succeeded yet.
  Result<std::optional<int64_t>> NewestSucceededJob(const std::string& model);

  // Counts the writes (every Put/Create/Set/Cancel/Delete/Record above,
  // committed or not); bumped before the write's lock is released. A reader
  // that reads the generation *before* its queries and keeps their result
  // tagged with it sees a different generation after any later write, so a
  // copy tagged with the current generation is what the store still says.
  uint64_t Generation() const { return generation_.load(std::memory_order_acquire); }

 private:
  class Write;  // holds mu_ for a write and bumps generation_ when it ends
  explicit ControllerStore(sqlite3* db) : db_(db) {}
  Status Migrate();
  Status Exec(const std::string& sql) REQUIRES(mu_);

  // The one lock: every statement on db_ runs under it (Write for writes).
  Mutex mu_;
  sqlite3* db_ PT_GUARDED_BY(mu_);
  std::atomic<uint64_t> generation_{0};
};

// UTC now as "2026-11-23T09:38:05Z".
std::string UtcNow();

}  // namespace dnnd
