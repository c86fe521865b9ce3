#include "roles/controller/nodes.h"

#include <boost/json.hpp>
#include <filesystem>

#include "core/files.h"
#include "roles/controller/job_runner.h"
#include "roles/pool/protocol.h"

namespace dnnd {
namespace fs = std::filesystem;
namespace json = boost::json;

NodesApi::NodesApi(const ControllerContext& ctx, JobRunner& runner) : ctx_(ctx), runner_(runner) {}

void NodesApi::AddRoutes(HttpRouter& r) {
  r.HandleUpload("PUT", "/api/v1/jobs/{id}/model",
                 {.dir = ctx_.dir + "/uploads",
                  .max_bytes = static_cast<size_t>(ctx_.cfg.GetInt("controller.max_upload_bytes")),
                  .limit_name = "controller.max_upload_bytes"},
                 ApiHandler([this](const HttpRequest& q) { return UploadModel(q); }));
  r.Handle("POST", "/api/v1/nodes/{name}/heartbeat",
           ApiHandler([this](const HttpRequest& q) { return Heartbeat(q); }));
  r.Handle("GET", "/api/v1/nodes", ApiHandler([this](const HttpRequest& q) { return List(q); }));
}

Result<HttpResponse> NodesApi::Heartbeat(const HttpRequest& r) {
  const std::string name = r.params.at("name");
  DNND_RETURN_IF_ERROR(CheckName("node", name));
  DNND_ASSIGN_OR_RETURN(json::object body, JsonObjectBody(r, ctx_.max_json));
  DNND_ASSIGN_OR_RETURN(pool::NodeReport report, pool::NodeReportFromJson(body));
  pool::NodeOrder order = runner_.pool().Heartbeat(name, r.remote, report);
  if (report.state == pool::TaskState::kSucceeded || report.state == pool::TaskState::kFailed)
    runner_.Wake();
  return HttpResponse::Json(200, pool::ToJson(order));
}

Result<HttpResponse> NodesApi::List(const HttpRequest&) {
  json::array a;
  for (const auto& n : runner_.pool().Nodes()) {
    json::object o{{"name", n.name},
                   {"state", n.state},
                   {"threads", n.threads},
                   {"address", n.address},
                   {"last_seen_seconds", n.last_seen_seconds}};
    o["job"] = n.job > 0 ? json::value(n.job) : json::value(nullptr);
    o["index"] = n.index >= 0 ? json::value(n.index) : json::value(nullptr);
    a.push_back(std::move(o));
  }
  return HttpResponse::Json(200, {{"nodes", a},
                                  {"capacity", runner_.pool().Capacity()},
                                  {"idle", runner_.pool().IdleCount()}});
}

// The trained model, from the job's reporting worker (only its current
// attempt: a worker the job has moved on from cannot overwrite it).
Result<HttpResponse> NodesApi::UploadModel(const HttpRequest& r) {
  DNND_ASSIGN_OR_RETURN(int64_t id, JobId(r));
  auto attempt = r.query.find("attempt");
  if (attempt == r.query.end() || !runner_.pool().IsCurrentAttempt(id, attempt->second))
    return HttpResponse::Error(409, "stale_attempt",
                               "job " + std::to_string(id) + " is not running that attempt");
  // Streamed to r.body_file (HandleUpload), like a dataset part.
  if (r.body_file.empty() || r.body_file_bytes == 0) return InvalidArgument("empty model upload");
  std::error_code ec;
  fs::create_directories(ctx_.JobDir(id) + "/model", ec);
  DNND_RETURN_IF_ERROR(CommitTempFile(r.body_file, ctx_.JobDir(id) + "/model/model.safetensors"));
  ctx_.JobLog(id, "trained model received (" + std::to_string(r.body_file_bytes) + " bytes)");
  return HttpResponse::Json(201, {{"job", id}, {"bytes", r.body_file_bytes}});
}

}  // namespace dnnd
