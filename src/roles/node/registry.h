// The role registry: every role name dnnd knows and the factory that builds
// it from a validated config. main() looks roles up here; nothing below the
// composition (src/roles/node/) may include this header, since it names every
// role family.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/status.h"
#include "roles/base/role.h"

namespace dnnd {

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
