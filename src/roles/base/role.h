// A role is what a dnnd process does (worker, parameter-server, ...). main()
// builds one from the validated config, runs it until done, and calls Stop()
// from the signal thread on SIGINT/SIGTERM.
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "core/config.h"
#include "core/status.h"

namespace dnnd {

class HttpRouter;

class Role {
 public:
  virtual ~Role() = default;
  // Runs until the work is done or Stop() was called.
  virtual Status Run() = 0;
  // Asks Run() to finish soon (checkpointing first). Thread-safe, idempotent.
  virtual void Stop() = 0;
  // Whether the role can do its job now (GET /readyz): (ready, why not).
  // Thread-safe. The default is ready as soon as the role runs.
  virtual std::pair<bool, std::string> Readiness() const { return {true, ""}; }
  // Routes the role serves on the control plane next to /healthz, /readyz and
  // /metrics (the controller's REST API). Called once, before Run().
  virtual void AddRoutes(HttpRouter& router) {}
  // Largest request body the role's routes accept (uploads); 0 = the
  // http.max_body_bytes default.
  virtual size_t MaxRequestBytes() const { return 0; }
  // The control plane's bound address ("127.0.0.1:41234"), once it listens
  // and before Run(); not called when http.listen is empty.
  virtual void OnControlPlane(const std::string& address) {}
};

// A role that serves until stopped (a parameter server, a layer server):
// Run() starts the service, waits for Stop(), then stops it and returns what
// `stop` returns (Cancelled with a summary, normally).
class ServingRole : public Role {
 public:
  struct Service {
    std::function<Status()> start;
    std::function<Status()> stop;
    std::function<std::pair<bool, std::string>()> readiness;  // may be empty
  };
  explicit ServingRole(Service service) : service_(std::move(service)) {}

  Status Run() override {
    DNND_RETURN_IF_ERROR(service_.start());
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return stop_; });
    return service_.stop();
  }
  void Stop() override {
    std::lock_guard lock(mu_);
    stop_ = true;
    cv_.notify_all();
  }
  std::pair<bool, std::string> Readiness() const override {
    return service_.readiness ? service_.readiness() : std::pair<bool, std::string>{true, ""};
  }

 private:
  const Service service_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
};

}  // namespace dnnd
