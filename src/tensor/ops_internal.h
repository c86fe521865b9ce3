// Autograd glue shared by the op definitions (ops.cc, ops_nn.cc). Internal
// to src/tensor: not part of the ops API.
#pragma once

#include <initializer_list>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace dnnd::ops::internal {

[[noreturn]] inline void ShapeError(const char* op, const Tensor& a, const Tensor& b) {
  throw std::invalid_argument(std::string(op) + ": incompatible shapes " +
                              ShapeToString(a.shape()) + " and " + ShapeToString(b.shape()));
}

inline bool AnyRequiresGrad(std::initializer_list<const Tensor*> ts) {
  if (!GradEnabled()) return false;
  for (const Tensor* t : ts)
    if (t->defined() && t->requires_grad()) return true;
  return false;
}

inline bool Needs(const Tensor& t) { return t.defined() && t.requires_grad(); }

// Records `fn` as the producer of `out`. `inputs` are kept alive for backward;
// the closure reaches them through the node (no reference cycle: the node
// owns the closure, the output owns the node).
template <typename Fn>
void Record(Tensor& out, const char* name, std::vector<Tensor> inputs, Fn&& fn) {
  auto node = std::make_shared<GradNode>();
  node->name = name;
  node->inputs = std::move(inputs);
  GradNode* raw = node.get();
  node->backward = [raw, fn = std::forward<Fn>(fn)](Tensor g) { fn(raw->inputs, std::move(g)); };
  out.set_grad_fn(std::move(node));
}

}  // namespace dnnd::ops::internal
