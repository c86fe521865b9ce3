#include "roles/train/layer_client.h"

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <tuple>
#include <utility>

#include "core/config.h"
#include "core/log.h"
#include "roles/layers/messages.h"
#include "roles/layers/protocol.h"
#include "roles/layers/ranges.h"
#include "tensor/ops.h"
#include "tensor/safetensors.h"

namespace dnnd {
namespace {

// Rows [begin, end) of a contiguous tensor, sharing its memory.
Tensor Rows(const Tensor& t, int64_t begin, int64_t end) {
  const int64_t row = t.numel() / t.size(0);
  const int64_t base = t.data() - static_cast<const float*>(t.storage()->data());
  Shape shape = t.shape();
  shape[0] = end - begin;
  return Tensor::FromStorage(t.storage(), base + begin * row, shape);
}

Tensor ConcatRows(const std::vector<Tensor>& parts) {
  if (parts.size() == 1) return parts[0];
  Shape shape = parts[0].shape();
  shape[0] = 0;
  for (const Tensor& p : parts) shape[0] += p.size(0);
  Tensor out = Tensor::Empty(shape);
  float* at = out.data();
  for (const Tensor& p : parts) {
    std::memcpy(at, p.data(), static_cast<size_t>(p.numel()) * sizeof(float));
    at += p.numel();
  }
  return out;
}

// Waits for `n` asynchronous chains, each ending in exactly one Done or Fail.
class Countdown {
 public:
  explicit Countdown(int n) : left_(n) {}
  void Done() {
    std::lock_guard lock(mu_);
    if (--left_ == 0) cv_.notify_all();
  }
  void Fail(const Status& s) {
    std::lock_guard lock(mu_);
    if (error_.ok()) error_ = s;
    if (--left_ == 0) cv_.notify_all();
  }
  Status Wait() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return left_ == 0; });
    return error_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int left_;
  Status error_ = Status::Ok();
};

}  // namespace

// A layer range on a layer server: one session.
class RemoteStage {
 public:
  using Done = std::function<void(Result<Tensor>)>;

  RemoteStage(std::shared_ptr<rpc::RpcClient> client, LayerPlacement placement, std::string session,
              std::chrono::milliseconds timeout)
      : client_(std::move(client)),
        placement_(std::move(placement)),
        session_(std::move(session)),
        timeout_(timeout) {}

  const LayerPlacement& placement() const { return placement_; }
  std::string Describe() const {
    return (placement_.nodes.empty() ? "" : "nodes " + placement_.nodes + " = ") + "layers " +
           std::to_string(placement_.first) + "-" + std::to_string(placement_.last - 1) + " on " +
           placement_.server;
  }

  Status Open(const std::string& spec_text, uint64_t seed) {
    return Call(layers::OpenRequest{.session = session_,
                                    .spec = spec_text,
                                    .seed = seed,
                                    .first = static_cast<int64_t>(placement_.first),
                                    .last = static_cast<int64_t>(placement_.last)}
                    .Encode())
        .status();
  }

  // The optimizer step owed since the last forward (see LayerExchange::Step).
  void OweStep(float lr) { owed_lr_ = lr; }
  std::optional<float> TakeOwedStep() { return std::exchange(owed_lr_, std::nullopt); }

  // How another server names this stage in a chain, with the step it must
  // take first.
  layers::Hop Hop(std::optional<float> step_lr) const {
    return {.address = placement_.server, .session = session_, .step_lr = step_lr};
  }

  // `chain` (may be empty): further stages the server passes the result to.
  // `input_grad`: whether backward will want this stage's input gradient.
  void ForwardAsync(int64_t mb, const Tensor& x, bool train, bool input_grad,
                    std::optional<float> step_lr, const std::vector<layers::Hop>& chain,
                    Done done) {
    Send(layers::PassRequest{.type = layers::kForward,
                             .session = session_,
                             .mb = mb,
                             .train = train,
                             .input_grad = input_grad,
                             .step_lr = step_lr,
                             .chain = chain,
                             .tensor = wire::WireTensor::FromTensor("x", x)},
         std::move(done));
  }

  void BackwardAsync(int64_t mb, const Tensor& grad, bool input_grad,
                     const std::vector<layers::Hop>& chain, Done done) {
    Send(layers::PassRequest{.type = layers::kBackward,
                             .session = session_,
                             .mb = mb,
                             .input_grad = input_grad,
                             .chain = chain,
                             .tensor = wire::WireTensor::FromTensor("g", grad)},
         std::move(done));
  }

  // Sends the step now without waiting for the answer; a failure lands in
  // `error` (the first one is kept).
  void StepNowAsync(float lr, std::shared_ptr<std::pair<std::mutex, Status>> error) {
    client_->CallAsync(layers::StepRequest{.session = session_, .lr = lr}.Encode(),
                       rpc::Clock::now() + timeout_,
                       [error, what = Describe()](Result<wire::Message> r) {
                         std::lock_guard lock(error->first);
                         if (!r.ok() && error->second.ok())
                           error->second = r.status().WithContext(what);
                       });
  }

  // Takes the owed step now (before reading the weights).
  Status SettleStep() {
    const auto lr = TakeOwedStep();
    if (!lr) return Status::Ok();
    return Call(layers::StepRequest{.session = session_, .lr = *lr}.Encode()).status();
  }

  // The session's parameters (by model name) and optimizer state.
  Result<layers::StateTensors> State() {
    DNND_ASSIGN_OR_RETURN(
        wire::Message r,
        Call(layers::SessionRequest{.type = layers::kState, .session = session_}.Encode()));
    auto state = layers::StateTensors::Decode(r);
    if (!state.ok()) return state.status().WithContext(Describe());
    return state;
  }

  Status Load(const nn::NamedTensors& params, const nn::NamedTensors& optimizer_state) {
    layers::StateTensors load{.session = session_};
    for (const auto& [name, t] : params)
      load.parameters.push_back(wire::WireTensor::FromTensor(name, t.detach()));
    for (const auto& [name, t] : optimizer_state)
      load.optimizer.push_back(wire::WireTensor::FromTensor(name, t));
    return Call(load.Encode(layers::kLoad)).status();
  }

  void Drop() {
    (void)client_->Call(layers::SessionRequest{.type = layers::kDrop, .session = session_}.Encode(),
                        std::chrono::milliseconds(2000));
  }

 private:
  Result<wire::Message> Call(wire::Message m) {
    auto r = client_->Call(std::move(m), timeout_);
    if (!r.ok()) return r.status().WithContext(Describe());
    return r;
  }

  // Answers `done` with the reply's tensor (an empty one for a backward
  // without input_grad).
  void Send(const layers::PassRequest& pass, Done done) {
    client_->CallAsync(pass.Encode(), rpc::Clock::now() + timeout_,
                       [this, type = pass.type, input_grad = pass.input_grad,
                        done = std::move(done)](Result<wire::Message> r) {
                         if (!r.ok()) return done(r.status().WithContext(Describe()));
                         auto reply = layers::PassReply::Decode(r.value(), type, input_grad);
                         if (!reply.ok()) return done(reply.status().WithContext(Describe()));
                         if (!reply.value().tensor) return done(Tensor());
                         done(reply.value().tensor->ToTensor());
                       });
  }

  std::shared_ptr<rpc::RpcClient> client_;
  const LayerPlacement placement_;
  const std::string session_;
  const std::chrono::milliseconds timeout_;
  std::optional<float> owed_lr_;
};

namespace {

// Consecutive remote stages as one module, pipelined over micro-batches.
class RemotePipeline : public nn::Module {
 public:
  RemotePipeline(std::vector<std::shared_ptr<RemoteStage>> stages, int64_t micro_batches)
      : stages_(std::move(stages)), micro_batches_(std::max<int64_t>(1, micro_batches)) {
    for (size_t i = stages_.size() - 1; i-- > 0;)
      backward_chain_.push_back(stages_[i]->Hop(std::nullopt));
  }

  Tensor Forward(const Tensor& x) override {
    const bool train = GradEnabled();
    const int64_t n = x.size(0);
    const int64_t m = std::min(micro_batches_, n);
    const int64_t base = next_mb_;
    next_mb_ += m;
    std::vector<int64_t> bounds(m + 1);
    for (int64_t i = 0; i <= m; ++i) bounds[i] = n * i / m;

    // Each micro-batch goes to the first stage, which passes it down the
    // chain server to server; all are in flight at once. The first
    // micro-batch carries every stage's owed optimizer step: it reaches each
    // stage before anything else of this batch does.
    std::vector<layers::Hop> chain;
    for (size_t i = 1; i < stages_.size(); ++i)
      chain.push_back(stages_[i]->Hop(stages_[i]->TakeOwedStep()));
    // Later micro-batches name the stages without a step.
    std::vector<layers::Hop> later;
    for (size_t i = 1; i < stages_.size(); ++i) later.push_back(stages_[i]->Hop(std::nullopt));
    const std::optional<float> first_step = stages_.front()->TakeOwedStep();
    std::vector<Tensor> outs(m);
    Countdown flow(static_cast<int>(m));
    for (int64_t i = 0; i < m; ++i)
      stages_.front()->ForwardAsync(base + i, Rows(x, bounds[i], bounds[i + 1]), train,
                                    x.requires_grad(), i == 0 ? first_step : std::nullopt,
                                    i == 0 ? chain : later, [&, i](Result<Tensor> r) {
                                      if (!r.ok()) return flow.Fail(r.status());
                                      outs[i] = std::move(r).value();
                                      flow.Done();
                                    });
    Status s = flow.Wait();
    if (!s.ok()) throw std::runtime_error("remote forward: " + s.ToString());
    Tensor y = ConcatRows(outs);
    if (!train) return y;
    y = y.detach();
    ops::RecordExternal(y, "Remote", {x},
                        [this, base, bounds](std::vector<Tensor>& in, const Tensor& g) {
                          Backward(in[0], g, base, bounds);
                        });
    return y;
  }

  Result<Shape> OutputShape(const Shape& input) const override {
    return Status(StatusCode::kUnsupported,
                  "a remote pipeline's shapes are checked by its layer servers");
  }
  std::string Describe() const override {
    std::string d = "RemotePipeline(";
    for (size_t i = 0; i < stages_.size(); ++i) d += (i ? ", " : "") + stages_[i]->Describe();
    return d + ")";
  }

 private:
  void Backward(const Tensor& x, const Tensor& g, int64_t base,
                const std::vector<int64_t>& bounds) {
    const int64_t m = static_cast<int64_t>(bounds.size()) - 1;
    const bool want_dx = x.requires_grad();
    std::vector<Tensor> dx(m);
    Countdown flow(static_cast<int>(m));
    for (int64_t i = 0; i < m; ++i)
      stages_.back()->BackwardAsync(base + i, Rows(g, bounds[i], bounds[i + 1]), want_dx,
                                    backward_chain_, [&, i](Result<Tensor> r) {
                                      if (!r.ok()) return flow.Fail(r.status());
                                      if (want_dx) dx[i] = std::move(r).value();
                                      flow.Done();
                                    });
    Status s = flow.Wait();
    if (!s.ok()) throw std::runtime_error("remote backward: " + s.ToString());
    // One micro-batch's gradient is a view of a received frame: copy it.
    if (want_dx) x.AccumulateGrad(m == 1 ? dx[0].clone() : ConcatRows(dx));
  }

  const std::vector<std::shared_ptr<RemoteStage>> stages_;
  const int64_t micro_batches_;
  std::vector<layers::Hop> backward_chain_;  // the stages before the last, last first
  int64_t next_mb_ = 0;
};

}  // namespace

namespace {

std::string RangeText(const LayerPlacement& p) {
  return p.nodes.empty()
             ? "layers \"" + std::to_string(p.first) + "-" + std::to_string(p.last - 1) + "\""
             : "nodes \"" + p.nodes + "\"";
}

// Nodes named `name` or "<name>.<...>" (a block's): [first, last], or nullopt.
std::optional<std::pair<size_t, size_t>> Match(const nn::Graph& model, const std::string& name) {
  std::optional<std::pair<size_t, size_t>> r;
  for (size_t i = 0; i < model.size(); ++i) {
    const std::string& n = model.name(i);
    if (n == name ||
        (n.size() > name.size() && n.compare(0, name.size(), name) == 0 && n[name.size()] == '.')) {
      if (!r) r = std::pair<size_t, size_t>{i, i};
      r->second = i;
    }
  }
  return r;
}

// The nodes [first, last) that `text` names: "a-b" or "a" (names may hold
// '-': the split at which both sides name nodes).
Result<std::pair<size_t, size_t>> ResolveNodes(const nn::Graph& model, const std::string& text) {
  const std::string what = "worker.placement: nodes = \"" + text + "\"";
  if (auto one = Match(model, text)) return std::pair<size_t, size_t>{one->first, one->second + 1};
  std::vector<std::pair<size_t, size_t>> found;
  for (size_t dash = text.find('-'); dash != std::string::npos; dash = text.find('-', dash + 1)) {
    auto a = Match(model, text.substr(0, dash)), b = Match(model, text.substr(dash + 1));
    if (a && b) found.push_back({a->first, b->second + 1});
  }
  if (found.size() > 1)
    return InvalidArgument(what + " is ambiguous: the names around more than one '-' are nodes");
  if (found.empty()) {
    std::string names;
    for (size_t i = 0; i < model.size() && i < 8; ++i) names += (i ? ", " : "") + model.name(i);
    if (model.size() > 8) names += ", ...";
    return InvalidArgument(what +
                           " names no node range: expected \"first-last\" or one name, each a "
                           "node's name or a block's prefix (\"layer1\" for layer1.0.conv1 ...); "
                           "the model's nodes are " +
                           names);
  }
  if (found[0].second <= found[0].first) return InvalidArgument(what + " ends before it starts");
  return found[0];
}

Status CheckDisjoint(const std::vector<LayerPlacement>& out) {
  auto describe = [](const LayerPlacement& p) {
    const std::string indices = std::to_string(p.first) + "-" + std::to_string(p.last - 1);
    return p.nodes.empty() ? "layers " + indices
                           : "nodes \"" + p.nodes + "\" (layers " + indices + ")";
  };
  for (size_t i = 1; i < out.size(); ++i)
    if (out[i].first < out[i - 1].last)
      return InvalidArgument("worker.placement: " + describe(out[i]) + " overlap " +
                             describe(out[i - 1]));
  return Status::Ok();
}

}  // namespace

Result<std::vector<LayerPlacement>> ParsePlacements(const Config& config) {
  std::vector<LayerPlacement> out;
  for (const auto& table : config.GetTables("worker.placement")) {
    const std::string& server = table.at("server");
    LayerPlacement p;
    p.server = server;
    const bool by_index = table.count("layers"), by_name = table.count("nodes");
    if (by_index == by_name)
      return InvalidArgument(
          "worker.placement: each entry names its range with either layers = \"0-2\" (node "
          "indices) or nodes = \"layer1-layer2\" (node names or block prefixes)" +
          std::string(by_index ? ", not both" : ""));
    if (by_name) {
      p.nodes = table.at("nodes");
      if (p.nodes.empty()) return InvalidArgument("worker.placement: nodes = \"\" names no nodes");
      if (server.empty())
        return InvalidArgument("worker.placement: nodes \"" + p.nodes + "\" have an empty server");
      out.push_back(p);
      continue;
    }
    const std::string& layers = table.at("layers");
    size_t a = 0, b = 0;
    const size_t dash = layers.find('-');
    try {
      size_t used = 0;
      a = std::stoul(layers.substr(0, dash), &used);
      if (used != (dash == std::string::npos ? layers.size() : dash))
        throw std::invalid_argument("");
      b = a;
      if (dash != std::string::npos) {
        b = std::stoul(layers.substr(dash + 1), &used);
        if (used != layers.size() - dash - 1) throw std::invalid_argument("");
      }
    } catch (const std::exception&) {
      return InvalidArgument("worker.placement: layers = \"" + layers +
                             "\" is not a range like \"0-2\" or \"3\" (node names go in nodes = "
                             "\"...\")");
    }
    if (b < a)
      return InvalidArgument("worker.placement: layers = \"" + layers + "\" ends before it starts");
    if (server.empty())
      return InvalidArgument("worker.placement: layers \"" + layers + "\" have an empty server");
    p.first = a;
    p.last = b + 1;
    out.push_back(p);
  }
  std::vector<LayerPlacement> indexed;
  for (const auto& p : out)
    if (p.nodes.empty()) indexed.push_back(p);
  std::sort(indexed.begin(), indexed.end(),
            [](const auto& x, const auto& y) { return x.first < y.first; });
  DNND_RETURN_IF_ERROR(CheckDisjoint(indexed));
  return out;
}

Status ResolvePlacements(std::vector<LayerPlacement>& placements, const nn::Graph& model) {
  for (LayerPlacement& p : placements) {
    if (!p.nodes.empty()) {
      DNND_ASSIGN_OR_RETURN(auto range, ResolveNodes(model, p.nodes));
      std::tie(p.first, p.last) = range;
    } else if (p.last > model.size()) {
      return InvalidArgument("worker.placement: " + RangeText(p) + " but the model has " +
                             std::to_string(model.size()) + " nodes (0-" +
                             std::to_string(model.size() - 1) + ")");
    }
    const std::string detail =
        p.nodes.empty() ? "nodes " + layers::RangeNames(model, p.first, p.last)
                        : "layers " + std::to_string(p.first) + "-" + std::to_string(p.last - 1);
    DNND_RETURN_IF_ERROR(layers::CheckRange(
        model, p.first, p.last, "worker.placement: " + RangeText(p) + " (" + detail + ")"));
  }
  std::sort(placements.begin(), placements.end(),
            [](const auto& x, const auto& y) { return x.first < y.first; });
  return CheckDisjoint(placements);
}

LayerExchange::LayerExchange(std::vector<LayerPlacement> placements, int64_t micro_batches,
                             rpc::RpcClientOptions options, std::string session_prefix)
    : placements_(std::move(placements)),
      micro_batches_(micro_batches),
      options_(std::move(options)),
      session_prefix_(std::move(session_prefix)),
      step_error_(std::make_shared<std::pair<std::mutex, Status>>(
          std::piecewise_construct, std::forward_as_tuple(), std::forward_as_tuple(Status::Ok()))) {
}

LayerExchange::~LayerExchange() { End(); }

std::string LayerExchange::OptimizerStateFile(const RemoteStage& stage) {
  return "layers-" + std::to_string(stage.placement().first) + "-" +
         std::to_string(stage.placement().last - 1) + ".optimizer.safetensors";
}

Result<int64_t> LayerExchange::Begin(nn::Graph& model, const ModelSpec& spec, uint64_t seed) {
  const std::string spec_text = ModelSpecToToml(spec);
  std::vector<LayerPlacement> placements = placements_;
  DNND_RETURN_IF_ERROR(ResolvePlacements(placements, model));
  std::vector<std::shared_ptr<RemoteStage>> run;  // consecutive remote stages
  auto flush = [&] {
    if (run.empty()) return;
    heads_.push_back(run.front());
    model.Place(run.front()->placement().first, run.back()->placement().last,
                std::make_shared<RemotePipeline>(run, micro_batches_));
    run.clear();
  };
  for (const LayerPlacement& p : placements) {
    auto& client = clients_[p.server];
    if (!client) client = rpc::RpcClient::Create(p.server, options_);
    auto stage = std::make_shared<RemoteStage>(
        client, p,
        session_prefix_ + "/" + std::to_string(p.first) + "-" + std::to_string(p.last - 1),
        options_.default_timeout);
    DNND_RETURN_IF_ERROR(stage->Open(spec_text, seed));
    // The worker's weights and buffers are the truth (initial, or resumed
    // from its checkpoint); so is its saved copy of the remote optimizer state.
    const nn::NamedTensors mine = layers::RangeState(model, p.first, p.last);
    nn::NamedTensors optimizer_state;
    if (auto saved = resumed_.find(OptimizerStateFile(*stage)); saved != resumed_.end())
      optimizer_state = saved->second;
    DNND_RETURN_IF_ERROR(stage->Load(mine, optimizer_state));
    if (!run.empty() && run.back()->placement().last != p.first) flush();
    run.push_back(stage);
    stages_.push_back(stage);
  }
  flush();
  Log(LogLevel::kInfo, "worker", "layers placed on layer servers",
      {{"ranges", static_cast<int64_t>(stages_.size())},
       {"servers", static_cast<int64_t>(clients_.size())},
       {"micro_batches", micro_batches_}});
  return int64_t{-1};  // the worker's own checkpoint says where to start
}

// The first stage of each pipeline gets its optimizer step right away,
// without waiting: its next forward comes on this same connection, which
// the server serves in order, and the step overlaps this worker's loading
// of the next batch. The other stages receive their forwards from the
// previous server, on another connection, so their steps are owed instead
// and travel with the next forward (in its line of the chain), which keeps
// them in order at no extra round trip. A failed step surfaces here next time.
Status LayerExchange::Step(nn::Graph& model, optim::Optimizer& local, int64_t step, float lr) {
  {
    std::lock_guard lock(step_error_->first);
    if (!step_error_->second.ok()) return step_error_->second;
  }
  local.Step();
  local.ZeroGrad();
  for (auto& stage : stages_) {
    if (std::find(heads_.begin(), heads_.end(), stage) != heads_.end())
      stage->StepNowAsync(lr, step_error_);
    else
      stage->OweStep(lr);
  }
  return Status::Ok();
}

Status LayerExchange::BeforeCheckpoint(nn::Graph& model, CheckpointFiles& files) {
  {
    std::lock_guard lock(step_error_->first);
    if (!step_error_->second.ok()) return step_error_->second;
  }
  // Parameters and buffers: the servers run their nodes' BatchNorms, so the
  // running statistics the checkpoint holds are theirs.
  nn::NamedTensors params = model.NamedState();
  for (auto& stage : stages_) {
    DNND_RETURN_IF_ERROR(stage->SettleStep());
    DNND_ASSIGN_OR_RETURN(layers::StateTensors state, stage->State());
    nn::NamedTensors optimizer_state;
    for (const auto& wt : state.optimizer) {
      DNND_ASSIGN_OR_RETURN(Tensor t, wt.ToTensor());
      optimizer_state.emplace_back(wt.name, t);
    }
    for (const auto& wt : state.parameters) {
      DNND_ASSIGN_OR_RETURN(Tensor t, wt.ToTensor());
      auto it = std::find_if(params.begin(), params.end(),
                             [&](const auto& p) { return p.first == wt.name; });
      if (it == params.end() || it->second.shape() != t.shape())
        return Corruption(stage->Describe() + " returned '" + wt.name + "' " +
                          ShapeToString(t.shape()) + ", which the local model does not have");
      it->second.detach().CopyFrom(t);
    }
    files[OptimizerStateFile(*stage)] = std::move(optimizer_state);
  }
  return Status::Ok();
}

void LayerExchange::End() {
  if (ended_) return;
  ended_ = true;
  for (auto& stage : stages_) stage->Drop();
}

}  // namespace dnnd
