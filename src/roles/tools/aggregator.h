// The aggregator role: averages independently trained models (the last step
// of split -> train -> aggregate) and evaluates them.
//
// It reads the checkpoints in aggregator.inputs (checkpoint directories, as
// workers write them, or .safetensors files), checks that every tensor name
// and shape agrees and that the model specs describe one architecture,
// averages the parameters weighted by each checkpoint's dnnd.train_samples,
// writes the result as a checkpoint in aggregator.output_dir (usable by
// `dnnd infer` and as a starting point for training), evaluates every input
// and the average on the [data] test set, and writes a JSON report:
//   {"test_samples": n,
//    "aggregated": {"checkpoint", "models", "train_samples", "test_accuracy", "test_loss"},
//    "inputs": [{"path", "file", "train_samples", "weight", "test_accuracy", "test_loss"}, ...],
//    "missing": [paths]}
// An input that does not exist is an error unless aggregator.min_models is
// set and at least that many inputs exist; the report lists the missing.
// [data] normalize_mean/std must be the ones the workers trained with.
#pragma once

#include <memory>

#include "core/config.h"
#include "core/status.h"
#include "roles/base/role.h"

namespace dnnd {

Result<std::unique_ptr<Role>> MakeAggregatorRole(const Config& config);

}  // namespace dnnd
