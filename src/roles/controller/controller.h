// The controller role: the REST front door of dnnd (/api/v1 on the control
// plane's HTTP server, http.listen) over a durable SQLite store
// (store.h) in controller.data_dir.
//
//   datasets  PUT  /api/v1/datasets/{name}/files/{part}   raw file body (part:
//                  train-images, train-labels, test-images, test-labels for
//                  idx/npy; train, test for npz/csv), streamed to disk
//             POST /api/v1/datasets {"name","format"}     validates the staged
//                  files with the engine's readers and registers the dataset
//             GET  /api/v1/datasets[/{name}]  DELETE /api/v1/datasets/{name}
//   models    POST /api/v1/models {"name","spec"}  (spec: TOML text or a JSON object)
//             GET  /api/v1/models[/{name}]   GET /api/v1/models/{name}/checkpoint
//   jobs      POST /api/v1/jobs {"model","dataset","epochs","batch","lr","optimizer",
//                  "workers","servers","mode","kavg_steps","seed","limit_train","limit_test"}
//             GET  /api/v1/jobs[/{id}]   POST /api/v1/jobs/{id}/cancel
//             DELETE /api/v1/jobs/{id} (finished jobs only; 409 while active)
//             GET  /api/v1/jobs/{id}/logs[?offset=N]   GET /api/v1/jobs/{id}/checkpoint
// Every error is {"error":{"code","message"}} with a 4xx/5xx status. With an
// API token (http.token_file, else derived from the wire key in
// transport.token_file: transport/secrets.h) every POST/PUT/DELETE needs
// "Authorization: Bearer <token>" (401 otherwise); GETs stay open
// (docs/controller.md, docs/security.md).
//
// Jobs run in this process, as the standalone role's cluster (parameter
// servers as threads over loopback, the wire protocol as in a real cluster),
// their parts on the worker pool. The parameter servers checkpoint every
// controller.checkpoint_every_steps into <data_dir>/jobs/<id>/ps; a job found
// `running` at start-up (the controller died) is resumed from there, keeping
// the per-epoch history already in the store.
//
// The room (src/roles/controller/):
//   controller.cc     this role: its pieces, the route table, its threads
//   context.h         what the pieces share: config, data dir, store, job log
//   datasets.h        /api/v1/datasets, and the datasets kept loaded
//   models.h          /api/v1/models
//   jobs.h            /api/v1/jobs
//   nodes.h           /api/v1/nodes and the trained model's upload (the pool's HTTP end)
//   job_runner.h      the scheduler: starting, elastic re-sharding, finishing jobs
//   elastic_policy.h  how many workers an elastic job's next epoch gets
//   shard_service.h   the wire service that hands workers their data
//   store.h           the SQLite store
//   predictor.h       POST /api/v1/models/{name}/predict
//   dashboard.h       the web UI (assets in dashboard/)
#pragma once

#include <memory>

#include "core/config.h"
#include "core/status.h"
#include "roles/base/role.h"

namespace dnnd {

Result<std::unique_ptr<Role>> MakeControllerRole(const Config& config);
// The same with `local_workers` pool workers inside the process instead of
// controller.local_workers (the standalone role sizes its pool itself).
Result<std::unique_ptr<Role>> MakeControllerRole(const Config& config, int64_t local_workers);

// True for names safe as one path component: [A-Za-z0-9][A-Za-z0-9._-]{0,63}
// (so never "", ".", ".." or anything with a '/').
bool IsValidName(const std::string& name);

}  // namespace dnnd
