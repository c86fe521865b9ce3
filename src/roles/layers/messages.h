// The layer-server protocol's messages (wire types 0x0201-0x0207,
// layer_protocol.h for what they do, docs/wire.md "Layer server"): one
// struct per request and reply, used by both ends (layer_client.cc,
// layer_server.cc), so a field's name and type are written down once, here
// and in messages.cc.
//
// Encode() builds the message; Decode() checks every field the receiver
// relies on and fails with InvalidArgument naming the message and the field.
// Tensors stay views into the received frame (no copy on the forward and
// backward path); shapes are checked by the receiver, which knows them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "roles/layers/protocol.h"
#include "transport/wire.h"

namespace dnnd::layers {

// One stage still to run in a chain: the server at `address` hosting
// `session`, with the optimizer step it owes before it computes.
struct Hop {
  std::string address{};  // host:port
  std::string session{};
  std::optional<float> step_lr{};
};
// On the wire: "host:port\tsession[\tlr]" lines, lr in its shortest text.
std::string ChainText(const std::vector<Hop>& chain);
Result<std::vector<Hop>> ParseChain(const std::string& text);

// open: hosts layers [first, last) of `spec` as `session`.
struct OpenRequest {
  std::string session{};  // 1-256 bytes, no control characters (checked by Decode)
  std::string spec{};     // the model spec, as TOML
  uint64_t seed = 0;
  int64_t first = 0, last = 0;

  wire::Message Encode() const;
  static Result<OpenRequest> Decode(const wire::Message& m);
};
struct OpenReply {
  int64_t parameters = 0;  // elements in the hosted layers

  wire::Message Encode() const;
  static Result<OpenReply> Decode(const wire::Message& m);
};

// forward (tensor "x") and backward (tensor "g") of one micro-batch.
struct PassRequest {
  uint16_t type = kForward;  // kForward or kBackward
  std::string session{};
  int64_t mb = 0;
  bool train = true;               // forward: keep what backward needs
  bool input_grad = true;          // compute (backward: return) the input's gradient
  std::optional<float> step_lr{};  // forward: the step the client owes, taken first
  std::vector<Hop> chain{};        // stages to run next, server to server
  wire::WireTensor tensor{};       // named "x" (forward) or "g" (backward) on the wire

  bool backward() const { return type == kBackward; }
  wire::Message Encode() const;
  static Result<PassRequest> Decode(const wire::Message& m);
};
// The answer to forward ("y") or backward ("dx", absent when input_grad = 0).
struct PassReply {
  std::optional<wire::WireTensor> tensor{};

  // `type`: the request's (names the tensor).
  wire::Message Encode(uint16_t type) const;
  // Fails unless the reply carries exactly the tensor `type` (and
  // `input_grad`) call for.
  static Result<PassReply> Decode(const wire::Message& m, uint16_t type, bool input_grad);
};

struct StepRequest {
  std::string session{};
  float lr = 0;

  wire::Message Encode() const;
  static Result<StepRequest> Decode(const wire::Message& m);
};

// state (request: SessionRequest) and load: the session's parameters by
// model name and, prefixed kOptimizerPrefix, its optimizer state.
inline constexpr std::string_view kOptimizerPrefix = "optimizer/";
struct StateTensors {
  std::string session{};  // load only
  std::vector<wire::WireTensor> parameters{};
  std::vector<wire::WireTensor> optimizer{};  // names without the prefix
  int64_t version = 0;                        // state reply only

  // As a load request (type kLoad) or a state reply (kState).
  wire::Message Encode(uint16_t type) const;
  static Result<StateTensors> Decode(const wire::Message& m);
};

// state and drop carry only the session.
struct SessionRequest {
  uint16_t type = kDrop;
  std::string session{};

  wire::Message Encode() const;
  static Result<SessionRequest> Decode(const wire::Message& m);
};

// The reply to step and load.
struct VersionReply {
  int64_t version = 0;

  wire::Message Encode() const;
  static Result<VersionReply> Decode(const wire::Message& m);
};

}  // namespace dnnd::layers
