#include "roles/controller/shard_service.h"

#include "core/log.h"
#include "roles/controller/datasets.h"
#include "roles/pool_protocol.h"

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
  DNND_ASSIGN_OR_RETURN(std::string name, m.fields.GetString("dataset"));
  DNND_RETURN_IF_ERROR(CheckName("dataset", name));
  DNND_ASSIGN_OR_RETURN(std::string split, m.fields.GetString("split"));
  const int64_t index = m.fields.IntOr("index", 0), count = m.fields.IntOr("count", 1),
                limit = m.fields.IntOr("limit", 0);
  DNND_ASSIGN_OR_RETURN(auto d, datasets_.Load(name));
  if (split == "test") {
    if (!d->test) {
      wire::Message none = pool::ShardMessage(d->train.EmptyLike());
      none.fields.SetInt("present", 0);
      return none;
    }
    return pool::ShardMessage(d->test->Take(limit));
  }
  if (split != "train")
    return InvalidArgument("shard split must be train or test, not '" + split + "'");
  data::Dataset all = d->train.Take(limit);
  if (count < 1 || index < 0 || index >= count || all.size() < count)
    return InvalidArgument("cannot cut " + std::to_string(all.size()) + " samples of '" + name +
                           "' into part " + std::to_string(index) + " of " + std::to_string(count));
  return pool::ShardMessage(all.Part(index, count));
}

}  // namespace dnnd
