#include "roles/controller/jobs.h"

#include <algorithm>
#include <array>
#include <boost/json.hpp>
#include <cmath>
#include <filesystem>
#include <tuple>

#include "core/files.h"
#include "core/json_fields.h"
#include "core/json_text.h"
#include "core/log.h"
#include "core/work_queue.h"
#include "roles/controller/datasets.h"
#include "roles/controller/job_runner.h"
#include "roles/train/job_spec.h"
#include "roles/train/trainer.h"
#include "tensor/data/dataset.h"
#include "tensor/model_spec.h"

namespace dnnd {
namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

// Mean and standard deviation of every input value, as the data loader sees
// them before normalising (uint8 pixels scaled to [0, 1]).
std::pair<double, double> PixelStats(const data::Dataset& set) {
  double sum = 0, sq = 0;
  size_t n = 0;
  auto add = [&](double x) {
    sum += x;
    sq += x * x;
  };
  if (set.type == data::SampleType::kUint8) {
    std::array<size_t, 256> counts{};
    for (uint8_t v : set.u8) ++counts[v];
    for (int v = 0; v < 256; ++v) {
      const double x = v / 255.0;
      sum += x * static_cast<double>(counts[v]);
      sq += x * x * static_cast<double>(counts[v]);
    }
    n = set.u8.size();
  } else {
    for (float v : set.f32) add(v);
    n = set.f32.size();
  }
  if (n == 0) return {0.0, 1.0};
  const double mean = sum / static_cast<double>(n);
  const double var = std::max(0.0, sq / static_cast<double>(n) - mean * mean);
  return {mean, var > 1e-12 ? std::sqrt(var) : 1.0};
}

}  // namespace

JobsApi::JobsApi(const ControllerContext& ctx, DatasetsApi& datasets, JobRunner& runner,
                 int64_t local_workers)
    : ctx_(ctx), datasets_(datasets), runner_(runner), local_workers_(local_workers) {}

void JobsApi::AddRoutes(HttpRouter& r, std::shared_ptr<WorkQueue> heavy) {
  r.HandleOffloaded("POST", "/api/v1/jobs", std::move(heavy),  // loads the dataset
                    ApiHandler([this](const HttpRequest& q) { return Create(q); }));
  r.Handle("GET", "/api/v1/jobs", ApiHandler([this](const HttpRequest& q) { return List(q); }));
  r.Handle("GET", "/api/v1/jobs/{id}", ApiHandler([this](const HttpRequest& q) { return Get(q); }));
  r.Handle("DELETE", "/api/v1/jobs/{id}",
           ApiHandler([this](const HttpRequest& q) { return Delete(q); }));
  r.Handle("POST", "/api/v1/jobs/{id}/cancel",
           ApiHandler([this](const HttpRequest& q) { return Cancel(q); }));
  r.Handle("GET", "/api/v1/jobs/{id}/logs",
           ApiHandler([this](const HttpRequest& q) { return Logs(q); }));
  r.Handle("GET", "/api/v1/jobs/{id}/checkpoint",
           ApiHandler([this](const HttpRequest& q) { return Checkpoint(q); }));
}

Result<HttpResponse> JobsApi::Create(const HttpRequest& r) {
  DNND_ASSIGN_OR_RETURN(json::object body, JsonObjectBody(r, ctx_.max_json));
  JsonFields f{body, ""};
  DNND_RETURN_IF_ERROR(f.RejectUnknown({"model",
                                        "dataset",
                                        "epochs",
                                        "batch",
                                        "lr",
                                        "optimizer",
                                        "workers",
                                        "servers",
                                        "mode",
                                        "kavg_steps",
                                        "seed",
                                        "limit_train",
                                        "limit_test",
                                        "eval_every",
                                        "goal_accuracy",
                                        "lr_schedule",
                                        "elastic",
                                        "min_workers",
                                        "max_workers",
                                        "normalize",
                                        "augment_crop_padding",
                                        "augment_flip",
                                        "momentum",
                                        "weight_decay",
                                        "freeze",
                                        "gradient_codec",
                                        "weights_codec"}));
  DNND_ASSIGN_OR_RETURN(std::string model, f.String("model", "", true));
  DNND_ASSIGN_OR_RETURN(std::string dataset, f.String("dataset", "", true));
  DNND_RETURN_IF_ERROR(CheckName("model", model));
  DNND_RETURN_IF_ERROR(CheckName("dataset", dataset));
  auto m = ctx_.store.GetModel(model);
  if (!m.ok()) return InvalidArgument("unknown model '" + model + "'");
  auto d = ctx_.store.GetDataset(dataset);
  if (!d.ok()) return InvalidArgument("unknown dataset '" + dataset + "'");
  DNND_ASSIGN_OR_RETURN(ModelSpec spec, ParseModelSpecText(m->spec, model));
  // The request over the defaults: the model's optimizer and learning rate;
  // an elastic job may grow into whatever the pool has then (scaling the
  // worker Deployment up is enough), up to controller.max_workers.
  const int64_t max_workers = ctx_.cfg.GetInt("controller.max_workers");
  JobSpec defaults;
  defaults.optimizer = spec.optimizer.type;
  defaults.lr = DecimalOf(spec.optimizer.lr);
  defaults.max_workers = max_workers;
  DNND_ASSIGN_OR_RETURN(JobSpec job, JobSpec::FromJson(body, defaults));
  for (auto [key, n] :
       {std::pair{"workers", job.workers}, std::pair{"min_workers", job.min_workers},
        std::pair{"max_workers", job.max_workers}})
    if (n > max_workers)
      return InvalidArgument(std::string("field '") + key + "' is " + std::to_string(n) +
                             "; expected 1.." + std::to_string(max_workers) +
                             " (controller.max_workers)");
  // All of a job's workers run at once: more than the pool has would wait forever.
  const int64_t capacity = std::max(runner_.pool().Capacity(), local_workers_);
  if (job.workers > capacity)
    return InvalidArgument("the job asks for " + std::to_string(job.workers) +
                           " workers but the pool has " + std::to_string(capacity) +
                           " (GET /api/v1/nodes; start more workers with worker.controller set)");
  if (runner_.ps_ports() &&
      job.servers > runner_.ps_ports()->second - runner_.ps_ports()->first + 1)
    return InvalidArgument(
        "the job asks for " + std::to_string(job.servers) +
        " parameter servers but controller.ps_ports has " +
        std::to_string(runner_.ps_ports()->second - runner_.ps_ports()->first + 1) + " ports");
  // Fail now, not inside training, when model and data disagree.
  const json::value shape = ParseJsonText(d->sample_shape);
  if (json::serialize(shape) != json::serialize(ShapeJson(spec.input)))
    return InvalidArgument("model '" + model + "' takes samples of shape " +
                           ShapeToString(spec.input) + " but dataset '" + dataset + "' has " +
                           d->sample_shape);
  // The model, built once for the checks below that need it.
  std::shared_ptr<nn::Graph> graph;
  auto built = [&]() -> Status {
    if (graph) return Status::Ok();
    DNND_ASSIGN_OR_RETURN(graph, BuildModel(spec, 0));
    return Status::Ok();
  };
  if (!job.freeze.empty()) {  // every pattern must name something, as a worker checks
    DNND_RETURN_IF_ERROR(built());
    auto frozen = FrozenParameters(*graph, job.freeze);
    if (!frozen.ok()) {
      std::string why = frozen.status().message();  // the worker's "train.freeze: ..."
      if (why.starts_with("train.freeze: ")) why.erase(0, 14);
      return InvalidArgument("field 'freeze': " + why);
    }
    if (frozen->size() == graph->Parameters().size())
      return InvalidArgument("field 'freeze' leaves no parameter of model '" + model +
                             "' to train");
  }
  if (job.augment_crop_padding > 0 || job.augment_flip)
    DNND_RETURN_IF_ERROR(data::CheckLoaderOptions(
        spec.input, {.crop_padding = job.augment_crop_padding, .flip = job.augment_flip}));
  const int64_t train_n =
      job.limit_train > 0 ? std::min(job.limit_train, d->train_samples) : d->train_samples;
  const int64_t most_workers = job.elastic ? job.max_workers : job.workers;
  if (train_n < most_workers)
    return InvalidArgument("dataset '" + dataset + "' has " + std::to_string(train_n) +
                           " training samples for " + std::to_string(most_workers) + " workers");
  // Inputs are standardised with the training set's own mean and standard
  // deviation, recorded in the job so predictions use the same ones.
  DNND_ASSIGN_OR_RETURN(job.normalized, f.Bool("normalize", true));
  job.normalize_mean = 0;
  job.normalize_std = 1;
  if (job.normalized) {
    DNND_ASSIGN_OR_RETURN(auto loaded, datasets_.Load(dataset));
    std::tie(job.normalize_mean, job.normalize_std) =
        PixelStats(loaded->train.Take(job.limit_train));
  }
  // The dataset's class names go with the job into its model file; they
  // name the model's outputs, so there must be one per output.
  const json::value names = ParseJsonText(d->classes.empty() ? "[]" : d->classes);
  if (names.is_array() && !names.get_array().empty()) {
    for (const auto& c : names.get_array())
      if (c.is_string()) job.classes.emplace_back(c.get_string());
    DNND_RETURN_IF_ERROR(built());
    auto out = graph->OutputShape(spec.input);
    if (out.ok() && (out->size() != 1 || (*out)[0] != static_cast<int64_t>(job.classes.size())))
      return InvalidArgument("dataset '" + dataset + "' names " +
                             std::to_string(job.classes.size()) + " classes but model '" + model +
                             "' outputs " + ShapeToString(*out) + ": one score per class needed");
  }
  const std::string params = json::serialize(job.ToJson());
  DNND_ASSIGN_OR_RETURN(int64_t id, ctx_.store.CreateJob(model, dataset, params));
  ctx_.JobLog(
      id, "queued: model " + model + ", dataset " + dataset + ", " + SettingsText(job.ToJson()));
  runner_.Wake();
  DNND_ASSIGN_OR_RETURN(auto record, ctx_.store.GetJob(id));
  return HttpResponse::Json(201, JobJson(record));
}

json::object JobsApi::JobJson(const JobRecord& j) {
  json::object o{{"id", j.id},
                 {"model", j.model},
                 {"dataset", j.dataset},
                 {"state", j.state},
                 {"reason", j.reason},
                 {"epoch", j.epoch},
                 {"step", j.step},
                 {"total_steps", j.total_steps},
                 {"attempts", j.attempts},
                 {"created", j.created},
                 {"started", j.started},
                 {"finished", j.finished},
                 {"params", ParseJsonText(j.params)}};
  int64_t step = j.step, total = j.total_steps;
  json::value eta = nullptr;
  if (std::shared_ptr<const LiveProgress> live =
          j.state == kJobRunning ? runner_.Live(j.id) : nullptr) {
    step = std::max(step, live->step.load());
    total = std::max(total, live->total.load());
    const double secs = NowSeconds() - live->start_s.load();
    const int64_t done = live->start_step >= 0 ? step - live->start_step : 0;
    if (done > 0 && total > step) eta = secs / done * static_cast<double>(total - step);
  }
  if (j.state == kJobSucceeded) {
    step = std::max(step, total);
    eta = 0.0;
  }
  o["step"] = step;
  o["total_steps"] = total;
  o["progress"] = total > 0 ? 100.0 * static_cast<double>(step) / static_cast<double>(total) : 0.0;
  o["eta_seconds"] = eta;
  // Workers the job runs on now (an elastic job's current segment).
  if (std::shared_ptr<const LiveProgress> live =
          j.state == kJobRunning ? runner_.Live(j.id) : nullptr)
    o["parallelism"] = live->workers.load();
  json::array h;
  for (const auto& e : j.history) {
    json::object x{{"epoch", e.epoch},
                   {"train_loss", e.train_loss},
                   {"seconds", e.seconds},
                   {"samples_per_s", e.samples_per_s}};
    if (e.parallelism > 0) x["parallelism"] = e.parallelism;
    if (e.evaluated) {
      x["test_loss"] = e.test_loss;
      x["test_accuracy"] = e.test_accuracy;
    }
    h.push_back(std::move(x));
  }
  o["history"] = std::move(h);
  return o;
}

// The list is the dashboard's and every monitoring script's poll. It only
// changes with a store write or a running job's progress report, so the
// answer is kept until one happens (a running job's ETA is then as of its
// last report, at most a heartbeat old) and a poll costs no query.
Result<HttpResponse> JobsApi::List(const HttpRequest&) {
  // Read before the query: a change after this point is never cached as older than it.
  const std::pair<uint64_t, uint64_t> version{ctx_.store.Generation(), runner_.LiveVersion()};
  {
    MutexLock lock(jobs_list_mu_);
    if (jobs_list_ && jobs_list_->first == version) return jobs_list_->second;
  }
  DNND_ASSIGN_OR_RETURN(auto list, ctx_.store.ListJobs());
  json::array a;
  for (const auto& j : list) a.push_back(JobJson(j));
  HttpResponse answer = HttpResponse::Json(200, {{"jobs", a}});
  MutexLock lock(jobs_list_mu_);
  jobs_list_.emplace(version, answer);
  return answer;
}

Result<HttpResponse> JobsApi::Get(const HttpRequest& r) {
  DNND_ASSIGN_OR_RETURN(int64_t id, JobId(r));
  DNND_ASSIGN_OR_RETURN(auto j, ctx_.store.GetJob(id));
  return HttpResponse::Json(200, JobJson(j));
}

Result<HttpResponse> JobsApi::Cancel(const HttpRequest& r) {
  DNND_ASSIGN_OR_RETURN(int64_t id, JobId(r));
  DNND_ASSIGN_OR_RETURN(auto j, ctx_.store.GetJob(id));
  if (j.state != kJobQueued && j.state != kJobRunning)
    return HttpResponse::Error(409, "not_active",
                               "job " + std::to_string(id) + " is already " + j.state);
  DNND_ASSIGN_OR_RETURN(bool was_queued, ctx_.store.CancelIfQueued(id));
  if (was_queued) {
    ctx_.JobLog(id, "cancelled while queued");
  } else {
    runner_.Cancel(id);
  }
  return HttpResponse::Json(202, {{"id", id}, {"cancelling", true}});
}

// ?offset=N: the log from byte N (at most 4 MiB); X-Log-Offset is where
// the next request continues, X-Job-State lets a follower stop once the
// job is over and the log drained (`dnnd ctl job logs -f` polls this).
Result<HttpResponse> JobsApi::Logs(const HttpRequest& r) {
  DNND_ASSIGN_OR_RETURN(int64_t id, JobId(r));
  DNND_ASSIGN_OR_RETURN(auto job, ctx_.store.GetJob(id));
  uint64_t offset = 0;
  if (auto it = r.query.find("offset"); it != r.query.end()) {
    const std::string& s = it->second;
    if (s.empty() || s.size() > 18 || s.find_first_not_of("0123456789") != std::string::npos)
      return InvalidArgument("query parameter 'offset' is '" + s +
                             "'; expected a byte offset (0, 1, ...)");
    offset = std::stoull(s);
  }
  auto text = ReadFileRange(ctx_.JobDir(id) + "/job.log", offset, 4 << 20);
  if (!text.ok() && text.status().code() != StatusCode::kNotFound) return text.status();
  std::string bytes = text.ok() ? std::move(text).value() : std::string();
  HttpResponse out = HttpResponse::Text(200, bytes);
  out.headers.push_back({"X-Log-Offset", std::to_string(offset + bytes.size())});
  out.headers.push_back({"X-Job-State", job.state});
  return out;
}

// Only a finished job: its store rows and its directory (log, checkpoints, model).
Result<HttpResponse> JobsApi::Delete(const HttpRequest& r) {
  DNND_ASSIGN_OR_RETURN(int64_t id, JobId(r));
  DNND_ASSIGN_OR_RETURN(bool deleted, ctx_.store.DeleteFinishedJob(id));
  if (!deleted)
    return HttpResponse::Error(409, "job_active",
                               "job " + std::to_string(id) +
                                   " is queued or running; cancel it first (POST /api/v1/jobs/" +
                                   std::to_string(id) + "/cancel)");
  std::error_code ec;
  fs::remove_all(ctx_.JobDir(id), ec);
  if (ec)
    Log(LogLevel::kWarn, "controller", "cannot remove a deleted job's files",
        {{"job", id}, {"error", ec.message()}});
  return HttpResponse::Json(200, {{"deleted", id}});
}

Result<HttpResponse> JobsApi::Checkpoint(const HttpRequest& r) {
  DNND_ASSIGN_OR_RETURN(int64_t id, JobId(r));
  DNND_RETURN_IF_ERROR(ctx_.store.GetJob(id).status());
  return ctx_.Checkpoint(id);
}

}  // namespace dnnd
