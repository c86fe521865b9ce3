#include "roles/train/trainer.h"

#include <fnmatch.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "core/files.h"
#include "core/log.h"
#include "core/metrics.h"
#include "tensor/checkpoint.h"
#include "tensor/ops.h"
#include "tensor/prediction_meta.h"

namespace dnnd {
namespace {

constexpr int64_t kEvalBatch = 1000;

// Counts correct predictions in a batch: argmax for classification, rounding
// at 0.5 for single-output regression/BCE (the XOR table).
int64_t CountCorrect(nn::LossKind loss, const Tensor& out, const nn::Target& target) {
  const int64_t n = out.size(0), k = out.numel() / std::max<int64_t>(1, n);
  const float* o = out.data();
  int64_t correct = 0;
  if (loss == nn::LossKind::kCrossEntropy) {
    for (int64_t i = 0; i < n; ++i) {
      int64_t best = 0;
      for (int64_t c = 1; c < k; ++c)
        if (o[i * k + c] > o[i * k + best]) best = c;
      correct += best == target.labels[i];
    }
  } else {
    const float* t = target.values.data();
    for (int64_t i = 0; i < n; ++i) {
      bool all = true;
      for (int64_t c = 0; c < k; ++c) all &= (o[i * k + c] >= 0.5f) == (t[i * k + c] >= 0.5f);
      correct += all;
    }
  }
  return correct;
}

}  // namespace

Result<std::set<std::string>> FrozenParameters(const nn::Module& model,
                                               const std::vector<std::string>& patterns) {
  std::set<std::string> frozen;
  const nn::NamedTensors params = model.NamedParameters();
  for (const std::string& pattern : patterns) {
    bool any = false;
    for (const auto& [name, p] : params)
      if (::fnmatch(pattern.c_str(), name.c_str(), 0) == 0) {
        frozen.insert(name);
        any = true;
      }
    if (!any) {
      std::string names;
      for (size_t i = 0; i < params.size() && i < 8; ++i)
        names += (i ? ", " : "") + params[i].first;
      return InvalidArgument("train.freeze: '" + pattern + "' matches no parameter (they are " +
                             names + (params.size() > 8 ? ", ..." : "") + ")");
    }
  }
  return frozen;
}

Result<std::unique_ptr<Trainer>> Trainer::Create(ModelSpec spec, TrainOptions options) {
  if (options.batch_size < 1) return InvalidArgument("train.batch_size must be >= 1");
  DNND_ASSIGN_OR_RETURN(auto model, BuildModel(spec, options.seed));
  if (options.initial_state) {
    Status s = LoadParameters(*model, *options.initial_state);
    if (!s.ok()) return s.WithContext("the initial weights from " + options.initial_from);
  }
  DNND_ASSIGN_OR_RETURN(std::set<std::string> frozen, FrozenParameters(*model, options.freeze));
  nn::NamedTensors trainable;
  for (const auto& [name, p] : model->NamedParameters())
    if (!frozen.count(name)) trainable.emplace_back(name, p);
  if (trainable.empty()) return InvalidArgument("train.freeze leaves no parameter to train");
  DNND_ASSIGN_OR_RETURN(auto optimizer, optim::MakeOptimizer(spec.optimizer, trainable));
  return std::unique_ptr<Trainer>(
      new Trainer(std::move(spec), std::move(options), std::move(model), std::move(optimizer)));
}

Trainer::Trainer(ModelSpec spec, TrainOptions options, std::shared_ptr<nn::Graph> model,
                 std::unique_ptr<optim::Optimizer> optimizer)
    : spec_(std::move(spec)),
      options_(std::move(options)),
      model_(std::move(model)),
      optimizer_(std::move(optimizer)) {}

float Trainer::LearningRate(int64_t epoch) const {
  const float base = spec_.optimizer.lr;
  if (options_.lr_schedule == "cosine" && options_.epochs > 0)
    return 0.5f * base * (1.0f + std::cos(static_cast<float>(M_PI) * epoch / options_.epochs));
  if (options_.lr_schedule == "step")
    return base * std::pow(options_.lr_gamma, static_cast<float>(epoch / options_.lr_step_epochs));
  return base;
}

Status Trainer::SaveCheckpoint(int64_t epoch, int64_t step, int64_t samples) {
  if (options_.checkpoint_dir.empty()) return Status::Ok();
  // The final save after a periodic one at the same step would only push the
  // previous generation (the fallback) out.
  if (epoch == saved_epoch_ && step == saved_step_) return Status::Ok();
  TrainingState state{.epoch = epoch,
                      .step = step,
                      .samples = samples,
                      .train_samples = train_samples_,
                      .extra = {},
                      .files = {},
                      .loaded_from = {}};
  AddPredictionMeta({.input = spec_.input,
                     .channel_order = "chw",
                     .normalize_mean = options_.normalize_mean,
                     .normalize_std = options_.normalize_std,
                     .has_normalization = true,
                     .classes = options_.classes},
                    state.extra);
  if (options_.exchange)
    DNND_RETURN_IF_ERROR(options_.exchange->BeforeCheckpoint(*model_, state.files));
  DNND_RETURN_IF_ERROR(dnnd::SaveCheckpoint(options_.checkpoint_dir, *model_, optimizer_.get(),
                                            state, ModelSpecToToml(spec_)));
  saved_epoch_ = epoch;
  saved_step_ = step;
  return Status::Ok();
}

Status Trainer::SweepCheckpointDir() {
  DNND_ASSIGN_OR_RETURN(std::vector<std::string> removed, SweepTempFiles(options_.checkpoint_dir));
  for (const auto& path : removed)
    Log(LogLevel::kWarn, "trainer", "removed what an interrupted checkpoint left behind",
        {{"path", path}});
  return Status::Ok();
}

EvalResult Trainer::Evaluate(const data::Dataset& set) {
  NoGradGuard no_grad;
  model_->Eval();
  EvalResult r;
  data::DataLoader loader(set, {.batch_size = kEvalBatch,
                                .shuffle = false,
                                .seed = 0,
                                .mean = options_.normalize_mean,
                                .std = options_.normalize_std});
  double loss_sum = 0;
  int64_t correct = 0;
  for (int64_t b = 0; b < loader.num_batches(); ++b) {
    data::Batch batch = loader.GetBatch(0, b);
    Tensor out = model_->Forward(batch.x);
    loss_sum += nn::ComputeLoss(spec_.loss, out, batch.target).item() * batch.size;
    correct += CountCorrect(spec_.loss, out, batch.target);
    r.samples += batch.size;
  }
  model_->Train();
  if (r.samples > 0) {
    r.loss = loss_sum / r.samples;
    r.accuracy = static_cast<double>(correct) / r.samples;
  }
  return r;
}

Counter& StepPhaseSeconds(const char* phase) {
  return DefaultMetrics().Counter(
      "dnnd_worker_step_seconds_total",
      "worker step time by phase: compute (forward/backward), communicate, wait (for other "
      "workers), server (averaging and optimizer)",
      {{"phase", phase}});
}

Counter& ExchangeHiddenSeconds() {
  return DefaultMetrics().Counter(
      "dnnd_worker_exchange_hidden_seconds_total",
      "exchange time (pushes, the servers' step, answers) that ran while backward computed");
}

namespace {
// What /metrics shows of a training run.
struct TrainMetrics {
  Counter& steps = DefaultMetrics().Counter("dnnd_train_steps_total", "training steps completed");
  Counter& samples =
      DefaultMetrics().Counter("dnnd_train_samples_total", "training samples processed");
  Counter& compute = StepPhaseSeconds("compute");
  Gauge& loss = DefaultMetrics().Gauge("dnnd_train_loss", "loss of the last training step");
  Gauge& epoch = DefaultMetrics().Gauge("dnnd_train_epoch", "epochs completed");
  Gauge& test_accuracy = DefaultMetrics().Gauge("dnnd_test_accuracy",
                                                "accuracy on the test set at the last evaluation");
  Gauge& test_loss =
      DefaultMetrics().Gauge("dnnd_test_loss", "loss on the test set at the last evaluation");
};
}  // namespace

Status Trainer::Run(const data::Dataset& train, const data::Dataset* test,
                    const std::atomic<bool>& stop) {
  static TrainMetrics& metrics = *new TrainMetrics;
  if (train.size() == 0) return InvalidArgument("the training set is empty");
  DNND_RETURN_IF_ERROR(
      data::CheckLoaderOptions(train.sample_shape, {.mean = options_.normalize_mean,
                                                    .std = options_.normalize_std,
                                                    .crop_padding = options_.augment_crop_padding,
                                                    .flip = options_.augment_flip}));
  if (test)
    DNND_RETURN_IF_ERROR(
        data::CheckLoaderOptions(test->sample_shape,
                                 {.mean = options_.normalize_mean, .std = options_.normalize_std})
            .WithContext("the test set"));
  train_samples_ = train.size();
  // Full-batch iterations (DockerNN's XOR loop) are epochs of one batch.
  const bool by_iterations = options_.iterations > 0;
  const int64_t batch = by_iterations ? train.size() : options_.batch_size;
  const int64_t epochs = by_iterations ? options_.iterations : options_.epochs;
  data::DataLoader loader(train, {.batch_size = batch,
                                  .shuffle = options_.shuffle && !by_iterations,
                                  .seed = options_.seed,
                                  .mean = options_.normalize_mean,
                                  .std = options_.normalize_std,
                                  .crop_padding = options_.augment_crop_padding,
                                  .flip = options_.augment_flip});
  const int64_t steps_per_epoch = loader.num_batches();
  // A segment (TrainOptions::start_epoch) counts its steps from start_step.
  const int64_t first_epoch = by_iterations ? 0 : options_.start_epoch;
  const int64_t base_step = by_iterations ? 0 : options_.start_step;
  const int64_t end_epoch =
      !by_iterations && options_.stop_epoch > 0 ? std::min(options_.stop_epoch, epochs) : epochs;
  if (first_epoch < 0 || base_step < 0 || first_epoch >= end_epoch)
    return InvalidArgument("train.start_epoch " + std::to_string(first_epoch) +
                           " is not before the segment's end (epoch " + std::to_string(end_epoch) +
                           ")");
  const int64_t total_steps = base_step + (epochs - first_epoch) * steps_per_epoch;
  // The step at which `epoch` (>= first_epoch) begins.
  auto epoch_start = [&](int64_t epoch) {
    return base_step + (epoch - first_epoch) * steps_per_epoch;
  };

  int64_t step = 0, samples = 0;
  StepExchange* exchange = options_.exchange.get();
  struct EndExchange {  // leave the job however Run returns
    StepExchange* e;
    ~EndExchange() {
      if (e) e->End();
    }
  } end_exchange{exchange};
  if (!options_.checkpoint_dir.empty()) DNND_RETURN_IF_ERROR(SweepCheckpointDir());
  if (options_.resume && !options_.checkpoint_dir.empty() &&
      HasCheckpoint(options_.checkpoint_dir)) {
    auto state = LoadCheckpoint(options_.checkpoint_dir, *model_, optimizer_.get());
    if (!state) return state.status().WithContext("resuming from " + options_.checkpoint_dir);
    step = state->step;
    samples = state->samples;
    if (exchange) exchange->Resumed(state->files);
    std::fprintf(stderr, "resumed from %s at step %lld\n", state->loaded_from.c_str(),
                 static_cast<long long>(step));
  }
  if (exchange) {
    DNND_ASSIGN_OR_RETURN(const int64_t start, exchange->Begin(*model_, spec_, options_.seed));
    if (start >= 0) {
      step = start;
      samples = step * batch;
    }
  }
  // Servers that know nothing of this worker (async, kavg) answer step 0;
  // the segment still begins where it begins.
  if (step < base_step) {
    step = base_step;
    samples = step * batch;
  }

  model_->Train();
  const int64_t report_every = by_iterations ? std::max<int64_t>(1, epochs / 10) : 1;
  auto run_start = std::chrono::steady_clock::now();
  double window_loss = 0;
  int64_t window_steps = 0;
  for (int64_t epoch = first_epoch + (step - base_step) / steps_per_epoch; epoch < end_epoch;
       ++epoch) {
    optimizer_->set_lr(LearningRate(by_iterations ? 0 : epoch));
    const int64_t first = step - epoch_start(epoch);  // > 0 only when resuming mid-epoch
    char label[64];
    std::snprintf(label, sizeof label, "epoch %lld/%lld", static_cast<long long>(epoch + 1),
                  static_cast<long long>(epochs));
    std::unique_ptr<ProgressBar> bar;
    if (!by_iterations && options_.report)
      bar = std::make_unique<ProgressBar>(label, steps_per_epoch, options_.progress);
    auto t0 = std::chrono::steady_clock::now();
    double loss_sum = 0;
    int64_t epoch_samples = 0;
    for (int64_t b = first; b < steps_per_epoch; ++b) {
      if (stop.load()) {
        DNND_RETURN_IF_ERROR(SaveCheckpoint(epoch, step, samples));
        return Status(StatusCode::kCancelled, "stopped at step " + std::to_string(step));
      }
      const auto compute_start = std::chrono::steady_clock::now();
      data::Batch batch = loader.GetBatch(epoch, b);
      Tensor loss = nn::ComputeLoss(spec_.loss, model_->Forward(batch.x), batch.target,
                                    spec_.label_smoothing);
      if (Tensor::LeafDone done =
              exchange ? exchange->BeforeBackward(step, optimizer_->lr()) : nullptr)
        loss.backward(Tensor::Full(loss.shape(), 1.0f), done);
      else
        loss.backward();
      metrics.compute.Inc(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - compute_start).count());
      if (exchange) {
        DNND_RETURN_IF_ERROR(exchange->Step(*model_, *optimizer_, step, optimizer_->lr()));
      } else {
        optimizer_->Step();
        optimizer_->ZeroGrad();
      }
      const float l = loss.item();
      if (!std::isfinite(l))
        return Internal("loss became " + std::to_string(l) + " at step " + std::to_string(step) +
                        " (lower the learning rate?)");
      loss_sum += l;
      epoch_samples += batch.size;
      samples += batch.size;
      ++step;
      metrics.steps.Inc();
      metrics.samples.Inc(static_cast<double>(batch.size));
      metrics.loss.Set(l);
      if (bar) bar->Update(b - first + 1, loss_sum / (b - first + 1), epoch_samples);
      if (options_.hooks.on_step) options_.hooks.on_step(step, total_steps);
      // A periodic checkpoint due at an epoch's last step waits until the
      // epoch is reported (below): saving calls the servers, and a stop that
      // cuts that call short must not leave an epoch the servers finished
      // unreported, for the resumed run starts after it.
      if (CheckpointDue(step) && b + 1 < steps_per_epoch)
        DNND_RETURN_IF_ERROR(SaveCheckpoint(epoch, step, samples));
      if (options_.max_steps > 0 && step >= options_.max_steps) {
        if (bar) bar->Finish("step budget of " + std::to_string(options_.max_steps) + " reached");
        return SaveCheckpoint(epoch, step, samples);
      }
    }
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EpochRecord rec{.epoch = epoch + 1,
                    .train_loss = loss_sum / std::max<int64_t>(1, steps_per_epoch - first),
                    .seconds = secs,
                    .samples_per_s = secs > 0 ? epoch_samples / secs : 0};
    const bool last = epoch + 1 == epochs;
    if (by_iterations) {
      window_loss += rec.train_loss;
      ++window_steps;
      if ((epoch + 1) % report_every != 0 && !last) {
        if (CheckpointDue(step)) DNND_RETURN_IF_ERROR(SaveCheckpoint(epoch, step, samples));
        continue;
      }
      double total =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
      if (options_.report)
        std::fprintf(stderr, "iteration %lld/%lld loss %.6f %.0f iterations/s\n",
                     static_cast<long long>(epoch + 1), static_cast<long long>(epochs),
                     window_loss / window_steps, (epoch + 1) / std::max(1e-9, total));
      window_loss = 0;
      window_steps = 0;
    }
    if (test && options_.eval_every_epochs > 0 &&
        ((epoch + 1) % options_.eval_every_epochs == 0 || last)) {
      rec.eval = Evaluate(*test);
      rec.evaluated = true;
      metrics.test_accuracy.Set(rec.eval.accuracy);
      metrics.test_loss.Set(rec.eval.loss);
    }
    metrics.epoch.Set(static_cast<double>(epoch + 1));
    history_.push_back(rec);
    if (options_.hooks.on_epoch) options_.hooks.on_epoch(rec, step, total_steps);
    if (bar) {
      char summary[256];
      std::snprintf(summary, sizeof summary, "loss %.4f  %s samples/s  %.1fs", rec.train_loss,
                    HumanCount(rec.samples_per_s).c_str(), secs);
      std::string s = summary;
      if (rec.evaluated) {
        char ev[128];
        std::snprintf(ev, sizeof ev, "  test loss %.4f  test accuracy %.2f%%", rec.eval.loss,
                      100.0 * rec.eval.accuracy);
        s += ev;
      }
      bar->Finish(s);
    }
    if (CheckpointDue(step)) DNND_RETURN_IF_ERROR(SaveCheckpoint(epoch, step, samples));
    if (options_.goal_accuracy > 0 && rec.evaluated &&
        rec.eval.accuracy >= options_.goal_accuracy) {
      Log(LogLevel::kInfo, "trainer", "goal accuracy reached; stopping early",
          {{"epoch", epoch + 1},
           {"test_accuracy", rec.eval.accuracy},
           {"goal", options_.goal_accuracy}});
      return SaveCheckpoint(epoch + 1, step, samples);
    }
  }
  return SaveCheckpoint(end_epoch, step, samples);
}

}  // namespace dnnd
