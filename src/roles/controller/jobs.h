// The controller's jobs area:
//
//   POST   /api/v1/jobs {"model","dataset","epochs","batch","lr","optimizer",
//          "workers","servers","mode","kavg_steps","seed","limit_train",
//          "limit_test", ...}  checked against the model, the dataset and the
//          pool, then queued for the job runner (job_runner.h)
//   GET    /api/v1/jobs[/{id}]   POST /api/v1/jobs/{id}/cancel
//   DELETE /api/v1/jobs/{id}  (finished jobs only; 409 while active)
//   GET    /api/v1/jobs/{id}/logs[?offset=N]   GET /api/v1/jobs/{id}/checkpoint
//
// Thread-safe. jobs_list_mu_ guards only the cached job list; nothing else
// is called while it is held.
#pragma once

#include <memory>
#include <optional>
#include <utility>

#include "core/thread_annotations.h"
#include "roles/controller/context.h"

namespace dnnd {

class DatasetsApi;
class JobRunner;
class WorkQueue;

class JobsApi {
 public:
  // All must outlive this object. `local_workers`: the pool workers the
  // role runs in-process (a job may ask for that many before they registered).
  JobsApi(const ControllerContext& ctx, DatasetsApi& datasets, JobRunner& runner,
          int64_t local_workers);

  // The routes above; creating a job (it loads the dataset) runs on `heavy`.
  void AddRoutes(HttpRouter& r, std::shared_ptr<WorkQueue> heavy);

 private:
  Result<HttpResponse> Create(const HttpRequest& r);
  boost::json::object JobJson(const JobRecord& j);
  Result<HttpResponse> List(const HttpRequest& r) EXCLUDES(jobs_list_mu_);
  Result<HttpResponse> Get(const HttpRequest& r);
  Result<HttpResponse> Cancel(const HttpRequest& r);
  Result<HttpResponse> Logs(const HttpRequest& r);
  Result<HttpResponse> Delete(const HttpRequest& r);
  Result<HttpResponse> Checkpoint(const HttpRequest& r);

  const ControllerContext& ctx_;
  DatasetsApi& datasets_;
  JobRunner& runner_;
  const int64_t local_workers_;

  // GET /api/v1/jobs's answer, as of (store generation, live version).
  Mutex jobs_list_mu_;
  std::optional<std::pair<std::pair<uint64_t, uint64_t>, HttpResponse>> jobs_list_
      GUARDED_BY(jobs_list_mu_);
};

}  // namespace dnnd
