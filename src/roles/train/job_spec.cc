#include "roles/train/job_spec.h"

#include <boost/json.hpp>

#include "core/json_fields.h"
#include "roles/train/trainer.h"
#include "tensor/model_spec.h"

namespace dnnd {
namespace json = boost::json;

namespace {

Status FieldError(const std::string& where, const char* key, const std::string& what) {
  return InvalidArgument((where.empty() ? "" : where + ": ") + "field '" + key + "' " + what);
}

Status CheckRange(const char* key, int64_t x, int64_t lo, int64_t hi) {
  if (x >= lo && x <= hi) return Status::Ok();
  return FieldError(
      "", key,
      "is " + std::to_string(x) + "; expected " + std::to_string(lo) + ".." + std::to_string(hi));
}

Status CheckOneOf(const char* key, const std::string& v, std::initializer_list<const char*> ok,
                  const char* expected) {
  for (const char* o : ok)
    if (v == o) return Status::Ok();
  return FieldError("", key, "is '" + v + "'; expected " + expected);
}

// o[key]: an array of strings, or `def` when absent.
Result<std::vector<std::string>> StringList(const json::object& o, const std::string& where,
                                            const char* key, const std::vector<std::string>& def,
                                            const char* what) {
  const json::value* v = o.if_contains(key);
  if (!v) return def;
  std::vector<std::string> out;
  if (!v->is_array()) return FieldError(where, key, std::string("must be ") + what);
  for (const auto& x : v->get_array()) {
    if (!x.is_string()) return FieldError(where, key, std::string("must be ") + what);
    out.emplace_back(x.get_string());
  }
  return out;
}

}  // namespace

JobSpec JobSpec::Stored() {
  JobSpec s;
  s.lr_schedule = "constant";
  return s;
}

Result<JobSpec> JobSpec::FromJson(const json::object& o, const JobSpec& defaults,
                                  const std::string& where) {
  JsonFields f{o, where};
  JobSpec s = defaults;
  DNND_ASSIGN_OR_RETURN(s.epochs, f.Int("epochs", defaults.epochs));
  DNND_ASSIGN_OR_RETURN(s.batch, f.Int("batch", defaults.batch));
  DNND_ASSIGN_OR_RETURN(s.workers, f.Int("workers", defaults.workers));
  DNND_ASSIGN_OR_RETURN(s.elastic, f.Bool("elastic", defaults.elastic));
  DNND_ASSIGN_OR_RETURN(s.min_workers, f.Int("min_workers", s.elastic ? 1 : s.workers));
  DNND_ASSIGN_OR_RETURN(s.max_workers,
                        f.Int("max_workers", s.elastic ? defaults.max_workers : s.workers));
  if (!s.elastic && (o.contains("min_workers") || o.contains("max_workers")))
    return InvalidArgument("fields 'min_workers' and 'max_workers' need \"elastic\": true");
  DNND_ASSIGN_OR_RETURN(s.servers, f.Int("servers", defaults.servers));
  DNND_ASSIGN_OR_RETURN(s.kavg_steps, f.Int("kavg_steps", defaults.kavg_steps));
  DNND_ASSIGN_OR_RETURN(s.seed, f.Int("seed", defaults.seed));
  DNND_ASSIGN_OR_RETURN(s.limit_train, f.Int("limit_train", defaults.limit_train));
  DNND_ASSIGN_OR_RETURN(s.limit_test, f.Int("limit_test", defaults.limit_test));
  DNND_ASSIGN_OR_RETURN(s.eval_every, f.Int("eval_every", defaults.eval_every));
  DNND_ASSIGN_OR_RETURN(s.goal_accuracy, f.Number("goal_accuracy", defaults.goal_accuracy));
  DNND_ASSIGN_OR_RETURN(s.lr_schedule, f.String("lr_schedule", defaults.lr_schedule));
  DNND_ASSIGN_OR_RETURN(s.mode, f.String("mode", defaults.mode));
  DNND_ASSIGN_OR_RETURN(s.gradient_codec, f.String("gradient_codec", defaults.gradient_codec));
  DNND_ASSIGN_OR_RETURN(s.weights_codec, f.String("weights_codec", defaults.weights_codec));
  DNND_ASSIGN_OR_RETURN(s.optimizer, f.String("optimizer", defaults.optimizer));
  DNND_ASSIGN_OR_RETURN(s.lr, f.Number("lr", defaults.lr));
  for (auto [key, field] :
       {std::pair{"momentum", &s.momentum}, std::pair{"weight_decay", &s.weight_decay}})
    if (o.contains(key)) {
      DNND_ASSIGN_OR_RETURN(double v, f.Number(key, 0));
      *field = v;
    }
  DNND_ASSIGN_OR_RETURN(s.freeze, StringList(o, where, "freeze", defaults.freeze,
                                             "an array of parameter-name patterns"));
  s.normalized = o.contains("normalize_mean") || defaults.normalized;
  DNND_ASSIGN_OR_RETURN(s.normalize_mean, f.Number("normalize_mean", defaults.normalize_mean));
  DNND_ASSIGN_OR_RETURN(s.normalize_std, f.Number("normalize_std", defaults.normalize_std));
  DNND_ASSIGN_OR_RETURN(s.augment_crop_padding,
                        f.Int("augment_crop_padding", defaults.augment_crop_padding));
  DNND_ASSIGN_OR_RETURN(s.augment_flip, f.Bool("augment_flip", defaults.augment_flip));
  DNND_ASSIGN_OR_RETURN(s.classes, StringList(o, where, "classes", defaults.classes,
                                              "an array of strings (the class names)"));
  Status v = s.Validate();
  if (!v.ok() && !where.empty()) return v.WithContext(where);
  DNND_RETURN_IF_ERROR(v);
  return s;
}

Status JobSpec::Validate() const {
  DNND_RETURN_IF_ERROR(CheckRange("epochs", epochs, 1, 100000));
  DNND_RETURN_IF_ERROR(CheckRange("batch", batch, 1, 1 << 20));
  DNND_RETURN_IF_ERROR(CheckRange("workers", workers, 1, int64_t{1} << 20));
  DNND_RETURN_IF_ERROR(CheckRange("servers", servers, 1, 16));
  DNND_RETURN_IF_ERROR(CheckRange("kavg_steps", kavg_steps, 1, 1000000));
  DNND_RETURN_IF_ERROR(CheckRange("seed", seed, 0, int64_t{1} << 53));
  DNND_RETURN_IF_ERROR(CheckRange("limit_train", limit_train, 0, int64_t{1} << 40));
  DNND_RETURN_IF_ERROR(CheckRange("limit_test", limit_test, 0, int64_t{1} << 40));
  DNND_RETURN_IF_ERROR(CheckRange("eval_every", eval_every, 1, 100000));
  DNND_RETURN_IF_ERROR(CheckRange("augment_crop_padding", augment_crop_padding, 0, 1024));
  if (elastic) {
    DNND_RETURN_IF_ERROR(CheckRange("min_workers", min_workers, 1, int64_t{1} << 20));
    DNND_RETURN_IF_ERROR(CheckRange("max_workers", max_workers, 1, int64_t{1} << 20));
    if (!(min_workers <= workers && workers <= max_workers))
      return InvalidArgument("an elastic job needs min_workers <= workers <= max_workers; got " +
                             std::to_string(min_workers) + " <= " + std::to_string(workers) +
                             " <= " + std::to_string(max_workers));
  }
  if (!(goal_accuracy >= 0 && goal_accuracy <= 1))
    return InvalidArgument("field 'goal_accuracy' is a fraction in [0, 1] (0.88 = 88 %), not " +
                           std::to_string(goal_accuracy));
  DNND_RETURN_IF_ERROR(CheckOneOf("lr_schedule", lr_schedule, {"constant", "cosine", "step"},
                                  "constant, cosine or step"));
  DNND_RETURN_IF_ERROR(CheckOneOf("mode", mode, {"sync", "async", "kavg"}, "sync, async or kavg"));
  DNND_RETURN_IF_ERROR(CheckOneOf("gradient_codec", gradient_codec, {"none", "zstd", "bf16", "f16"},
                                  "none, zstd, bf16 or f16"));
  DNND_RETURN_IF_ERROR(
      CheckOneOf("weights_codec", weights_codec, {"none", "bf16"}, "none or bf16"));
  if (weights_codec != "none" && mode != "sync")
    return InvalidArgument("field 'weights_codec' \"" + weights_codec +
                           "\" needs mode \"sync\" (the job's is \"" + mode +
                           "\"): only a sync step's weights are the same for every worker");
  DNND_RETURN_IF_ERROR(
      CheckOneOf("optimizer", optimizer, {"sgd", "adam", "adamw"}, "sgd, adam or adamw"));
  if (!(lr > 0 && lr < 100)) return InvalidArgument("field 'lr' must be in (0, 100)");
  if (momentum && !(*momentum >= 0 && *momentum < 1))
    return InvalidArgument("field 'momentum' must be in [0, 1)");
  if (momentum && optimizer != "sgd")
    return InvalidArgument("field 'momentum' is SGD's; the job's optimizer is " + optimizer);
  if (weight_decay && !(*weight_decay >= 0 && *weight_decay < 1))
    return InvalidArgument("field 'weight_decay' must be in [0, 1)");
  if (freeze.size() > 1000) return InvalidArgument("field 'freeze' has more than 1000 patterns");
  for (const auto& pattern : freeze)
    if (pattern.empty() || pattern.size() > 1000)
      return InvalidArgument("field 'freeze': a pattern must be 1..1000 characters");
  if (normalized && !(normalize_std > 0))
    return InvalidArgument("field 'normalize_std' must be > 0");
  if (stop_epoch != 0 && !(start_epoch >= 0 && start_epoch < stop_epoch && stop_epoch <= epochs))
    return InvalidArgument("a job segment needs 0 <= start_epoch < stop_epoch <= epochs");
  return Status::Ok();
}

json::object JobSpec::ToJson() const {
  // The order of the store's rows since the first schema.
  json::object p{{"epochs", epochs}, {"batch", batch}, {"workers", workers}};
  if (elastic) {
    p["elastic"] = true;
    p["min_workers"] = min_workers;
    p["max_workers"] = max_workers;
  }
  p["servers"] = servers;
  p["kavg_steps"] = kavg_steps;
  p["seed"] = seed;
  p["limit_train"] = limit_train;
  p["limit_test"] = limit_test;
  p["eval_every"] = eval_every;
  if (goal_accuracy > 0) p["goal_accuracy"] = goal_accuracy;
  p["lr_schedule"] = lr_schedule;
  p["mode"] = mode;
  if (gradient_codec != "none") p["gradient_codec"] = gradient_codec;
  if (weights_codec != "none") p["weights_codec"] = weights_codec;
  p["optimizer"] = optimizer;
  p["lr"] = lr;
  if (momentum) p["momentum"] = *momentum;
  if (weight_decay) p["weight_decay"] = *weight_decay;
  auto strings = [](const std::vector<std::string>& v) {
    json::array a;
    for (const auto& x : v) a.push_back(json::value(x));
    return a;
  };
  if (!freeze.empty()) p["freeze"] = strings(freeze);
  if (normalized) {
    p["normalize_mean"] = normalize_mean;
    p["normalize_std"] = normalize_std;
  }
  if (augment_crop_padding > 0) p["augment_crop_padding"] = augment_crop_padding;
  if (augment_flip) p["augment_flip"] = true;
  if (!classes.empty()) p["classes"] = strings(classes);
  return p;
}

void JobSpec::ApplyTo(ModelSpec& model) const {
  model.optimizer.type = optimizer;
  model.optimizer.lr = static_cast<float>(lr);
  if (momentum) model.optimizer.momentum = static_cast<float>(*momentum);
  if (weight_decay) model.optimizer.weight_decay = static_cast<float>(*weight_decay);
}

void JobSpec::ApplyTo(TrainOptions& o) const {
  o.epochs = epochs;
  o.batch_size = batch;
  o.seed = static_cast<uint64_t>(seed);
  o.eval_every_epochs = eval_every;
  o.lr_schedule = lr_schedule;
  o.goal_accuracy = goal_accuracy;
  o.normalize_mean = {static_cast<float>(normalize_mean)};
  o.normalize_std = {static_cast<float>(normalize_std)};
  o.augment_crop_padding = augment_crop_padding;
  o.augment_flip = augment_flip;
  o.classes = classes;
  o.freeze = freeze;
  if (stop_epoch > 0) {
    o.start_epoch = start_epoch;
    o.start_step = start_step;
    o.stop_epoch = stop_epoch;
  }
}

}  // namespace dnnd
