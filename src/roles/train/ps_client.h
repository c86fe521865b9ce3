// The worker's side of data-parallel training: a StepExchange that sends each
// step's gradients (or, in kavg, every K steps' weights) to the parameter
// servers and loads the weights they answer with. Every server gets its
// pieces in parallel, as views of the gradient tensors (no copy before the
// socket); a background thread heartbeats so a sync step never waits on a
// dead worker.
//
// Identity: init joins each server as this worker's rank and gets a session
// (parameter_server.h) that every later push, pull, heartbeat and leave to
// that server carries. A server that does not know the session (it
// restarted) refuses with PermissionDenied, and the worker joins again, as
// after a lost exchange; a rank still held by a predecessor (this worker
// restarted) is retried until the predecessor times out, within the request
// timeout.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/periodic.h"
#include "core/thread_annotations.h"
#include "roles/ps/messages.h"
#include "roles/ps/protocol.h"
#include "roles/train/trainer.h"
#include "transport/rpc_client.h"

namespace dnnd {

class PsExchange : public StepExchange {
 public:
  // `gradient_codec` encodes pushed gradients (kavg's weights always go raw).
  PsExchange(std::vector<std::string> servers, int64_t worker, rpc::RpcClientOptions options,
             std::chrono::milliseconds heartbeat_every,
             wire::Codec gradient_codec = wire::Codec::kNone);
  ~PsExchange() override;

  // Before Begin: the job starts from these weights (every parameter and
  // buffer, by name) instead of the seed; the servers build the model from
  // them (TrainOptions::initial_state).
  void SetInitialState(std::shared_ptr<const nn::NamedTensors> state);
  // Before Begin: parameters the servers never step (TrainOptions::freeze).
  void SetFrozen(std::set<std::string> names) { frozen_ = std::move(names); }
  // Before Begin: whether pushes overlap backward (worker.overlap; on by
  // default). In sync and async mode each logical shard (server x chunk,
  // ps.chunks per server: the bucket size) is pushed as soon as backward has
  // finished every gradient it holds, the last layer's first, and its
  // weights are loaded as its answer arrives; Step then sends what is left
  // and waits. The servers see the same gradients either way, so a sync job
  // is bit-identical with and without. kavg pushes weights: never overlapped.
  void SetOverlap(bool on) { overlap_ = on; }

  Result<int64_t> Begin(nn::Graph& model, const ModelSpec& spec, uint64_t seed) override;
  Tensor::LeafDone BeforeBackward(int64_t step, float lr) override;
  Status Step(nn::Graph& model, optim::Optimizer& local, int64_t step, float lr) override;
  void End() override;

  const std::string& mode() const { return mode_; }

 private:
  // One exchange: a message per (server, chunk) -- logical shard `l` is
  // chunk l % chunks of server l / chunks -- sent as the caller decides,
  // answers taken in as they arrive (ps_client.cc).
  class Round;
  // Sends every shard's message, built by `make`, all in flight at once, and
  // waits for every answer; weights they carry go into the model as each
  // arrives.
  Status ExchangeAll(const std::function<wire::Message(int shard)>& make);
  // Step's push of logical shard `s`: gradients (kavg: weights), buffers as values.
  wire::Message Push(int s, int64_t step, float lr);
  // After a push round: a lost exchange resynchronises; the gradients are cleared.
  Status FinishStep(Status exchanged, nn::Graph& model, int64_t step);
  // Copies a push or pull reply's weights into the model after checking them
  // against the pieces of `shard` (names, dtype, shapes).
  Status LoadWeights(int shard, const ps::WeightsReply& reply);
  // Sends init (idempotent) to server `s`; its answer carries mode, chunks
  // and the step to resume from.
  Result<ps::InitReply> InitServer(size_t s);
  std::shared_ptr<const nn::NamedTensors> initial_;  // null: seeded
  std::string initial_digest_;
  std::set<std::string> frozen_;
  // Inits every server; checks they agree on mode and chunk count.
  Status InitAll(int64_t* start);
  Status PullAll(nn::Graph& model);
  // After a server restarted or dropped us: init again and pull.
  Status Resync(nn::Graph& model);
  void Heartbeat();  // to every server, every heartbeat_every
  // This worker and its session on server `s`, as requests name them.
  ps::Member MemberAt(size_t s) const EXCLUDES(sessions_mu_);

  const std::vector<std::string> addresses_;
  const int64_t worker_;
  const std::chrono::milliseconds heartbeat_every_;
  const wire::Codec gradient_codec_;
  std::vector<std::unique_ptr<rpc::RpcClient>> clients_;
  mutable Mutex sessions_mu_;  // a leaf; the heartbeat thread reads the sessions
  std::vector<std::string> sessions_ GUARDED_BY(sessions_mu_);  // per server, from its init
  ps::Partition partition_;                                     // servers x chunks logical shards
  nn::NamedTensors params_;        // the model's parameters and buffers, in model order
  std::set<std::string> buffers_;  // which of params_ are buffers (pushed as values)
  std::string spec_text_;
  uint64_t seed_ = 0;
  std::string mode_ = "sync";
  int64_t kavg_steps_ = 1;
  int chunks_ = 1;                 // per server, as the servers report
  std::vector<int64_t> versions_;  // last version seen per logical shard
  std::chrono::milliseconds timeout_;

  // Overlap: per shard, the trainable parameters it holds a piece of; per
  // parameter (by identity), the shards holding its pieces; this step's
  // round and, per shard, the gradients backward has still to finish.
  bool overlap_ = true;
  std::vector<int> trainable_per_shard_;
  std::unordered_map<const Tensor::Impl*, std::vector<int>> shards_of_;
  std::unique_ptr<Round> round_;
  std::vector<int> waiting_;

  std::atomic<bool> ended_{false};
  PeriodicTask heartbeat_;
};

}  // namespace dnnd
