#include "roles/tools/aggregator.h"

#include <boost/json.hpp>
#include <cstdio>
#include <filesystem>
#include <optional>

#include "core/files.h"
#include "core/json_text.h"
#include "core/log.h"
#include "roles/train/trainer.h"
#include "tensor/average.h"
#include "tensor/checkpoint.h"
#include "tensor/data/from_config.h"
#include "tensor/model_spec.h"
#include "tensor/prediction_meta.h"
#include "tensor/safetensors.h"

namespace dnnd {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

// One checkpoint to average.
struct Input {
  std::string path;  // as configured
  std::string file;  // its model.safetensors
  SafetensorsFile checkpoint;
  ModelSpec spec;
  int64_t train_samples = 0;
  std::optional<EvalResult> eval;
};

// A checkpoint directory means its model.safetensors.
std::string ModelFile(const std::string& path) {
  return fs::is_directory(path) ? (fs::path(path) / "model.safetensors").string() : path;
}

Result<Input> LoadInput(const std::string& path) {
  Input in{.path = path,
           .file = ModelFile(path),
           .checkpoint = {},
           .spec = {},
           .train_samples = 0,
           .eval = {}};
  DNND_ASSIGN_OR_RETURN(in.checkpoint, LoadSafetensors(in.file));
  const auto& meta = in.checkpoint.metadata;
  auto samples = meta.find("dnnd.train_samples");
  if (samples == meta.end())
    return InvalidArgument(
        in.file +
        ": metadata has no dnnd.train_samples (the training-set size that weights "
        "the average); was it written by a dnnd worker?");
  try {
    in.train_samples = std::stoll(samples->second);
  } catch (const std::exception&) {
    in.train_samples = 0;
  }
  if (in.train_samples <= 0)
    return InvalidArgument(in.file + ": dnnd.train_samples is '" + samples->second +
                           "', not a positive integer");
  auto spec = meta.find("dnnd.model_spec");
  if (spec == meta.end())
    return InvalidArgument(
        in.file + ": metadata has no dnnd.model_spec; cannot rebuild the model to evaluate it");
  DNND_ASSIGN_OR_RETURN(in.spec, ParseModelSpecText(spec->second, in.file + " (dnnd.model_spec)"));
  return in;
}

json::object EvalJson(const std::optional<EvalResult>& e) {
  json::object o;
  if (e) {
    o["test_accuracy"] = e->accuracy;
    o["test_loss"] = e->loss;
  }
  return o;
}

class AggregatorRole : public Role {
 public:
  AggregatorRole(Config cfg, std::vector<std::string> inputs, int64_t min_models,
                 std::string output_dir, std::string report)
      : cfg_(std::move(cfg)),
        paths_(std::move(inputs)),
        min_models_(min_models),
        output_dir_(std::move(output_dir)),
        report_(std::move(report)) {}

  Status Run() override {
    // Which inputs exist: a shard whose worker failed is the usual gap.
    std::vector<std::string> present, missing;
    for (const auto& p : paths_) (fs::exists(ModelFile(p)) ? present : missing).push_back(p);
    if (!missing.empty()) {
      std::string list;
      for (const auto& m : missing) list += (list.empty() ? "" : ", ") + ModelFile(m);
      const int64_t need = min_models_ > 0 ? min_models_ : static_cast<int64_t>(paths_.size());
      if (static_cast<int64_t>(present.size()) < need)
        return NotFound("missing aggregator input(s): " + list + " (" +
                        std::to_string(present.size()) + " of " + std::to_string(paths_.size()) +
                        " present, " + std::to_string(need) +
                        " required; aggregator.min_models allows partial input)");
      Log(LogLevel::kWarn, "aggregator", "inputs missing; averaging the rest",
          {{"missing", list},
           {"present", static_cast<int64_t>(present.size())},
           {"min_models", min_models_}});
    }
    std::vector<Input> inputs;
    for (const auto& p : present) {
      DNND_ASSIGN_OR_RETURN(Input in, LoadInput(p));
      if (!inputs.empty()) {
        const std::string diff = ArchitectureDifference(inputs[0].spec, in.spec);
        if (!diff.empty())
          return InvalidArgument("the models are different architectures: " + inputs[0].file +
                                 " vs " + in.file + ": " + diff);
      }
      inputs.push_back(std::move(in));
    }

    std::vector<WeightedModel> weighted;
    int64_t total = 0;
    for (const Input& in : inputs) {
      weighted.push_back({in.file, in.checkpoint.tensors, static_cast<double>(in.train_samples)});
      total += in.train_samples;
    }
    DNND_ASSIGN_OR_RETURN(nn::NamedTensors average, WeightedAverage(weighted));

    // The trainer's evaluation, so accuracy means what it means for workers.
    TrainOptions eval_options;
    eval_options.normalize_mean.clear();
    for (double v : cfg_.GetFloats("data.normalize_mean"))
      eval_options.normalize_mean.push_back(static_cast<float>(v));
    eval_options.normalize_std.clear();
    for (double v : cfg_.GetFloats("data.normalize_std"))
      eval_options.normalize_std.push_back(static_cast<float>(v));
    DNND_ASSIGN_OR_RETURN(auto evaluator, Trainer::Create(inputs[0].spec, eval_options));
    DNND_ASSIGN_OR_RETURN(std::optional<data::Dataset> test, data::LoadTestSet(cfg_));
    std::optional<EvalResult> aggregated_eval;
    if (test) {
      DNND_RETURN_IF_ERROR(CheckTestSet(*test, inputs[0].spec, evaluator->model()));
      DNND_RETURN_IF_ERROR(data::CheckLoaderOptions(
          test->sample_shape,
          {.mean = eval_options.normalize_mean, .std = eval_options.normalize_std}));
      for (Input& in : inputs) {
        DNND_RETURN_IF_ERROR(
            LoadParameters(evaluator->model(), in.checkpoint.tensors).WithContext(in.file));
        in.eval = evaluator->Evaluate(*test);
      }
    } else {
      Log(LogLevel::kWarn, "aggregator",
          "no test set configured ([data]); the report has no accuracies");
    }
    DNND_RETURN_IF_ERROR(
        LoadParameters(evaluator->model(), average).WithContext("the averaged model"));
    if (test) aggregated_eval = evaluator->Evaluate(*test);

    TrainingState state;
    state.train_samples = total;
    std::string sources;
    for (const Input& in : inputs) sources += (sources.empty() ? "" : ",") + in.file;
    state.extra["dnnd.aggregated_from"] = sources;
    // What prediction needs (input shape, normalisation, class names) is the
    // inputs' own: the same architecture trained on the same kind of data.
    CopyPredictionMeta(inputs[0].checkpoint.metadata, state.extra);
    DNND_RETURN_IF_ERROR(SaveCheckpoint(output_dir_, evaluator->model(), nullptr, state,
                                        ModelSpecToToml(inputs[0].spec)));

    json::array input_reports;
    for (const Input& in : inputs) {
      json::object o{
          {"path", in.path},
          {"file", in.file},
          {"train_samples", in.train_samples},
          {"weight", static_cast<double>(in.train_samples) / static_cast<double>(total)}};
      for (auto& [k, v] : EvalJson(in.eval)) o[k] = v;
      input_reports.push_back(std::move(o));
      if (in.eval)
        std::fprintf(stderr,
                     "input %s: %lld training samples, test accuracy %.2f%% (test loss %.4f)\n",
                     in.path.c_str(), static_cast<long long>(in.train_samples),
                     100 * in.eval->accuracy, in.eval->loss);
    }
    json::object aggregated{{"checkpoint", (fs::path(output_dir_) / "model.safetensors").string()},
                            {"models", static_cast<int64_t>(inputs.size())},
                            {"train_samples", total}};
    for (auto& [k, v] : EvalJson(aggregated_eval)) aggregated[k] = v;
    json::array missing_json;
    for (const auto& m : missing) missing_json.push_back(json::value(m));
    json::object report{{"test_samples", test ? test->size() : int64_t{0}},
                        {"aggregated", std::move(aggregated)},
                        {"inputs", std::move(input_reports)},
                        {"missing", std::move(missing_json)}};
    const std::string report_path =
        report_.empty() ? (fs::path(output_dir_) / "report.json").string() : report_;
    DNND_RETURN_IF_ERROR(WriteFileAtomic(report_path, PrettyJson(report)));
    if (aggregated_eval)
      std::fprintf(
          stderr,
          "aggregated %zu models (%lld training samples): test accuracy %.2f%% (test loss %.4f)\n",
          inputs.size(), static_cast<long long>(total), 100 * aggregated_eval->accuracy,
          aggregated_eval->loss);
    std::fprintf(stderr, "wrote %s/model.safetensors and %s\n", output_dir_.c_str(),
                 report_path.c_str());
    return Status::Ok();
  }

  // Averaging takes a moment; there is nothing to stop half-way.
  void Stop() override {}

 private:
  // The test set must fit the model, or every accuracy would be meaningless.
  static Status CheckTestSet(const data::Dataset& test, const ModelSpec& spec,
                             const nn::Graph& model) {
    if (test.sample_shape != spec.input)
      return InvalidArgument("the test set's samples are " + ShapeToString(test.sample_shape) +
                             " but the models take " + ShapeToString(spec.input));
    auto out = model.OutputShape(spec.input);
    if (out.ok() && out->size() == 1 && !test.labels.empty() && (*out)[0] < test.num_classes)
      return InvalidArgument("the test set has " + std::to_string(test.num_classes) +
                             " classes but the models have " + std::to_string((*out)[0]) +
                             " outputs");
    return Status::Ok();
  }

  Config cfg_;
  std::vector<std::string> paths_;
  int64_t min_models_;
  std::string output_dir_, report_;
};

}  // namespace

Result<std::unique_ptr<Role>> MakeAggregatorRole(const Config& cfg) {
  std::vector<std::string> inputs = cfg.GetStrings("aggregator.inputs");
  if (inputs.empty())
    return InvalidArgument("aggregator.inputs is empty (" + cfg.Origin("aggregator.inputs") +
                           "): list the checkpoints to average");
  for (size_t i = 0; i < inputs.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (inputs[i] == inputs[j])
        return InvalidArgument("aggregator.inputs lists " + inputs[i] +
                               " twice (it would count double)");
  const int64_t min_models = cfg.GetInt("aggregator.min_models");
  if (min_models > static_cast<int64_t>(inputs.size()))
    return InvalidArgument("aggregator.min_models is " + std::to_string(min_models) +
                           " but aggregator.inputs lists only " + std::to_string(inputs.size()) +
                           " (" + cfg.Origin("aggregator.min_models") + ")");
  const std::string out = cfg.GetString("aggregator.output_dir");
  if (out.empty())
    return InvalidArgument("aggregator.output_dir is empty (" +
                           cfg.Origin("aggregator.output_dir") + ")");
  return std::unique_ptr<Role>(new AggregatorRole(cfg, std::move(inputs), min_models, out,
                                                  cfg.GetString("aggregator.report")));
}

}  // namespace dnnd
