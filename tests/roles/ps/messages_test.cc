// The parameter-server messages are checked where they are received: a
// server that answers a worker's pull with weights of the wrong dtype, shape
// or count, or without a field, fails the worker's Begin() with an error
// naming what is wrong (the worker used to copy the bytes in unchecked), and
// a push of the wrong dtype is refused by a real parameter server the same
// way. Everything goes through real loopback sockets: the hostile server is
// an RpcServer answering what a broken or malicious parameter server would.
#include "roles/ps/messages.h"

#include <gtest/gtest.h>

#include <cstring>
#include <functional>

#include "roles/ps/parameter_server.h"
#include "roles/train/ps_client.h"
#include "tensor/model_spec.h"
#include "transport/rpc_client.h"
#include "transport/rpc_server.h"

namespace dnnd {
namespace {

using namespace std::chrono_literals;

constexpr char kToken[] = "t";

// input [4] -> linear 3: parameters 0.weight [3, 4] and 0.bias [3]; one
// server with one chunk holds them as pieces 0.weight@0 (12) and 0.bias@0 (3).
ModelSpec TinySpec() {
  return ParseModelSpecText(
             "[model]\ninput = [4]\n[[model.layers]]\ntype = \"linear\"\nout = 3\n"
             "[model.optimizer]\ntype = \"sgd\"\nlr = 0.1\n",
             "tiny")
      .value();
}

rpc::RpcServerOptions ServerOptions() {
  rpc::RpcServerOptions o;
  o.listen = "127.0.0.1:0";
  o.self = {"parameter-server", "test"};
  o.token = kToken;
  return o;
}

rpc::RpcClientOptions ClientOptions() {
  rpc::RpcClientOptions o;
  o.token = kToken;
  o.default_timeout = 5000ms;
  o.backoff_initial = 20ms;
  return o;
}

wire::WireTensor Floats(const std::string& name, int64_t n) {
  return wire::WireTensor::FromTensor(name, Tensor::Zeros({n}));
}

// A parameter server that joins any worker and answers pulls with `pull`.
class HostileServer {
 public:
  explicit HostileServer(std::function<wire::Message()> pull,
                         std::function<wire::Message()> init = DefaultInit)
      : server_(ServerOptions()) {
    server_.Handle(ps::kInit, "ps_init",
                   rpc::RpcServer::SimpleHandler([init](const wire::Message&, const rpc::PeerInfo&)
                                                     -> Result<wire::Message> { return init(); }));
    server_.Handle(ps::kPull, "ps_pull",
                   rpc::RpcServer::SimpleHandler([pull](const wire::Message&, const rpc::PeerInfo&)
                                                     -> Result<wire::Message> { return pull(); }));
    server_.Handle(ps::kLeave, "ps_leave",
                   rpc::RpcServer::SimpleHandler(
                       [](const wire::Message&, const rpc::PeerInfo&) -> Result<wire::Message> {
                         return ps::VersionReply{}.Encode();
                       }));
    EXPECT_TRUE(server_.Start().ok());
  }
  static wire::Message DefaultInit() {
    return ps::InitReply{.mode = "sync", .chunks = 1, .session = "s3ss10n"}.Encode();
  }
  std::string address() const { return server_.address(); }

 private:
  rpc::RpcServer server_;
};

// What a worker's Begin() says to a server answering pulls with `pull`.
Status BeginAgainst(std::function<wire::Message()> pull,
                    std::function<wire::Message()> init = HostileServer::DefaultInit) {
  HostileServer server(std::move(pull), std::move(init));
  const ModelSpec spec = TinySpec();
  auto model = BuildModel(spec, 1).value();
  PsExchange exchange({server.address()}, 0, ClientOptions(), 1000ms);
  Status s = exchange.Begin(*model, spec, 1).status();
  exchange.End();
  return s;
}

void ExpectRefused(const Status& s, const std::vector<std::string>& parts) {
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  for (const std::string& part : parts)
    EXPECT_NE(s.message().find(part), std::string::npos) << "'" << part << "' in " << s.ToString();
}

TEST(PsMessages, WellFormedWeightsAreLoaded) {
  const Status s = BeginAgainst([] {
    return ps::WeightsReply{.version = 3,
                            .tensors = {Floats("0.weight@0", 12), Floats("0.bias@0", 3)}}
        .Encode();
  });
  EXPECT_TRUE(s.ok()) << s.ToString();
}

TEST(PsMessages, WeightsOfAnotherDtypeAreRefusedNotCopied) {
  const int32_t ints[12] = {};
  const Status s = BeginAgainst([&] {
    return ps::WeightsReply{
        .version = 1,
        .tensors = {wire::WireTensor::FromBytes("0.weight@0", wire::DType::kI32, {12}, ints),
                    Floats("0.bias@0", 3)}}
        .Encode();
  });
  ExpectRefused(s, {"parameter server", "weights for chunk 0", "tensor 0 is '0.weight@0' i32 [12]",
                    "expected '0.weight@0' f32 [12]"});
}

TEST(PsMessages, WeightsOfAnotherShapeAreRefused) {
  const Status s = BeginAgainst([] {
    return ps::WeightsReply{.version = 1,
                            .tensors = {Floats("0.weight@0", 12), Floats("0.bias@0", 300)}}
        .Encode();
  });
  ExpectRefused(s, {"tensor 1 is '0.bias@0' f32 [300]", "expected '0.bias@0' f32 [3]"});
}

TEST(PsMessages, WeightsForOtherPiecesAreRefused) {
  const Status s = BeginAgainst([] {
    return ps::WeightsReply{.version = 1,
                            .tensors = {Floats("0.bias@0", 3), Floats("0.weight@0", 12)}}
        .Encode();
  });
  ExpectRefused(s, {"tensor 0 is '0.bias@0'", "expected '0.weight@0'"});
}

TEST(PsMessages, AWrongTensorCountIsRefused) {
  const Status s = BeginAgainst([] {
    return ps::WeightsReply{.version = 1, .tensors = {Floats("0.weight@0", 12)}}.Encode();
  });
  ExpectRefused(s, {"carries 1 tensors, expected 2"});
}

TEST(PsMessages, AReplyWithoutItsVersionIsRefused) {
  const Status s = BeginAgainst([] {
    wire::Message m;  // weights, but no fields at all
    m.tensors = {Floats("0.weight@0", 12), Floats("0.bias@0", 3)};
    return m;
  });
  ExpectRefused(s, {"ps weights reply: missing field 'version'"});
}

TEST(PsMessages, AnInitReplyWithoutASessionIsRefused) {
  const Status s = BeginAgainst([] { return ps::WeightsReply{}.Encode(); },
                                [] {
                                  wire::Message m = ps::InitReply{.mode = "sync"}.Encode();
                                  m.fields = {};
                                  return m;
                                });
  ExpectRefused(s, {"ps init reply: missing field 'mode'"});
  const Status empty = BeginAgainst([] { return ps::WeightsReply{}.Encode(); },
                                    [] { return ps::InitReply{.mode = "sync"}.Encode(); });
  ExpectRefused(empty, {"ps init reply: field 'session' is empty"});
}

// The server's end: a push whose tensor has another dtype is refused with
// the same named error, before it reaches the chunk's step.
TEST(PsMessages, APushOfAnotherDtypeIsRefusedByTheServer) {
  ParameterServerOptions options;
  options.chunks = 1;
  ParameterServer server(options, ServerOptions());
  ASSERT_TRUE(server.Start().ok());
  auto client = rpc::RpcClient::Create(server.address(), ClientOptions());
  auto joined = client->Call(
      ps::InitRequest{.spec = ModelSpecToToml(TinySpec()), .seed = 1, .servers = 1, .member = {}}
          .Encode(),
      5s);
  ASSERT_TRUE(joined.ok()) << joined.status().ToString();
  auto reply = ps::InitReply::Decode(joined.value());
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  const uint16_t halves[12] = {};
  ps::PushRequest push{.member = {.worker = 0, .session = reply->session},
                       .version = reply->version,
                       .step = 1,
                       .lr = 0.1};
  push.tensors = {wire::WireTensor::FromBytes("0.weight@0", wire::DType::kF16, {12}, halves),
                  Floats("0.bias@0", 3)};
  auto r = client->Call(push.Encode(), 5s);
  ExpectRefused(r.status(), {"push from worker 0", "tensor 0 is '0.weight@0' f16 [12]",
                             "expected '0.weight@0' f32 [12]"});
  // A push without its step is refused naming the field.
  wire::Message no_step = push.Encode();
  ps::PushRequest missing = ps::PushRequest::Decode(no_step).value();
  EXPECT_TRUE(missing.lr.has_value());
  no_step.fields = {};
  auto r2 = client->Call(std::move(no_step), 5s);
  ExpectRefused(r2.status(), {"ps push: missing field 'worker'"});
  EXPECT_EQ(server.version(), 0) << "nothing was applied";
  server.Stop();
}

}  // namespace
}  // namespace dnnd
