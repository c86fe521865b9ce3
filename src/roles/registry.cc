// The role registry: one line per role. Explicit rather than static
// self-registration, which a static library's linker would silently drop.
#include "core/role.h"
#include "roles/layer_server.h"
#include "roles/parameter_server.h"
#include "roles/standalone.h"
#include "roles/worker.h"

namespace dnnd {

const std::vector<RoleInfo>& Roles() {
  static const std::vector<RoleInfo> roles = {
      {"worker", "trains a model (locally, or against parameter servers)", MakeWorkerRole},
      {"parameter-server", "holds a shard of a model's parameters", MakeParameterServerRole},
      {"layer-server", "hosts layers of a model for remote forward/backward", MakeLayerServerRole},
      {"splitter", "cuts a dataset into N shards", nullptr},
      {"aggregator", "averages independently trained models", nullptr},
      {"controller", "REST API, CLI, scheduler and dashboard", nullptr},
      {"standalone", "a whole data-parallel cluster in one process, over loopback", MakeStandaloneRole},
  };
  return roles;
}

const RoleInfo* FindRole(const std::string& name) {
  for (const auto& r : Roles())
    if (r.name == name) return &r;
  return nullptr;
}

}  // namespace dnnd
