// Tensor: float32, row-major, contiguous; shape + a view into refcounted
// Storage; optionally tracked by autograd.
//
// Copies are SHALLOW, as in PyTorch: `Tensor b = a;` shares data, gradient and
// graph node. Use clone() for a deep copy, detach() for a graph-free alias.
//
//   Tensor w = Tensor::Randn({10, 784}, rng).set_requires_grad(true);
//   Tensor loss = ops::Sum(ops::Relu(ops::MatMul(x, ops::Transpose(w))));
//   loss.backward();              // w.grad() now holds d loss / d w
//
// Views: Reshape() and Narrow0() share storage; a tensor can also wrap memory
// it does not own (Tensor::Wrap), which is how the wire protocol hands out
// received payloads without copying them.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "tensor/storage.h"

namespace dnnd {

using Shape = std::vector<int64_t>;

// Number of elements of `shape`; -1 if a dimension is negative or the product
// overflows int64 (callers validating outside input must check).
int64_t ShapeNumel(const Shape& shape);
// "[128, 784]".
std::string ShapeToString(const Shape& shape);

class Tensor;
struct GradNode;

// Deterministic, seedable source of randomness for init, dropout and shuffling.
using Rng = std::mt19937_64;

class Tensor {
 public:
  Tensor() = default;  // undefined tensor (defined() == false)

  // --- construction -------------------------------------------------------
  static Tensor Empty(const Shape& shape);  // uninitialised, from the pool
  static Tensor Zeros(const Shape& shape);
  static Tensor Ones(const Shape& shape) { return Full(shape, 1.0f); }
  static Tensor Full(const Shape& shape, float value);
  static Tensor FromVector(const Shape& shape, const std::vector<float>& values);
  static Tensor Scalar(float value) { return Full({}, value); }
  // Uniform in [lo, hi) / normal(mean, std), drawn from `rng`.
  static Tensor Uniform(const Shape& shape, float lo, float hi, Rng& rng);
  static Tensor Normal(const Shape& shape, float mean, float std, Rng& rng);
  // A view of `data` (not owned); `keep_alive` owns it and lives as long as
  // any tensor sharing this storage. `data` must be 4-byte aligned.
  static Tensor Wrap(float* data, const Shape& shape, std::shared_ptr<const void> keep_alive);
  // A tensor over `storage` starting at element `offset`.
  static Tensor FromStorage(std::shared_ptr<Storage> storage, int64_t offset, const Shape& shape);

  // --- metadata -------------------------------------------------------------
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  int ndim() const { return static_cast<int>(shape().size()); }
  // Size of dimension `d`; negative `d` counts from the end.
  int64_t size(int d) const;
  int64_t numel() const;
  size_t nbytes() const { return static_cast<size_t>(numel()) * sizeof(float); }

  float* data();
  const float* data() const;
  const std::shared_ptr<Storage>& storage() const;
  float item() const;  // the single element of a one-element tensor
  std::vector<float> ToVector() const;

  // --- views and copies ------------------------------------------------------
  // Same storage, new shape (one dimension may be -1). Tracked by autograd.
  Tensor Reshape(const Shape& shape) const;
  // Rows [start, start+length) of dimension 0, sharing storage. Not tracked.
  Tensor Narrow0(int64_t start, int64_t length) const;
  Tensor clone() const;              // deep copy of the data, no graph
  Tensor detach() const;             // same data, no graph, requires_grad false
  void CopyFrom(const Tensor& src);  // element copy; shapes' numel must match
  void Fill(float value);
  bool SameStorage(const Tensor& other) const;

  // --- autograd ---------------------------------------------------------------
  bool requires_grad() const;
  // Marks a leaf as trainable. Returns *this for chaining.
  Tensor& set_requires_grad(bool on);
  // Accumulated gradient of a leaf (undefined until a backward reaches it).
  Tensor grad() const;
  void set_grad(Tensor g);
  // Sets the gradient to undefined (PyTorch's zero_grad(set_to_none=True));
  // the next backward takes a pooled buffer, so no memory is lost or leaked.
  void zero_grad();
  // Back-propagates from this scalar (or from `grad_output` of the same shape),
  // accumulating into the .grad of every leaf that requires grad, then frees
  // the graph (PyTorch's retain_graph=False).
  void backward() const;
  void backward(const Tensor& grad_output) const;
  // The same, calling `leaf_done(leaf)` on this thread for every leaf that
  // requires grad as soon as its gradient is final: right after the last
  // node that feeds it has run, so in the order backward finishes them (the
  // last layer's first). A data-parallel worker sends those gradients while
  // backward goes on (DDP's bucketing). Leaves no path reaches are not named.
  using LeafDone = std::function<void(const Tensor& leaf)>;
  void backward(const Tensor& grad_output, const LeafDone& leaf_done) const;
  bool is_leaf() const;
  // Adds `g` into this tensor's gradient. Used by backward functions, which
  // must treat the gradient they are given as read-only. The first gradient
  // costs no copy when `g`'s buffer has no other reference (move it in), or
  // when this tensor is not a leaf: an intermediate's gradient lives only
  // until its node has run, so it may share `g`'s buffer (a residual add
  // hands one gradient to both branches), and a later gradient is then added
  // out of place while the buffer is still shared. A leaf's gradient (what
  // optimizers and clipping change in place) always owns its buffer.
  void AccumulateGrad(Tensor g) const;

  // Internal: the node that produced this tensor, if any.
  const std::shared_ptr<GradNode>& grad_fn() const;
  void set_grad_fn(std::shared_ptr<GradNode> node);

  struct Impl;
  explicit Tensor(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  const std::shared_ptr<Impl>& impl() const { return impl_; }

 private:
  std::shared_ptr<Impl> impl_;
};

// A recorded operation: its differentiable inputs and the function that turns
// the output's gradient into the inputs' gradients.
struct GradNode {
  // Called once, with the output's gradient moved in: a function that takes it
  // by value can pass its buffer on (AccumulateGrad) without a copy.
  using Backward = std::function<void(Tensor grad_output)>;
  std::vector<Tensor> inputs;  // kept alive for backward
  Backward backward;
  const char* name = "";
};

// Whether ops record graph nodes on this thread (PyTorch's torch.no_grad()).
bool GradEnabled();
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

}  // namespace dnnd
