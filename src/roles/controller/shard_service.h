// The controller's shard service: the wire protocol (docs/wire.md, kShard in
// roles/pool_protocol.h) on controller.wire_listen, serving a job's workers
// their part of a registered dataset's training set, or its test set, so a
// worker needs no shared filesystem and receives only its own part.
//
// Start() and Stop() from the role's thread; requests are answered on the
// RPC server's threads through DatasetsApi::Load (thread-safe).
#pragma once

#include <memory>

#include "core/status.h"
#include "roles/controller/context.h"
#include "transport/rpc_server.h"

namespace dnnd {

class DatasetsApi;

class ShardService {
 public:
  // Both must outlive the service.
  ShardService(const ControllerContext& ctx, DatasetsApi& datasets);
  ~ShardService();

  Status Start();
  void Stop();
  // The bound port (after Start).
  int port() const;

 private:
  Result<wire::Message> Shard(const wire::Message& m);

  const ControllerContext& ctx_;
  DatasetsApi& datasets_;
  std::unique_ptr<rpc::RpcServer> server_;
};

}  // namespace dnnd
