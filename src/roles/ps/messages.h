// The parameter-server protocol's messages (wire types 0x0101-0x0106,
// docs/wire.md "Parameter server"): one struct per request and reply, used by
// both ends (ps_client.cc, parameter_server.cc), so a field's name and type
// are written down once, here and in messages.cc.
//
// Encode() builds the message (type set; the RPC layer sets id and flags of
// a reply). Decode() checks every field the receiver relies on and fails with
// an error naming the field; tensors stay views into the received frame (a
// WireTensor shares its storage), so nothing on the push/pull path is copied
// by decoding. PieceTensors() checks tensors against the pieces they must
// hold (name, dtype, shape) before anyone reads their bytes.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "roles/ps/protocol.h"
#include "transport/wire.h"

namespace dnnd::ps {

// Who sends a request: the worker's rank and the session its init got
// ("" before the first init).
struct Member {
  int64_t worker = 0;
  std::string session{};
};

// init: joins `member.worker` and, the first time, builds the model.
struct InitRequest {
  std::string spec{};  // the model spec, as TOML
  uint64_t seed = 0;
  int64_t servers = 0;  // the worker's view of the job: ps.servers
  int64_t index = 0;    // and which of them it thinks this is
  Member member{};      // session: the previous one, to keep it over a re-init
  // A job that starts from given weights (an ONNX model's) rather than from
  // the seed: their StateDigest names them (a server holding other weights
  // refuses the worker), and `initial` carries every parameter and buffer
  // by name, which the server uses when it builds the model (first init).
  std::string initial_digest{};
  std::vector<wire::WireTensor> initial{};
  // Parameters no optimizer steps (train.freeze), by name.
  std::vector<std::string> frozen{};

  wire::Message Encode() const;
  static Result<InitRequest> Decode(const wire::Message& m);
};

struct InitReply {
  std::string mode{};  // sync | async | kavg
  int64_t kavg_steps = 1;
  int64_t chunks = 1;
  int64_t version = 0;
  int64_t worker_step = 0;  // the step this rank resumes from
  std::string session{};    // never empty

  wire::Message Encode() const;
  static Result<InitReply> Decode(const wire::Message& m);
};

// push: a chunk's gradients (sync, async) or weights (kavg), one tensor per
// piece in the chunk's order, named ShardPiece::key().
struct PushRequest {
  Member member{};
  int64_t chunk = 0;
  int64_t version = 0;         // of the weights the tensors were computed on
  int64_t step = 0;            // the worker's step count after this one
  std::optional<double> lr{};  // absent in kavg
  std::vector<wire::WireTensor> tensors{};

  wire::Message Encode() const;
  static Result<PushRequest> Decode(const wire::Message& m);
};

// pull: the chunk's weights. An anonymous pull (no member) joins nothing.
struct PullRequest {
  std::optional<Member> member{};
  int64_t chunk = 0;
  int64_t if_newer_than = -1;  // no tensors in the reply if version <= this

  wire::Message Encode() const;
  static Result<PullRequest> Decode(const wire::Message& m);
};

// The reply to push and pull: the chunk's weights at `version`, one tensor
// per piece, or none when the asker is current.
struct WeightsReply {
  int64_t version = 0;
  bool applied = false;  // this push was part of the step that made `version`
  // The parameter pieces are changes to add to the weights of `version` - 1
  // (ps.weights_codec = bf16); buffer pieces are values either way.
  bool delta = false;
  double waited_s = 0;  // push: time held at the barrier for other workers
  double server_s = 0;  // push: time spent averaging and optimising
  std::vector<wire::WireTensor> tensors{};

  wire::Message Encode() const;
  static Result<WeightsReply> Decode(const wire::Message& m);
};

// heartbeat and leave (`type` kHeartbeat or kLeave).
struct MemberRequest {
  uint16_t type = kHeartbeat;
  Member member{};

  wire::Message Encode() const;
  static Result<MemberRequest> Decode(const wire::Message& m);
};

// The reply to heartbeat and leave.
struct VersionReply {
  int64_t version = 0;

  wire::Message Encode() const;
  static Result<VersionReply> Decode(const wire::Message& m);
};

// stats: request without fields (StatsRequest()); reply:
struct StatsReply {
  int64_t version = 0;
  bool initialized = false;
  int64_t live_workers = 0;
  int64_t dropped_workers = 0;
  int64_t chunks = 0;
  std::string mode{};

  wire::Message Encode() const;
  static Result<StatsReply> Decode(const wire::Message& m);
};
wire::Message StatsRequest();

// `tensors` as float32 Tensors sharing their memory, after checking there is
// one per piece, in order, each named pieces[i].key(), float32, of shape
// [pieces[i].length]. Errors are InvalidArgument, start with `what` and
// name the tensor, the expected and the received value.
Result<std::vector<Tensor>> PieceTensors(const std::vector<wire::WireTensor>& tensors,
                                         const std::vector<ShardPiece>& pieces,
                                         const std::string& what);

}  // namespace dnnd::ps
