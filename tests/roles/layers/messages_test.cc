// The layer-server messages are checked where they are received: a layer
// server that answers a forward with a tensor of another name or dtype, or a
// state without its version, gives the worker an error naming it instead of
// a tensor it would compute with. Through real loopback sockets; the hostile
// server is an RpcServer answering what a broken layer server would.
#include "roles/layers/messages.h"

#include <gtest/gtest.h>

#include <functional>
#include <stdexcept>

#include "roles/train/layer_client.h"
#include "tensor/model_spec.h"
#include "tensor/nn.h"
#include "transport/rpc_server.h"

namespace dnnd {
namespace {

using namespace std::chrono_literals;
using Reply = Result<wire::Message>;

class HostileLayerServer {
 public:
  // `forward` and `state` answer those requests; the rest succeed.
  HostileLayerServer(std::function<wire::Message()> forward, std::function<wire::Message()> state)
      : server_(Options()) {
    auto simple = [this](uint16_t type, std::function<wire::Message()> answer) {
      server_.Handle(
          type, "hostile",
          rpc::RpcServer::SimpleHandler(
              [answer](const wire::Message&, const rpc::PeerInfo&) -> Reply { return answer(); }));
    };
    simple(layers::kOpen, [] { return layers::OpenReply{.parameters = 15}.Encode(); });
    simple(layers::kLoad, [] { return layers::VersionReply{}.Encode(); });
    simple(layers::kStep, [] { return layers::VersionReply{}.Encode(); });
    simple(layers::kDrop, [] { return wire::Message{}; });
    simple(layers::kForward, std::move(forward));
    simple(layers::kState, std::move(state));
    EXPECT_TRUE(server_.Start().ok());
  }
  std::string address() const { return server_.address(); }

 private:
  static rpc::RpcServerOptions Options() {
    rpc::RpcServerOptions o;
    o.self = {"layer-server", "hostile"};
    o.token = "t";
    return o;
  }
  rpc::RpcServer server_;
};

// input [4] -> linear 3 -> linear 2, with layer 0 on the hostile server.
struct Worker {
  explicit Worker(const std::string& address)
      : spec(ParseModelSpecText(
                 "[model]\ninput = [4]\n[[model.layers]]\ntype = \"linear\"\nout = 3\n"
                 "[[model.layers]]\ntype = \"linear\"\nout = 2\n",
                 "tiny")
                 .value()),
        model(BuildModel(spec, 1).value()),
        exchange({{.first = 0, .last = 1, .nodes = {}, .server = address}}, 1, ClientOptions(),
                 "w0") {}
  static rpc::RpcClientOptions ClientOptions() {
    rpc::RpcClientOptions o;
    o.token = "t";
    o.default_timeout = 5000ms;
    return o;
  }
  // What a forward through the model throws ("" if it does not).
  std::string ForwardError() {
    try {
      NoGradGuard no_grad;
      model->Forward(Tensor::Zeros({2, 4}));
    } catch (const std::runtime_error& e) {
      return e.what();
    }
    return "";
  }

  ModelSpec spec;
  std::shared_ptr<nn::Graph> model;
  LayerExchange exchange;
};

wire::Message Forward(wire::WireTensor y) {
  return layers::PassReply{.tensor = y}.Encode(layers::kForward);
}

TEST(LayerMessages, AWellFormedForwardIsUsed) {
  HostileLayerServer server(
      [] {
        return Forward(wire::WireTensor::FromTensor("", Tensor::Zeros({2, 3})));
      },
      [] { return layers::StateTensors{}.Encode(layers::kState); });
  Worker w(server.address());
  ASSERT_TRUE(w.exchange.Begin(*w.model, w.spec, 1).ok());
  EXPECT_EQ(w.ForwardError(), "");
  w.exchange.End();
}

TEST(LayerMessages, AForwardReplyOfAnotherDtypeOrNameIsRefused) {
  const int32_t ints[6] = {};
  HostileLayerServer ints_server(
      [&] {
        return Forward(wire::WireTensor::FromBytes("", wire::DType::kI32, {2, 3}, ints));
      },
      [] { return layers::StateTensors{}.Encode(layers::kState); });
  Worker a(ints_server.address());
  ASSERT_TRUE(a.exchange.Begin(*a.model, a.spec, 1).ok());
  const std::string dtype = a.ForwardError();
  EXPECT_NE(dtype.find("layer forward reply: tensor 'y' is i32, expected f32"), std::string::npos)
      << dtype;
  a.exchange.End();

  HostileLayerServer named(
      [] {
        wire::Message m{.type = layers::kForward};
        m.tensors.push_back(wire::WireTensor::FromTensor("dx", Tensor::Zeros({2, 3})));
        return m;
      },
      [] { return layers::StateTensors{}.Encode(layers::kState); });
  Worker b(named.address());
  ASSERT_TRUE(b.exchange.Begin(*b.model, b.spec, 1).ok());
  const std::string name = b.ForwardError();
  EXPECT_NE(name.find("layer forward reply: expected one tensor 'y', got 1"), std::string::npos)
      << name;
  b.exchange.End();
}

TEST(LayerMessages, AStateReplyWithoutItsVersionIsRefused) {
  HostileLayerServer server(
      [] {
        return Forward(wire::WireTensor::FromTensor("", Tensor::Zeros({2, 3})));
      },
      [] { return wire::Message{}; });
  Worker w(server.address());
  ASSERT_TRUE(w.exchange.Begin(*w.model, w.spec, 1).ok());
  CheckpointFiles files;
  const Status s = w.exchange.BeforeCheckpoint(*w.model, files);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find("layer state reply: missing field 'version'"), std::string::npos)
      << s.ToString();
  w.exchange.End();
}

TEST(LayerMessages, AChainIsTextBothEndsRead) {
  const std::vector<layers::Hop> chain = {
      {.address = "10.0.0.2:7000", .session = "w0-1", .step_lr = 0.001f},
      {.address = "10.0.0.3:7000", .session = "w0-2"}};
  auto back = layers::ParseChain(layers::ChainText(chain));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_EQ(back->size(), 2u);
  EXPECT_EQ((*back)[0].step_lr, 0.001f) << "the owed step's lr survives the text exactly";
  EXPECT_EQ((*back)[1].session, "w0-2");
  EXPECT_FALSE((*back)[1].step_lr.has_value());
  EXPECT_EQ(layers::ParseChain("10.0.0.2:7000\tw0-1\tfast").status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(layers::ParseChain("10.0.0.2:7000").status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace dnnd
