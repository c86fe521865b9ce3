#include "roles/pool/protocol.h"

#include <boost/json.hpp>
#include <cstring>

#include "core/json_fields.h"

namespace dnnd::pool {
namespace json = boost::json;

const char* TaskStateName(TaskState s) {
  switch (s) {
    case TaskState::kNone:
      return "none";
    case TaskState::kRunning:
      return "running";
    case TaskState::kSucceeded:
      return "succeeded";
    case TaskState::kFailed:
      return "failed";
  }
  return "none";
}

namespace {

Result<const json::object*> Object(const json::value& v, const std::string& what) {
  if (!v.is_object()) return InvalidArgument(what + " must be a JSON object");
  return &v.get_object();
}

}  // namespace

json::value ToJson(const NodeReport& r) {
  json::array epochs;
  for (const auto& e : r.epochs) {
    json::object x{{"epoch", e.epoch},     {"train_loss", e.train_loss},
                   {"seconds", e.seconds}, {"samples_per_s", e.samples_per_s},
                   {"step", e.step},       {"total_steps", e.total_steps}};
    if (e.evaluated) {
      x["evaluated"] = true;
      x["test_loss"] = e.test_loss;
      x["test_accuracy"] = e.test_accuracy;
    }
    epochs.push_back(std::move(x));
  }
  return json::object{{"threads", r.threads},
                      {"job", r.job},
                      {"attempt", r.attempt},
                      {"state", TaskStateName(r.state)},
                      {"error", r.error},
                      {"step", r.step},
                      {"total_steps", r.total_steps},
                      {"epochs", std::move(epochs)}};
}

Result<NodeReport> NodeReportFromJson(const json::value& v) {
  DNND_ASSIGN_OR_RETURN(const json::object* o, Object(v, "heartbeat"));
  JsonFields rd{*o, "heartbeat"};
  DNND_RETURN_IF_ERROR(rd.RejectUnknown(
      {"threads", "job", "attempt", "state", "error", "step", "total_steps", "epochs"}));
  NodeReport r;
  DNND_ASSIGN_OR_RETURN(r.threads, rd.Int("threads"));
  DNND_ASSIGN_OR_RETURN(r.job, rd.Int("job"));
  DNND_ASSIGN_OR_RETURN(r.attempt, rd.String("attempt"));
  DNND_ASSIGN_OR_RETURN(std::string state, rd.String("state"));
  if (state.empty() || state == "none")
    r.state = TaskState::kNone;
  else if (state == "running")
    r.state = TaskState::kRunning;
  else if (state == "succeeded")
    r.state = TaskState::kSucceeded;
  else if (state == "failed")
    r.state = TaskState::kFailed;
  else
    return InvalidArgument("heartbeat: field 'state' is '" + state +
                           "'; expected none, running, succeeded or failed");
  DNND_ASSIGN_OR_RETURN(r.error, rd.String("error"));
  DNND_ASSIGN_OR_RETURN(r.step, rd.Int("step"));
  DNND_ASSIGN_OR_RETURN(r.total_steps, rd.Int("total_steps"));
  if (const json::value* e = o->if_contains("epochs")) {
    if (!e->is_array()) return InvalidArgument("heartbeat: field 'epochs' must be an array");
    for (const auto& x : e->get_array()) {
      DNND_ASSIGN_OR_RETURN(const json::object* eo, Object(x, "heartbeat: an epoch"));
      JsonFields er{*eo, "heartbeat: epoch"};
      DNND_RETURN_IF_ERROR(
          er.RejectUnknown({"epoch", "train_loss", "seconds", "samples_per_s", "step",
                            "total_steps", "evaluated", "test_loss", "test_accuracy"}));
      EpochReport rep;
      DNND_ASSIGN_OR_RETURN(rep.epoch, er.Int("epoch"));
      DNND_ASSIGN_OR_RETURN(rep.train_loss, er.Number("train_loss"));
      DNND_ASSIGN_OR_RETURN(rep.seconds, er.Number("seconds"));
      DNND_ASSIGN_OR_RETURN(rep.samples_per_s, er.Number("samples_per_s"));
      DNND_ASSIGN_OR_RETURN(rep.step, er.Int("step"));
      DNND_ASSIGN_OR_RETURN(rep.total_steps, er.Int("total_steps"));
      DNND_ASSIGN_OR_RETURN(rep.evaluated, er.Bool("evaluated"));
      DNND_ASSIGN_OR_RETURN(rep.test_loss, er.Number("test_loss"));
      DNND_ASSIGN_OR_RETURN(rep.test_accuracy, er.Number("test_accuracy"));
      if (rep.epoch < 1) return InvalidArgument("heartbeat: an epoch number must be >= 1");
      r.epochs.push_back(rep);
    }
  }
  return r;
}

json::value ToJson(const NodeOrder& o) {
  static const char* kinds[] = {"idle", "run", "continue", "stop"};
  json::object out{{"order", kinds[static_cast<int>(o.kind)]}};
  if (o.task) {
    const Task& t = *o.task;
    json::array ports;
    for (auto p : t.ps_ports) ports.push_back(p);
    json::object task{
        {"job", t.job},     {"attempt", t.attempt},         {"index", t.index},
        {"count", t.count}, {"dataset", t.dataset},         {"spec", t.spec.ToJson()},
        {"model", t.model}, {"ps_ports", std::move(ports)}, {"wire_port", t.wire_port}};
    if (!t.initial_weights.empty()) task["initial_weights"] = t.initial_weights;
    if (t.spec.stop_epoch > 0)
      task["segment"] = json::object{{"start_epoch", t.spec.start_epoch},
                                     {"start_step", t.spec.start_step},
                                     {"stop_epoch", t.spec.stop_epoch}};
    out["task"] = std::move(task);
  }
  return out;
}

Result<NodeOrder> NodeOrderFromJson(const json::value& v) {
  DNND_ASSIGN_OR_RETURN(const json::object* o, Object(v, "the controller's answer"));
  JsonFields rd{*o, "the controller's answer"};
  DNND_ASSIGN_OR_RETURN(std::string kind, rd.String("order"));
  NodeOrder out;
  if (kind == "idle")
    out.kind = NodeOrder::Kind::kIdle;
  else if (kind == "run")
    out.kind = NodeOrder::Kind::kRun;
  else if (kind == "continue")
    out.kind = NodeOrder::Kind::kContinue;
  else if (kind == "stop")
    out.kind = NodeOrder::Kind::kStop;
  else
    return InvalidArgument("the controller's answer has an unknown order '" + kind + "'");
  if (out.kind != NodeOrder::Kind::kRun) return out;
  const json::value* tv = o->if_contains("task");
  if (!tv) return InvalidArgument("the controller's answer 'run' has no task");
  DNND_ASSIGN_OR_RETURN(const json::object* to, Object(*tv, "task"));
  JsonFields tr{*to, "task"};
  Task t;
  DNND_ASSIGN_OR_RETURN(t.job, tr.Int("job"));
  DNND_ASSIGN_OR_RETURN(t.attempt, tr.String("attempt"));
  DNND_ASSIGN_OR_RETURN(t.index, tr.Int("index"));
  DNND_ASSIGN_OR_RETURN(t.count, tr.Int("count", 1));
  DNND_ASSIGN_OR_RETURN(t.dataset, tr.String("dataset"));
  DNND_ASSIGN_OR_RETURN(t.model, tr.String("model", "", true));
  DNND_ASSIGN_OR_RETURN(t.initial_weights, tr.String("initial_weights", ""));
  if (!t.initial_weights.empty() && !t.initial_weights.starts_with("/api/v1/models/"))
    return InvalidArgument("task: initial_weights must be a /api/v1/models/ path");
  const json::value* sv = to->if_contains("spec");
  if (!sv || !sv->is_object()) return InvalidArgument("task: field 'spec' must be an object");
  DNND_ASSIGN_OR_RETURN(t.spec,
                        JobSpec::FromJson(sv->get_object(), JobSpec::Stored(), "task: spec"));
  if (const json::value* gv = to->if_contains("segment")) {
    DNND_ASSIGN_OR_RETURN(const json::object* go, Object(*gv, "task: segment"));
    JsonFields gr{*go, "task: segment"};
    DNND_ASSIGN_OR_RETURN(t.spec.start_epoch, gr.Int("start_epoch", 0, 0));
    DNND_ASSIGN_OR_RETURN(t.spec.start_step, gr.Int("start_step", 0, 0));
    DNND_ASSIGN_OR_RETURN(t.spec.stop_epoch, gr.Int("stop_epoch", 0, 1));
    DNND_RETURN_IF_ERROR(t.spec.Validate().WithContext("task: segment"));
  }
  DNND_ASSIGN_OR_RETURN(t.wire_port, tr.Int("wire_port"));
  const json::value* pv = to->if_contains("ps_ports");
  if (!pv || !pv->is_array()) return InvalidArgument("task: field 'ps_ports' must be an array");
  for (const auto& p : pv->get_array()) {
    if (!p.is_int64()) return InvalidArgument("task: ps_ports must be integers");
    t.ps_ports.push_back(p.get_int64());
  }
  if (t.attempt.empty() || t.count < 1 || t.index < 0 || t.index >= t.count || t.ps_ports.empty())
    return InvalidArgument("task: attempt, index < count and ps_ports are required");
  out.task = std::move(t);
  return out;
}

namespace {

wire::Message ShardMessage(const data::Dataset& set) {
  wire::Message m;
  Shape shape = {set.size()};
  shape.insert(shape.end(), set.sample_shape.begin(), set.sample_shape.end());
  if (set.type == data::SampleType::kUint8)
    m.tensors.push_back(
        wire::WireTensor::FromBytes("samples", wire::DType::kU8, shape, set.u8.data()));
  else
    m.tensors.push_back(
        wire::WireTensor::FromBytes("samples", wire::DType::kF32, shape, set.f32.data()));
  if (!set.labels.empty())
    m.tensors.push_back(
        wire::WireTensor::FromBytes("labels", wire::DType::kI32, {set.size()}, set.labels.data()));
  if (set.target_width > 0)
    m.tensors.push_back(wire::WireTensor::FromBytes(
        "targets", wire::DType::kF32, {set.size(), set.target_width}, set.targets.data()));
  m.fields.SetInt("num_classes", set.num_classes);
  return m;
}

Result<data::Dataset> DatasetFromShard(const wire::Message& m) {
  const wire::WireTensor* s = m.FindTensor("samples");
  if (!s || s->shape.empty()) return InvalidArgument("a shard has no 'samples' tensor [n, ...]");
  data::Dataset d;
  const int64_t n = s->shape[0];
  d.sample_shape.assign(s->shape.begin() + 1, s->shape.end());
  d.num_classes = static_cast<int32_t>(m.fields.IntOr("num_classes", 0));
  if (s->dtype == wire::DType::kU8) {
    d.type = data::SampleType::kUint8;
    d.u8.resize(s->raw_bytes());
    std::memcpy(d.u8.data(), s->data(), s->raw_bytes());
  } else if (s->dtype == wire::DType::kF32) {
    d.type = data::SampleType::kFloat32;
    d.f32.resize(static_cast<size_t>(s->numel()));
    std::memcpy(d.f32.data(), s->data(), s->raw_bytes());
  } else {
    return InvalidArgument(std::string("a shard's samples are ") + wire::DTypeName(s->dtype) +
                           "; expected u8 or f32");
  }
  if (const wire::WireTensor* l = m.FindTensor("labels")) {
    if (l->dtype != wire::DType::kI32 || l->shape != Shape{n})
      return InvalidArgument("a shard's labels must be i32 [" + std::to_string(n) + "]");
    d.labels.resize(static_cast<size_t>(n));
    std::memcpy(d.labels.data(), l->data(), l->raw_bytes());
  }
  if (const wire::WireTensor* t = m.FindTensor("targets")) {
    if (t->dtype != wire::DType::kF32 || t->shape.size() != 2 || t->shape[0] != n)
      return InvalidArgument("a shard's targets must be f32 [" + std::to_string(n) + ", width]");
    d.target_width = t->shape[1];
    d.targets.resize(static_cast<size_t>(t->numel()));
    std::memcpy(d.targets.data(), t->data(), t->raw_bytes());
  }
  if (d.labels.empty() && d.target_width == 0)
    return InvalidArgument("a shard has neither labels nor targets");
  return d;
}

}  // namespace

wire::Message ShardRequest::Encode() const {
  wire::Message m;
  m.type = kShard;
  m.fields.SetString("dataset", dataset);
  m.fields.SetString("split", split == Split::kTest ? "test" : "train");
  m.fields.SetInt("index", index);
  m.fields.SetInt("count", count);
  m.fields.SetInt("limit", limit);
  return m;
}

Result<ShardRequest> ShardRequest::Decode(const wire::Message& m) {
  ShardRequest r;
  DNND_ASSIGN_OR_RETURN(r.dataset, m.fields.GetString("dataset"));
  DNND_ASSIGN_OR_RETURN(std::string split, m.fields.GetString("split"));
  if (split == "test")
    r.split = Split::kTest;
  else if (split != "train")
    return InvalidArgument("shard split must be train or test, not '" + split + "'");
  r.index = m.fields.IntOr("index", 0);
  r.count = m.fields.IntOr("count", 1);
  r.limit = m.fields.IntOr("limit", 0);
  if (r.count < 1 || r.index < 0 || r.index >= r.count)
    return InvalidArgument("a shard request's part " + std::to_string(r.index) + " of " +
                           std::to_string(r.count) + " does not exist");
  if (r.limit < 0)
    return InvalidArgument("a shard request's limit must be >= 0, not " + std::to_string(r.limit));
  return r;
}

wire::Message ShardReply::Encode(const data::Dataset* empty_like) const {
  if (set) return ShardMessage(*set);
  wire::Message none = ShardMessage(empty_like ? *empty_like : data::Dataset{});
  none.fields.SetInt("present", 0);
  return none;
}

Result<ShardReply> ShardReply::Decode(const wire::Message& m) {
  ShardReply r;
  if (!m.fields.IntOr("present", 1)) return r;
  DNND_ASSIGN_OR_RETURN(r.set, DatasetFromShard(m));
  return r;
}

}  // namespace dnnd::pool
