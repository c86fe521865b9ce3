// ParameterServer::Chunk (parameter_server.h): one independently barriered
// and optimised range of this server's parameters, with its checkpoint.
// Internal to the parameter server (its .cc files include it).
//
// Threading: every public method is thread-safe; the chunk's state is
// GUARDED_BY its own mu_, held while pushes are answered (see the lock order
// in parameter_server.h). Errors: a refused push is answered through its
// Responder (InvalidArgument for non-finite values); checkpoint and restore
// return IoError / Corruption naming the file.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/status.h"
#include "core/thread_annotations.h"
#include "roles/ps/messages.h"
#include "roles/ps/parameter_server.h"
#include "tensor/model_spec.h"
#include "tensor/optim.h"
#include "tensor/safetensors.h"
#include "transport/rpc_server.h"

namespace dnnd {

// ---------------------------------------------------------------------------
// Chunk: the state machine of one range of parameters. Membership is kept per
// chunk (every chunk hears every heartbeat), so a chunk decides its barrier
// under its own lock alone; only chunk 0 logs membership changes and sets the
// server-wide gauges, so the log reads the same for any chunk count.
// ---------------------------------------------------------------------------

class ParameterServer::Chunk {
 public:
  Chunk(const ParameterServerOptions& options, int chunk, std::string checkpoint_path)
      : options_(options),
        chunk_(chunk),
        loud_(chunk == 0),
        checkpoint_path_(std::move(checkpoint_path)) {}

  // Takes this chunk's pieces from the freshly built model's state `all`
  // (parameters and buffers; `buffers` names the buffers, which the workers
  // push as values and the chunk averages instead of stepping).
  // `initial_digest` names the job's given initial weights ("" = seeded),
  // kept in the chunk's checkpoints; `frozen` parameters are never stepped
  // (their pushed gradients are averaged and dropped).
  Status Init(const std::vector<ps::ShardPiece>& pieces, const nn::NamedTensors& all,
              const std::set<std::string>& buffers, const ModelSpec& spec,
              const std::string& spec_text, uint64_t seed, const std::string& initial_digest,
              const std::set<std::string>& frozen);
  void Push(const ps::PushRequest& push, rpc::Responder responder);
  wire::Message Pull(std::optional<int64_t> worker, int64_t if_newer_than);
  void Heartbeat(int64_t worker, bool leaving);
  // Drops workers whose heartbeats stopped; goes on short-handed if the job's
  // workers never all came.
  void Tick(Clock::time_point now);
  // Answers waiting pushes with `why`.
  void FailPending(const Status& why);
  Status Checkpoint();
  // Restores pieces, optimizer state and version from `file` (already
  // checked to belong to this job).
  Status Restore(const SafetensorsFile& file);

  int64_t version() const;
  // The step `worker` last completed (what a restarted worker resumes from).
  int64_t WorkerStep(int64_t worker) const;
  std::pair<int64_t, int64_t> LiveAndDropped() const;

 private:
  struct Worker {
    Clock::time_point last_seen;
    bool live = false;
    int64_t step = 0;  // the last step this worker completed
  };
  struct PendingPush {
    std::vector<Tensor> tensors;  // gradients (sync) or weights (kavg), one per piece
    rpc::Responder responder;
    Clock::time_point arrived = Clock::now();
  };

  void TouchLocked(int64_t worker, bool live) REQUIRES(mu_);
  int64_t LiveLocked() const REQUIRES(mu_);
  void MaybeCompleteStepLocked() REQUIRES(mu_);
  void ApplyLocked(const std::vector<std::vector<Tensor>*>& contributions, float lr) REQUIRES(mu_);
  // The published weights as float32 values (pulls, resynchronisations).
  ps::WeightsReply WeightsLocked(bool applied) const REQUIRES(mu_);
  // A completed sync step's answer: the weights, or with ps.weights_codec =
  // bf16 their change since the last step (and buffers as values), which
  // it adds to published_.
  ps::WeightsReply StepAnswerLocked() REQUIRES(mu_);
  Status CheckpointLocked() REQUIRES(mu_);

  const ParameterServerOptions& options_;
  const int chunk_;
  const bool loud_;
  const std::string checkpoint_path_;  // empty: no checkpoints

  // Guards all the chunk's state below; taken after ParameterServer::init_mu_
  // (Init), never together with another chunk's or Members::mu_, and held
  // while answering pushes (the connection's write lock comes after it).
  mutable Mutex mu_;
  std::string spec_text_ GUARDED_BY(mu_);
  uint64_t seed_ GUARDED_BY(mu_) = 0;
  std::string initial_digest_ GUARDED_BY(mu_);  // the job's given weights; "": seeded
  std::string frozen_text_ GUARDED_BY(mu_);     // frozen names, one per line
  std::vector<ps::ShardPiece> pieces_ GUARDED_BY(mu_);
  nn::NamedTensors params_ GUARDED_BY(mu_);   // one 1-D tensor per piece, named by key
  std::vector<bool> buffer_ GUARDED_BY(mu_);  // per piece: a buffer (BatchNorm statistics)
  std::unique_ptr<optim::Optimizer> optimizer_ GUARDED_BY(mu_);
  // ps.weights_codec = bf16: per piece, the weights the workers hold (what
  // every answer sent adds up to); empty otherwise. full_next_: the next
  // step answers with values, not changes (after a restore, when workers may
  // hold the published weights of before the crash).
  std::vector<Tensor> published_ GUARDED_BY(mu_);
  bool full_next_ GUARDED_BY(mu_) = false;
  int64_t version_ GUARDED_BY(mu_) = 0;
  float step_lr_ GUARDED_BY(mu_) = 0;
  std::map<int64_t, Worker> workers_ GUARDED_BY(mu_);
  int64_t dropped_ GUARDED_BY(mu_) = 0;  // workers that left or timed out
  // sync/kavg pushes for version_
  std::map<int64_t, PendingPush> pending_ GUARDED_BY(mu_);
  // when the first of pending_ arrived
  Clock::time_point waiting_since_ GUARDED_BY(mu_){};
  // going on without workers that never came
  bool short_handed_ GUARDED_BY(mu_) = false;
  int64_t last_checkpoint_version_ GUARDED_BY(mu_) = -1;
};

}  // namespace dnnd
