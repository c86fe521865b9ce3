// Training checkpoints: a directory holding
//   model.safetensors      parameters only, loadable by torch's load_state_dict
//                          for the equivalent nn.Sequential; metadata carries
//                          dnnd.epoch, dnnd.step, dnnd.samples (processed so
//                          far), dnnd.train_samples (the size of the training
//                          set: an aggregator's weight), dnnd.model_spec
//   optimizer.safetensors  the optimiser's State() tensors (same dnnd.step)
// The optimiser file is renamed into place first and the model last, each
// atomically, and both record the step; a load whose steps disagree (a crash
// between the two renames) is reported rather than silently mixed.
#pragma once

#include <map>
#include <string>

#include "core/status.h"
#include "tensor/nn.h"
#include "tensor/optim.h"

namespace dnnd {

struct TrainingState {
  int64_t epoch = 0;
  int64_t step = 0;
  int64_t samples = 0;        // samples processed (every epoch counts)
  int64_t train_samples = 0;  // size of the training set; 0 = unknown (not written)
  std::map<std::string, std::string> extra;  // more metadata, "dnnd." keys reserved
};

// Copies `tensors` into the model's parameters. Fails, listing every missing,
// unexpected and mis-shaped name, when they do not match the model exactly.
Status LoadParameters(nn::Module& model, const nn::NamedTensors& tensors);

// Saves model (+ optimizer when non-null) into `dir`, creating it.
Status SaveCheckpoint(const std::string& dir, const nn::Module& model,
                      const optim::Optimizer* optimizer, const TrainingState& state,
                      const std::string& model_spec_text);
// Loads into `model` (+ `optimizer` when non-null) and returns the state.
Result<TrainingState> LoadCheckpoint(const std::string& dir, nn::Module& model,
                                     optim::Optimizer* optimizer);

}  // namespace dnnd
