// Offline inference: `dnnd infer --model <dir> --input in.safetensors --output out.safetensors`.
// Loads <dir>/model.safetensors, rebuilds the model from the spec stored in
// its metadata (dnnd.model_spec), runs tensor "x" of the input file through
// it in evaluation mode and writes the result as tensor "y".
#pragma once

#include <string>

#include "core/status.h"

namespace dnnd {

Status RunInference(const std::string& model_dir, const std::string& input_path,
                    const std::string& output_path);

}  // namespace dnnd
