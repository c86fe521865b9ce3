#include "roles/ps_client.h"

#include <cstring>

#include "core/log.h"
#include "core/metrics.h"
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

PsExchange::PsExchange(std::vector<std::string> servers, int64_t worker, rpc::RpcClientOptions options,
                       std::chrono::milliseconds heartbeat_every, wire::Codec gradient_codec)
    : addresses_(std::move(servers)), worker_(worker), heartbeat_every_(heartbeat_every),
      gradient_codec_(gradient_codec), timeout_(options.default_timeout) {
  for (const std::string& a : addresses_) clients_.push_back(rpc::RpcClient::Create(a, options));
  versions_.assign(addresses_.size(), 0);
}

PsExchange::~PsExchange() { End(); }

namespace {
Counter& PhaseSeconds(const char* phase) {
  return DefaultMetrics().Counter("dnnd_worker_step_seconds_total",
                                  "worker step time by phase: compute (forward/backward), communicate, wait (for other workers), server (averaging and optimizer)",
                                  {{"phase", phase}});
}
}  // namespace

Status PsExchange::ExchangeAll(const std::function<wire::Message(int)>& make, nn::Sequential& model) {
  const int n = static_cast<int>(clients_.size());
  std::mutex mu;
  std::condition_variable cv;
  int done = 0;
  std::vector<Result<wire::Message>> results(n, Status(StatusCode::kInternal, "no answer"));
  const auto start = rpc::Clock::now();
  const auto deadline = start + timeout_;
  for (int s = 0; s < n; ++s) {
    clients_[s]->CallAsync(make(s), deadline, [&, s](Result<wire::Message> r) {
      std::lock_guard lock(mu);
      results[s] = std::move(r);
      if (++done == n) cv.notify_all();
    });
  }
  {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return done == n; });
  }
  double waited = 0, server = 0;
  for (int s = 0; s < n; ++s) {
    if (!results[s].ok()) return results[s].status().WithContext("parameter server " + addresses_[s]);
    const wire::Fields& f = results[s].value().fields;
    waited = std::max(waited, f.GetFloat("waited_s").ok() ? f.GetFloat("waited_s").value() : 0.0);
    server = std::max(server, f.GetFloat("server_s").ok() ? f.GetFloat("server_s").value() : 0.0);
    LoadWeights(s, results[s].value(), model);
  }
  // The round trip, minus the time the servers held it for other workers and
  // the time they spent averaging and running the optimizer.
  static Counter& communicate = PhaseSeconds("communicate");
  static Counter& wait = PhaseSeconds("wait");
  static Counter& server_compute = PhaseSeconds("server");
  const double total = std::chrono::duration<double>(rpc::Clock::now() - start).count();
  wait.Inc(waited);
  server_compute.Inc(server);
  communicate.Inc(std::max(0.0, total - waited - server));
  return Status::Ok();
}

void PsExchange::LoadWeights(int server, const wire::Message& response, nn::Sequential& model) {
  versions_[server] = response.fields.IntOr("version", versions_[server]);
  const auto& pieces = partition_.pieces[server];
  if (response.tensors.size() != pieces.size()) return;  // e.g. "you are current"
  for (size_t i = 0; i < pieces.size(); ++i) {
    const Tensor* p = FindParam(params_, pieces[i].param);
    std::memcpy(const_cast<float*>(p->data()) + pieces[i].offset, response.tensors[i].data(),
                static_cast<size_t>(pieces[i].length) * sizeof(float));
  }
}

Result<wire::Message> PsExchange::InitServer(size_t s) {
  wire::Message init;
  init.type = ps::kInit;
  init.fields.SetString("spec", spec_text_);
  init.fields.SetInt("seed", static_cast<int64_t>(seed_));
  init.fields.SetInt("servers", static_cast<int64_t>(clients_.size()));
  init.fields.SetInt("index", static_cast<int64_t>(s));
  init.fields.SetInt("worker", worker_);
  // Servers may still be starting: the client retries within its deadline.
  auto r = clients_[s]->Call(std::move(init), timeout_);
  if (!r.ok()) return r.status().WithContext("initialising parameter server " + addresses_[s]);
  return r;
}

Status PsExchange::PullAll(nn::Sequential& model) {
  return ExchangeAll([&](int) {
    wire::Message pull;
    pull.type = ps::kPull;
    pull.fields.SetInt("worker", worker_);
    return pull;
  }, model);
}

Result<int64_t> PsExchange::Begin(nn::Sequential& model, const ModelSpec& spec, uint64_t seed) {
  params_ = model.NamedParameters();
  std::vector<std::pair<std::string, Shape>> shapes;
  for (const auto& [name, t] : params_) shapes.emplace_back(name, t.shape());
  partition_ = ps::PartitionParameters(shapes, static_cast<int>(clients_.size()));
  spec_text_ = ModelSpecToToml(spec);
  seed_ = seed;
  int64_t start = 0;
  for (size_t s = 0; s < clients_.size(); ++s) {
    DNND_ASSIGN_OR_RETURN(wire::Message r, InitServer(s));
    mode_ = r.fields.StringOr("mode", "sync");
    kavg_steps_ = std::max<int64_t>(1, r.fields.IntOr("kavg_steps", 1));
    if (s == 0) start = r.fields.IntOr("worker_step", 0);
  }
  DNND_RETURN_IF_ERROR(PullAll(model));
  heartbeat_ = std::thread([this] { Heartbeats(); });
  Log(LogLevel::kInfo, "worker", "joined parameter servers",
      {{"worker", worker_}, {"servers", static_cast<int64_t>(clients_.size())}, {"mode", mode_},
       {"start_step", start}});
  return start;
}

Status PsExchange::Resync(nn::Sequential& model) {
  for (size_t s = 0; s < clients_.size(); ++s) DNND_RETURN_IF_ERROR(InitServer(s).status());
  return PullAll(model);
}

Status PsExchange::Step(nn::Sequential& model, optim::Optimizer& local, int64_t step, float lr) {
  const bool kavg = mode_ == "kavg";
  if (kavg) {
    local.Step();
    local.ZeroGrad();
    if ((step + 1) % kavg_steps_ != 0) return Status::Ok();
  }
  auto make = [&](int s) {
    wire::Message push;
    push.type = ps::kPush;
    push.fields.SetInt("worker", worker_);
    push.fields.SetInt("version", versions_[s]);
    push.fields.SetInt("step", step + 1);
    push.fields.SetFloat("lr", lr);
    for (const ps::ShardPiece& piece : partition_.pieces[s]) {
      const Tensor* p = FindParam(params_, piece.param);
      Tensor source = kavg ? p->detach() : p->grad();
      if (!source.defined()) source = Tensor::Zeros(p->shape());  // a parameter the loss did not reach
      push.tensors.push_back(wire::WireTensor::FromTensor(piece.key(), FlatSlice(source, piece.offset, piece.length),
                                                          kavg ? wire::Codec::kNone : gradient_codec_));
    }
    return push;
  };
  Status s = ExchangeAll(make, model);
  if (!s.ok() && (s.code() == StatusCode::kUnavailable || s.code() == StatusCode::kDeadlineExceeded)) {
    // A server restarted or dropped us: this step's contribution is lost,
    // the weights are the servers' again, and training goes on.
    Log(LogLevel::kWarn, "worker", "lost a step's exchange; resynchronising",
        {{"worker", worker_}, {"step", step}, {"reason", s.ToString()}});
    s = Resync(model);
  }
  model.ZeroGrad();
  return s;
}

void PsExchange::Heartbeats() {
  std::unique_lock lock(hb_mu_);
  while (!ended_) {
    hb_cv_.wait_for(lock, heartbeat_every_);
    if (ended_) break;
    for (auto& c : clients_) {
      wire::Message hb;
      hb.type = ps::kHeartbeat;
      hb.fields.SetInt("worker", worker_);
      c->CallAsync(std::move(hb), rpc::Clock::now() + heartbeat_every_, [](Result<wire::Message>) {});
    }
  }
}

void PsExchange::End() {
  if (ended_.exchange(true)) return;
  {
    std::lock_guard lock(hb_mu_);
    hb_cv_.notify_all();
  }
  if (heartbeat_.joinable()) heartbeat_.join();
  for (auto& c : clients_) {
    wire::Message leave;
    leave.type = ps::kLeave;
    leave.fields.SetInt("worker", worker_);
    (void)c->Call(std::move(leave), std::chrono::milliseconds(2000));
  }
}

}  // namespace dnnd
