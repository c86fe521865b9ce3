#include "roles/train/ps_client.h"

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

#include "core/log.h"
#include "core/metrics.h"
#include "tensor/checkpoint.h"
#include "transport/wire.h"

namespace dnnd {
namespace {

// The elements [offset, offset+length) of a contiguous tensor, sharing its memory.
Tensor FlatSlice(const Tensor& t, int64_t offset, int64_t length) {
  const int64_t base = t.data() - static_cast<const float*>(t.storage()->data());
  return Tensor::FromStorage(t.storage(), base + offset, {length});
}

const Tensor* FindParam(const nn::NamedTensors& params, const std::string& name) {
  for (const auto& [n, t] : params)
    if (n == name) return &t;
  return nullptr;
}

}  // namespace

PsExchange::PsExchange(std::vector<std::string> servers, int64_t worker,
                       rpc::RpcClientOptions options, std::chrono::milliseconds heartbeat_every,
                       wire::Codec gradient_codec)
    : addresses_(std::move(servers)),
      worker_(worker),
      heartbeat_every_(heartbeat_every),
      gradient_codec_(gradient_codec),
      timeout_(options.default_timeout) {
  for (const std::string& a : addresses_) clients_.push_back(rpc::RpcClient::Create(a, options));
  sessions_.resize(addresses_.size());
}

ps::Member PsExchange::MemberAt(size_t s) const {
  MutexLock lock(sessions_mu_);
  return {.worker = worker_, .session = sessions_[s]};
}

PsExchange::~PsExchange() { End(); }

// The answers of one exchange, shard by shard. Send is called on one thread
// (the training thread); the answers land on the clients' I/O threads.
// Destruction waits for every answer of what was sent: the callbacks use it.
class PsExchange::Round {
 public:
  Round(PsExchange& x, std::function<wire::Message(int)> make)
      : x_(x),
        make_(std::move(make)),
        n_(static_cast<int>(x.versions_.size())),
        deadline_(rpc::Clock::now() + x.timeout_),
        sent_(n_, false),
        results_(n_, Status(StatusCode::kInternal, "not sent")),
        waited_(n_, 0.0),
        server_(n_, 0.0) {}
  ~Round() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return done_ == sends_; });
  }

  int shards() const { return n_; }
  bool sent(int l) const { return sent_[l]; }

  void Send(int l) {
    sent_[l] = true;
    {
      std::lock_guard lock(mu_);
      if (sends_++ == 0) first_send_ = rpc::Clock::now();
    }
    x_.clients_[l / x_.chunks_]->CallAsync(make_(l), deadline_, [this, l](Result<wire::Message> r) {
      // Each chunk's weights are copied in as they arrive, on the client's
      // I/O thread, while later chunks are still on the way.
      Status status = r.status();
      if (r.ok()) {
        auto reply = ps::WeightsReply::Decode(r.value());
        if (reply.ok()) {
          waited_[l] = reply.value().waited_s;
          server_[l] = reply.value().server_s;
          status = x_.LoadWeights(l, reply.value());
        } else {
          status = reply.status();
        }
      }
      std::lock_guard lock(mu_);
      results_[l] = std::move(status);
      last_answer_ = rpc::Clock::now();
      if (++done_ == sends_) cv_.notify_all();
    });
  }

  // Sends what is left, waits for every answer and books the step's exposed
  // exchange time: from here to the last answer (what backward hid is not
  // counted), minus the servers' barrier wait and their own compute.
  Status Wait() {
    const auto start = rpc::Clock::now();
    bool overlapped = false;  // some shards went out while backward ran
    for (int l = 0; l < n_; ++l) {
      if (sent_[l])
        overlapped = true;
      else
        Send(l);
    }
    rpc::Clock::time_point first, last;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return done_ == sends_; });
      first = first_send_;
      last = last_answer_;
    }
    // What backward hid: the exchange that ran before the step waited for it.
    static Counter& hidden = ExchangeHiddenSeconds();
    if (overlapped)
      hidden.Inc(std::chrono::duration<double>(std::min(start, last) - first).count());
    for (int l = 0; l < n_; ++l)
      if (!results_[l].ok())
        return results_[l].WithContext("parameter server " + x_.addresses_[l / x_.chunks_]);
    static Counter& communicate = StepPhaseSeconds("communicate");
    static Counter& wait = StepPhaseSeconds("wait");
    static Counter& server_compute = StepPhaseSeconds("server");
    const double total = std::chrono::duration<double>(rpc::Clock::now() - start).count();
    const double w = std::min(total, *std::max_element(waited_.begin(), waited_.end()));
    // The longest of any chunk's server time: chunks overlap.
    const double s = std::min(total - w, *std::max_element(server_.begin(), server_.end()));
    wait.Inc(w);
    server_compute.Inc(std::max(0.0, s));
    communicate.Inc(std::max(0.0, total - w - s));
    return Status::Ok();
  }

 private:
  PsExchange& x_;
  const std::function<wire::Message(int)> make_;
  const int n_;
  const rpc::Clock::time_point deadline_;
  std::vector<bool> sent_;  // the sending thread's
  std::mutex mu_;
  std::condition_variable cv_;
  int sends_ = 0, done_ = 0;  // under mu_
  // Under mu_: when the first message left and the latest answer arrived.
  rpc::Clock::time_point first_send_{}, last_answer_{};
  // Per shard, each written by its one answer before done_ counts it.
  std::vector<Status> results_;
  std::vector<double> waited_, server_;
};

Status PsExchange::ExchangeAll(const std::function<wire::Message(int)>& make) {
  Round round(*this, make);
  return round.Wait();
}

Status PsExchange::LoadWeights(int shard, const ps::WeightsReply& reply) {
  // A change applies only on top of the weights it was computed from; any
  // other answer makes the caller resynchronise (a pull of the values).
  if (reply.delta && reply.version != versions_[shard] + 1)
    return Unavailable("chunk " + std::to_string(shard % chunks_) + " sent the change to version " +
                       std::to_string(reply.version) + " but this worker holds version " +
                       std::to_string(versions_[shard]));
  if (reply.tensors.empty()) {  // "you are current" (or a chunk without pieces)
    versions_[shard] = reply.version;
    return Status::Ok();
  }
  const auto& pieces = partition_.pieces[shard];
  // Checked before a byte is copied: a reply for other pieces, or of another
  // dtype or length, must not write past (or beside) the parameters.
  DNND_ASSIGN_OR_RETURN(std::vector<Tensor> weights,
                        ps::PieceTensors(reply.tensors, pieces,
                                         "weights for chunk " + std::to_string(shard % chunks_)));
  versions_[shard] = reply.version;
  for (size_t i = 0; i < pieces.size(); ++i) {
    float* dst = const_cast<float*>(FindParam(params_, pieces[i].param)->data()) + pieces[i].offset;
    const float* src = weights[i].data();
    const int64_t n = pieces[i].length;
    if (reply.delta && !buffers_.count(pieces[i].param)) {
      // The same float additions as the server's (chunk.cc): the same copy.
      for (int64_t k = 0; k < n; ++k) dst[k] += src[k];
    } else {
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
    }
  }
  return Status::Ok();
}

void PsExchange::SetInitialState(std::shared_ptr<const nn::NamedTensors> state) {
  initial_digest_ = state ? StateDigest(*state) : "";
  initial_ = std::move(state);
}

Result<ps::InitReply> PsExchange::InitServer(size_t s) {
  ps::InitRequest request{.spec = spec_text_,
                          .seed = seed_,
                          .servers = static_cast<int64_t>(clients_.size()),
                          .index = static_cast<int64_t>(s),
                          // ours again if the server still knows it
                          .member = MemberAt(s),
                          .initial_digest = initial_digest_,
                          .frozen = {frozen_.begin(), frozen_.end()}};
  if (initial_)  // views of the weights; a server already holding them ignores them
    for (const auto& [name, t] : *initial_)
      request.initial.push_back(wire::WireTensor::FromTensor(name, t));
  const wire::Message init = request.Encode();
  // Servers may still be starting: the client retries within its deadline;
  // so does this loop while our rank's previous holder (this worker before a
  // restart) has not yet timed out.
  const auto deadline = rpc::Clock::now() + timeout_;
  for (;;) {
    auto r = clients_[s]->Call(init, timeout_);
    if (r.status().code() == StatusCode::kAlreadyExists &&
        rpc::Clock::now() + heartbeat_every_ < deadline) {
      std::this_thread::sleep_for(std::max(heartbeat_every_, std::chrono::milliseconds(100)));
      continue;
    }
    if (!r.ok()) return r.status().WithContext("initialising parameter server " + addresses_[s]);
    auto reply = ps::InitReply::Decode(r.value());
    if (!reply.ok()) return reply.status().WithContext("parameter server " + addresses_[s]);
    MutexLock lock(sessions_mu_);
    sessions_[s] = reply.value().session;
    return reply;
  }
}

Status PsExchange::PullAll(nn::Graph& model) {
  return ExchangeAll([&](int l) {
    return ps::PullRequest{.member = MemberAt(static_cast<size_t>(l / chunks_)),
                           .chunk = l % chunks_}
        .Encode();
  });
}

Status PsExchange::InitAll(int64_t* start) {
  for (size_t s = 0; s < clients_.size(); ++s) {
    DNND_ASSIGN_OR_RETURN(ps::InitReply r, InitServer(s));
    const std::string& mode = r.mode;
    const int64_t chunks = r.chunks;
    if (s == 0) {
      mode_ = mode;
      kavg_steps_ = r.kavg_steps;
      if (start) *start = r.worker_step;
      if (partition_.servers != 0 && chunks != chunks_)
        return InvalidArgument("parameter server " + addresses_[s] + " now has " +
                               std::to_string(chunks) + " chunks, it had " +
                               std::to_string(chunks_) + " (ps.chunks changed mid-job)");
      chunks_ = static_cast<int>(chunks);
    } else if (mode != mode_ || chunks != chunks_) {
      return InvalidArgument("parameter servers disagree: " + addresses_[0] + " runs mode " +
                             mode_ + " with " + std::to_string(chunks_) + " chunks, " +
                             addresses_[s] + " runs mode " + mode + " with " +
                             std::to_string(chunks) + " (ps.mode, ps.chunks)");
    }
  }
  return Status::Ok();
}

Result<int64_t> PsExchange::Begin(nn::Graph& model, const ModelSpec& spec, uint64_t seed) {
  // Buffers (BatchNorm's running statistics) travel with the parameters:
  // pushed as values, averaged by the servers, pulled back with the weights.
  params_ = model.NamedState();
  buffers_.clear();
  for (const auto& [name, t] : model.NamedBuffers()) buffers_.insert(name);
  spec_text_ = ModelSpecToToml(spec);
  seed_ = seed;
  int64_t start = 0;
  DNND_RETURN_IF_ERROR(InitAll(&start));
  // Each server's range is cut into its chunks: server s owns logical shards
  // [s * chunks, (s + 1) * chunks).
  std::vector<std::pair<std::string, Shape>> shapes;
  for (const auto& [name, t] : params_) shapes.emplace_back(name, t.shape());
  partition_ = ps::PartitionParameters(shapes, static_cast<int>(clients_.size()) * chunks_);
  versions_.assign(partition_.pieces.size(), 0);
  trainable_per_shard_.assign(partition_.pieces.size(), 0);
  shards_of_.clear();
  for (size_t l = 0; l < partition_.pieces.size(); ++l) {
    std::set<std::string> params;  // a parameter may be cut into several pieces
    for (const ps::ShardPiece& piece : partition_.pieces[l])
      if (!buffers_.count(piece.param)) params.insert(piece.param);
    trainable_per_shard_[l] = static_cast<int>(params.size());
    for (const std::string& name : params)
      shards_of_[FindParam(params_, name)->impl().get()].push_back(static_cast<int>(l));
  }
  DNND_RETURN_IF_ERROR(PullAll(model));
  heartbeat_.Start(heartbeat_every_, [this] { Heartbeat(); });
  Log(LogLevel::kInfo, "worker", "joined parameter servers",
      {{"worker", worker_},
       {"servers", static_cast<int64_t>(clients_.size())},
       {"chunks", static_cast<int64_t>(chunks_)},
       {"mode", mode_},
       {"gradient_codec", wire::CodecName(gradient_codec_)},
       {"start_step", start}});
  return start;
}

Status PsExchange::Resync(nn::Graph& model) {
  DNND_RETURN_IF_ERROR(InitAll(nullptr));
  return PullAll(model);
}

wire::Message PsExchange::Push(int s, int64_t step, float lr) {
  const bool kavg = mode_ == "kavg";
  ps::PushRequest push{.member = MemberAt(static_cast<size_t>(s / chunks_)),
                       .chunk = s % chunks_,
                       .version = versions_[s],
                       .step = step + 1,
                       .lr = lr};
  for (const ps::ShardPiece& piece : partition_.pieces[s]) {
    const Tensor* p = FindParam(params_, piece.param);
    const bool value = kavg || buffers_.count(piece.param);
    Tensor source = value ? p->detach() : p->grad();
    if (!source.defined())
      source = Tensor::Zeros(p->shape());  // a parameter the loss did not reach
    push.tensors.push_back(
        wire::WireTensor::FromTensor(piece.key(), FlatSlice(source, piece.offset, piece.length),
                                     value ? wire::Codec::kNone : gradient_codec_));
  }
  return push.Encode();
}

Tensor::LeafDone PsExchange::BeforeBackward(int64_t step, float lr) {
  if (!overlap_ || mode_ == "kavg") return nullptr;
  round_ = std::make_unique<Round>(*this, [this, step, lr](int s) { return Push(s, step, lr); });
  waiting_ = trainable_per_shard_;
  // Shards of buffers alone: their values are final after forward.
  for (int l = 0; l < round_->shards(); ++l)
    if (waiting_[l] == 0) round_->Send(l);
  return [this](const Tensor& leaf) {
    auto it = shards_of_.find(leaf.impl().get());
    if (it == shards_of_.end()) return;
    for (int l : it->second)
      if (--waiting_[l] == 0) round_->Send(l);
  };
}

Status PsExchange::Step(nn::Graph& model, optim::Optimizer& local, int64_t step, float lr) {
  if (round_) {  // BeforeBackward's round: send what backward did not finish, then wait
    Status s = round_->Wait();
    round_.reset();
    return FinishStep(std::move(s), model, step);
  }
  if (mode_ == "kavg") {
    local.Step();
    local.ZeroGrad();
    if ((step + 1) % kavg_steps_ != 0) return Status::Ok();
  }
  return FinishStep(ExchangeAll([&](int s) { return Push(s, step, lr); }), model, step);
}

Status PsExchange::FinishStep(Status s, nn::Graph& model, int64_t step) {
  if (!s.ok() &&
      (s.code() == StatusCode::kUnavailable || s.code() == StatusCode::kDeadlineExceeded ||
       s.code() == StatusCode::kPermissionDenied)) {
    // A server restarted (it no longer knows our session) or dropped us:
    // this step's contribution is lost, the weights are the servers' again,
    // and training goes on.
    Log(LogLevel::kWarn, "worker", "lost a step's exchange; resynchronising",
        {{"worker", worker_}, {"step", step}, {"reason", s.ToString()}});
    s = Resync(model);
  }
  model.ZeroGrad();
  return s;
}

void PsExchange::Heartbeat() {
  for (size_t s = 0; s < clients_.size(); ++s)
    clients_[s]->CallAsync(
        ps::MemberRequest{.type = ps::kHeartbeat, .member = MemberAt(s)}.Encode(),
        rpc::Clock::now() + heartbeat_every_, [](Result<wire::Message>) {});
}

void PsExchange::End() {
  if (ended_.exchange(true)) return;
  heartbeat_.Stop();
  for (size_t s = 0; s < clients_.size(); ++s)
    (void)clients_[s]->Call(ps::MemberRequest{.type = ps::kLeave, .member = MemberAt(s)}.Encode(),
                            std::chrono::milliseconds(2000));
}

}  // namespace dnnd
