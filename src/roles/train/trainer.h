// The training loop every training role shares: epochs of shuffled batches,
// forward/backward/step, learning-rate schedule, per-epoch evaluation,
// progress display, periodic and final checkpoints, and exact resume.
//
//   Trainer trainer(spec, spec_text, options);
//   Status s = trainer.Run(train_set, &test_set, stop_flag);
//   trainer.history();   // per-epoch loss, accuracy, throughput
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/progress.h"
#include "core/status.h"
#include "tensor/checkpoint.h"
#include "tensor/data/dataset.h"
#include "tensor/model_spec.h"
#include "tensor/nn.h"
#include "tensor/optim.h"

namespace dnnd {

class Counter;

// Where a worker's step time goes (/metrics' dnnd_worker_step_seconds_total,
// by phase: compute, communicate, wait, server), and the exchange time that
// ran while backward computed (dnnd_worker_exchange_hidden_seconds_total):
// one registration each for the trainer, the exchanges and the summary line.
Counter& StepPhaseSeconds(const char* phase);
Counter& ExchangeHiddenSeconds();

// Where a step's gradients go. Local training applies the optimizer itself;
// a data-parallel worker sends them to parameter servers and takes the new
// weights back (ps_client.h).
class StepExchange {
 public:
  virtual ~StepExchange() = default;
  // Before the first step (after any local resume): connect, make the
  // model's weights the job's, and return the step to start from (a
  // restarted worker rejoins mid-run), or -1 to keep the local one.
  virtual Result<int64_t> Begin(nn::Graph& model, const ModelSpec& spec, uint64_t seed) = 0;
  // Between forward and backward of step `step`: a function backward calls
  // for each parameter whose gradient is final (Tensor::backward's
  // leaf_done), so the exchange can send gradients while backward goes on;
  // called on the training thread. Empty (the default): Step sends them all.
  virtual Tensor::LeafDone BeforeBackward(int64_t step, float lr) { return nullptr; }
  // After backward of step `step` (0-based, `lr` from the schedule): leave
  // the next weights in `model` and its gradients cleared. `local` is the
  // worker's own optimizer (used between averages in kavg).
  virtual Status Step(nn::Graph& model, optim::Optimizer& local, int64_t step, float lr) = 0;
  // Before the trainer writes a checkpoint: make `model` hold the current
  // weights of every layer (layers kept elsewhere are copied back), and add
  // to `files` any state of its own that belongs to the same generation.
  virtual Status BeforeCheckpoint(nn::Graph& model, CheckpointFiles& files) { return Status::Ok(); }
  // After a local resume, before Begin: the files of the generation resumed.
  virtual void Resumed(const CheckpointFiles& files) {}
  // Training is over (finished or stopped): leave the job.
  virtual void End() = 0;
};

struct EpochRecord;

// Progress callbacks for whoever runs the trainer in-process (the controller
// records a job's progress and per-epoch history from them). Called on the
// training thread, so they must be quick; empty ones are skipped. Only the
// reporting worker of a data-parallel job gets them (MakeWorker).
struct TrainHooks {
  // After every step: steps done (counting any resumed ones) of total_steps.
  std::function<void(int64_t step, int64_t total_steps)> on_step;
  // After every epoch, with its record (evaluated when it was evaluated).
  std::function<void(const EpochRecord& record, int64_t step, int64_t total_steps)> on_epoch;
};

struct TrainOptions {
  int64_t epochs = 5;
  int64_t iterations = 0;  // > 0: that many full-batch steps instead of epochs
  int64_t batch_size = 128;
  uint64_t seed = 42;
  bool shuffle = true;
  std::string lr_schedule = "constant";  // constant | cosine | step
  int64_t lr_step_epochs = 1;
  float lr_gamma = 0.1f;
  // One value, or one per channel (data::LoaderOptions::mean / std).
  std::vector<float> normalize_mean = {0.0f}, normalize_std = {1.0f};
  // The class names (data.classes), one per model output; empty: unnamed.
  // Written into checkpoints with the input shape and the normalisation
  // (tensor/prediction_meta.h), so a model file predicts on raw inputs.
  std::vector<std::string> classes;
  // Augmentation of training batches (never of evaluation batches): see
  // data::LoaderOptions::crop_padding / flip.
  int64_t augment_crop_padding = 0;
  bool augment_flip = false;
  std::string checkpoint_dir;  // empty: no checkpoints
  int64_t checkpoint_every_steps = 0;
  int64_t max_steps = 0;  // > 0: stop (with a checkpoint) after this many steps in total
  // A segment of a longer run (an elastic job re-sharded between epochs):
  // train epochs [start_epoch, stop_epoch) of `epochs`, the job's step being
  // start_step when start_epoch began. Steps keep counting across segments
  // even though a segment's steps per epoch depend on its number of workers;
  // the learning-rate schedule still spans all `epochs`. The defaults are the
  // whole run.
  int64_t start_epoch = 0, start_step = 0;
  int64_t stop_epoch = 0;  // 0: epochs
  bool resume = true;
  // Non-null: the weights the model starts from instead of the seeded
  // initialisation (an ONNX model's initializers), every parameter and
  // buffer by name; a checkpoint resumed from still wins. Layer servers get
  // them from the worker; parameter servers from PsExchange::SetInitialState.
  std::shared_ptr<const nn::NamedTensors> initial_state;
  std::string initial_from;  // where they came from, for errors
  // Parameters kept fixed (fine-tuning a head): glob patterns (* and ?) over
  // NamedParameters names, each matching at least one; no optimizer steps
  // them (BatchNorm's running statistics still update, as in PyTorch).
  std::vector<std::string> freeze;
  int64_t eval_every_epochs = 1;
  // > 0: stop after the first evaluated epoch with at least this test
  // accuracy (KubeML's goal accuracy), as if training had finished.
  double goal_accuracy = 0;
  ProgressMode progress = ProgressMode::kAuto;
  // False: no progress, no per-epoch summary (data-parallel workers other
  // than worker 0, which reports for the job).
  bool report = true;
  // Null: local training. Otherwise steps go through it, and it may set the
  // start step (parameter servers do; set resume = false for them).
  std::shared_ptr<StepExchange> exchange;
  TrainHooks hooks;
};

struct EvalResult {
  double loss = 0, accuracy = 0;
  int64_t samples = 0;
};

struct EpochRecord {
  int64_t epoch = 0;  // 1-based
  double train_loss = 0;
  double seconds = 0, samples_per_s = 0;
  bool evaluated = false;
  EvalResult eval;
};

// The parameter names among `model`'s that `patterns` (* and ?) match;
// InvalidArgument naming a pattern that matches none.
Result<std::set<std::string>> FrozenParameters(const nn::Module& model,
                                               const std::vector<std::string>& patterns);

class Trainer {
 public:
  // Builds the model (seeded, or from options.initial_state) and its
  // optimiser over the parameters options.freeze leaves; fails on an invalid
  // spec, weights that do not match it, or a freeze pattern matching nothing.
  static Result<std::unique_ptr<Trainer>> Create(ModelSpec spec, TrainOptions options);

  // Trains until done or until `stop` becomes true (then checkpoints and
  // returns Cancelled). Resumes from options.checkpoint_dir when it holds a
  // checkpoint and options.resume is set.
  Status Run(const data::Dataset& train, const data::Dataset* test, const std::atomic<bool>& stop);

  // Mean loss and accuracy over `set` in evaluation mode (no graph recorded).
  // Accuracy is argmax for cross-entropy, rounding at 0.5 for MSE/BCE.
  EvalResult Evaluate(const data::Dataset& set);

  const std::vector<EpochRecord>& history() const { return history_; }
  nn::Graph& model() { return *model_; }
  optim::Optimizer& optimizer() { return *optimizer_; }

 private:
  Trainer(ModelSpec spec, TrainOptions options, std::shared_ptr<nn::Graph> model,
          std::unique_ptr<optim::Optimizer> optimizer);
  float LearningRate(int64_t epoch) const;  // 0-based epoch
  Status SaveCheckpoint(int64_t epoch, int64_t step, int64_t samples);
  // Whether train.checkpoint_every_steps asks for a checkpoint at `step`.
  bool CheckpointDue(int64_t step) const {
    return options_.checkpoint_every_steps > 0 && step % options_.checkpoint_every_steps == 0;
  }
  // Removes the temporary files and generations a killed save left in
  // options_.checkpoint_dir (SweepTempFiles), before anything reads or writes it.
  Status SweepCheckpointDir();

  ModelSpec spec_;
  TrainOptions options_;
  int64_t saved_epoch_ = -1, saved_step_ = -1;  // of the last checkpoint written
  std::shared_ptr<nn::Graph> model_;
  std::unique_ptr<optim::Optimizer> optimizer_;
  std::vector<EpochRecord> history_;
  int64_t train_samples_ = 0;  // the training set's size, recorded in checkpoints
};

}  // namespace dnnd
