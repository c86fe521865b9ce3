// Training checkpoints. A checkpoint directory holds generations, each one
// directory switched into place by a single rename, so a crash at any moment
// leaves whole generations only:
//   gen-<n>/model.safetensors      parameters and buffers (the state_dict:
//                                  num_batches_tracked as I64), loadable by
//                                  torch's load_state_dict(strict=True) for
//                                  the equivalent torch.nn model; metadata
//                                  carries dnnd.epoch,
//                                  dnnd.step, dnnd.samples (processed so far),
//                                  dnnd.train_samples (the size of the training
//                                  set: an aggregator's weight), dnnd.model_spec
//   gen-<n>/optimizer.safetensors  the optimiser's State() tensors (same dnnd.step)
//   gen-<n>/<other>.safetensors    TrainingState::files (a layer-parallel
//                                  worker's copy of its remote optimizer state)
//   model.safetensors              the newest generation's model file (a hard
//                                  link, a copy where links are impossible):
//                                  what `dnnd infer`, the aggregator, the
//                                  controller and PyTorch read
// A generation is written as gen-<n>.tmp.<pid>/ and renamed to gen-<n> when
// complete; the newest kCheckpointGenerations are kept. A resume loads the
// newest generation that loads completely and falls back to the one before,
// with a warning naming the bad one (then renamed gen-<n>.bad, kept for
// inspection). Leftover gen-<n>.tmp.<pid> directories are SweepTempFiles'.
// A model-only checkpoint (no optimizer, no files: the aggregator's output)
// is the single file model.safetensors, written atomically.
// Directories of older versions (model.safetensors + optimizer.safetensors,
// no generations) still load.
#pragma once

#include <map>
#include <string>

#include "core/status.h"
#include "tensor/nn.h"
#include "tensor/optim.h"

namespace dnnd {

// Generations kept in a checkpoint directory: the newest and its fallback.
inline constexpr int kCheckpointGenerations = 2;

// More tensor files saved with a generation: file name ("*.safetensors", no
// directory, not model/optimizer) -> tensors.
using CheckpointFiles = std::map<std::string, nn::NamedTensors>;

struct TrainingState {
  int64_t epoch = 0;
  int64_t step = 0;
  int64_t samples = 0;                       // samples processed (every epoch counts)
  int64_t train_samples = 0;                 // size of the training set; 0 = unknown (not written)
  std::map<std::string, std::string> extra;  // more metadata, "dnnd." keys reserved
  CheckpointFiles files;                     // saved and loaded with the generation
  std::string loaded_from;                   // LoadCheckpoint: the generation's directory
};

// SHA-256 (hex) of names, shapes and values, by name (any order gives the
// same digest): names a set of weights (a job's initial state) compactly.
std::string StateDigest(const nn::NamedTensors& tensors);

// Copies `tensors` into the model's parameters and buffers (NamedState).
// Fails, listing every missing, unexpected and mis-shaped name, when they do
// not match the model exactly.
Status LoadParameters(nn::Module& model, const nn::NamedTensors& tensors);

// Saves model (+ optimizer when non-null) into `dir`, creating it: a new
// generation (see above), or the single model file when there is neither
// optimizer nor files. Not for concurrent writers of one directory.
Status SaveCheckpoint(const std::string& dir, const nn::Module& model,
                      const optim::Optimizer* optimizer, const TrainingState& state,
                      const std::string& model_spec_text);
// Loads the newest usable generation into `model` (+ `optimizer` when
// non-null) and returns its state. Corruption naming every generation tried
// when none loads. The model and optimizer may hold a bad generation's
// values after an error.
Result<TrainingState> LoadCheckpoint(const std::string& dir, nn::Module& model,
                                     optim::Optimizer* optimizer);
// Whether `dir` holds a checkpoint to resume from (a generation, or a model
// file of the older layout).
bool HasCheckpoint(const std::string& dir);

}  // namespace dnnd
