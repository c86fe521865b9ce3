// The standalone role: a whole data-parallel job in one process. It starts
// standalone.servers parameter servers and standalone.workers workers as
// threads, and they talk over loopback TCP through the same wire protocol a
// cluster uses (no in-process shortcut, so what works here works there).
#pragma once

#include <memory>

#include "core/config.h"
#include "core/role.h"
#include "core/status.h"
#include "roles/trainer.h"

namespace dnnd {

Result<std::unique_ptr<Role>> MakeStandaloneRole(const Config& config);
// The same cluster with `hooks` receiving worker 0's progress (the
// controller runs each job this way). Run() may be called once; the thread
// budget (SetThreads) is restored when it returns, so jobs can run one after
// another in one process.
Result<std::unique_ptr<Role>> MakeStandaloneCluster(const Config& config, TrainHooks hooks);

}  // namespace dnnd
