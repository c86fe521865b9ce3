// The controller's end of the worker pool's HTTP protocol (pool_protocol.h):
//
//   POST /api/v1/nodes/{name}/heartbeat    a node's report; answer: its order
//   GET  /api/v1/nodes                     the pool, its capacity and idle nodes
//   PUT  /api/v1/jobs/{id}/model?attempt=A the trained model, from the job's
//        reporting part (only its current attempt)
//
// Stateless beyond the job runner's pool: thread-safe.
#pragma once

#include "roles/controller/context.h"

namespace dnnd {

class JobRunner;

class NodesApi {
 public:
  // Both must outlive this object.
  NodesApi(const ControllerContext& ctx, JobRunner& runner);

  void AddRoutes(HttpRouter& r);

 private:
  Result<HttpResponse> Heartbeat(const HttpRequest& r);
  Result<HttpResponse> List(const HttpRequest& r);
  Result<HttpResponse> UploadModel(const HttpRequest& r);

  const ControllerContext& ctx_;
  JobRunner& runner_;
};

}  // namespace dnnd
