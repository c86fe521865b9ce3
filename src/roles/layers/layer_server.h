// A layer server: hosts ranges of models' layers for remote clients and runs
// their forward and backward (layer_protocol.h). What DockerNN did with one
// Flask service per layer and pickled arrays, over the binary wire protocol.
//
// A forward or backward may name a chain of further stages (on other
// servers): this server then passes its result straight to the next one, so
// activations between consecutive remote ranges never travel through the
// client, and the client sends one request per micro-batch and direction.
//
// Each client opens its own session: the nodes [first, last) of its model
// spec (a graph range cut at both ends), built with its seed (so the initial
// weights equal local training's), with their own optimizer; the session
// holds the range's parameters and buffers, and runs it in training or
// evaluation mode as each forward says. A training forward keeps the activations backward
// needs until that micro-batch's backward; their bytes (input and every
// layer's output, from the layers' shapes) count against
// layer.max_activation_bytes, and a forward that would exceed it is refused
// with ResourceExhausted naming the session and the figures, never an
// out-of-memory kill. Sessions idle for layer.session_idle_timeout_ms are
// dropped.
//
// Chains dial only configured peers: a hop to an address outside
// layer.next_stages is refused with PermissionDenied before any work, so a
// request cannot make this server connect anywhere else. Each configured
// peer has one client (made at construction: threads and connections are
// bounded by the list) and one ordered queue run off the I/O threads: a dial
// to a dead next stage blocks only that peer's queue, for at most
// layer.connect_timeout_ms, and requests queued behind a failed dial fail
// with it at once. Hops to one peer keep their order.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/periodic.h"
#include "core/status.h"
#include "transport/rpc_client.h"
#include "transport/rpc_server.h"

namespace dnnd {

class Config;

struct LayerServerOptions {
  uint64_t max_activation_bytes = uint64_t{1} << 30;  // over all sessions
  int64_t max_sessions = 64;
  std::chrono::milliseconds session_idle_timeout{600000};
  std::vector<std::string> next_stages;  // the only addresses a chain may name
  std::chrono::milliseconds connect_timeout{5000};

  static LayerServerOptions FromConfig(const Config& config);
};

class LayerServer {
 public:
  // `peers`: how this server calls the next stage of a chain.
  LayerServer(LayerServerOptions options, rpc::RpcServerOptions rpc,
              rpc::RpcClientOptions peers = {});
  ~LayerServer();  // Stop()

  Status Start();
  void Stop();
  uint16_t port() const { return server_.port(); }
  std::string address() const { return server_.address(); }
  size_t sessions() const;
  uint64_t cached_bytes() const { return cached_bytes_.load(); }

 private:
  class Session;
  class PeerLink;  // a configured next stage: its client and ordered queue (.cc)
  Result<std::shared_ptr<Session>> Find(const wire::Message& request);
  Result<wire::Message> HandleOpen(const wire::Message& request, const rpc::PeerInfo& peer);
  // Forward or backward on this stage, then (PassRequest::chain) on the next
  // stages, server to server; the answer is the last stage's.
  void Chained(wire::Message request, rpc::Responder responder);
  // The link to a configured next stage, or PermissionDenied naming the setting.
  Result<PeerLink*> Peer(const std::string& address);
  Result<wire::Message> HandleDrop(const wire::Message& request);
  void ExpireIdleSessions();

  const LayerServerOptions options_;
  rpc::RpcServer server_;
  const rpc::RpcClientOptions peer_options_;
  std::unique_ptr<rpc::asio::thread_pool> dialers_;         // one thread per configured peer
  std::map<std::string, std::unique_ptr<PeerLink>> peers_;  // fixed at construction
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Session>> sessions_;
  std::atomic<uint64_t> cached_bytes_{0};

  std::atomic<bool> stopping_{false};
  PeriodicTask reaper_;  // ExpireIdleSessions every second
};

Result<std::unique_ptr<class Role>> MakeLayerServerRole(const Config& config);

}  // namespace dnnd
