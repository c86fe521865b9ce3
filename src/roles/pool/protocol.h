// What the controller and its pool workers say to each other.
//
// Control (HTTP/JSON on the controller's API, so it crosses the same Service
// and carries the same bearer token as every other client):
//
//   POST /api/v1/nodes/{name}/heartbeat      every worker.heartbeat_ms, and at
//        once when a task ends. Body: the node's report (NodeReport); answer:
//        what it should do next (NodeOrder). The first heartbeat registers
//        the node; a node silent for controller.node_timeout_ms is lost.
//   PUT  /api/v1/jobs/{id}/model?attempt=A   the job's trained model
//        (safetensors), sent by the task with index 0 before it reports done.
//
// Data (the wire protocol, on controller.wire_listen): kShard asks for part
// `index` of `count` of a dataset's training set (or its whole test set), and
// the answer carries the samples in their stored dtype, so a worker needs no
// shared filesystem and receives only its own part.
#pragma once

#include <boost/json/value.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "roles/train/job_spec.h"
#include "tensor/data/dataset.h"
#include "transport/wire.h"

namespace dnnd::pool {

inline constexpr uint16_t kShard = 0x0301;  // worker -> controller: a dataset shard

// A task: one worker's part of a running job. `attempt` names this placement
// of the part; a node's report of an attempt the controller no longer knows
// (reassigned after the node was lost, or a controller restart) is answered
// with "stop".
struct Task {
  int64_t job = 0;
  std::string attempt;
  int64_t index = 0, count = 1;
  std::string dataset;
  JobSpec spec;                   // the job's settings (an elastic job's: with its segment)
  std::string model;              // the model spec's TOML text, as the store keeps it
  std::vector<int64_t> ps_ports;  // the job's parameter servers, on the controller's host
  int64_t wire_port = 0;          // the controller's shard service
  // The controller's path of the weights the job starts from
  // ("/api/v1/models/<name>/initial", an imported ONNX model's); "" = the seed.
  std::string initial_weights{};
};

// A finished epoch, as the reporting task (index 0) saw it.
struct EpochReport {
  int64_t epoch = 0;
  double train_loss = 0, seconds = 0, samples_per_s = 0;
  bool evaluated = false;
  double test_loss = 0, test_accuracy = 0;
  int64_t step = 0, total_steps = 0;
};

enum class TaskState { kNone, kRunning, kSucceeded, kFailed };
const char* TaskStateName(TaskState s);

struct NodeReport {
  int64_t threads = 0;
  // The task the node runs or just finished (attempt empty: none).
  int64_t job = 0;
  std::string attempt;
  TaskState state = TaskState::kNone;
  std::string error;  // kFailed: why
  int64_t step = 0, total_steps = 0;
  std::vector<EpochReport> epochs;  // finished since the last report that was answered
};

struct NodeOrder {
  enum class Kind { kIdle, kRun, kContinue, kStop } kind = Kind::kIdle;
  std::optional<Task> task;  // kRun
};

boost::json::value ToJson(const NodeReport& r);
Result<NodeReport> NodeReportFromJson(const boost::json::value& v);
boost::json::value ToJson(const NodeOrder& o);
Result<NodeOrder> NodeOrderFromJson(const boost::json::value& v);

// kShard, worker -> controller: part `index` of `count` of the first `limit`
// (0: all) training samples of `dataset`, or its whole test set (the first
// `limit`). The only place that names the request's fields.
struct ShardRequest {
  enum class Split { kTrain, kTest };
  std::string dataset;
  Split split = Split::kTrain;
  int64_t index = 0, count = 1;
  int64_t limit = 0;

  wire::Message Encode() const;
  // Checks what the service trusts: a split it knows, 0 <= index < count,
  // limit >= 0, a dataset name present.
  static Result<ShardRequest> Decode(const wire::Message& message);
};

// The kShard answer: the samples, or none (a test set the dataset lacks).
struct ShardReply {
  std::optional<data::Dataset> set;
  // `empty_like`: a dataset of the right sample shape, sent when `set` is none.
  wire::Message Encode(const data::Dataset* empty_like = nullptr) const;
  // Errors name what is inconsistent (tensor dtypes and shapes).
  static Result<ShardReply> Decode(const wire::Message& message);
};

}  // namespace dnnd::pool
