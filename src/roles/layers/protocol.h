// The layer-server protocol (wire types 0x0201-0x02FF, docs/wire.md): a
// client opens a session that hosts nodes [first, last) of a model spec (a
// range cut at both ends: roles/layers/ranges.h),
// then drives their forward and backward per micro-batch.
//
//   open      spec, seed, first, last, session     -> parameters
//   forward   session, mb, train, input_grad, tensor "x" -> tensor "y"
//             (train = 1 keeps what backward needs, keyed by mb, and the
//             input's gradient only if input_grad (default 1); with
//             step_lr, the optimizer steps first: clients owe steps and
//             deliver them with the next batch, at no extra round trip)
//   backward  session, mb, input_grad, tensor "g"   -> tensor "dx" if input_grad
//             (accumulates the layers' parameter gradients, frees mb)
//             Both may carry "chain": "host:port\tsession[\tstep_lr]" lines of the
//             stages to run next; the server passes its result to the first
//             (as "x" or "g") with the rest of the chain, and answers with
//             the last stage's answer. input_grad then means the last's.
//             A server passes results only to the addresses of its
//             layer.next_stages; a chain naming another is refused
//             (PermissionDenied) before the stage computes.
//   step      session, lr                           -> version
//   state     session                               -> parameters, buffers (BatchNorm's
//                                                      running statistics) and
//                                                      "optimizer/..." state
//   load      session, tensors as `state` answers   -> version
//   drop      session                               -> (nothing)
//
// A server answers the requests of one connection in order, so a client that
// sends micro-batches in order gets them processed in order (the sums of
// accumulated gradients are reproducible) while other servers work on other
// micro-batches at the same time.
#pragma once

#include <cstdint>

namespace dnnd::layers {

inline constexpr uint16_t kOpen = 0x0201;
inline constexpr uint16_t kForward = 0x0202;
inline constexpr uint16_t kBackward = 0x0203;
inline constexpr uint16_t kStep = 0x0204;
inline constexpr uint16_t kState = 0x0205;
inline constexpr uint16_t kLoad = 0x0206;
inline constexpr uint16_t kDrop = 0x0207;

}  // namespace dnnd::layers
