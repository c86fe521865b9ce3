// The worker role. With no parameter servers configured it trains locally:
// the model from [model] (or the spec file [model].file names), the data from
// [data], the loop from [train]; progress per epoch, test accuracy, and a
// checkpoint in train.checkpoint_dir.
#pragma once

#include <memory>

#include "core/config.h"
#include "core/role.h"
#include "core/status.h"

namespace dnnd {

Result<std::unique_ptr<Role>> MakeWorkerRole(const Config& config);

}  // namespace dnnd
