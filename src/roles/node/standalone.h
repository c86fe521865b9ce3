// The standalone role: the whole system in one process.
//
// standalone.controller = true (configs/standalone.toml, the README's run
// command): the controller (API, dashboard, store) with standalone.workers
// pool workers as threads; the config's [data] and [model] are registered
// with it under readable names (the data's directory, the model file's
// stem: "fashion-mnist", "mlp") and its job submitted through its own API.
// The job's parameter servers and workers talk over loopback TCP through
// the same wire protocol a cluster uses. When the job ends the controller
// keeps serving until SIGINT/SIGTERM (exit 0, or 1 if the job failed), so
// the hints it printed work; standalone.exit_when_done ends the role with
// the job instead (a Kubernetes Job, a one-shot container). A re-run of the
// same config (data, model, settings) follows the job an earlier run left
// queued, running (stopped by Ctrl-C: it resumes from its checkpoint) or
// succeeded, instead of training a second one.
//
// standalone.controller = false: the bare cluster -- standalone.servers
// parameter servers and standalone.workers workers as threads, no API or
// store (the bit-reproducibility tests and the scaling benchmark use it).
#pragma once

#include <memory>

#include "core/config.h"
#include "core/status.h"
#include "roles/base/role.h"

namespace dnnd {

Result<std::unique_ptr<Role>> MakeStandaloneRole(const Config& config);

}  // namespace dnnd
