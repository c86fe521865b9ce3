// One typed job spec, from the controller's store to the worker: what a
// training job asks for (POST /api/v1/jobs), as the store keeps it (its JSON
// `params` column), as the pool carries it to every worker of the job
// (pool_protocol.h's Task) and as the worker trains it (ApplyTo).
//
// The JSON form is the store's since the first schema: old rows decode with
// FromJson(o, JobSpec::Stored()). Fields a request leaves out take the
// defaults given to FromJson (a request's: JobSpec{} with the model's
// optimizer and learning rate).
#pragma once

#include <boost/json/object.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"

namespace dnnd {

struct ModelSpec;
struct TrainOptions;

struct JobSpec {
  int64_t epochs = 5;
  int64_t batch = 64;
  int64_t workers = 2;        // an elastic job's first segment
  int64_t servers = 1;        // parameter servers
  std::string mode = "sync";  // sync | async | kavg
  int64_t kavg_steps = 8;
  // How gradients go to the servers (worker.gradient_codec) and a sync
  // step's weights come back (ps.weights_codec): for slow links. Stored only
  // when not "none".
  std::string gradient_codec = "none";  // none | zstd | bf16 | f16
  std::string weights_codec = "none";   // none | bf16 (sync only)
  int64_t seed = 42;
  int64_t limit_train = 0, limit_test = 0;  // 0: all samples
  int64_t eval_every = 1;                   // epochs between evaluations
  double goal_accuracy = 0;                 // > 0: stop once reached (a fraction)
  std::string lr_schedule = "cosine";       // constant | cosine | step
  std::string optimizer = "adam";           // sgd | adam | adamw
  double lr = 0.001;
  // Over the model's own optimizer settings when given (stored only then):
  // an imported model has none of its own.
  std::optional<double> momentum, weight_decay;
  // Parameters kept fixed (TrainOptions::freeze's patterns, * and ?):
  // fine-tuning a head on a model started from other weights.
  std::vector<std::string> freeze;
  // Elastic: the scheduler picks the workers of each epoch in [min, max].
  bool elastic = false;
  int64_t min_workers = 1, max_workers = 1;
  // Inputs standardised with the training set's mean and deviation.
  bool normalized = false;
  double normalize_mean = 0, normalize_std = 1;
  // Training augmentation (TrainOptions::augment_*): stored only when on.
  int64_t augment_crop_padding = 0;
  bool augment_flip = false;
  // The dataset's class names (POST /api/v1/datasets "classes"), which the
  // workers write into the model file: stored only when named.
  std::vector<std::string> classes;
  // A segment of the job (an elastic job trains one epoch per segment):
  // epochs [start_epoch, stop_epoch) from step start_step. Never stored;
  // stop_epoch 0: the whole job.
  int64_t start_epoch = 0, start_step = 0, stop_epoch = 0;

  // The defaults of a row stored before a field existed (lr_schedule was
  // "constant" then).
  static JobSpec Stored();

  // Reads `o`'s fields over `defaults`, then Validate(). Errors name the
  // field ("<where>: field 'epochs' is 0; expected 1..100000").
  static Result<JobSpec> FromJson(const boost::json::object& o, const JobSpec& defaults,
                                  const std::string& where = "");
  // The store's form (no segment); FromJson(ToJson(), Stored()) == *this.
  boost::json::object ToJson() const;
  // InvalidArgument naming the first bad field.
  Status Validate() const;

  // The job's optimizer, learning rate, momentum and weight decay on the model.
  void ApplyTo(ModelSpec& model) const;
  // The job's training options (epochs, batch, seed, schedule, data limits
  // are the worker's: limit_train/limit_test only size the shards).
  void ApplyTo(TrainOptions& options) const;
};

}  // namespace dnnd
