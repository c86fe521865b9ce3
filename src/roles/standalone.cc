#include "roles/standalone.h"

#include <mutex>
#include <thread>
#include <vector>

#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "core/files.h"
#include "core/log.h"
#include "core/sha256.h"
#include "roles/controller/controller.h"
#include "roles/parameter_server.h"
#include "roles/worker.h"
#include "tensor/parallel.h"
#include "transport/hello.h"
#include "transport/secrets.h"
#include "transport/http.h"

namespace dnnd {
namespace {

class StandaloneRole : public Role {
 public:
  StandaloneRole(const Config& config, std::vector<std::unique_ptr<ParameterServer>> servers)
      : config_(config), servers_(std::move(servers)) {}

  Status Run() override {
    const int threads = GetThreads();
    Status s = RunCluster();
    SetThreads(threads);
    return s;
  }

  Status RunCluster() {
    std::vector<std::string> addresses;
    for (auto& s : servers_) {
      DNND_RETURN_IF_ERROR(s->Start());
      addresses.push_back(s->address());
    }
    const int64_t count = config_.GetInt("standalone.workers");
    // Workers share the cores: each gets its slice of the thread budget.
    SetThreads(std::max(1, GetThreads() / static_cast<int>(count)));
    Log(LogLevel::kInfo, "standalone", "cluster up",
        {{"servers", static_cast<int64_t>(servers_.size())}, {"workers", count}, {"mode", config_.GetString("ps.mode")},
         {"threads_per_worker", GetThreads()}});
    {
      std::lock_guard lock(mu_);
      for (int64_t i = 0; i < count; ++i) {
        WorkerPlacement placement{i, count, addresses};
        auto worker = MakeWorker(config_, placement, /*show_progress=*/i == 0);
        if (!worker.ok()) return StopServers(worker.status().WithContext("worker " + std::to_string(i)));
        workers_.push_back(std::move(worker).value());
      }
      if (stop_) return StopServers(Status(StatusCode::kCancelled, "stopped before training"));
    }
    std::vector<Status> results(workers_.size());
    std::vector<std::thread> threads;
    for (size_t i = 0; i < workers_.size(); ++i)
      threads.emplace_back([&, i] { results[i] = workers_[i]->Run(); });
    for (auto& t : threads) t.join();
    Status first = Status::Ok();
    for (size_t i = 0; i < results.size(); ++i)
      if (!results[i].ok() && first.ok()) first = results[i].WithContext("worker " + std::to_string(i));
    return StopServers(first);
  }

  void Stop() override {
    std::lock_guard lock(mu_);
    stop_ = true;
    for (auto& w : workers_) w->Stop();
  }

  std::pair<bool, std::string> Readiness() const override {
    for (const auto& s : servers_) {
      auto r = s->Readiness();
      if (!r.first) return r;
    }
    return {true, ""};
  }

 private:
  Status StopServers(Status status) {
    for (auto& s : servers_) s->Stop();  // checkpoints each shard
    return status;
  }

  const Config config_;
  std::vector<std::unique_ptr<ParameterServer>> servers_;
  std::mutex mu_;
  bool stop_ = false;
  std::vector<std::unique_ptr<Role>> workers_;
};

namespace json = boost::json;

// The whole system in one process: the controller (API, dashboard, store)
// with standalone.workers pool workers as threads, and the job the config
// describes submitted to it through its own API, like any client would.
class ControllerStandaloneRole : public Role {
 public:
  ControllerStandaloneRole(const Config& config, std::unique_ptr<Role> controller, std::string token)
      : config_(config), controller_(std::move(controller)), token_(std::move(token)) {}

  void AddRoutes(HttpRouter& router) override {
    controller_->AddRoutes(router);
    router_ = &router;
  }
  void OnControlPlane(const std::string& address) override {
    controller_->OnControlPlane(address);
    address_ = address;
  }
  size_t MaxRequestBytes() const override { return controller_->MaxRequestBytes(); }
  std::pair<bool, std::string> Readiness() const override { return controller_->Readiness(); }

  Status Run() override {
    if (!router_ || address_.empty())
      return InvalidArgument("standalone.controller needs http.listen (the API and dashboard it serves)");
    Status controller_status = Status::Ok();
    std::thread controller([&] { controller_status = controller_->Run(); });
    Status s = Drive();
    controller_->Stop();
    controller.join();
    if (!s.ok()) return s;
    return controller_status.code() == StatusCode::kCancelled ? Status::Ok() : controller_status;
  }

  void Stop() override {
    stop_ = true;
    controller_->Stop();
  }

 private:
  // An in-process call of the controller's API (the same router the HTTP
  // server dispatches to).
  Result<json::value> Call(const std::string& method, const std::string& path, std::string body,
                           std::initializer_list<int> ok = {200, 201}) {
    HttpRequest r;
    r.method = method;
    r.target = r.path = path;
    r.body = std::move(body);
    r.remote = "standalone";
    if (!token_.empty()) r.headers.push_back({"Authorization", "Bearer " + token_});
    HttpResponse out = router_->Dispatch(r);
    if (std::find(ok.begin(), ok.end(), out.status) == ok.end())
      return Status(out.status == 404 ? StatusCode::kNotFound : StatusCode::kInvalidArgument,
                    method + " " + path + ": HTTP " + std::to_string(out.status) + " " + out.body);
    boost::system::error_code ec;
    json::value v = json::parse(out.body, ec);
    return ec ? json::value() : v;
  }

  // The config's [data] as a dataset of the controller (registered once;
  // later runs find it).
  Result<std::string> EnsureDataset() {
    const std::string format = config_.GetString("data.format");
    std::vector<std::pair<std::string, std::string>> parts;
    if (format == "idx" || format == "npy") {
      parts = {{"train-images", config_.GetString("data.train_images")},
               {"train-labels", config_.GetString("data.train_labels")},
               {"test-images", config_.GetString("data.test_images")},
               {"test-labels", config_.GetString("data.test_labels")}};
    } else if (format == "npz" || format == "csv") {
      parts = {{"train", config_.GetString("data.train_file")}, {"test", config_.GetString("data.test_file")}};
    } else {
      return InvalidArgument("standalone.controller trains on a dataset file (data.format idx, npy, npz or csv), not '" +
                             format + "'");
    }
    std::string paths;
    for (const auto& [part, path] : parts) paths += path + "\n";
    // Named after its directory, made unique by its files' paths.
    std::string base = std::filesystem::path(parts[0].second).parent_path().filename().string();
    for (auto& c : base)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') c = '-';
    const std::string name = (IsValidName(base) ? base : std::string("data")) + "-" + Sha256Hex(paths).substr(0, 8);
    if (Call("GET", "/api/v1/datasets/" + name, "").ok()) return name;
    std::fprintf(stderr, "registering dataset %s from %s\n", name.c_str(),
                 std::filesystem::path(parts[0].second).parent_path().c_str());
    for (const auto& [part, path] : parts) {
      if (path.empty()) continue;
      DNND_ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(path));
      DNND_RETURN_IF_ERROR(Call("PUT", "/api/v1/datasets/" + name + "/files/" + part, std::move(bytes)).status());
    }
    DNND_RETURN_IF_ERROR(
        Call("POST", "/api/v1/datasets", json::serialize(json::object{{"name", name}, {"format", format}})).status());
    return name;
  }

  // The config's [model], named after its spec's hash.
  Result<std::string> EnsureModel() {
    DNND_ASSIGN_OR_RETURN(ModelSpec spec, LoadModelSpec(config_));
    const std::string text = ModelSpecToToml(spec);
    const std::string name = "model-" + Sha256Hex(text).substr(0, 8);
    if (Call("GET", "/api/v1/models/" + name, "").ok()) return name;
    DNND_RETURN_IF_ERROR(
        Call("POST", "/api/v1/models", json::serialize(json::object{{"name", name}, {"spec", text}})).status());
    return name;
  }

  Status Drive() {
    // The controller's loop is up when it reports ready.
    for (int i = 0; i < 200 && !controller_->Readiness().first && !stop_; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    DNND_ASSIGN_OR_RETURN(std::string dataset, EnsureDataset());
    DNND_ASSIGN_OR_RETURN(std::string model, EnsureModel());
    DNND_ASSIGN_OR_RETURN(ModelSpec spec, LoadModelSpec(config_));
    json::object job{{"model", model},
                     {"dataset", dataset},
                     {"epochs", config_.GetInt("train.epochs")},
                     {"batch", config_.GetInt("train.batch_size")},
                     {"workers", config_.GetInt("standalone.workers")},
                     {"servers", config_.GetInt("standalone.servers")},
                     {"mode", config_.GetString("ps.mode")},
                     {"kavg_steps", config_.GetInt("ps.kavg_steps")},
                     {"seed", config_.GetInt("train.seed")},
                     {"lr", spec.optimizer.lr},
                     {"optimizer", spec.optimizer.type},
                     {"lr_schedule", config_.GetString("train.lr_schedule")},
                     {"eval_every", std::max<int64_t>(1, config_.GetInt("train.eval_every_epochs"))},
                     {"limit_train", config_.GetInt("data.limit_train")},
                     {"limit_test", config_.GetInt("data.limit_test")}};
    if (config_.GetFloat("train.goal_accuracy") > 0) job["goal_accuracy"] = config_.GetFloat("train.goal_accuracy");
    DNND_ASSIGN_OR_RETURN(json::value created, Call("POST", "/api/v1/jobs", json::serialize(job)));
    const int64_t id = created.at("id").as_int64();
    std::string host = address_;
    if (host.rfind("0.0.0.0:", 0) == 0) host = "127.0.0.1" + host.substr(7);
    std::fprintf(stderr, "dashboard: http://%s/   job %lld: dnnd ctl --controller %s job get %lld\n", host.c_str(),
                 static_cast<long long>(id), host.c_str(), static_cast<long long>(id));
    // Worker 0 draws the progress; this waits for the verdict.
    json::value j;
    while (true) {
      if (stop_) return Cancelled("stopped; the job resumes at the next start");
      DNND_ASSIGN_OR_RETURN(j, Call("GET", "/api/v1/jobs/" + std::to_string(id), ""));
      const std::string state(j.at("state").as_string());
      if (state != "queued" && state != "running") break;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    const std::string state(j.at("state").as_string());
    if (state != "succeeded")
      return Internal("job " + std::to_string(id) + " " + state + ": " + std::string(j.at("reason").as_string()));
    std::fprintf(stderr, "job %lld succeeded; its history and model: dnnd ctl job get %lld, GET /api/v1/jobs/%lld/checkpoint\n",
                 static_cast<long long>(id), static_cast<long long>(id), static_cast<long long>(id));
    return Status::Ok();
  }

  const Config config_;
  std::unique_ptr<Role> controller_;
  const std::string token_;
  HttpRouter* router_ = nullptr;
  std::string address_;
  std::atomic<bool> stop_{false};
};

}  // namespace

// The bare cluster: servers and workers as threads (no controller).
static Result<std::unique_ptr<Role>> MakeStandaloneCluster(const Config& config) {
  const int servers = static_cast<int>(config.GetInt("standalone.servers"));
  std::vector<std::unique_ptr<ParameterServer>> list;
  for (int i = 0; i < servers; ++i) {
    ParameterServerOptions o = ParameterServerOptions::FromConfig(config);
    o.index = i;
    o.servers = servers;
    o.workers = config.GetInt("standalone.workers");
    DNND_ASSIGN_OR_RETURN(auto rpc, rpc::RpcServerOptions::FromConfig(config, "127.0.0.1:0", "parameter-server"));
    rpc.self.node += "-ps-" + std::to_string(i);
    list.push_back(std::make_unique<ParameterServer>(std::move(o), std::move(rpc)));
  }
  return std::unique_ptr<Role>(new StandaloneRole(config, std::move(list)));
}

Result<std::unique_ptr<Role>> MakeStandaloneRole(const Config& config) {
  if (!config.GetBool("standalone.controller")) return MakeStandaloneCluster(config);
  DNND_ASSIGN_OR_RETURN(auto controller, MakeControllerRole(config, config.GetInt("standalone.workers")));
  // Its own API calls carry the API token (never the wire key).
  DNND_ASSIGN_OR_RETURN(wire::Secrets secrets, wire::LoadSecrets(config));
  return std::unique_ptr<Role>(new ControllerStandaloneRole(config, std::move(controller), std::move(secrets.api_token)));
}


}  // namespace dnnd
