#include "roles/node/standalone.h"

#include <toml++/toml.h>

#include <boost/json.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "core/files.h"
#include "core/json_text.h"
#include "core/log.h"
#include "core/sha256.h"
#include "roles/controller/controller.h"
#include "roles/ps/parameter_server.h"
#include "roles/train/worker.h"
#include "tensor/onnx/onnx_import.h"
#include "tensor/parallel.h"
#include "transport/hello.h"
#include "transport/http.h"
#include "transport/secrets.h"

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
        {{"servers", static_cast<int64_t>(servers_.size())},
         {"workers", count},
         {"mode", config_.GetString("ps.mode")},
         {"threads_per_worker", GetThreads()}});
    {
      std::lock_guard lock(mu_);
      for (int64_t i = 0; i < count; ++i) {
        WorkerPlacement placement{i, count, addresses};
        auto worker = MakeWorker(config_, placement, /*show_progress=*/i == 0);
        if (!worker.ok())
          return StopServers(worker.status().WithContext("worker " + std::to_string(i)));
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
      if (!results[i].ok() && first.ok())
        first = results[i].WithContext("worker " + std::to_string(i));
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

// `raw` (a file or directory name) as a dataset or model name: characters
// outside [A-Za-z0-9._-] become '-'; `fallback` if that is no valid name.
std::string ReadableName(std::string raw, const std::string& fallback) {
  for (auto& c : raw)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') c = '-';
  return IsValidName(raw) ? raw : fallback;
}

// Whether a stored job's params are the settings `job` submits: every field
// it sends has the stored value, and the store holds no other setting (the
// controller adds only the input normalisation it derives from the data and
// the dataset's class names).
bool SameSettings(const json::object& job, const json::object& params) {
  auto equal = [](const json::value& a, const json::value& b) {
    if (!a.is_number() || !b.is_number()) return a == b;
    const double x = a.to_number<double>(), y = b.to_number<double>();
    return std::abs(x - y) <= 1e-9 * std::max(1.0, std::abs(x));
  };
  for (const auto& [key, value] : job) {
    if (key == "model" || key == "dataset") continue;
    const json::value* stored = params.if_contains(key);
    if (!stored || !equal(value, *stored)) return false;
  }
  for (const auto& [key, value] : params)
    if (key != "normalize_mean" && key != "normalize_std" && key != "classes" && !job.contains(key))
      return false;
  return true;
}

// The whole system in one process: the controller (API, dashboard, store)
// with standalone.workers pool workers as threads, and the job the config
// describes submitted to it through its own API, like any client would.
class ControllerStandaloneRole : public Role {
 public:
  ControllerStandaloneRole(const Config& config, std::unique_ptr<Role> controller,
                           std::string token)
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
      return InvalidArgument(
          "standalone.controller needs http.listen (the API and dashboard it serves)");
    Status controller_status = Status::Ok();
    std::thread controller([&] {
      controller_status = controller_->Run();
      controller_done_ = true;
    });
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

  // The config's [data] as a dataset of the controller, named after its
  // files' directory ("fashion-mnist"). Registered once: a later run finds
  // it under that name (the same format and size); another dataset already
  // holding the name makes it <name>-<hash of the file paths>.
  Result<std::string> EnsureDataset() {
    const std::string format = config_.GetString("data.format");
    std::vector<std::pair<std::string, std::string>> parts;
    if (format == "idx" || format == "npy") {
      parts = {{"train-images", config_.GetString("data.train_images")},
               {"train-labels", config_.GetString("data.train_labels")},
               {"test-images", config_.GetString("data.test_images")},
               {"test-labels", config_.GetString("data.test_labels")}};
    } else if (format == "npz" || format == "csv") {
      parts = {{"train", config_.GetString("data.train_file")},
               {"test", config_.GetString("data.test_file")}};
    } else {
      return InvalidArgument(
          "standalone.controller trains on a dataset file (data.format idx, npy, npz or csv), not "
          "'" +
          format + "'");
    }
    std::string paths;
    int64_t bytes = 0;
    for (const auto& [part, path] : parts) {
      if (path.empty()) continue;
      paths += path + "\n";
      std::error_code ec;
      const auto size = std::filesystem::file_size(path, ec);
      if (ec) return IoError("data file " + path + ": " + ec.message());
      bytes += static_cast<int64_t>(size);
    }
    const std::filesystem::path dir = std::filesystem::path(parts[0].second).parent_path();
    const std::string base = ReadableName(dir.filename().string(), "data");
    // data.classes name the labels: a dataset registered with other names is another one.
    json::array classes;
    for (const auto& c : config_.GetStrings("data.classes")) classes.push_back(json::value(c));
    auto ours = [&](const json::value& d) {
      const json::value* named = d.as_object().if_contains("classes");
      return d.at("format") == json::value(format) && d.at("bytes") == bytes &&
             (named ? *named == json::value(classes) : classes.empty());
    };
    auto create = [&](const std::string& name) -> Status {
      std::fprintf(stderr, "registering dataset %s from %s\n", name.c_str(), dir.c_str());
      for (const auto& [part, path] : parts) {
        if (path.empty()) continue;
        DNND_ASSIGN_OR_RETURN(std::string data, ReadFileToString(path));
        DNND_RETURN_IF_ERROR(
            Call("PUT", "/api/v1/datasets/" + name + "/files/" + part, std::move(data)).status());
      }
      json::object body{{"name", name}, {"format", format}};
      if (!classes.empty()) body["classes"] = classes;
      return Call("POST", "/api/v1/datasets", json::serialize(body)).status();
    };
    return OursOrCreated("dataset", {base, base + "-" + Sha256Hex(paths).substr(0, 8)}, ours,
                         create);
  }

  // The config's [model], named after its file ("mlp" for models/mlp.toml;
  // "model" for a [model] table in the config); another spec already holding
  // the name makes it <name>-<hash of the spec>.
  Result<std::string> EnsureModel() {
    const toml::table* section = config_.Section("model");
    if (section && section->get("onnx")) return EnsureOnnxModel();
    if (!config_.GetString("train.init_from").empty()) return EnsureWarmStartedModel();
    DNND_ASSIGN_OR_RETURN(ModelSpec spec, LoadModelSpec(config_));
    const std::string text = ModelSpecToToml(spec);
    std::string base = "model";
    if (const toml::table* m = config_.Section("model"))
      if (const toml::node* file = m->get("file"); file && file->is_string())
        base = ReadableName(std::filesystem::path(*file->value<std::string>()).stem().string(),
                            "model");
    auto ours = [&](const json::value& m) { return m.at("spec") == json::value(text); };
    auto create = [&](const std::string& name) {
      return Call("POST", "/api/v1/models",
                  json::serialize(json::object{{"name", name}, {"spec", text}}))
          .status();
    };
    return OursOrCreated("model", {base, base + "-" + Sha256Hex(text).substr(0, 8)}, ours, create);
  }

  // The config's spec with train.init_from's weights as the start of its
  // jobs: named "<base>-<digest of spec and weights>", so a re-run finds its
  // own registration and other weights are another model.
  Result<std::string> EnsureWarmStartedModel() {
    // Loaded here too, so a bad file fails before anything is registered.
    DNND_ASSIGN_OR_RETURN(ConfiguredModel model, LoadModel(config_));
    const std::string text = ModelSpecToToml(model.spec);
    DNND_ASSIGN_OR_RETURN(std::string weights, ReadFileToString(model.initial_from));
    std::string base =
        ReadableName(std::filesystem::path(model.initial_from).stem().string(), "model");
    const std::string digest = Sha256Hex(text + "\n" + Sha256Hex(weights));
    auto ours = [&](const json::value& m) {
      return m.at("spec") == json::value(text) && m.at("initial_weights") == json::value(true);
    };
    auto create = [&](const std::string& name) -> Status {
      std::fprintf(stderr, "registering model %s from its spec and %s\n", name.c_str(),
                   model.initial_from.c_str());
      DNND_RETURN_IF_ERROR(Call("POST", "/api/v1/models",
                                json::serialize(json::object{{"name", name}, {"spec", text}}))
                               .status());
      return Call("PUT", "/api/v1/models/" + name + "/initial", weights).status();
    };
    return OursOrCreated("model", {base + "-" + digest.substr(0, 8)}, ours, create);
  }

  // [model] onnx = "x.onnx": uploaded to the controller, which imports it and
  // keeps its weights as the start of the model's jobs: named "x-<digest of
  // the file>", so a run finds its own upload (the same bytes import to the
  // same model) and another file is another model.
  Result<std::string> EnsureOnnxModel() {
    // Imported here too, so a bad file fails before anything is registered.
    DNND_ASSIGN_OR_RETURN(ConfiguredModel model, LoadModel(config_));
    const std::string path = model.initial_from;
    const std::string base = ReadableName(std::filesystem::path(path).stem().string(), "model");
    DNND_ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(path, onnx::kMaxOnnxBytes));
    const std::string digest = Sha256Hex(bytes);
    auto ours = [&](const json::value& m) { return m.at("initial_weights") == json::value(true); };
    auto create = [&](const std::string& name) {
      std::fprintf(stderr, "registering model %s from %s\n", name.c_str(), path.c_str());
      return Call("PUT", "/api/v1/models/" + name + "/onnx", bytes).status();
    };
    return OursOrCreated("model", {base + "-" + digest.substr(0, 8)}, ours, create);
  }

  // The first of `names` (a readable one, then a unique one) under which the
  // controller's `what` ("dataset", "model") is this config's (`ours`), or
  // which is free and then `create`d.
  Result<std::string> OursOrCreated(const std::string& what, const std::vector<std::string>& names,
                                    const std::function<bool(const json::value&)>& ours,
                                    const std::function<Status(const std::string&)>& create) {
    for (const std::string& name : names) {
      auto found = Call("GET", "/api/v1/" + what + "s/" + name, "");
      if (found.ok() && ours(*found)) return name;
      if (found.ok()) continue;  // another one's name
      if (found.status().code() != StatusCode::kNotFound) return found.status();
      DNND_RETURN_IF_ERROR(create(name));
      return name;
    }
    return AlreadyExists("the controller's " + what + "s " + names.front() + " and " +
                         names.back() + " are others than this config's");
  }

  // This config's job from an earlier run (same model, dataset and
  // settings), when the newest such job is still worth following: queued,
  // running (a run stopped by Ctrl-C leaves it so, and the controller
  // resumes it from its checkpoint) or succeeded. 0 if there is none: a
  // failed or cancelled one is trained anew.
  Result<int64_t> EarlierJob(const json::object& job) {
    DNND_ASSIGN_OR_RETURN(json::value list, Call("GET", "/api/v1/jobs", ""));
    for (const auto& v : list.at("jobs").as_array()) {  // newest first
      const json::object& j = v.as_object();
      const json::value* params = j.if_contains("params");
      if (j.at("model") != job.at("model") || j.at("dataset") != job.at("dataset") || !params ||
          !params->is_object() || !SameSettings(job, params->get_object()))
        continue;
      const json::string& state = j.at("state").as_string();
      return state == "queued" || state == "running" || state == "succeeded" ? j.at("id").as_int64()
                                                                             : 0;
    }
    return 0;
  }

  Status Drive() {
    // The controller's loop is up when it reports ready.
    for (int i = 0; i < 200 && !controller_->Readiness().first && !stop_ && !controller_done_; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    DNND_ASSIGN_OR_RETURN(std::string dataset, EnsureDataset());
    DNND_ASSIGN_OR_RETURN(std::string model, EnsureModel());
    DNND_ASSIGN_OR_RETURN(ModelSpec spec, LoadModelSpec(config_));
    json::object job{
        {"model", model},
        {"dataset", dataset},
        {"epochs", config_.GetInt("train.epochs")},
        {"batch", config_.GetInt("train.batch_size")},
        {"workers", config_.GetInt("standalone.workers")},
        {"servers", config_.GetInt("standalone.servers")},
        {"mode", config_.GetString("ps.mode")},
        {"kavg_steps", config_.GetInt("ps.kavg_steps")},
        {"seed", config_.GetInt("train.seed")},
        {"lr", DecimalOf(spec.optimizer.lr)},
        {"optimizer", spec.optimizer.type},
        {"lr_schedule", config_.GetString("train.lr_schedule")},
        {"eval_every", std::max<int64_t>(1, config_.GetInt("train.eval_every_epochs"))},
        {"limit_train", config_.GetInt("data.limit_train")},
        {"limit_test", config_.GetInt("data.limit_test")}};
    if (config_.GetFloat("train.goal_accuracy") > 0)
      job["goal_accuracy"] = config_.GetFloat("train.goal_accuracy");
    if (config_.GetInt("data.augment_crop_padding") > 0)
      job["augment_crop_padding"] = config_.GetInt("data.augment_crop_padding");
    if (config_.GetBool("data.augment_flip")) job["augment_flip"] = true;
    // The optimizer's settings beyond type and rate (an imported model has
    // none of its own): sent when they differ from the defaults.
    if (spec.optimizer.type == "sgd" && spec.optimizer.momentum != 0)
      job["momentum"] = DecimalOf(spec.optimizer.momentum);
    if (spec.optimizer.weight_decay != 0)
      job["weight_decay"] = DecimalOf(spec.optimizer.weight_decay);
    if (const auto freeze = config_.GetStrings("train.freeze"); !freeze.empty()) {
      json::array patterns;
      for (const auto& p : freeze) patterns.push_back(json::value(p));
      job["freeze"] = std::move(patterns);
    }
    // A re-run follows the job an earlier run left instead of training a second one.
    DNND_ASSIGN_OR_RETURN(int64_t id, EarlierJob(job));
    const bool earlier = id > 0;
    if (!earlier) {
      DNND_ASSIGN_OR_RETURN(json::value created,
                            Call("POST", "/api/v1/jobs", json::serialize(job)));
      id = created.at("id").as_int64();
    }
    const long long n = static_cast<long long>(id);
    std::string host = address_;
    if (host.rfind("0.0.0.0:", 0) == 0) host = "127.0.0.1" + host.substr(7);
    std::fprintf(stderr,
                 "dashboard: http://%s/   job %lld: dnnd ctl --controller %s job get %lld\n",
                 host.c_str(), n, host.c_str(), n);
    // Worker 0 draws the progress; this waits for the verdict.
    json::value j;
    bool told = !earlier;
    while (true) {
      if (stop_) return Cancelled("stopped; the job resumes at the next start");
      if (controller_done_) return Cancelled("the controller stopped");
      DNND_ASSIGN_OR_RETURN(j, Call("GET", "/api/v1/jobs/" + std::to_string(id), ""));
      const std::string state(j.at("state").as_string());
      if (!told) {
        told = true;
        std::fprintf(stderr,
                     "job %lld is this config's job from an earlier run (same data, model and "
                     "settings): %s\n",
                     n,
                     state == "succeeded"
                         ? "it already succeeded, nothing to train"
                         : "it continues from its last checkpoint, no second job is trained");
      }
      if (state != "queued" && state != "running") break;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    const std::string state(j.at("state").as_string());
    Status verdict = Status::Ok();
    if (state == "succeeded") {
      // The newest evaluated epoch's accuracy: what a run is for.
      char result[64] = "";
      for (const auto& e : j.at("history").as_array())
        if (const json::value* a = e.as_object().if_contains("test_accuracy"))
          std::snprintf(result, sizeof result, " with test accuracy %.2f %%",
                        100 * a->to_number<double>());
      std::fprintf(stderr,
                   "job %lld succeeded%s; its history and model: dnnd ctl job get %lld, GET "
                   "/api/v1/jobs/%lld/checkpoint\n",
                   n, result, n, n);
    } else {
      verdict = Internal("job " + std::to_string(id) + " " + state + ": " +
                         std::string(j.at("reason").as_string()));
      std::fprintf(stderr, "%s; its log: dnnd ctl job logs %lld\n", verdict.message().c_str(), n);
    }
    if (config_.GetBool("standalone.exit_when_done")) return verdict;
    // The hints above work while the controller serves: it does until told to stop.
    std::fprintf(stderr,
                 "the controller keeps serving the dashboard (http://%s/) and its API; "
                 "press Ctrl-C (or send SIGINT or SIGTERM) to stop it\n",
                 host.c_str());
    while (!stop_ && !controller_done_) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    return verdict;
  }

  const Config config_;
  std::unique_ptr<Role> controller_;
  const std::string token_;
  HttpRouter* router_ = nullptr;
  std::string address_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> controller_done_{false};  // its Run returned (stopped, or failed to start)
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
    DNND_ASSIGN_OR_RETURN(
        auto rpc, rpc::RpcServerOptions::FromConfig(config, "127.0.0.1:0", "parameter-server"));
    rpc.self.node += "-ps-" + std::to_string(i);
    list.push_back(std::make_unique<ParameterServer>(std::move(o), std::move(rpc)));
  }
  return std::unique_ptr<Role>(new StandaloneRole(config, std::move(list)));
}

Result<std::unique_ptr<Role>> MakeStandaloneRole(const Config& config) {
  if (!config.GetBool("standalone.controller")) return MakeStandaloneCluster(config);
  DNND_ASSIGN_OR_RETURN(auto controller,
                        MakeControllerRole(config, config.GetInt("standalone.workers")));
  // Its own API calls carry the API token (never the wire key).
  DNND_ASSIGN_OR_RETURN(wire::Secrets secrets, wire::LoadSecrets(config));
  return std::unique_ptr<Role>(
      new ControllerStandaloneRole(config, std::move(controller), std::move(secrets.api_token)));
}

}  // namespace dnnd
