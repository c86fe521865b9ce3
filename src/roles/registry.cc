// The role registry: one line per role. Explicit rather than static
// self-registration, which a static library's linker would silently drop.
#include "core/role.h"
#include "roles/aggregator.h"
#include "roles/controller/controller.h"
#include "roles/layer_server.h"
#include "roles/parameter_server.h"
#include "roles/splitter.h"
#include "roles/standalone.h"
#include "roles/worker.h"

namespace dnnd {

const std::vector<RoleInfo>& Roles() {
  static const std::vector<RoleInfo> roles = {
      {"worker", "trains a model (locally, against parameter servers or layer servers, or as a controller's pool worker)", MakeWorkerRole},
      {"parameter-server", "holds a shard of a model's parameters", MakeParameterServerRole},
      {"layer-server", "hosts layers of a model for remote forward/backward", MakeLayerServerRole},
      {"splitter", "cuts a dataset into N NPZ shards (iid, stratified or Dirichlet non-iid) with a manifest", MakeSplitterRole},
      {"aggregator", "averages independently trained checkpoints (sample-weighted) and evaluates them", MakeAggregatorRole},
      {"controller", "REST API, durable job store and scheduler of a worker pool",
       [](const Config& c) { return MakeControllerRole(c); }},
      {"standalone", "the controller and its workers (or a bare data-parallel cluster) in one process, over loopback", MakeStandaloneRole},
  };
  return roles;
}

const RoleInfo* FindRole(const std::string& name) {
  for (const auto& r : Roles())
    if (r.name == name) return &r;
  return nullptr;
}

}  // namespace dnnd
