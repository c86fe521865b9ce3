// The worker's side of a model split across layer servers.
//
// worker.placement maps layer ranges to servers; each range becomes a
// session on its server (layer_protocol.h). Consecutive remote ranges form
// one RemotePipeline, installed into the model with Graph::Place, so the
// model -- and the training loop, evaluation and inference -- does not know
// which of its layers are remote. A pipeline cuts each batch into
// micro-batches and keeps all of them in flight (GPipe): while server B runs
// micro-batch 0, server A already runs micro-batch 1; backward flows the
// same way in reverse, and the servers accumulate parameter gradients over
// the micro-batches, so one step sees the whole batch's gradient.
//
// LayerExchange is the StepExchange of such a worker: Begin opens the
// sessions and loads the worker's weights (and, when resuming, the remote
// optimizer state) into them; Step steps the local optimizer and every
// remote one (see Step for how the order is kept without round trips); BeforeCheckpoint copies the
// servers' weights and buffers (BatchNorm's running statistics: the servers
// run those nodes) into the model and their optimizer state into the
// checkpoint directory.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "roles/train/trainer.h"
#include "transport/rpc_client.h"

namespace dnnd {

class Config;

// layers = "0-2": nodes 0, 1, 2 on `server`; or nodes = "layer1-layer2":
// from the first node named "layer1" or "layer1.<...>" to the last named
// "layer2" or "layer2.<...>" (a node's name or a block's prefix; either end
// may be a single node, and nodes = "layer1" alone is that block).
struct LayerPlacement {
  size_t first = 0, last = 0;  // [first, last), node indices
  std::string nodes;           // the nodes = text, until ResolvePlacements
  std::string server;          // host:port
};

// worker.placement from config: each entry's syntax (layers or nodes, not
// both). Index ranges are checked to be disjoint here; ResolvePlacements
// checks everything against the model.
Result<std::vector<LayerPlacement>> ParsePlacements(const Config& config);
// Resolves node names in `model`, sorts, and checks that ranges are in the
// model, disjoint, and start and end at cuts (nn::Graph::IsCut), naming the
// node and the connection (a residual block's) that crosses otherwise.
Status ResolvePlacements(std::vector<LayerPlacement>& placements, const nn::Graph& model);

class RemoteStage;

class LayerExchange : public StepExchange {
 public:
  // `session_prefix` names this worker's sessions (unique per worker). The
  // remote optimizer state is saved in the worker's checkpoint generations
  // (layers-<first>-<last>.optimizer.safetensors, BeforeCheckpoint) and
  // restored from the generation resumed (Resumed).
  LayerExchange(std::vector<LayerPlacement> placements, int64_t micro_batches,
                rpc::RpcClientOptions options, std::string session_prefix);
  ~LayerExchange() override;

  Result<int64_t> Begin(nn::Graph& model, const ModelSpec& spec, uint64_t seed) override;
  Status Step(nn::Graph& model, optim::Optimizer& local, int64_t step, float lr) override;
  Status BeforeCheckpoint(nn::Graph& model, CheckpointFiles& files) override;
  void Resumed(const CheckpointFiles& files) override { resumed_ = files; }
  void End() override;

 private:
  static std::string OptimizerStateFile(const RemoteStage& stage);

  const std::vector<LayerPlacement> placements_;
  const int64_t micro_batches_;
  const rpc::RpcClientOptions options_;
  const std::string session_prefix_;
  CheckpointFiles resumed_;  // the remote optimizer state of a local resume, for Begin
  std::map<std::string, std::shared_ptr<rpc::RpcClient>> clients_;  // one per server
  std::vector<std::shared_ptr<RemoteStage>> stages_;                // in layer order
  std::vector<std::shared_ptr<RemoteStage>> heads_;                 // each pipeline's first stage
  std::shared_ptr<std::pair<std::mutex, Status>> step_error_;       // of steps sent without waiting
  bool ended_ = false;
};

}  // namespace dnnd
