// The datasets a [data] section describes, shared by every role that reads
// data (the worker trains on the training set, the splitter cuts it into
// shards, the aggregator evaluates on the test set).
//
// data.format picks the reader for both sets: idx/npy read data.<split>_images
// and data.<split>_labels, npz/csv read data.<split>_file, cifar10 reads
// data.<split>_files or else the standard file names in data.cifar_dir. data.test_format
// ("same" by default) lets the test set use another format, so a worker can
// train on a splitter's NPZ shard and still evaluate on the IDX test files.
// data.builtin = "xor" replaces both sets with DockerNN's XOR table.
#pragma once

#include <optional>

#include "core/config.h"
#include "core/status.h"
#include "tensor/data/dataset.h"
#include "tensor/data/source.h"

namespace dnnd::data {

// data.max_decoded_bytes and data.max_npz_members, named as such in errors.
DecodeLimits LimitsFromConfig(const Config& cfg);

// The training set, cut to data.limit_train. Errors name the file. Every
// file is decoded under `limits` (LimitsFromConfig(cfg) when not given: the
// controller passes its own, which name its settings).
Result<Dataset> LoadTrainingSet(const Config& cfg);
Result<Dataset> LoadTrainingSet(const Config& cfg, const DecodeLimits& limits);
// The test set cut to data.limit_test, or nullopt when none is configured (an
// empty test path means "no evaluation").
Result<std::optional<Dataset>> LoadTestSet(const Config& cfg);
Result<std::optional<Dataset>> LoadTestSet(const Config& cfg, const DecodeLimits& limits);

}  // namespace dnnd::data
