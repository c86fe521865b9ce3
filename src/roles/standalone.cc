#include "roles/standalone.h"

#include <mutex>
#include <thread>
#include <vector>

#include "core/log.h"
#include "roles/parameter_server.h"
#include "roles/worker.h"
#include "tensor/parallel.h"

namespace dnnd {
namespace {

class StandaloneRole : public Role {
 public:
  StandaloneRole(const Config& config, std::vector<std::unique_ptr<ParameterServer>> servers, TrainHooks hooks)
      : config_(config), servers_(std::move(servers)), hooks_(std::move(hooks)) {}

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
        auto worker = MakeWorker(config_, placement, /*show_progress=*/i == 0, i == 0 ? hooks_ : TrainHooks{});
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
  const TrainHooks hooks_;
  std::mutex mu_;
  bool stop_ = false;
  std::vector<std::unique_ptr<Role>> workers_;
};

}  // namespace

Result<std::unique_ptr<Role>> MakeStandaloneRole(const Config& config) { return MakeStandaloneCluster(config, {}); }

Result<std::unique_ptr<Role>> MakeStandaloneCluster(const Config& config, TrainHooks hooks) {
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
  return std::unique_ptr<Role>(new StandaloneRole(config, std::move(list), std::move(hooks)));
}

}  // namespace dnnd
