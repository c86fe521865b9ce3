#include "roles/controller/controller.h"

#include <atomic>
#include <filesystem>
#include <thread>
#include <vector>

#include "core/dir_lock.h"
#include "core/files.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/work_queue.h"
#include "roles/controller/context.h"
#include "roles/controller/dashboard.h"
#include "roles/controller/datasets.h"
#include "roles/controller/job_runner.h"
#include "roles/controller/jobs.h"
#include "roles/controller/models.h"
#include "roles/controller/nodes.h"
#include "roles/controller/predictor.h"
#include "roles/controller/shard_service.h"
#include "roles/pool/worker_end.h"
#include "tensor/parallel.h"
#include "transport/hello.h"
#include "transport/secrets.h"

namespace dnnd {
namespace fs = std::filesystem;

namespace {

// The role: the pieces in the order they depend on each other, the route
// table, and the threads (Run is the scheduler's; the local pool workers
// have their own).
class ControllerRole : public Role {
 public:
  ControllerRole(const Config& cfg, DirLock dir_lock, std::unique_ptr<ControllerStore> store,
                 wire::Secrets secrets, std::optional<PortRange> ps_ports, int64_t local_workers)
      : dir_lock_(std::move(dir_lock)),
        store_(std::move(store)),
        ctx_{.cfg = cfg,
             .dir = cfg.GetString("controller.data_dir"),
             .store = *store_,
             .max_json = static_cast<size_t>(cfg.GetInt("http.max_body_bytes")),
             .secrets = std::move(secrets)},
        local_workers_(local_workers),
        datasets_(ctx_,
                  {.max_bytes = static_cast<uint64_t>(cfg.GetInt("controller.max_dataset_bytes")),
                   .max_members = cfg.GetInt("controller.max_dataset_members"),
                   .bytes_setting = "controller.max_dataset_bytes",
                   .members_setting = "controller.max_dataset_members"}),
        models_(ctx_, {.max_parameters = cfg.GetInt("controller.max_model_parameters")}),
        runner_(ctx_, ps_ports),
        jobs_(ctx_, datasets_, runner_, local_workers),
        nodes_(ctx_, runner_),
        shards_(ctx_, datasets_),
        predictor_(*store_,
                   {.checkpoint_path = [this](int64_t id) { return ctx_.CheckpointPath(id); },
                    .max_body_bytes = ctx_.max_json,
                    .image = {.max_pixels = cfg.GetInt("controller.max_image_pixels"),
                              .max_jpeg_scans = cfg.GetInt("controller.max_jpeg_scans")}}),
        heavy_(
            std::make_shared<WorkQueue>(static_cast<int>(cfg.GetInt("controller.heavy_threads")),
                                        static_cast<size_t>(cfg.GetInt("controller.heavy_queue")),
                                        "controller.heavy_threads, controller.heavy_queue")) {}

  // The heavy requests' threads use this object: they stop before it goes.
  ~ControllerRole() override { heavy_->Stop(); }

  std::pair<bool, std::string> Readiness() const override {
    if (!running_.load()) return {false, "controller starting"};
    return {true, ""};
  }

  void OnControlPlane(const std::string& address) override { http_address_ = address; }

  Status Run() override {
    Log(LogLevel::kInfo, "controller", "store open",
        {{"data_dir", ctx_.dir}, {"schema_version", store_->SchemaVersion()}});
    DNND_RETURN_IF_ERROR(shards_.Start());
    DNND_RETURN_IF_ERROR(StartLocalWorkers());
    if (ctx_.secrets.api_token.empty())
      Log(LogLevel::kWarn, "controller",
          "the API is UNAUTHENTICATED: no token is set, so anyone who can reach http.listen may "
          "upload, train and delete; set transport.token_file (or env DNND_TRANSPORT__TOKEN)");
    else if (ctx_.secrets.api_token_derived)
      Log(LogLevel::kInfo, "controller",
          "the API's bearer token is derived from the wire key (http.token unset); `dnnd "
          "api-token --config <file>` prints it for dnnd ctl");
    running_ = true;
    runner_.Run(shards_.port());  // until Stop()
    // This process's own workers stop first, at a step boundary, while their
    // servers still answer; then the jobs' servers checkpoint and stop.
    for (auto& w : local_) w->Stop();
    for (auto& t : local_threads_) t.join();
    runner_.StopJobs();
    shards_.Stop();
    heavy_->Stop();  // before main stops the HTTP server its tasks answer through
    return Cancelled("controller stopped");
  }

  void Stop() override { runner_.Stop(); }

  void AddRoutes(HttpRouter& r) override {
    // Mutating routes need the token; GETs, /healthz, /readyz, /metrics are
    // read-only status (docs/controller.md).
    r.RequireBearer({.token = ctx_.secrets.api_token, .metrics = &DefaultMetrics()});
    // Heavy work (dataset validation, model building, image decoding and
    // prediction) runs on heavy_, not on the threads answering /healthz and heartbeats.
    datasets_.AddRoutes(r, heavy_);
    models_.AddRoutes(r, heavy_);
    r.HandleOffloaded("POST", "/api/v1/models/{name}/predict", heavy_,
                      [this](const HttpRequest& q) { return predictor_.Predict(q); });
    jobs_.AddRoutes(r, heavy_);
    nodes_.AddRoutes(r);
    AddDashboardRoutes(r);  // the web UI at /ui/ (dashboard.h)
    // Anything else under /api/ gets the router's JSON 404.
  }

 private:
  // Pool workers inside this process (controller.local_workers), talking to
  // it through its HTTP API like any other node.
  Status StartLocalWorkers() {
    if (local_workers_ == 0) return Status::Ok();
    if (http_address_.empty()) return InvalidArgument("controller.local_workers needs http.listen");
    const Config& cfg = ctx_.cfg;
    // The workers share the cores.
    SetThreads(std::max(1, GetThreads() / static_cast<int>(local_workers_)));
    for (int64_t i = 0; i < local_workers_; ++i) {
      PoolWorkerOptions o;
      o.controller = http_address_;
      o.name = cfg.GetString("node.name") + "-local-" + std::to_string(i);
      o.api_token = ctx_.secrets.api_token;
      o.wire_key = ctx_.secrets.wire_key;
      o.heartbeat =
          std::chrono::milliseconds(std::min<int64_t>(500, cfg.GetInt("worker.heartbeat_ms")));
      o.threads = GetThreads();
      o.scratch_dir = ctx_.dir + "/local-workers/" + std::to_string(i);
      o.progress = cfg.GetString("train.progress");  // worker 0's bar on this process's terminal
      DNND_ASSIGN_OR_RETURN(o.rpc, rpc::RpcClientOptions::FromConfig(cfg, "worker"));
      local_.push_back(std::make_unique<PoolWorker>(std::move(o)));
    }
    for (auto& w : local_) local_threads_.emplace_back([p = w.get()] { (void)p->Run(); });
    return Status::Ok();
  }

  // Declared in construction order: each piece holds references to the ones above it.
  const DirLock dir_lock_;  // controller.data_dir is this process's while it lives
  const std::unique_ptr<ControllerStore> store_;
  const ControllerContext ctx_;
  const int64_t local_workers_;
  DatasetsApi datasets_;
  ModelsApi models_;
  JobRunner runner_;
  JobsApi jobs_;
  NodesApi nodes_;
  ShardService shards_;
  Predictor predictor_;
  // Heavy requests' threads (controller.heavy_threads, controller.heavy_queue).
  const std::shared_ptr<WorkQueue> heavy_;
  std::string http_address_;  // set before Run (OnControlPlane)
  std::atomic<bool> running_{false};
  std::vector<std::unique_ptr<PoolWorker>> local_;  // Run's thread only
  std::vector<std::thread> local_threads_;
};

}  // namespace

Result<std::unique_ptr<Role>> MakeControllerRole(const Config& cfg) {
  return MakeControllerRole(cfg, cfg.GetInt("controller.local_workers"));
}

Result<std::unique_ptr<Role>> MakeControllerRole(const Config& cfg, int64_t local_workers) {
  DNND_ASSIGN_OR_RETURN(std::optional<PortRange> ps_ports,
                        ParsePortRange(cfg.GetString("controller.ps_ports")));
  if (cfg.GetString("http.listen").empty())
    return InvalidArgument(
        "the controller serves its API on http.listen; set it (e.g. \"127.0.0.1:8080\")");
  const std::string dir = cfg.GetString("controller.data_dir");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return IoError("cannot create controller.data_dir " + dir + ": " + ec.message());
  // Before anything in it is touched: a second controller on the directory
  // would sweep the first one's uploads and write to its store.
  DNND_ASSIGN_OR_RETURN(DirLock dir_lock, DirLock::Acquire(dir, "controller.data_dir"));
  // Uploads stream into temporary files here before moving into place.
  fs::create_directories(dir + "/uploads", ec);
  if (ec) return IoError("cannot create " + dir + "/uploads: " + ec.message());
  // What a killed controller left: temp files of atomic writes anywhere in the
  // data dir, and upload bodies (the HTTP server does not run yet).
  DNND_ASSIGN_OR_RETURN(
      std::vector<std::string> swept,
      SweepTempFiles(dir, {.recursive = true, .temp_prefix = "", .upload_prefix = ""}));
  DNND_ASSIGN_OR_RETURN(
      std::vector<std::string> uploads,
      SweepTempFiles(dir + "/uploads",
                     {.recursive = false, .temp_prefix = "", .upload_prefix = kUploadFilePrefix}));
  swept.insert(swept.end(), uploads.begin(), uploads.end());
  if (!swept.empty())
    Log(LogLevel::kWarn, "controller", "removed what interrupted writes left behind",
        {{"files", static_cast<int64_t>(swept.size())}, {"first", swept.front()}});
  // The API's bearer token and the wire key are different secrets.
  DNND_ASSIGN_OR_RETURN(wire::Secrets secrets, wire::LoadSecrets(cfg));
  DNND_ASSIGN_OR_RETURN(auto store, ControllerStore::Open(dir + "/controller.db"));
  // (A loopback-only controller, like the standalone role's, has nobody to hide it from.)
  const std::string listen = cfg.GetString("http.listen");
  DNND_RETURN_IF_ERROR(
      wire::CheckListenSecurity(cfg, listen, "http.listen", !secrets.api_token.empty()));
  const bool loopback = wire::IsLoopbackListen(listen);
  if (!secrets.wire_key.empty() && !loopback && cfg.GetString("transport.token_file").empty() &&
      cfg.Origin("transport.token").rfind("env ", 0) != 0 &&
      cfg.Origin("transport.token").rfind("--set", 0) != 0)
    Log(LogLevel::kWarn, "controller",
        "transport.token is written in a config file; a committed file is no secret: use "
        "transport.token_file "
        "(a mounted Secret) or env DNND_TRANSPORT__TOKEN",
        {{"origin", cfg.Origin("transport.token")}});
  return std::unique_ptr<Role>(new ControllerRole(cfg, std::move(dir_lock), std::move(store),
                                                  std::move(secrets), ps_ports, local_workers));
}

}  // namespace dnnd
