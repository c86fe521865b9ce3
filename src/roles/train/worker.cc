#include "roles/train/worker.h"

#include <toml++/toml.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <stdexcept>

#include "core/files.h"
#include "core/log.h"
#include "core/metrics.h"
#include "roles/train/layer_client.h"
#include "roles/train/ps_client.h"
#include "roles/train/trainer.h"
#include "tensor/data/from_config.h"
#include "tensor/onnx/onnx_import.h"
#include "tensor/parallel.h"
#include "tensor/prediction_meta.h"
#include "tensor/safetensors.h"

namespace dnnd {

namespace {

std::string RelativeToConfig(const Config& cfg, const std::string& path) {
  std::filesystem::path p(path);
  if (p.is_relative()) p = std::filesystem::path(cfg.path()).parent_path() / p;
  return p.string();
}

// [model] onnx = "x.onnx": the imported graph's spec, with the config's loss,
// label smoothing and optimizer, validated as any [model] table is.
Result<ConfiguredModel> LoadOnnxModel(const Config& cfg, const toml::table& m,
                                      const toml::node& onnx_path) {
  if (!onnx_path.is_string())
    return InvalidArgument(SourceWhere(onnx_path) + ": model.onnx must be a string (a file path)");
  for (const auto& [key, value] : m) {
    const std::string k(key.str());
    if (k != "onnx" && k != "loss" && k != "label_smoothing" && k != "optimizer")
      return InvalidArgument(SourceWhere(value) + ": model." + k +
                             " cannot be set beside model.onnx (the ONNX file is the model; "
                             "loss, label_smoothing and [model.optimizer] may be)");
  }
  const std::string path = RelativeToConfig(cfg, *onnx_path.value<std::string>());
  DNND_ASSIGN_OR_RETURN(onnx::ImportedModel imported, onnx::ImportOnnxFile(path));
  for (const auto& r : imported.renamed)
    Log(LogLevel::kWarn, "worker", "ONNX initializer renamed", {{"file", path}, {"rename", r}});
  toml::table merged;
  try {
    merged = toml::parse(ModelSpecToToml(imported.spec), path);
  } catch (const toml::parse_error& e) {
    return Internal(path + ": the imported spec does not parse: " + std::string(e.description()));
  }
  toml::table& model = *merged["model"].as_table();
  for (const auto& [key, value] : m)
    if (key.str() != "onnx") model.insert_or_assign(key, value);
  DNND_ASSIGN_OR_RETURN(ModelSpec spec, ParseModelSpec(model));
  return ConfiguredModel{
      std::move(spec), std::make_shared<const nn::NamedTensors>(std::move(imported.weights)), path};
}

// [model] alone, without train.init_from.
Result<ConfiguredModel> LoadModelOnly(const Config& cfg) {
  const toml::table* m = cfg.Section("model");
  if (!m) return InvalidArgument(cfg.path() + ": no [model] section (the model to train)");
  if (const toml::node* o = m->get("onnx")) return LoadOnnxModel(cfg, *m, *o);
  if (const toml::node* f = m->get("file")) {
    // A model file from configs/models/, the input shape optionally the
    // data's (the ResNets ship for 3x32x32 and train on 1x28x28 too).
    const toml::node* input = m->get("input");
    if (!f->is_string() || m->size() != (input ? 2 : 1))
      return InvalidArgument(SourceWhere(*f) +
                             ": model.file must be a string, beside at most model.input");
    const std::string p = RelativeToConfig(cfg, *f->value<std::string>());
    DNND_ASSIGN_OR_RETURN(std::string text, ReadFileToString(p, 1 << 20));
    DNND_ASSIGN_OR_RETURN(ModelSpec spec, ParseModelSpecText(text, p));
    if (input) {
      const toml::array* a = input->as_array();
      Shape shape;
      if (a)
        for (const auto& d : *a)
          if (auto v = d.value<int64_t>(); d.is_integer() && v && *v >= 1 && *v <= (1 << 20))
            shape.push_back(*v);
      if (!a || a->empty() || shape.size() != a->size())
        return InvalidArgument(SourceWhere(*input) +
                               ": model.input: expected an array of positive integers");
      spec.input = std::move(shape);
    }
    return ConfiguredModel{std::move(spec), nullptr, ""};
  }
  DNND_ASSIGN_OR_RETURN(ModelSpec spec, ParseModelSpec(*m));
  return ConfiguredModel{std::move(spec), nullptr, ""};
}

}  // namespace

Result<ConfiguredModel> LoadModel(const Config& cfg) {
  DNND_ASSIGN_OR_RETURN(ConfiguredModel m, LoadModelOnly(cfg));
  const std::string init_from = cfg.GetString("train.init_from");
  if (init_from.empty()) return m;
  // A file, or a checkpoint directory (its published model.safetensors).
  std::string path = RelativeToConfig(cfg, init_from);
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) path += "/model.safetensors";
  auto file = LoadSafetensors(path);
  if (!file.ok()) return file.status().WithContext("train.init_from");
  m.initial_state = std::make_shared<const nn::NamedTensors>(std::move(file->tensors));
  m.initial_from = path;
  return m;
}

Result<ModelSpec> LoadModelSpec(const Config& cfg) {
  // The spec alone: train.init_from's file is not read for it.
  DNND_ASSIGN_OR_RETURN(ConfiguredModel m, LoadModelOnly(cfg));
  return std::move(m.spec);
}

namespace {

class WorkerRole : public Role {
 public:
  WorkerRole(std::unique_ptr<Trainer> trainer, data::Dataset train, data::Dataset test,
             bool has_test)
      : trainer_(std::move(trainer)),
        train_(std::move(train)),
        test_(std::move(test)),
        has_test_(has_test) {}

  Status Run() override {
    Log(LogLevel::kInfo, "worker", "training",
        {{"train_samples", train_.size()},
         {"test_samples", has_test_ ? test_.size() : int64_t{0}},
         {"parameters", trainer_->model().ParameterCount()},
         {"threads", GetThreads()}});
    Status s = Status::Ok();
    try {
      s = trainer_->Run(train_, has_test_ ? &test_ : nullptr, stop_);
    } catch (const std::runtime_error& e) {
      // A remote layer failed mid-forward/backward (layer_client.h).
      s = Status(StatusCode::kUnavailable, e.what());
    }
    if (!s.ok()) return s;
    const auto& h = trainer_->history();
    if (!h.empty() && h.back().evaluated) {
      std::fprintf(stderr, "final test accuracy %.2f%% (test loss %.4f)\n",
                   100.0 * h.back().eval.accuracy, h.back().eval.loss);
      Log(LogLevel::kInfo, "worker", "done",
          {{"test_accuracy", h.back().eval.accuracy}, {"test_loss", h.back().eval.loss}});
      LogStepTimeSplit();
    }
    return Status::Ok();
  }

  void Stop() override { stop_.store(true); }

  // Where step time went (all workers of this process), from /metrics' counters.
  static void LogStepTimeSplit() {
    auto phase = [](const char* p) { return StepPhaseSeconds(p).Value(); };
    const double compute = phase("compute"), communicate = phase("communicate"),
                 wait = phase("wait"), server = phase("server");
    const double total = compute + communicate + wait + server;
    if (total == compute) return;  // local training
    const double hidden = ExchangeHiddenSeconds().Value();
    const double exchange = communicate + wait + server + hidden;
    std::fprintf(stderr,
                 "step time: compute %.0f%%, communicate %.0f%%, wait %.0f%%, server %.0f%% (%.1f "
                 "s over all workers); %.0f%% of the exchange was hidden behind backward\n",
                 100 * compute / total, 100 * communicate / total, 100 * wait / total,
                 100 * server / total, total, exchange > 0 ? 100 * hidden / exchange : 0.0);
  }

 private:
  std::unique_ptr<Trainer> trainer_;
  data::Dataset train_, test_;
  bool has_test_;
  std::atomic<bool> stop_{false};
};

}  // namespace

Result<std::unique_ptr<Role>> MakeWorkerRole(const Config& cfg) {
  WorkerPlacement placement;
  placement.index = cfg.GetInt("worker.index");
  placement.count = cfg.GetInt("worker.count");
  placement.parameter_servers = cfg.GetStrings("worker.parameter_servers");
  if (placement.index >= placement.count)
    return InvalidArgument("worker.index " + std::to_string(placement.index) +
                           " is not below worker.count " + std::to_string(placement.count));
  if (placement.count > 1 && placement.parameter_servers.empty())
    // Legitimate for split -> train -> aggregate (each part trains alone and
    // the aggregator averages the models), a surprise otherwise.
    Log(LogLevel::kWarn, "worker",
        "worker.count is above 1 but worker.parameter_servers is empty: this worker trains "
        "alone on its part of the data (" +
            std::to_string(placement.index + 1) + " of " + std::to_string(placement.count) +
            "); list the servers to train together, or set worker.count = 1 to train on all of "
            "it",
        {{"index", placement.index}, {"count", placement.count}});
  return MakeWorker(cfg, placement, true);
}

Result<std::unique_ptr<Role>> MakeWorker(const Config& cfg, const WorkerPlacement& placement,
                                         bool show_progress, TrainHooks hooks) {
  DNND_ASSIGN_OR_RETURN(data::Dataset train, data::LoadTrainingSet(cfg));
  DNND_ASSIGN_OR_RETURN(std::optional<data::Dataset> test, data::LoadTestSet(cfg));
  if (placement.count > 1) {
    if (train.size() < placement.count)
      return InvalidArgument("the training set has " + std::to_string(train.size()) +
                             " samples for " + std::to_string(placement.count) + " workers");
    // The seed stays the job's: every worker starts from the same weights
    // (and its own part of the data is shuffled reproducibly).
    train = train.Part(placement.index, placement.count);
  }
  return MakeWorkerWithData(cfg, placement, show_progress, std::move(hooks), std::move(train),
                            std::move(test));
}

Result<std::unique_ptr<Role>> MakeWorkerWithData(const Config& cfg,
                                                 const WorkerPlacement& placement,
                                                 bool show_progress, TrainHooks hooks,
                                                 data::Dataset train,
                                                 std::optional<data::Dataset> test_set) {
  DNND_ASSIGN_OR_RETURN(ConfiguredModel model, LoadModel(cfg));
  TrainOptions o = TrainOptionsFromConfig(cfg);
  o.initial_state = std::move(model.initial_state);
  o.initial_from = std::move(model.initial_from);
  return MakeWorkerWithData(cfg, std::move(model.spec), std::move(o), placement, show_progress,
                            std::move(hooks), std::move(train), std::move(test_set));
}

TrainOptions TrainOptionsFromConfig(const Config& cfg) {
  TrainOptions o;
  o.epochs = cfg.GetInt("train.epochs");
  o.iterations = cfg.GetInt("train.iterations");
  o.batch_size = cfg.GetInt("train.batch_size");
  o.seed = static_cast<uint64_t>(cfg.GetInt("train.seed"));
  o.shuffle = cfg.GetBool("train.shuffle");
  o.lr_schedule = cfg.GetString("train.lr_schedule");
  o.lr_step_epochs = cfg.GetInt("train.lr_step_epochs");
  o.lr_gamma = static_cast<float>(cfg.GetFloat("train.lr_gamma"));
  o.normalize_mean.clear();
  for (double v : cfg.GetFloats("data.normalize_mean"))
    o.normalize_mean.push_back(static_cast<float>(v));
  o.normalize_std.clear();
  for (double v : cfg.GetFloats("data.normalize_std"))
    o.normalize_std.push_back(static_cast<float>(v));
  o.classes = cfg.GetStrings("data.classes");
  o.augment_crop_padding = cfg.GetInt("data.augment_crop_padding");
  o.augment_flip = cfg.GetBool("data.augment_flip");
  o.checkpoint_dir = cfg.GetString("train.checkpoint_dir");
  o.checkpoint_every_steps = cfg.GetInt("train.checkpoint_every_steps");
  o.max_steps = cfg.GetInt("train.max_steps");
  o.resume = cfg.GetBool("train.resume");
  o.freeze = cfg.GetStrings("train.freeze");
  o.eval_every_epochs = cfg.GetInt("train.eval_every_epochs");
  o.goal_accuracy = cfg.GetFloat("train.goal_accuracy");
  o.start_epoch = cfg.GetInt("train.start_epoch");
  o.start_step = cfg.GetInt("train.start_step");
  o.stop_epoch = cfg.GetInt("train.stop_epoch");
  o.progress = ParseProgressMode(cfg.GetString("train.progress"));
  return o;
}

Result<std::unique_ptr<Role>> MakeWorkerWithData(const Config& cfg, ModelSpec spec, TrainOptions o,
                                                 const WorkerPlacement& placement,
                                                 bool show_progress, TrainHooks hooks,
                                                 data::Dataset train,
                                                 std::optional<data::Dataset> test_set) {
  o.report = show_progress;
  o.hooks = std::move(hooks);
  const bool data_parallel = !placement.parameter_servers.empty();
  DNND_ASSIGN_OR_RETURN(std::vector<LayerPlacement> layers, ParsePlacements(cfg));
  if (data_parallel && !layers.empty())
    return InvalidArgument(
        "worker.parameter_servers and worker.placement are both set; a worker either trains "
        "data-parallel or places layers on layer servers");
  if (!layers.empty() && !o.freeze.empty())
    return InvalidArgument(
        "train.freeze with worker.placement: layer servers step every parameter they host "
        "(freezing is supported locally and with parameter servers)");
  if (!layers.empty()) {
    // Node names and cuts are checked against the model now, as config errors.
    DNND_ASSIGN_OR_RETURN(auto graph, BuildModel(spec, o.seed));
    DNND_RETURN_IF_ERROR(ResolvePlacements(layers, *graph));
    DNND_ASSIGN_OR_RETURN(auto rpc, rpc::RpcClientOptions::FromConfig(cfg, "worker"));
    o.exchange = std::make_shared<LayerExchange>(
        std::move(layers), cfg.GetInt("worker.micro_batches"), std::move(rpc),
        cfg.GetString("node.name") + "-" + std::to_string(::getpid()));
  }
  if (data_parallel) {
    DNND_ASSIGN_OR_RETURN(auto rpc, rpc::RpcClientOptions::FromConfig(cfg, "worker"));
    DNND_ASSIGN_OR_RETURN(wire::Codec codec,
                          wire::ParseCodec(cfg.GetString("worker.gradient_codec")));
    auto ps = std::make_shared<PsExchange>(
        placement.parameter_servers, placement.index, std::move(rpc),
        std::chrono::milliseconds(cfg.GetInt("worker.heartbeat_ms")), codec);
    ps->SetInitialState(o.initial_state);
    ps->SetOverlap(cfg.GetBool("worker.overlap"));
    if (!o.freeze.empty()) {  // the servers need the names the patterns match
      DNND_ASSIGN_OR_RETURN(auto graph, BuildModel(spec, o.seed));
      DNND_ASSIGN_OR_RETURN(std::set<std::string> frozen, FrozenParameters(*graph, o.freeze));
      ps->SetFrozen(std::move(frozen));
    }
    o.exchange = std::move(ps);
    // The servers hold the job's state: a restarted worker resumes from them,
    // and only worker 0 writes the final model.
    o.resume = false;
    if (placement.index != 0) {
      // Worker 0 reports, evaluates and writes the final model for the job.
      o.checkpoint_dir.clear();
      o.eval_every_epochs = 0;
      o.report = false;
    }
    o.checkpoint_every_steps = 0;
    o.max_steps = 0;
  }

  const bool has_test = test_set.has_value();
  data::Dataset test = has_test ? std::move(*test_set) : data::Dataset{};
  // Fail now, not deep inside training, when data and model disagree.
  if (train.sample_shape != spec.input)
    return InvalidArgument("the training data's samples are " + ShapeToString(train.sample_shape) +
                           " but model.input is " + ShapeToString(spec.input));
  if (has_test && test.sample_shape != train.sample_shape)
    return InvalidArgument("test samples are " + ShapeToString(test.sample_shape) +
                           " but training samples are " + ShapeToString(train.sample_shape));
  const std::vector<std::string> classes = o.classes;
  DNND_ASSIGN_OR_RETURN(auto trainer, Trainer::Create(std::move(spec), std::move(o)));
  if (trainer->model().NamedParameters().empty())
    return InvalidArgument("the model has no trainable parameters");
  auto out = trainer->model().OutputShape(train.sample_shape);
  const int64_t data_classes = std::max(train.num_classes, test.num_classes);
  if (out.ok() && !train.labels.empty() && out->size() == 1 && (*out)[0] < data_classes)
    return InvalidArgument("the model has " + std::to_string((*out)[0]) +
                           " outputs but the data has " + std::to_string(data_classes) +
                           " classes");
  // One name per model output (a class index is an output's index).
  if (!classes.empty()) {
    if (!out.ok() || out->size() != 1)
      return InvalidArgument("data.classes names classes, but the model's output is " +
                             (out.ok() ? ShapeToString(*out) : std::string("unknown")) +
                             ", not one score per class");
    DNND_RETURN_IF_ERROR(
        CheckClassNames(classes, (*out)[0], "data.classes", "the model's output size is"));
  }
  return std::unique_ptr<Role>(
      new WorkerRole(std::move(trainer), std::move(train), std::move(test), has_test));
}

}  // namespace dnnd
