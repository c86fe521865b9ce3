// Predictions from a model file, offline (`dnnd infer`) and for the
// controller's predict route (roles/controller/predictor.h).
//
//   dnnd infer --model <dir|model.safetensors> [options] INPUT...
//     Raw inputs: PNG/JPEG images, .npy arrays and .safetensors arrays
//     (tensor "x", or the file's only tensor) of values as the training data
//     stored them (uint8 pixels 0..255, or floats in the dataset's scale).
//     They are scaled and standardised as the training batches were, with
//     the normalisation the checkpoint records (tensor/prediction_meta.h),
//     and each sample's class, class name, probability (and logits) printed.
//   dnnd infer --model <dir> --input x.safetensors --output y.safetensors
//     Tensor mode: tensor "x" goes through the model exactly as given (the
//     model's own input scale, no normalisation) and the outputs are written
//     as tensor "y".
// A model file without dnnd metadata (a PyTorch state_dict saved as
// safetensors) is rebuilt from --spec model.toml.
#pragma once

#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/image.h"
#include "core/status.h"
#include "tensor/model_spec.h"
#include "tensor/nn.h"
#include "tensor/prediction_meta.h"

namespace dnnd {

// A trained model rebuilt from one model file, in evaluation mode.
struct TrainedModel {
  ModelSpec spec;  // from the file's dnnd.model_spec metadata (or --spec)
  std::shared_ptr<nn::Graph> model;
  PredictionMeta meta;  // input shape, normalisation, class names (defaults when absent)
};

// Loads `model_path` (a model.safetensors written by a dnnd checkpoint):
// rebuilds the model from its spec and copies the weights in. Errors name the
// file: no spec in its metadata, a spec that does not parse, weights whose
// names or shapes differ from the spec's model, prediction metadata that is
// not what it should be. `spec_path`, when not empty, is a TOML file with a
// [model] table that replaces the file's spec (a plain state dict has none).
Result<TrainedModel> LoadTrainedModel(const std::string& model_path,
                                      const std::string& spec_path = "");

// The model input as images: channels, height and width. Grayscale is
// [h, w], [1, h, w], or [n] with n a square (784 -> 28 x 28); colour (RGB,
// channel-major) is [3, h, w]; anything else is InvalidArgument.
struct ImageGeometry {
  int channels = 1, height = 0, width = 0;
};
Result<ImageGeometry> ImageSize(const Shape& input);

// An image (PNG or JPEG bytes) as the input batch of one for a model taking
// `input`: grayscale for [h, w], [1, h, w] and square [n]; RGB, channel-major,
// for [3, h, w] (a grayscale image is InvalidArgument); inverted per `invert`
// (auto, true, false; auto inverts only grayscale images with a light border,
// and sets *inverted), resized, then scaled as the DataLoader scales training
// pixels: (x/255 - mean[c]) / std[c].
Result<Tensor> ImageInputBatch(const std::string& bytes, const Shape& input,
                               const std::vector<float>& mean, const std::vector<float>& stdev,
                               const std::string& invert, const ImageLimits& limits,
                               bool* inverted);

// Raw samples (uint8 pixels when `u8` is non-null, else floats in the
// dataset's scale) of `shape` as a batch for a model taking `input`, scaled
// as training batches were. `shape` is one sample ([*input], or [numel]) or
// a batch ([n, *input], or [n, numel]); anything else is InvalidArgument
// naming `what`.
Result<Tensor> ArrayInputBatch(const Shape& shape, const std::vector<uint8_t>* u8,
                               const std::vector<float>* f32, const Shape& input,
                               const std::vector<float>& mean, const std::vector<float>& stdev,
                               const std::string& what);

// One row of predictions: the class (argmax), its probability, and every
// class's probability (softmax of the outputs, unless the model's last layer
// is a softmax already). Only for models trained with a cross-entropy loss
// (ClassifierModel); others answer outputs.
struct ClassScores {
  int64_t cls = 0;
  std::vector<float> probabilities;
};
bool ClassifierModel(const ModelSpec& spec);
// `y` is the model's output [n, k].
std::vector<ClassScores> Classify(const ModelSpec& spec, const Tensor& y);

struct InferOptions {
  std::string model;                // checkpoint directory or model .safetensors file
  std::string spec;                 // --spec: a [model] TOML file
  std::vector<std::string> inputs;  // raw inputs, or the one x.safetensors of tensor mode
  std::string output;               // tensor mode: y.safetensors
  std::optional<std::vector<float>> normalize_mean, normalize_std;  // override the file's
  std::optional<std::vector<std::string>> classes;                  // override the file's
  std::string invert = "auto";
  bool logits = false, json = false;
};

// Runs `dnnd infer`; predictions go to `out`, warnings to stderr.
Status RunInference(const InferOptions& options, std::FILE* out);

}  // namespace dnnd
