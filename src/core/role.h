// A role is what a dnnd process does (worker, parameter-server, ...). main()
// builds one from the validated config, runs it until done, and calls Stop()
// from the signal thread on SIGINT/SIGTERM.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/config.h"
#include "core/status.h"

namespace dnnd {

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
};

using RoleFactory = std::function<Result<std::unique_ptr<Role>>(const Config&)>;

struct RoleInfo {
  std::string name, description;
  RoleFactory factory;  // empty: a known role not built into this version
};

// Every role name dnnd knows, built or not, in a stable order.
const std::vector<RoleInfo>& Roles();
// The role called `name`, or nullptr.
const RoleInfo* FindRole(const std::string& name);

}  // namespace dnnd
