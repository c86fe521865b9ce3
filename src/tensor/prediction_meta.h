// What predicting on raw inputs needs beyond a model's weights, kept in its
// model.safetensors' __metadata__ (strings, as safetensors wants them; the
// values are JSON text):
//   dnnd.input_shape      [1,28,28]        one sample, as the model takes it
//   dnnd.channel_order    "chw"            channel-major samples (dnnd's only order)
//   dnnd.normalize_mean   [0.2860]         x' = (x/255 - mean[c]) / std[c] for uint8
//   dnnd.normalize_std    [0.3530]         pixels; (x - mean[c]) / std[c] for float data
//   dnnd.classes          ["T-shirt/top", ...]   the class names; absent when unnamed
// Every writer of a model file writes them (the trainer's checkpoints, so a
// local worker, data-parallel worker 0 and a controller job's uploaded model;
// the aggregator copies them from its first input); `dnnd infer` and the
// controller's predictions read them.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/status.h"
#include "tensor/tensor.h"

namespace dnnd {

inline constexpr const char* kMetaInputShape = "dnnd.input_shape";
inline constexpr const char* kMetaChannelOrder = "dnnd.channel_order";
inline constexpr const char* kMetaNormalizeMean = "dnnd.normalize_mean";
inline constexpr const char* kMetaNormalizeStd = "dnnd.normalize_std";
inline constexpr const char* kMetaClasses = "dnnd.classes";

struct PredictionMeta {
  Shape input;  // empty: unknown
  std::string channel_order = "chw";
  std::vector<float> normalize_mean = {0.0f}, normalize_std = {1.0f};
  bool has_normalization = false;    // read: the file had both normalize keys
  std::vector<std::string> classes;  // empty: unnamed
};

// Adds the keys to `meta` (dnnd.classes only when there are names).
void AddPredictionMeta(const PredictionMeta& p, std::map<std::string, std::string>& meta);

// The keys `meta` has; absent ones keep PredictionMeta's defaults.
// InvalidArgument naming `what` (the file) and the key when a value is not
// the JSON it should be.
Result<PredictionMeta> ReadPredictionMeta(const std::map<std::string, std::string>& meta,
                                          const std::string& what);

// The prediction keys of `from` copied into `to` (a model file made from
// other model files: the aggregator's average).
void CopyPredictionMeta(const std::map<std::string, std::string>& from,
                        std::map<std::string, std::string>& to);

// InvalidArgument naming `setting` unless `classes` is empty or holds
// `count` non-empty names; `of` says what `count` is ("the model's output
// size is", "the dataset's classes are": "... lists 3 class names but the
// model's output size is 10; ...").
Status CheckClassNames(const std::vector<std::string>& classes, int64_t count,
                       const std::string& setting, const std::string& of);

}  // namespace dnnd
