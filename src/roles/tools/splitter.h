// The splitter role: cuts the [data] training set into splitter.shards shards
// for independent trainers (the split -> train -> aggregate pipeline).
//
// Output, in splitter.output_dir:
//   shard-000.npz ...  arrays "x" (samples in the source dtype, uint8 images
//                      as [n, h, w] like Fashion-MNIST in numpy) and "y"
//                      (int32 labels), readable by numpy.load and by a
//                      worker with data.format = "npz"
//   manifest.json      strategy, seed, the source, and per shard its file,
//                      sample count, label histogram and sha256
// Every file is written atomically. The manifest is written last (and, when
// overwriting, removed first), so a manifest always describes complete
// shards. Existing shards or a manifest make the run fail unless
// splitter.overwrite is set; shard files an overwrite leaves over from an
// earlier, larger split are removed.
#pragma once

#include <memory>

#include "core/config.h"
#include "core/status.h"
#include "roles/base/role.h"

namespace dnnd {

Result<std::unique_ptr<Role>> MakeSplitterRole(const Config& config);

}  // namespace dnnd
