// Offline inference: `dnnd infer --model <dir> --input in.safetensors --output out.safetensors`.
// Loads <dir>/model.safetensors, rebuilds the model from the spec stored in
// its metadata (dnnd.model_spec), runs tensor "x" of the input file through
// it in evaluation mode and writes the result as tensor "y".
#pragma once

#include <memory>
#include <string>

#include "core/status.h"
#include "tensor/model_spec.h"
#include "tensor/nn.h"

namespace dnnd {

// A trained model rebuilt from one checkpoint file, in evaluation mode.
struct TrainedModel {
  ModelSpec spec;  // from the file's dnnd.model_spec metadata
  std::shared_ptr<nn::Graph> model;
};

// Loads `model_path` (a model.safetensors written by a dnnd checkpoint):
// rebuilds the model from its spec and copies the weights in. Errors name the
// file: no spec in its metadata, a spec that does not parse, weights whose
// names or shapes differ from the spec's model.
Result<TrainedModel> LoadTrainedModel(const std::string& model_path);

Status RunInference(const std::string& model_dir, const std::string& input_path,
                    const std::string& output_path);

}  // namespace dnnd
