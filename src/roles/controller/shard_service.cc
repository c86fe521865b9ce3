#include "roles/controller/shard_service.h"

#include "core/log.h"
#include "roles/controller/datasets.h"
#include "roles/pool/protocol.h"

namespace dnnd {

ShardService::ShardService(const ControllerContext& ctx, DatasetsApi& datasets)
    : ctx_(ctx), datasets_(datasets) {}

ShardService::~ShardService() { Stop(); }

Status ShardService::Start() {
  std::string listen = ctx_.cfg.GetString("controller.wire_listen");
  if (listen.empty()) listen = ctx_.ServiceHost() + ":0";
  DNND_ASSIGN_OR_RETURN(auto rpc,
                        rpc::RpcServerOptions::FromConfig(ctx_.cfg, listen, "controller"));
  rpc.token = ctx_.secrets.wire_key;
  server_ = std::make_unique<rpc::RpcServer>(std::move(rpc));
  server_->Handle(pool::kShard, "shard",
                  [this](const wire::Message& m, const rpc::PeerInfo&) { return Shard(m); });
  DNND_RETURN_IF_ERROR(server_->Start());
  Log(LogLevel::kInfo, "controller", "shard service listening", {{"address", server_->address()}});
  return Status::Ok();
}

void ShardService::Stop() {
  if (server_) server_->Stop();
}

int ShardService::port() const { return server_ ? server_->port() : 0; }

Result<wire::Message> ShardService::Shard(const wire::Message& m) {
  DNND_ASSIGN_OR_RETURN(pool::ShardRequest q, pool::ShardRequest::Decode(m));
  DNND_RETURN_IF_ERROR(CheckName("dataset", q.dataset));
  DNND_ASSIGN_OR_RETURN(auto d, datasets_.Load(q.dataset));
  pool::ShardReply reply;
  if (q.split == pool::ShardRequest::Split::kTest) {
    if (d->test) reply.set = d->test->Take(q.limit);
    const data::Dataset empty = d->train.EmptyLike();
    return reply.Encode(&empty);
  }
  data::Dataset all = d->train.Take(q.limit);
  if (all.size() < q.count)
    return InvalidArgument("cannot cut " + std::to_string(all.size()) + " samples of '" +
                           q.dataset + "' into part " + std::to_string(q.index) + " of " +
                           std::to_string(q.count));
  reply.set = all.Part(q.index, q.count);
  return reply.Encode();
}

}  // namespace dnnd
