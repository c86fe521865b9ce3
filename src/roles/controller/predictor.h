// Predictions from trained models: the controller's
//
//   POST /api/v1/models/{name}/predict[?job=<id>][&invert=auto|true|false]
//
// The weights are those of job <id>, by default the model's newest succeeded
// job (its <data_dir>/jobs/<id>/model/model.safetensors). The body is either
//  - an image (Content-Type image/png or image/jpeg; the format is decided by
//    the body's magic bytes, and anything but PNG and JPEG is a 415),
//    decoded under Options::image (dimensions, JPEG scans, PNG inflation:
//    413 naming the setting), converted to grayscale, inverted when `invert` says so (auto: when
//    most of its border is light, i.e. a dark drawing on white paper, the opposite of
//    Fashion-MNIST), resized to the model input's height x width (input [784] is 28x28; [1,28,28]
//    and [28,28] likewise); for a model of colour images ([3, h, w], CIFAR-10) the image is
//    decoded as RGB (a grayscale image is a 400), resized, and laid out channel-major
//    (R plane, G plane, B plane), and `invert` auto never inverts it;
//  - or JSON {"inputs": [sample, ...]} (Content-Type application/json), each
//    sample the model's input as a flat array or nested to its shape, in the
//    dataset's scale (pixels in [0, 1]).
// Either way the DataLoader then scales and standardises the samples exactly
// as it did the job's training batches (uint8 -> [0, 1], then the job's
// normalize_mean / normalize_std).
// The answer:
//   {"model":"mlp","job":3,"input":[1,28,28],
//    "predictions":[{"class":7,"class_name":"Sneaker","probabilities":[...]}, ...],
//    "classes":["T-shirt/top", ...]}
// with "inverted" per prediction for images; "class_name" and "classes" when
// the model file names its classes (a job on a dataset created with
// "classes": tensor/prediction_meta.h). A model trained with a
// cross-entropy loss answers class probabilities (softmax of its outputs,
// unless its last layer is a softmax already); any other loss answers the raw
// "outputs" instead.
//
// Errors (JSON, as every controller error): unknown model or job 404; no
// succeeded job, or the named job not succeeded, 409; a job of another model,
// an undecodable image (the decoder's reason), a sample of the wrong size (expected
// and got), a bad query value 400; an unsupported Content-Type 415; a body
// over http.max_body_bytes 413; a checkpoint that does not load (the controller's
// own file) 500.
//
// Loaded models are cached (at most kCachedModels, least recently used goes),
// keyed by checkpoint file and its FileVersion (inode, size, mtime), so a
// checkpoint is read once, not per call. Which job answers a (model, ?job=)
// pair is resolved from the store once and kept while the store's
// Generation() is unchanged: any write to it (a job of the model succeeding,
// a job deleted) is seen by the next call, and a call costs no query.
// Thread-safe: handlers run on several HTTP threads at once; a cached model
// is shared, read-only, by concurrent forward passes (evaluation mode, no
// gradient recording).
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <variant>

#include "core/image.h"
#include "core/status.h"
#include "core/thread_annotations.h"
#include "roles/controller/store.h"
#include "roles/train/infer.h"
#include "transport/http.h"

namespace dnnd {

// ImageInputBatch (roles/train/infer.h) turns an image body into the input.
class Predictor {
 public:
  static constexpr size_t kCachedModels = 4;
  // Resolutions kept at most (then all are dropped and resolved anew).
  static constexpr size_t kCachedResolutions = 64;
  struct Options {
    std::function<std::string(int64_t job)> checkpoint_path;  // the job's model.safetensors
    size_t max_body_bytes = 1 << 20;                          // http.max_body_bytes
    ImageLimits image;  // controller.max_image_pixels, controller.max_jpeg_scans
  };
  // `store` must outlive the predictor.
  Predictor(ControllerStore& store, Options options);

  // The route's handler: always an answer, errors as JSON 4xx/5xx.
  HttpResponse Predict(const HttpRequest& request);

 private:
  // What answers a (model, ?job=) pair: the job and how its training data was
  // scaled (its normalize_mean / normalize_std), as of store generation `generation`.
  struct Resolved {
    uint64_t generation = 0;
    int64_t job = 0;
    float mean = 0.0f, std = 1.0f;
  };

  Result<HttpResponse> Answer(const HttpRequest& request);
  // Resolved from the cache while the store's generation is unchanged, else
  // from the store: the model must exist, then ResolveJob.
  std::variant<Resolved, HttpResponse> Resolve(const std::string& model,
                                               const HttpRequest& request);
  // The job whose weights answer: ?job=<id> (checked to be this model's and
  // succeeded) or the model's newest succeeded one; else the refusal to send.
  std::variant<JobRecord, HttpResponse> ResolveJob(const std::string& model,
                                                   const HttpRequest& request);
  Result<std::shared_ptr<const TrainedModel>> Load(int64_t job);

  ControllerStore& store_;
  const Options options_;

  struct CachedModel {
    std::string key;  // path, FileVersion
    std::shared_ptr<const TrainedModel> model;
  };
  Mutex cache_mu_;  // guards cache_ and resolved_; never held while loading a model
  std::list<CachedModel> cache_ GUARDED_BY(cache_mu_);  // most recently used first
  // Key: model name, '\0', the ?job= value as sent ("" when absent).
  std::unordered_map<std::string, Resolved> resolved_ GUARDED_BY(cache_mu_);
};

}  // namespace dnnd
