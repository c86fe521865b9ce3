// Every differentiable op's gradient against central finite differences.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "grad_check.h"
#include "tensor/ops.h"

namespace dnnd {
namespace {

using testing::ExpectGradientsMatch;

using testing::Rand;
using testing::RandAwayFromZero;

TEST(OpsGrad, MatMul) {
  ExpectGradientsMatch([](auto& in) { return ops::MatMul(in[0], in[1]); },
                       {Rand({3, 4}, 1), Rand({4, 5}, 2)});
}

TEST(OpsGrad, LinearWithBias) {
  ExpectGradientsMatch([](auto& in) { return ops::Linear(in[0], in[1], in[2]); },
                       {Rand({4, 6}, 1), Rand({3, 6}, 2), Rand({3}, 3)});
}

TEST(OpsGrad, LinearWithoutBias) {
  ExpectGradientsMatch([](auto& in) { return ops::Linear(in[0], in[1], Tensor()); },
                       {Rand({2, 5}, 4), Rand({7, 5}, 5)});
}

TEST(OpsGrad, AddSameShape) {
  ExpectGradientsMatch([](auto& in) { return ops::Add(in[0], in[1]); },
                       {Rand({2, 3}, 1), Rand({2, 3}, 2)});
}

TEST(OpsGrad, AddBroadcastRow) {
  ExpectGradientsMatch([](auto& in) { return ops::Add(in[0], in[1]); },
                       {Rand({4, 3}, 1), Rand({3}, 2)});
}

TEST(OpsGrad, SubBroadcastScalar) {
  ExpectGradientsMatch([](auto& in) { return ops::Sub(in[0], in[1]); },
                       {Rand({4, 3}, 1), Rand({1}, 2)});
}

TEST(OpsGrad, SubBroadcastRow) {
  ExpectGradientsMatch([](auto& in) { return ops::Sub(in[0], in[1]); },
                       {Rand({2, 2, 3}, 1), Rand({2, 3}, 2)});
}

TEST(OpsGrad, Mul) {
  ExpectGradientsMatch([](auto& in) { return ops::Mul(in[0], in[1]); },
                       {Rand({3, 3}, 1), Rand({3, 3}, 2)});
}

TEST(OpsGrad, MulScalar) {
  ExpectGradientsMatch([](auto& in) { return ops::MulScalar(in[0], -2.5f); }, {Rand({5}, 1)});
}

TEST(OpsGrad, Relu) {
  ExpectGradientsMatch([](auto& in) { return ops::Relu(in[0]); }, {RandAwayFromZero({4, 5}, 1)});
}

// |a| >= 0.1 and |b| <= 0.05: a + b stays off the kink within the step.
TEST(OpsGrad, AddRelu) {
  ExpectGradientsMatch([](auto& in) { return ops::AddRelu(in[0], in[1]); },
                       {RandAwayFromZero({4, 5}, 1), Rand({4, 5}, 2, -0.05f, 0.05f)});
}

// The fused op is Relu(Add(a, b)) bit for bit: outputs, and the gradients of
// both inputs, also where a + b is exactly 0 or NaN, and when both inputs
// are one tensor (its gradient then counts twice).
TEST(OpsGrad, AddReluIsReluOfAddBitForBit) {
  Tensor a1 = Rand({3, 7, 5}, 3), b1 = Rand({3, 7, 5}, 4);
  b1.data()[0] = -a1.data()[0];  // exactly 0
  a1.data()[1] = NAN;
  b1.data()[2] = -INFINITY;
  Tensor a2 = a1.clone(), b2 = b1.clone();
  for (Tensor* t : {&a1, &b1, &a2, &b2}) t->set_requires_grad(true);
  Tensor fused = ops::AddRelu(a1, b1);
  Tensor apart = ops::Relu(ops::Add(a2, b2));
  Tensor gy = Rand(fused.shape(), 5);
  fused.backward(gy);
  apart.backward(gy);
  auto bits = [](const Tensor& t) {
    std::vector<uint32_t> out(static_cast<size_t>(t.numel()));
    std::memcpy(out.data(), t.data(), out.size() * sizeof(uint32_t));
    return out;
  };
  EXPECT_EQ(bits(fused), bits(apart));
  EXPECT_EQ(bits(a1.grad()), bits(a2.grad()));
  EXPECT_EQ(bits(b1.grad()), bits(b2.grad()));

  Tensor x1 = Rand({4, 6}, 6), x2 = x1.clone();
  x1.set_requires_grad(true);
  x2.set_requires_grad(true);
  Tensor gz = Rand({4, 6}, 7);
  ops::AddRelu(x1, x1).backward(gz);
  ops::Relu(ops::Add(x2, x2)).backward(gz);
  EXPECT_EQ(bits(x1.grad()), bits(x2.grad()));
  EXPECT_THROW(ops::AddRelu(x1, Rand({6}, 8)), std::invalid_argument);
}

TEST(OpsGrad, Sigmoid) {
  ExpectGradientsMatch([](auto& in) { return ops::Sigmoid(in[0]); }, {Rand({4, 5}, 1, -3, 3)});
}

TEST(OpsGrad, Tanh) {
  ExpectGradientsMatch([](auto& in) { return ops::Tanh(in[0]); }, {Rand({4, 5}, 1, -2, 2)});
}

TEST(OpsGrad, Softmax) {
  ExpectGradientsMatch([](auto& in) { return ops::Softmax(in[0]); }, {Rand({3, 6}, 1, -2, 2)});
}

TEST(OpsGrad, LogSoftmax) {
  ExpectGradientsMatch([](auto& in) { return ops::LogSoftmax(in[0]); }, {Rand({3, 6}, 1, -2, 2)});
}

TEST(OpsGrad, SumAndMean) {
  ExpectGradientsMatch([](auto& in) { return ops::Sum(in[0]); }, {Rand({3, 4}, 1)});
  ExpectGradientsMatch([](auto& in) { return ops::Mean(in[0]); }, {Rand({3, 4}, 2)});
}

TEST(OpsGrad, ReshapeAndFlatten) {
  ExpectGradientsMatch([](auto& in) { return ops::Mul(ops::Flatten(in[0]), ops::Flatten(in[0])); },
                       {Rand({2, 3, 2, 2}, 1)});
}

TEST(OpsGrad, Conv2dStride1Pad1) {
  ExpectGradientsMatch([](auto& in) { return ops::Conv2d(in[0], in[1], in[2], 1, 1); },
                       {Rand({2, 2, 5, 5}, 1), Rand({3, 2, 3, 3}, 2), Rand({3}, 3)});
}

TEST(OpsGrad, Conv2dStride2NoPadNoBias) {
  ExpectGradientsMatch([](auto& in) { return ops::Conv2d(in[0], in[1], Tensor(), 2, 0); },
                       {Rand({2, 3, 7, 6}, 4), Rand({2, 3, 3, 2}, 5)});
}

TEST(OpsGrad, Conv2dAcrossSeveralSampleGroups) {
  // 19 samples: more than one GEMM group, the last one partial.
  ExpectGradientsMatch([](auto& in) { return ops::Conv2d(in[0], in[1], in[2], 1, 1); },
                       {Rand({19, 1, 4, 4}, 6), Rand({2, 1, 3, 3}, 7), Rand({2}, 8)});
}

TEST(OpsGrad, MaxPool2d) {
  // Distinct values, spaced far wider than eps, so the argmax never flips.
  Tensor x = Tensor::Empty({2, 2, 4, 6});
  Rng rng(7);
  std::vector<float> v(x.numel());
  for (size_t i = 0; i < v.size(); ++i) v[i] = 0.05f * static_cast<float>(i);
  std::shuffle(v.begin(), v.end(), rng);
  std::copy(v.begin(), v.end(), x.data());
  ExpectGradientsMatch([](auto& in) { return ops::MaxPool2d(in[0], 2, 2); }, {x});
  ExpectGradientsMatch([](auto& in) { return ops::MaxPool2d(in[0], 3, 1); }, {x.clone()});
}

TEST(OpsGrad, CrossEntropy) {
  std::vector<int32_t> labels = {0, 3, 1, 2};
  ExpectGradientsMatch([&](auto& in) { return ops::CrossEntropy(in[0], labels); },
                       {Rand({4, 4}, 1, -3, 3)});
}

TEST(OpsGrad, MseLoss) {
  Tensor target = Rand({3, 2}, 9);
  ExpectGradientsMatch([&](auto& in) { return ops::MseLoss(in[0], target); }, {Rand({3, 2}, 1)});
}

TEST(OpsGrad, BceLoss) {
  Tensor target = Tensor::FromVector({4}, {0, 1, 1, 0});
  ExpectGradientsMatch([&](auto& in) { return ops::BceLoss(in[0], target); },
                       {Rand({4}, 1, 0.1f, 0.9f)}, 1e-3f, 2e-3f, 2e-2f);
}

TEST(OpsGrad, Dropout) {
  ExpectGradientsMatch(
      [](auto& in) {
        Rng rng(42);  // same mask on every evaluation
        return ops::Dropout(in[0], 0.3f, rng);
      },
      {Rand({4, 5}, 1)});
}

TEST(OpsGrad, CompositeMlp) {
  std::vector<int32_t> labels = {1, 0, 2};
  ExpectGradientsMatch(
      [&](auto& in) {
        Tensor h = ops::Tanh(ops::Linear(in[0], in[1], in[2]));
        return ops::CrossEntropy(ops::Linear(h, in[3], Tensor()), labels);
      },
      {Rand({3, 4}, 1), Rand({5, 4}, 2), Rand({5}, 3), Rand({3, 5}, 4)});
}

}  // namespace
}  // namespace dnnd
