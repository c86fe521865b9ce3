// The worker role. With no parameter servers configured it trains locally:
// the model from [model] (or the spec file [model].file names), the data from
// [data], the loop from [train]; progress per epoch, test accuracy, and a
// checkpoint in train.checkpoint_dir.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/status.h"
#include "roles/base/role.h"
#include "roles/train/trainer.h"
#include "tensor/data/dataset.h"
#include "tensor/model_spec.h"

namespace dnnd {

// Where a worker sits in a data-parallel job.
struct WorkerPlacement {
  int64_t index = 0;  // trains on part `index` of `count` of the data
  int64_t count = 1;
  std::vector<std::string> parameter_servers;  // empty: local training
};

// The model a config trains and the weights it starts from: [model] inline,
// [model] file = "x.toml", or [model] onnx = "x.onnx" (paths relative to the
// config), the last a model exported by torch.onnx.export whose initializers
// are the initial weights (src/tensor/onnx/onnx_import.h); beside `onnx`,
// `loss`, `label_smoothing` and [model.optimizer] are the config's.
// train.init_from (a safetensors file or a checkpoint directory) replaces the
// initial weights: a PyTorch state_dict or a dnnd model, matched by name when
// the trainer loads them (every missing, unexpected and mis-shaped name).
struct ConfiguredModel {
  ModelSpec spec;
  // Null: seeded initialisation. Else every parameter and buffer, by name.
  std::shared_ptr<const nn::NamedTensors> initial_state;
  std::string initial_from;  // the file they came from, for messages
};
Result<ConfiguredModel> LoadModel(const Config& config);
// LoadModel's spec (without reading train.init_from's weights).
Result<ModelSpec> LoadModelSpec(const Config& config);

// The worker role training its own shard; its placement comes from the
// [worker] section (the registry picks the pool worker when worker.controller
// is set).
Result<std::unique_ptr<Role>> MakeWorkerRole(const Config& config);
// A worker with an explicit placement (the standalone role runs several).
// `show_progress` false silences its progress bar (only one worker shows one).
// `hooks` receive its progress (give them to the reporting worker only).
Result<std::unique_ptr<Role>> MakeWorker(const Config& config, const WorkerPlacement& placement,
                                         bool show_progress, TrainHooks hooks = {});
// The same with the data already in memory: `train` is this worker's part
// (a pool worker receives only its part from the controller).
Result<std::unique_ptr<Role>> MakeWorkerWithData(const Config& config,
                                                 const WorkerPlacement& placement,
                                                 bool show_progress, TrainHooks hooks,
                                                 data::Dataset train,
                                                 std::optional<data::Dataset> test);
// The same for a job the controller describes: the model and training
// options are given (a pool worker's, from its task's JobSpec); `config`
// supplies only the node's own settings ([worker], [transport], node.name).
Result<std::unique_ptr<Role>> MakeWorkerWithData(
    const Config& config, ModelSpec spec, TrainOptions options, const WorkerPlacement& placement,
    bool show_progress, TrainHooks hooks, data::Dataset train, std::optional<data::Dataset> test);
// The training options of a config's [train] and [data] sections.
TrainOptions TrainOptionsFromConfig(const Config& config);

}  // namespace dnnd
