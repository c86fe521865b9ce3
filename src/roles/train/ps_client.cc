#include "roles/train/ps_client.h"

#include <algorithm>
#include <cstring>
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

namespace {
Counter& PhaseSeconds(const char* phase) {
  return DefaultMetrics().Counter(
      "dnnd_worker_step_seconds_total",
      "worker step time by phase: compute (forward/backward), communicate, wait (for other "
      "workers), server (averaging and optimizer)",
      {{"phase", phase}});
}
}  // namespace

Status PsExchange::ExchangeAll(const std::function<wire::Message(int)>& make, nn::Graph& model) {
  const int n = static_cast<int>(versions_.size());  // servers x chunks
  std::mutex mu;
  std::condition_variable cv;
  int done = 0;
  std::vector<Status> results(n, Status(StatusCode::kInternal, "no answer"));
  std::vector<double> waited(n, 0.0), server(n, 0.0);
  const auto start = rpc::Clock::now();
  const auto deadline = start + timeout_;
  for (int l = 0; l < n; ++l) {
    clients_[l / chunks_]->CallAsync(make(l), deadline, [&, l](Result<wire::Message> r) {
      // Each chunk's weights are copied in as they arrive, on the client's
      // I/O thread, while later chunks are still on the way.
      Status status = r.status();
      if (r.ok()) {
        auto reply = ps::WeightsReply::Decode(r.value());
        if (reply.ok()) {
          waited[l] = reply.value().waited_s;
          server[l] = reply.value().server_s;
          status = LoadWeights(l, reply.value());
        } else {
          status = reply.status();
        }
      }
      std::lock_guard lock(mu);
      results[l] = std::move(status);
      if (++done == n) cv.notify_all();
    });
  }
  {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return done == n; });
  }
  for (int l = 0; l < n; ++l)
    if (!results[l].ok())
      return results[l].WithContext("parameter server " + addresses_[l / chunks_]);
  // The round trip, minus the time the servers held it for other workers and
  // the time they spent averaging and running the optimizer (the longest of
  // any chunk: chunks overlap).
  static Counter& communicate = PhaseSeconds("communicate");
  static Counter& wait = PhaseSeconds("wait");
  static Counter& server_compute = PhaseSeconds("server");
  const double total = std::chrono::duration<double>(rpc::Clock::now() - start).count();
  const double w = *std::max_element(waited.begin(), waited.end());
  const double s = std::min(total - w, *std::max_element(server.begin(), server.end()));
  wait.Inc(w);
  server_compute.Inc(std::max(0.0, s));
  communicate.Inc(std::max(0.0, total - w - s));
  return Status::Ok();
}

Status PsExchange::LoadWeights(int shard, const ps::WeightsReply& reply) {
  versions_[shard] = reply.version;
  if (reply.tensors.empty()) return Status::Ok();  // "you are current"
  const auto& pieces = partition_.pieces[shard];
  // Checked before a byte is copied: a reply for other pieces, or of another
  // dtype or length, must not write past (or beside) the parameters.
  DNND_ASSIGN_OR_RETURN(std::vector<Tensor> weights,
                        ps::PieceTensors(reply.tensors, pieces,
                                         "weights for chunk " + std::to_string(shard % chunks_)));
  for (size_t i = 0; i < pieces.size(); ++i) {
    const Tensor* p = FindParam(params_, pieces[i].param);
    std::memcpy(const_cast<float*>(p->data()) + pieces[i].offset, weights[i].data(),
                static_cast<size_t>(pieces[i].length) * sizeof(float));
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
  return ExchangeAll(
      [&](int l) {
        return ps::PullRequest{.member = MemberAt(static_cast<size_t>(l / chunks_)),
                               .chunk = l % chunks_}
            .Encode();
      },
      model);
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
  DNND_RETURN_IF_ERROR(PullAll(model));
  heartbeat_.Start(heartbeat_every_, [this] { Heartbeat(); });
  Log(LogLevel::kInfo, "worker", "joined parameter servers",
      {{"worker", worker_},
       {"servers", static_cast<int64_t>(clients_.size())},
       {"chunks", static_cast<int64_t>(chunks_)},
       {"mode", mode_},
       {"start_step", start}});
  return start;
}

Status PsExchange::Resync(nn::Graph& model) {
  DNND_RETURN_IF_ERROR(InitAll(nullptr));
  return PullAll(model);
}

Status PsExchange::Step(nn::Graph& model, optim::Optimizer& local, int64_t step, float lr) {
  const bool kavg = mode_ == "kavg";
  if (kavg) {
    local.Step();
    local.ZeroGrad();
    if ((step + 1) % kavg_steps_ != 0) return Status::Ok();
  }
  auto make = [&](int s) {
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
  };
  Status s = ExchangeAll(make, model);
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
