// A parameter server: holds this server's shard of a model's parameters (see
// ps_protocol.h for the partition), runs the optimizer on it, and answers
// workers over the wire protocol.
//
// Modes (ps.mode):
//   sync   every live worker pushes its gradient for step v; the server averages
//          them in worker-id order (so runs are bit-reproducible), applies the
//          optimizer once, and answers every push with the weights of v+1.
//   async  each push is applied on arrival; a gradient computed on weights more
//          than ps.staleness versions old is rejected (the worker gets the
//          current weights and recomputes), and counted.
//   kavg   workers train ps.kavg_steps local steps, then push their weights;
//          the server averages them (KubeML's K-averaging).
//
// Weights on the way back (ps.weights_codec, sync only): with "bf16" a step's
// answer carries each parameter's change since the previous step rounded to
// bf16, half the bytes of the float32 weights (the pull is what fills a
// worker's link: it receives the weights of every server). The server keeps
// the weights the workers hold (the sum of what it sent, `published`) and
// sends the difference between its own weights and those, so rounding errors
// are carried into the next step instead of piling up: the workers' copy
// stays within one bf16 rounding of one step's change of the server's
// float32 weights, the same copy on every worker. Buffers (BatchNorm
// statistics), pulls, resynchronisations and the first step after a restart
// go as float32 values of the published weights. BytePS and DDP's bf16
// compression hooks compress the same direction; they round the weights'
// sum or average instead, without feedback.
//
// Chunks (ps.chunks): the server's partition is cut into chunks, each with its
// own barrier, optimizer and lock, and workers push one message per chunk. So
// while the optimizer runs on one chunk the next is still arriving and the
// previous one is already on its way back: receiving, updating and sending
// overlap instead of running one after the other (2 servers x 2 workers on 2
// cores, 3 epochs: 15.4-16.7k -> 19.5-20.2k samples/s per worker with 2
// chunks; 3 or 4 chunks were slower than 2). The arithmetic per element is the
// same for any chunk count, so results do not depend on it.
//
// Membership: a worker joins with init, naming its rank (worker.index, which
// orders the sync sums); the server admits ranks [0, ps.workers) only and
// answers with a session, a secret it drew for this join. Pushes, pulls that
// name a worker, heartbeats and leaves must carry the rank's session; any
// other is refused with PermissionDenied (counted in
// dnnd_ps_refused_total{reason}), so nobody can add members to a barrier by
// inventing worker ids. A rank is held by its session until that worker has
// been silent for ps.heartbeat_timeout_ms (or left): only then may another
// join take it (a restarted worker). A worker whose session the server does
// not know (the server restarted) joins again with init. A worker silent for
// ps.heartbeat_timeout_ms is dropped from the barrier, so a dead worker never
// hangs a sync step; a worker that comes back rejoins at the current version.
//
// Pushes carrying a non-finite value (NaN, Inf, in a gradient, weights or
// the lr) are refused with InvalidArgument before they touch the step's state
// (and counted), so one bad push cannot poison the model.
// Each chunk's pieces, optimizer state and version are checkpointed
// (safetensors, one atomic file per chunk) every ps.checkpoint_every_steps and
// on Stop(), and a restarted server resumes from them.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/periodic.h"
#include "core/status.h"
#include "core/thread_annotations.h"
#include "roles/ps/messages.h"
#include "roles/ps/protocol.h"
#include "tensor/model_spec.h"
#include "tensor/optim.h"
#include "tensor/safetensors.h"
#include "transport/rpc_server.h"

namespace dnnd {

class Config;

struct ParameterServerOptions {
  int index = 0;  // this server, in [0, servers)
  int servers = 1;
  std::string mode = "sync";  // sync | async | kavg
  int64_t workers = 1;  // ranks admitted; sync/kavg: workers a step waits for (until one drops out)
  int64_t staleness = 4;   // async: largest accepted version lag
  int64_t kavg_steps = 8;  // kavg: local steps between averages (told to workers)
  std::chrono::milliseconds heartbeat_timeout{5000};
  std::string checkpoint_dir;  // empty: no checkpoints
  bool resume = true;          // start from the checkpoint in checkpoint_dir, if any
  int64_t checkpoint_every_steps = 100;
  int chunks = 2;  // independently applied pieces of this server's partition
  // sync: "bf16" answers each step with the parameters' change as bf16
  // (half the bytes), with error feedback; "none": the weights as float32.
  std::string weights_codec = "none";

  static ParameterServerOptions FromConfig(const Config& config);
};

class ParameterServer {
 public:
  ParameterServer(ParameterServerOptions options, rpc::RpcServerOptions rpc);
  ~ParameterServer();  // Stop()

  // Resumes from the checkpoint if there is one, then starts serving.
  Status Start();
  // Answers waiting pushes with Unavailable, checkpoints, stops serving.
  void Stop();
  uint16_t port() const { return server_.port(); }
  std::string address() const { return server_.address(); }
  // Ready once the model is initialised (by a worker's init or a checkpoint).
  std::pair<bool, std::string> Readiness() const;
  int64_t version() const;

 private:
  using Clock = std::chrono::steady_clock;
  class Chunk;    // one independently barriered and optimised range (chunk.h)
  class Members;  // rank -> the session issued at its join (members.h)

  Result<wire::Message> HandleInit(const wire::Message& request);
  void HandlePush(wire::Message request, rpc::Responder responder);
  Result<wire::Message> HandlePull(const wire::Message& request);
  Result<wire::Message> HandleHeartbeat(const wire::Message& request);
  Result<wire::Message> HandleStats();
  // Ok if `member`'s session is the one this server issued to its rank (and
  // marks it seen); else PermissionDenied, counted.
  Status CheckMember(const ps::Member& member, const char* what, bool leaving = false);
  // The chunk a request names.
  Result<Chunk*> ChunkFor(int64_t chunk);

  // Builds the model once and hands every chunk its pieces.
  // Builds the model from the spec and seed, or, with `initial`, from those
  // weights (their StateDigest must be `initial_digest`), and partitions it.
  // `frozen`: parameters no optimizer steps.
  Status InitLocked(const std::string& spec_text, uint64_t seed, const std::string& initial_digest,
                    const std::vector<wire::WireTensor>* initial,
                    const std::vector<std::string>& frozen) REQUIRES(init_mu_);
  std::string CheckpointPath(int chunk) const;
  // The chunk's previous checkpoint (the fallback of a file that does not load).
  static std::string PreviousPath(const std::string& checkpoint_path);
  // A chunk's checkpoint file, or its previous one (with a warning) when the
  // newest does not load; nullopt when it has none.
  Result<std::optional<SafetensorsFile>> LoadChunkCheckpoint(int chunk) const;
  Status RestoreFromCheckpoint();

  const ParameterServerOptions options_;
  rpc::RpcServer server_;
  std::vector<std::unique_ptr<Chunk>> chunks_;
  std::unique_ptr<Members> members_;

  // Locks, in the order they may be taken (docs: core/thread_annotations.h):
  //   init_mu_ -> Chunk::mu_ (one chunk at a time) -> the connection's write
  //   lock (a chunk answers pushes while holding its lock).
  //   Members::mu_ is a leaf: nothing else is taken while it is held.
  // Each Chunk's members are GUARDED_BY its mu_ (chunk.h).
  Mutex init_mu_;                         // guards initialisation and the spec below
  std::atomic<bool> initialized_{false};  // set under init_mu_, read without it
  std::string spec_text_ GUARDED_BY(init_mu_);
  uint64_t seed_ GUARDED_BY(init_mu_) = 0;
  std::string initial_digest_ GUARDED_BY(init_mu_);  // "": seeded
  std::vector<std::string> frozen_ GUARDED_BY(init_mu_);

  std::atomic<bool> stopping_{false};
  PeriodicTask monitor_;
};

Result<std::unique_ptr<class Role>> MakeParameterServerRole(const Config& config);

}  // namespace dnnd
