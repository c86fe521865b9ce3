// The parameter-server protocol: which server holds which parameter bytes,
// and the messages workers and servers exchange (wire types 0x0100-0x01FF,
// docs/wire.md).
//
// The partition is a pure function of the model's parameter shapes and the
// server count, so every worker and every server computes the same map
// without asking anyone: all parameters, flattened in model order, form one
// virtual array that is cut into `servers` equal ranges. A large tensor is
// thereby split into chunks across servers, and each server carries the same
// number of bytes (+-4).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace dnnd::ps {

// Wire message types. Every worker request names its rank ("worker"); init
// joins it and answers a "session" (bytes) that push, pull (when it names a
// worker), heartbeat and leave must carry (parameter_server.h, Membership).
inline constexpr uint16_t kInit =
    0x0101;  // worker -> server: model spec, seed, rank; reply: mode, session
inline constexpr uint16_t kPush =
    0x0102;  // worker -> server: gradients (or weights, kavg); reply: new weights
inline constexpr uint16_t kPull = 0x0103;       // worker -> server: current weights
inline constexpr uint16_t kHeartbeat = 0x0104;  // worker -> server: liveness, membership
inline constexpr uint16_t kLeave = 0x0105;      // worker -> server: finished, leave the barrier
inline constexpr uint16_t kStats = 0x0106;      // anyone -> server: counters as fields

// A contiguous run of one parameter's elements held by one server.
struct ShardPiece {
  std::string param;   // "0.weight"
  int64_t offset = 0;  // first element, in the flattened parameter
  int64_t length = 0;  // elements

  // Tensor name on the wire: "0.weight@0".
  std::string key() const { return param + "@" + std::to_string(offset); }
};

struct Partition {
  int servers = 0;
  int64_t total_elements = 0;
  std::vector<std::vector<ShardPiece>> pieces;  // [server] -> pieces in model order

  int64_t ServerElements(int server) const;
};

// `params` in model order (name, shape).
Partition PartitionParameters(const std::vector<std::pair<std::string, Shape>>& params,
                              int servers);

}  // namespace dnnd::ps
