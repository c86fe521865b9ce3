// Autograd engine semantics (PyTorch's): accumulation, zero_grad, no_grad,
// shared inputs, graph release.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

#include "tensor/ops.h"
#include "tensor/storage.h"
#include "tensor/tensor.h"

namespace dnnd {
namespace {

TEST(Autograd, GradientsAccumulateAcrossBackwardCalls) {
  Tensor w = Tensor::FromVector({2}, {1.0f, 2.0f}).set_requires_grad(true);
  ops::Sum(ops::MulScalar(w, 3.0f)).backward();
  ops::Sum(ops::MulScalar(w, 3.0f)).backward();
  EXPECT_EQ(w.grad().ToVector(), (std::vector<float>{6.0f, 6.0f}));
  w.zero_grad();
  EXPECT_FALSE(w.grad().defined());
}

// backward's leaf_done names each trainable leaf once, as soon as its
// gradient is final: the last layer's first, and w1 (used by two branches)
// only after both have contributed.
TEST(Autograd, LeafDoneNamesEachLeafOnceItsGradientIsFinal) {
  Rng rng(3);
  Tensor x = Tensor::Normal({4, 5}, 0, 1, rng);
  Tensor w1 = Tensor::Normal({6, 5}, 0, 1, rng).set_requires_grad(true);
  Tensor b1 = Tensor::Normal({6}, 0, 1, rng).set_requires_grad(true);
  Tensor w2 = Tensor::Normal({3, 6}, 0, 1, rng).set_requires_grad(true);
  Tensor b2 = Tensor::Normal({3}, 0, 1, rng).set_requires_grad(true);
  Tensor tied = Tensor::Normal({4, 3}, 0, 1, rng).set_requires_grad(true);
  auto loss = [&] {
    Tensor h = ops::Relu(ops::Linear(x, w1, b1));
    Tensor y = ops::Linear(h, w2, b2);
    return ops::Add(ops::Sum(ops::Mul(ops::Add(y, tied), ops::Add(y, tied))),
                    ops::Sum(ops::MulScalar(ops::Linear(x, w1, b1), 0.5f)));
  };
  loss().backward();  // the reference gradients, without leaf_done
  std::map<const Tensor::Impl*, std::vector<float>> want;
  for (Tensor* t : {&w1, &b1, &w2, &b2, &tied}) {
    want[t->impl().get()] = t->grad().ToVector();
    t->zero_grad();
  }
  std::vector<const Tensor::Impl*> seen;
  Tensor l = loss();
  l.backward(Tensor::Full(l.shape(), 1.0f), [&](const Tensor& leaf) {
    seen.push_back(leaf.impl().get());
    // Final when named: equal to the whole backward's gradient already.
    EXPECT_EQ(leaf.grad().ToVector(), want.at(leaf.impl().get()));
  });
  ASSERT_EQ(seen.size(), 5u);
  EXPECT_EQ(std::set<const Tensor::Impl*>(seen.begin(), seen.end()).size(), 5u);  // once each
  auto at = [&](const Tensor& t) {
    return std::find(seen.begin(), seen.end(), t.impl().get()) - seen.begin();
  };
  EXPECT_LT(at(w2), at(w1));  // the last layer first
  EXPECT_LT(at(b2), at(b1));
  for (Tensor* t : {&w1, &b1, &w2, &b2, &tied})
    EXPECT_EQ(t->grad().ToVector(), want.at(t->impl().get()));
}

TEST(Autograd, InputUsedTwiceGetsBothContributions) {
  Tensor x = Tensor::FromVector({3}, {1.0f, -2.0f, 3.0f}).set_requires_grad(true);
  ops::Sum(ops::Mul(x, x)).backward();  // d/dx sum(x^2) = 2x
  EXPECT_EQ(x.grad().ToVector(), (std::vector<float>{2.0f, -4.0f, 6.0f}));
}

TEST(Autograd, AddPassThroughDoesNotAliasGradients) {
  Tensor a = Tensor::Zeros({2}).set_requires_grad(true);
  Tensor b = Tensor::Zeros({2}).set_requires_grad(true);
  ops::Sum(ops::Add(a, b)).backward();
  ops::Sum(ops::MulScalar(a, 5.0f)).backward();  // accumulates into a only
  EXPECT_EQ(a.grad().ToVector(), (std::vector<float>{6.0f, 6.0f}));
  EXPECT_EQ(b.grad().ToVector(), (std::vector<float>{1.0f, 1.0f}));
}

// A residual add hands one gradient to both branches. Intermediates share
// it (no copy); a later contribution to a shared gradient is added out of
// place, so the other branch still sees its own: here x = 3w reaches the add
// twice (dy/dx = 2) and the branch through r = 2x once more.
TEST(Autograd, ResidualAddSharesTheGradientAndAccumulatesCorrectly) {
  Tensor w = Tensor::FromVector({3}, {1.0f, -2.0f, 0.5f}).set_requires_grad(true);
  Tensor x = ops::MulScalar(w, 3.0f);
  Tensor r = ops::MulScalar(x, 2.0f);
  Tensor y = ops::Add(ops::Add(x, x), r);  // 4x = 12w
  ops::Sum(ops::Mul(y, Tensor::FromVector({3}, {1.0f, 2.0f, 3.0f}))).backward();
  EXPECT_EQ(w.grad().ToVector(), (std::vector<float>{12.0f, 24.0f, 36.0f}));
}

// What the sharing saves, counted in pooled buffers: the backward of a sum
// of two branches allocates the loss's gradient (Sum's backward) and each
// branch's input gradient, and nothing for the add (it copied the gradient
// for both of its inputs before).
TEST(Autograd, ResidualAddBackwardCopiesNoGradient) {
  Tensor w = Tensor::Ones({1 << 12}).set_requires_grad(true);
  Tensor loss = ops::Sum(ops::Add(ops::MulScalar(w, 2.0f), ops::MulScalar(w, 3.0f)));
  Tensor seed = Tensor::Full(loss.shape(), 1.0f);
  const uint64_t before = GetBufferPoolStats().allocations;
  loss.backward(seed);
  // Sum's backward: 1; MulScalar's backward: 1 each (the first becomes w's
  // gradient, the second is added into it).
  EXPECT_EQ(GetBufferPoolStats().allocations - before, 3u);
  EXPECT_EQ(w.grad().ToVector(), std::vector<float>(1 << 12, 5.0f));
}

// Leaves never share a gradient buffer: an optimizer or clipping changes a
// leaf's gradient in place, which must not reach another leaf's.
TEST(Autograd, LeavesOfOneAddOwnTheirGradients) {
  Tensor a = Tensor::Zeros({2}).set_requires_grad(true);
  Tensor b = Tensor::Zeros({2}).set_requires_grad(true);
  ops::Sum(ops::Add(a, b)).backward();
  a.grad().data()[0] = 7.0f;  // as an in-place clip would
  EXPECT_EQ(b.grad().ToVector(), (std::vector<float>{1.0f, 1.0f}));
  EXPECT_NE(a.grad().data(), b.grad().data());
}

TEST(Autograd, NoGradGuardRecordsNothing) {
  Tensor w = Tensor::Ones({2}).set_requires_grad(true);
  Tensor y;
  {
    NoGradGuard guard;
    y = ops::MulScalar(w, 2.0f);
  }
  EXPECT_FALSE(y.requires_grad());
  EXPECT_TRUE(GradEnabled());
}

TEST(Autograd, BackwardFreesTheGraph) {
  Tensor w = Tensor::Ones({2}).set_requires_grad(true);
  Tensor y = ops::Sum(ops::MulScalar(w, 2.0f));
  ASSERT_NE(y.grad_fn(), nullptr);
  y.backward();
  EXPECT_EQ(y.grad_fn(), nullptr);
}

TEST(Autograd, BackwardOnNonScalarNeedsGradOutput) {
  Tensor w = Tensor::Ones({2}).set_requires_grad(true);
  Tensor y = ops::MulScalar(w, 2.0f);
  EXPECT_THROW(y.backward(), std::invalid_argument);
  y.backward(Tensor::FromVector({2}, {1.0f, 10.0f}));
  EXPECT_EQ(w.grad().ToVector(), (std::vector<float>{2.0f, 20.0f}));
}

TEST(Autograd, DetachStopsGradients) {
  Tensor w = Tensor::Ones({2}).set_requires_grad(true);
  Tensor d = ops::MulScalar(w, 2.0f).detach();
  EXPECT_FALSE(d.requires_grad());
}

TEST(Autograd, ShapeMismatchIsAnErrorNamingBothShapes) {
  Tensor a = Tensor::Zeros({2, 3}), b = Tensor::Zeros({4, 5});
  try {
    ops::MatMul(a, b);
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("[2, 3]"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("[4, 5]"), std::string::npos);
  }
}

TEST(Autograd, CrossEntropyRejectsOutOfRangeLabels) {
  Tensor logits = Tensor::Zeros({2, 3});
  std::vector<int32_t> labels = {0, 3};
  EXPECT_THROW(ops::CrossEntropy(logits, labels), std::invalid_argument);
}

TEST(Autograd, CrossEntropyIsStableForHugeLogits) {
  Tensor logits = Tensor::FromVector({1, 2}, {1000.0f, -1000.0f});
  std::vector<int32_t> labels = {1};
  float loss = ops::CrossEntropy(logits, labels).item();
  EXPECT_FLOAT_EQ(loss, 2000.0f);
}

}  // namespace
}  // namespace dnnd
