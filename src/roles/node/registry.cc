// The role registry: one line per role. Explicit rather than static
// self-registration, which a static library's linker would silently drop.
#include "roles/node/registry.h"

#include "roles/controller/controller.h"
#include "roles/layers/layer_server.h"
#include "roles/node/standalone.h"
#include "roles/pool/worker_end.h"
#include "roles/ps/parameter_server.h"
#include "roles/tools/aggregator.h"
#include "roles/tools/splitter.h"
#include "roles/train/worker.h"

namespace dnnd {
namespace {

// A worker with worker.controller set takes its jobs from the controller's
// pool instead of its config.
Result<std::unique_ptr<Role>> MakeAnyWorkerRole(const Config& cfg) {
  if (!cfg.GetString("worker.controller").empty()) return MakePoolWorkerRole(cfg);
  return MakeWorkerRole(cfg);
}

}  // namespace

const std::vector<RoleInfo>& Roles() {
  static const std::vector<RoleInfo> roles = {
      {"worker",
       "trains a model (locally, against parameter servers or layer servers, or as a controller's "
       "pool worker)",
       MakeAnyWorkerRole},
      {"parameter-server", "holds a shard of a model's parameters", MakeParameterServerRole},
      {"layer-server", "hosts layers of a model for remote forward/backward", MakeLayerServerRole},
      {"splitter",
       "cuts a dataset into N NPZ shards (iid, stratified or Dirichlet non-iid) with a manifest",
       MakeSplitterRole},
      {"aggregator",
       "averages independently trained checkpoints (sample-weighted) and evaluates them",
       MakeAggregatorRole},
      {"controller", "REST API, durable job store and scheduler of a worker pool",
       [](const Config& c) { return MakeControllerRole(c); }},
      {"standalone",
       "the controller and its workers (or a bare data-parallel cluster) in one process, over "
       "loopback",
       MakeStandaloneRole},
  };
  return roles;
}

const RoleInfo* FindRole(const std::string& name) {
  for (const auto& r : Roles())
    if (r.name == name) return &r;
  return nullptr;
}

}  // namespace dnnd
