// The controller's models area:
//
//   POST /api/v1/models {"name","spec"}  spec: TOML text or a JSON object;
//        built once (within controller.max_model_parameters) before it is stored
//   GET  /api/v1/models[/{name}]
//   PUT  /api/v1/models/{name}/onnx  body: a model exported by torch.onnx.export
//        (streamed to disk, within controller.max_upload_bytes), imported
//        (src/tensor/onnx/) within controller.max_model_parameters; its
//        initializers are the initial weights of the model's jobs
//   PUT  /api/v1/models/{name}/initial  body: safetensors (a PyTorch
//        state_dict or a dnnd model file) the model's jobs start from instead
//        of the seed: names and shapes must match the spec exactly (every
//        difference listed); set once (409 after), like an ONNX model's
//   GET  /api/v1/models/{name}/initial  those weights (safetensors); 404 for
//        a seeded model
//   GET  /api/v1/models/{name}/checkpoint  the newest succeeded job's weights
//
// (POST /api/v1/models/{name}/predict is the predictor's: predictor.h.)
// Stateless beyond the store and the weights files: thread-safe.
#pragma once

#include <memory>
#include <mutex>

#include "roles/controller/context.h"
#include "tensor/model_spec.h"

namespace dnnd {

class WorkQueue;

class ModelsApi {
 public:
  // `ctx` must outlive this object.
  ModelsApi(const ControllerContext& ctx, ModelLimits limits);

  // The routes above; building a model runs on `heavy`.
  void AddRoutes(HttpRouter& r, std::shared_ptr<WorkQueue> heavy);

 private:
  Result<HttpResponse> Create(const HttpRequest& r);
  Result<HttpResponse> CreateFromOnnx(const HttpRequest& r);
  Result<HttpResponse> SetInitial(const HttpRequest& r);
  Result<HttpResponse> Initial(const HttpRequest& r);
  Result<HttpResponse> List(const HttpRequest& r);
  Result<HttpResponse> Get(const HttpRequest& r);
  Result<HttpResponse> Checkpoint(const HttpRequest& r);

  const ControllerContext& ctx_;
  const ModelLimits limits_;  // controller.max_model_parameters
  std::mutex initial_mu_;     // SetInitial's check-then-write of a weights file
};

}  // namespace dnnd
