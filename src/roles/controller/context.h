// What every piece of the controller role shares (controller.h has the
// routes, the role and its threads): the configuration, the data directory's
// layout, the store, the job log, and the helpers every REST area uses to
// read a request and answer one.
//
// Ownership: ControllerRole owns the store and this context; the REST areas
// (datasets.h, models.h, jobs.h, nodes.h), the job runner (job_runner.h) and
// the shard service (shard_service.h) hold a const reference to it and live
// no longer than the role. Everything here is immutable after construction
// or thread-safe on its own (the store serialises its statements), so the
// context has no lock.
#pragma once

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <cstdint>
#include <functional>
#include <string>

#include "core/config.h"
#include "core/status.h"
#include "roles/controller/store.h"
#include "tensor/tensor.h"
#include "transport/http.h"
#include "transport/secrets.h"

namespace dnnd {

struct ControllerContext {
  const Config cfg;
  const std::string dir;  // controller.data_dir
  ControllerStore& store;
  const size_t max_json;  // http.max_body_bytes: a JSON request body's limit
  const wire::Secrets secrets;

  // <data_dir>/jobs/<id>: the job's log, task file, checkpoints and model.
  std::string JobDir(int64_t id) const;
  // The trained weights a succeeded job leaves (served by /checkpoint, used by /predict).
  std::string CheckpointPath(int64_t id) const;
  // <data_dir>/models/<name>.initial.safetensors: the weights a model's jobs
  // start from (an imported ONNX model's); absent for seeded models.
  std::string InitialWeightsPath(const std::string& model) const;
  // Appends a timestamped line to the job's log (one write() per line,
  // O_APPEND: lines from any thread stay whole).
  void JobLog(int64_t id, const std::string& line) const;
  // The host the controller's wire services (shard service, a job's
  // parameter servers) listen on: controller.wire_listen's, else http.listen's.
  std::string ServiceHost() const;
  // The job's trained weights as a download; 404 before it has any.
  Result<HttpResponse> Checkpoint(int64_t id) const;
};

// "invalid <what> name ..." unless IsValidName(name) (controller.h).
Status CheckName(const std::string& what, const std::string& name);
// The request's body as a JSON object, within `max_bytes` (ResourceExhausted beyond).
Result<boost::json::object> JsonObjectBody(const HttpRequest& r, size_t max_bytes);
// `text` parsed, or null when it is not JSON (the store's own columns).
boost::json::value ParseJsonText(const std::string& text);
boost::json::value ShapeJson(const Shape& s);
// The route's {id}: a job id (a positive integer), else InvalidArgument.
Result<int64_t> JobId(const HttpRequest& r);
// Seconds on the steady clock (progress rates and ETAs).
double NowSeconds();

// A REST handler: its error becomes the JSON error answer (413 for a limit).
using ApiFunction = std::function<Result<HttpResponse>(const HttpRequest&)>;
HttpHandler ApiHandler(ApiFunction fn);

}  // namespace dnnd
