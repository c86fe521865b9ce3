// The standalone role: the whole system in one process.
//
// standalone.controller = true (configs/standalone.toml, the README's run
// command): the controller (API, dashboard, store) with standalone.workers
// pool workers as threads; the config's [data] and [model] are registered
// with it and its job submitted through its own API, and the role ends when
// that job does. The job's parameter servers and workers talk over loopback
// TCP through the same wire protocol a cluster uses.
//
// standalone.controller = false: the bare cluster -- standalone.servers
// parameter servers and standalone.workers workers as threads, no API or
// store (the bit-reproducibility tests and the scaling benchmark use it).
#pragma once

#include <memory>

#include "core/config.h"
#include "roles/base/role.h"
#include "core/status.h"

namespace dnnd {

Result<std::unique_ptr<Role>> MakeStandaloneRole(const Config& config);

}  // namespace dnnd
