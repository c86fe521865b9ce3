#include "tensor/tensor.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>

#include "tensor/kernels.h"

namespace dnnd {

struct Tensor::Impl {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;  // in elements
  Shape shape;
  int64_t numel = 0;
  bool requires_grad = false;
  std::shared_ptr<Impl> grad;
  std::shared_ptr<GradNode> grad_fn;
};

int64_t ShapeNumel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) return -1;
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d) return -1;
    n *= d;
  }
  return n;
}

std::string ShapeToString(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

namespace {

std::shared_ptr<Tensor::Impl> MakeImpl(std::shared_ptr<Storage> storage, int64_t offset,
                                       const Shape& shape) {
  auto impl = std::make_shared<Tensor::Impl>();
  impl->storage = std::move(storage);
  impl->offset = offset;
  impl->shape = shape;
  impl->numel = ShapeNumel(shape);
  if (impl->numel < 0) throw std::invalid_argument("invalid shape " + ShapeToString(shape));
  return impl;
}

thread_local bool grad_enabled = true;

}  // namespace

Tensor Tensor::Empty(const Shape& shape) {
  int64_t n = ShapeNumel(shape);
  if (n < 0) throw std::invalid_argument("invalid shape " + ShapeToString(shape));
  return Tensor(MakeImpl(Storage::Allocate(static_cast<size_t>(n) * sizeof(float)), 0, shape));
}

Tensor Tensor::Zeros(const Shape& shape) { return Full(shape, 0.0f); }

Tensor Tensor::Full(const Shape& shape, float value) {
  Tensor t = Empty(shape);
  t.Fill(value);
  return t;
}

Tensor Tensor::FromVector(const Shape& shape, const std::vector<float>& values) {
  Tensor t = Empty(shape);
  if (static_cast<int64_t>(values.size()) != t.numel())
    throw std::invalid_argument("FromVector: " + std::to_string(values.size()) +
                                " values for shape " + ShapeToString(shape));
  std::copy(values.begin(), values.end(), t.data());
  return t;
}

Tensor Tensor::Uniform(const Shape& shape, float lo, float hi, Rng& rng) {
  Tensor t = Empty(shape);
  std::uniform_real_distribution<float> dist(lo, hi);
  float* p = t.data();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = dist(rng);
  return t;
}

Tensor Tensor::Normal(const Shape& shape, float mean, float std, Rng& rng) {
  Tensor t = Empty(shape);
  std::normal_distribution<float> dist(mean, std);
  float* p = t.data();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = dist(rng);
  return t;
}

Tensor Tensor::Wrap(float* data, const Shape& shape, std::shared_ptr<const void> keep_alive) {
  int64_t n = ShapeNumel(shape);
  if (n < 0) throw std::invalid_argument("invalid shape " + ShapeToString(shape));
  auto storage = Storage::Wrap(data, static_cast<size_t>(n) * sizeof(float), std::move(keep_alive));
  return Tensor(MakeImpl(std::move(storage), 0, shape));
}

Tensor Tensor::FromStorage(std::shared_ptr<Storage> storage, int64_t offset, const Shape& shape) {
  auto impl = MakeImpl(std::move(storage), offset, shape);
  if ((offset + impl->numel) * static_cast<int64_t>(sizeof(float)) >
      static_cast<int64_t>(impl->storage->bytes()))
    throw std::out_of_range("tensor " + ShapeToString(shape) + " at offset " +
                            std::to_string(offset) + " exceeds its storage");
  return Tensor(std::move(impl));
}

const Shape& Tensor::shape() const { return impl_->shape; }

int64_t Tensor::size(int d) const {
  int n = ndim();
  if (d < 0) d += n;
  if (d < 0 || d >= n) throw std::out_of_range("dimension out of range");
  return impl_->shape[d];
}

int64_t Tensor::numel() const { return impl_->numel; }
float* Tensor::data() { return static_cast<float*>(impl_->storage->data()) + impl_->offset; }
const float* Tensor::data() const {
  return static_cast<const float*>(impl_->storage->data()) + impl_->offset;
}
const std::shared_ptr<Storage>& Tensor::storage() const { return impl_->storage; }

float Tensor::item() const {
  if (numel() != 1)
    throw std::invalid_argument("item() of a tensor with " + ShapeToString(shape()));
  return data()[0];
}

std::vector<float> Tensor::ToVector() const { return {data(), data() + numel()}; }

Tensor Tensor::Narrow0(int64_t start, int64_t length) const {
  if (ndim() == 0 || start < 0 || length < 0 || start + length > size(0))
    throw std::out_of_range("Narrow0 out of range");
  Shape s = shape();
  s[0] = length;
  int64_t row = size(0) == 0 ? 0 : numel() / size(0);
  return Tensor(MakeImpl(impl_->storage, impl_->offset + start * row, s));
}

Tensor Tensor::clone() const {
  Tensor t = Empty(shape());
  std::memcpy(t.data(), data(), nbytes());
  return t;
}

Tensor Tensor::detach() const { return Tensor(MakeImpl(impl_->storage, impl_->offset, shape())); }

void Tensor::CopyFrom(const Tensor& src) {
  if (src.numel() != numel())
    throw std::invalid_argument("CopyFrom " + ShapeToString(src.shape()) + " into " +
                                ShapeToString(shape()));
  if (src.data() != data()) std::memcpy(data(), src.data(), nbytes());
}

void Tensor::Fill(float value) { kernels::Fill(data(), numel(), value); }

bool Tensor::SameStorage(const Tensor& other) const {
  return defined() && other.defined() && impl_->storage == other.impl_->storage;
}

Tensor Tensor::Reshape(const Shape& new_shape) const {
  Shape s = new_shape;
  int64_t known = 1;
  int infer = -1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      if (infer >= 0) throw std::invalid_argument("Reshape: more than one -1");
      infer = static_cast<int>(i);
    } else {
      known *= s[i];
    }
  }
  if (infer >= 0 && known > 0) s[infer] = numel() / known;
  if (ShapeNumel(s) != numel())
    throw std::invalid_argument("Reshape " + ShapeToString(shape()) + " to " +
                                ShapeToString(new_shape));
  Tensor out(MakeImpl(impl_->storage, impl_->offset, s));
  if (GradEnabled() && requires_grad()) {
    auto node = std::make_shared<GradNode>();
    node->name = "Reshape";
    node->inputs = {*this};
    Shape in_shape = shape();
    GradNode* raw = node.get();
    node->backward = [raw, in_shape](Tensor g) {
      Tensor view = g.detach().Reshape(in_shape);
      g = Tensor();  // the view alone holds the buffer: AccumulateGrad may take it
      raw->inputs[0].AccumulateGrad(std::move(view));
    };
    out.set_grad_fn(std::move(node));
  }
  return out;
}

bool Tensor::requires_grad() const { return impl_ && (impl_->requires_grad || impl_->grad_fn); }

Tensor& Tensor::set_requires_grad(bool on) {
  impl_->requires_grad = on;
  return *this;
}

Tensor Tensor::grad() const { return impl_->grad ? Tensor(impl_->grad) : Tensor(); }
void Tensor::set_grad(Tensor g) { impl_->grad = g.impl_; }
void Tensor::zero_grad() { impl_->grad.reset(); }
bool Tensor::is_leaf() const { return impl_->grad_fn == nullptr; }
const std::shared_ptr<GradNode>& Tensor::grad_fn() const { return impl_->grad_fn; }
void Tensor::set_grad_fn(std::shared_ptr<GradNode> node) { impl_->grad_fn = std::move(node); }

void Tensor::AccumulateGrad(Tensor g) const {
  if (g.shape() != shape())
    throw std::logic_error("gradient shape " + ShapeToString(g.shape()) + " for tensor " +
                           ShapeToString(shape()));
  auto& slot = impl_->grad;
  const bool leaf = impl_->grad_fn == nullptr;
  if (!slot) {
    // A leaf steals the buffer only when nobody else can observe it; otherwise
    // an in-place accumulation (or an optimizer's change) would corrupt the
    // other holder. An intermediate may share it (see the header).
    bool exclusive =
        g.impl_.use_count() == 1 && g.impl_->storage.use_count() == 1 && g.impl_->storage->owned();
    if (exclusive)
      slot = std::move(g.impl_);
    else if (!leaf)
      slot = MakeImpl(g.impl_->storage, g.impl_->offset, g.shape());
    else
      slot = g.clone().impl_;
    slot->grad_fn.reset();
    slot->requires_grad = false;
    return;
  }
  Tensor sum(slot);
  if (!leaf && (slot->storage.use_count() > 1 || !slot->storage->owned())) {
    // Still shared with another gradient: add out of place, one pass.
    Tensor fresh = Empty(shape());
    kernels::Add(numel(), sum.data(), g.data(), fresh.data());
    slot = std::move(fresh.impl_);
    return;
  }
  kernels::Axpy(numel(), 1.0f, g.data(), sum.data());
}

void Tensor::backward() const {
  if (numel() != 1)
    throw std::invalid_argument("backward() needs a scalar; got " + ShapeToString(shape()));
  backward(Tensor::Full(shape(), 1.0f));
}

void Tensor::backward(const Tensor& grad_output) const { backward(grad_output, nullptr); }

void Tensor::backward(const Tensor& grad_output, const LeafDone& leaf_done) const {
  if (!requires_grad()) throw std::logic_error("backward() on a tensor that does not require grad");
  // Topological order of the impls reachable through grad_fn edges. Strong
  // references: running a node releases its inputs, which may be the last
  // owner of impls still waiting their turn.
  std::vector<std::shared_ptr<Impl>> order;
  std::unordered_set<Impl*> seen;
  std::vector<std::pair<std::shared_ptr<Impl>, size_t>> stack{{impl_, 0}};
  seen.insert(impl_.get());
  while (!stack.empty()) {
    GradNode* fn = stack.back().first->grad_fn.get();
    size_t& next = stack.back().second;
    if (fn && next < fn->inputs.size()) {
      const std::shared_ptr<Impl>& child = fn->inputs[next++].impl_;
      if (child && child->grad_fn && seen.insert(child.get()).second) stack.push_back({child, 0});
      continue;
    }
    order.push_back(std::move(stack.back().first));
    stack.pop_back();
  }
  // With leaf_done: the leaves each node is the last to feed, by execution
  // position (order runs backwards); a leaf is final once that node has run.
  std::vector<std::vector<Tensor>> finished;
  if (leaf_done) {
    std::unordered_map<Impl*, size_t> last;
    std::vector<Tensor> leaves;
    for (size_t i = 0; i < order.size(); ++i) {
      const GradNode* fn = order[order.size() - 1 - i]->grad_fn.get();
      if (!fn) continue;
      for (const Tensor& in : fn->inputs)
        if (in.impl_ && !in.impl_->grad_fn && in.requires_grad()) {
          auto [it, fresh] = last.emplace(in.impl_.get(), i);
          if (fresh) leaves.push_back(in);
          it->second = i;
        }
    }
    finished.resize(order.size());
    for (const Tensor& leaf : leaves) finished[last.at(leaf.impl_.get())].push_back(leaf);
  }
  // The root's gradient seeds the walk; each node's gradient and saved inputs
  // are released as soon as it has run, so activations free progressively.
  AccumulateGrad(grad_output);
  for (size_t i = 0; i < order.size(); ++i) {
    std::shared_ptr<Impl> node = std::move(order[order.size() - 1 - i]);
    if (node->grad_fn) {  // (a leaf root keeps its gradient)
      std::shared_ptr<GradNode> fn = std::move(node->grad_fn);
      // No gradient here: no path from the root carried one.
      if (std::shared_ptr<Impl> g = std::move(node->grad)) fn->backward(Tensor(std::move(g)));
    }
    if (leaf_done)
      for (const Tensor& leaf : finished[i]) leaf_done(leaf);
  }
}

bool GradEnabled() { return grad_enabled; }
NoGradGuard::NoGradGuard() : previous_(grad_enabled) { grad_enabled = false; }
NoGradGuard::~NoGradGuard() { grad_enabled = previous_; }

}  // namespace dnnd
