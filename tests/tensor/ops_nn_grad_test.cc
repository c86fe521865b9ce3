// Gradients of the ops in src/tensor/ops_nn.cc (and MaxPool2d's padding,
// CrossEntropy's label smoothing) against central finite differences, plus
// the argument checks. Parity with PyTorch: torch_parity_test.cc.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "grad_check.h"
#include "tensor/conv.h"
#include "tensor/ops.h"

namespace dnnd {
namespace {

using testing::ExpectGradientsMatch;

using testing::Rand;
using testing::RandAwayFromZero;

// Distinct values 0.05 apart in random order: a max-pool window's winner
// never changes within the finite-difference step.
Tensor DistinctValues(const Shape& s, uint64_t seed) {
  Tensor t = Tensor::Empty(s);
  std::vector<int64_t> perm(t.numel());
  std::iota(perm.begin(), perm.end(), 0);
  Rng rng(seed);
  std::shuffle(perm.begin(), perm.end(), rng);
  for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = 0.05f * (perm[i] - t.numel() / 2);
  return t;
}

TEST(OpsNnGrad, LeakyRelu) {
  ExpectGradientsMatch([](auto& in) { return ops::LeakyRelu(in[0], 0.1f); },
                       {RandAwayFromZero({4, 5}, 1)});
  ExpectGradientsMatch([](auto& in) { return ops::LeakyRelu(in[0], -0.3f); },
                       {RandAwayFromZero({3, 4}, 2)});
}

TEST(OpsNnGrad, Gelu) {
  ExpectGradientsMatch([](auto& in) { return ops::Gelu(in[0]); }, {Rand({4, 5}, 1, -3, 3)});
}

TEST(OpsNnGrad, GeluValues) {
  Tensor y = ops::Gelu(Tensor::FromVector({3}, {-1.0f, 0.0f, 2.0f}));
  // x * Phi(x): Phi(-1) = 0.158655, Phi(2) = 0.977250.
  EXPECT_NEAR(y.data()[0], -0.158655f, 1e-6);
  EXPECT_EQ(y.data()[1], 0.0f);
  EXPECT_NEAR(y.data()[2], 1.954500f, 1e-6);
}

TEST(OpsNnGrad, ConcatEveryDim) {
  for (int dim : {0, 1, 2, -1}) {
    SCOPED_TRACE(dim);
    Shape a = {2, 3, 4}, b = a, c = a;
    const int d = dim < 0 ? dim + 3 : dim;
    b[d] = 1;
    c[d] = 2;
    ExpectGradientsMatch([dim](auto& in) { return ops::Concat(in, dim); },
                         {Rand(a, 1), Rand(b, 2), Rand(c, 3)});
  }
}

TEST(OpsNnGrad, ConcatValuesAndErrors) {
  Tensor a = Tensor::FromVector({2, 1}, {1, 2});
  Tensor b = Tensor::FromVector({2, 2}, {3, 4, 5, 6});
  EXPECT_EQ(ops::Concat({a, b}, 1).ToVector(), (std::vector<float>{1, 3, 4, 2, 5, 6}));
  EXPECT_EQ(ops::Concat({a, b}, 1).shape(), (Shape{2, 3}));
  EXPECT_THROW(ops::Concat({a, b}, 0), std::invalid_argument);
  EXPECT_THROW(ops::Concat({a, b}, 2), std::invalid_argument);
  EXPECT_THROW(ops::Concat({}, 0), std::invalid_argument);
  EXPECT_THROW(ops::Concat({a, Tensor::Zeros({2, 1, 1})}, 1), std::invalid_argument);
}

// BatchNorm with fixed running statistics captured by the closure.
struct BnCase {
  Shape x;
  bool training, affine;
};

void CheckBatchNorm(const BnCase& bc) {
  const int64_t c = bc.x[1];
  Tensor rm = Rand({c}, 7, -0.5f, 0.5f);
  Tensor rv = Rand({c}, 8, 0.5f, 1.5f);
  auto f = [&](std::vector<Tensor>& in) {
    Tensor w = bc.affine ? in[1] : Tensor();
    Tensor b = bc.affine ? in[2] : Tensor();
    return ops::BatchNorm(in[0], w, b, rm, rv, bc.training, 0.1f, 1e-5f);
  };
  std::vector<Tensor> inputs = {Rand(bc.x, 1, -2, 2)};
  if (bc.affine) {
    inputs.push_back(Rand({c}, 2, 0.5f, 1.5f));
    inputs.push_back(Rand({c}, 3));
  }
  ExpectGradientsMatch(f, inputs, 1e-3f, 3e-3f, 1e-2f);
}

TEST(OpsNnGrad, BatchNorm2dTrain) { CheckBatchNorm({{4, 3, 3, 2}, true, true}); }
TEST(OpsNnGrad, BatchNorm2dTrainNoAffine) { CheckBatchNorm({{3, 2, 2, 3}, true, false}); }
TEST(OpsNnGrad, BatchNorm1dTrain) { CheckBatchNorm({{6, 4}, true, true}); }
TEST(OpsNnGrad, BatchNorm1dTrainNoAffine) { CheckBatchNorm({{5, 3}, true, false}); }
TEST(OpsNnGrad, BatchNorm2dEval) { CheckBatchNorm({{3, 3, 2, 2}, false, true}); }
TEST(OpsNnGrad, BatchNorm1dEvalNoAffine) { CheckBatchNorm({{4, 5}, false, false}); }

// The fused op computes what Relu(BatchNorm(x)) does, forward and backward
// (the same float expressions; sums may round differently in the last
// place), on 4-D and 2-D inputs, in training and evaluation, with and
// without affine parameters; NaN reaches the output as through the separate
// ReLU.
void CheckBatchNormReluMatchesComposition(const Shape& shape, bool training, bool affine) {
  SCOPED_TRACE(ShapeToString(shape) + (training ? " train" : " eval") + (affine ? " affine" : ""));
  const int64_t c = shape[1];
  Tensor x1 = Rand(shape, 21, -2, 2);
  x1.data()[1] = NAN;
  Tensor x2 = x1.clone();
  Tensor w1 = affine ? Rand({c}, 22, 0.5f, 1.5f) : Tensor();
  Tensor b1 = affine ? Rand({c}, 23) : Tensor();
  Tensor w2 = affine ? w1.clone() : Tensor(), b2 = affine ? b1.clone() : Tensor();
  for (Tensor* t : {&x1, &x2, &w1, &b1, &w2, &b2})
    if (t->defined()) t->set_requires_grad(true);
  Tensor rm1 = Rand({c}, 24, -0.5f, 0.5f), rv1 = Rand({c}, 25, 0.5f, 1.5f);
  Tensor rm2 = rm1.clone(), rv2 = rv1.clone();
  Tensor fused = ops::BatchNormRelu(x1, w1, b1, rm1, rv1, training, 0.1f, 1e-5f);
  Tensor apart = ops::Relu(ops::BatchNorm(x2, w2, b2, rm2, rv2, training, 0.1f, 1e-5f));
  Tensor gy = Rand(fused.shape(), 26, -1, 1);
  fused.backward(gy);
  apart.backward(gy);
  auto expect_same = [](const char* what, const Tensor& a, const Tensor& b) {
    ASSERT_EQ(a.numel(), b.numel()) << what;
    for (int64_t i = 0; i < a.numel(); ++i)
      if (!(std::isnan(a.data()[i]) && std::isnan(b.data()[i])))
        ASSERT_NEAR(a.data()[i], b.data()[i], 1e-5 * (1 + std::abs(b.data()[i])))
            << what << " element " << i;
  };
  expect_same("y", fused, apart);
  expect_same("running_mean", rm1, rm2);
  expect_same("running_var", rv1, rv2);
  expect_same("gx", x1.grad(), x2.grad());
  if (affine) {
    expect_same("gw", w1.grad(), w2.grad());
    expect_same("gb", b1.grad(), b2.grad());
  }
}

TEST(OpsNnGrad, BatchNormReluMatchesComposition) {
  for (bool training : {true, false})
    for (bool affine : {true, false}) {
      CheckBatchNormReluMatchesComposition({4, 3, 5, 6}, training, affine);
      CheckBatchNormReluMatchesComposition({7, 5}, training, affine);
    }
}

// The fused ReLU's mask in training is recomputed from x in backward (one
// memory stream less than reading y): it must be the forward's own, element
// for element, also where y lands within rounding of 0. The bias puts every
// x equal to 0.5 (a quarter of the inputs) on the kink, so y there is a few
// ulps either side of 0 (or exactly 0), differently in each of the 32
// channels; with gradients in [0.5, 1], one element masked differently from
// y would move its channel's bias gradient (the masked sum) by at least 0.5.
// On every kernel set.
TEST(OpsNnGrad, BatchNormReluMaskIsTheForwardOutputs) {
  const std::string restore = conv::CurrentIsa();
  for (const std::string& isa : conv::AvailableIsas()) {
    SCOPED_TRACE(isa);
    ASSERT_TRUE(conv::SelectIsa(isa));
    const Shape shape{4, 32, 7, 7};  // 49-float runs: full vectors and tails
    const int64_t n = shape[0], c = shape[1], plane = 49;
    Tensor x = Rand(shape, 31, 0, 1);
    for (int64_t i = 0; i < x.numel(); ++i)  // quarters: 0, 0.25, 0.5, 0.75
      x.data()[i] = std::floor(x.data()[i] * 4) / 4;
    Tensor w = Rand({c}, 32, 0.5f, 1.5f), b = Tensor::Zeros({c});
    for (int64_t ch = 0; ch < c; ++ch) {  // b = -(0.5 - mean) * w / std, in double
      double s1 = 0, s2 = 0;
      for (int64_t i = 0; i < n; ++i)
        for (int64_t q = 0; q < plane; ++q) s1 += x.data()[(i * c + ch) * plane + q];
      const double mean = s1 / double(n * plane);
      for (int64_t i = 0; i < n; ++i)
        for (int64_t q = 0; q < plane; ++q) {
          const double d = x.data()[(i * c + ch) * plane + q] - mean;
          s2 += d * d;
        }
      const double sd = std::sqrt(s2 / double(n * plane) + 1e-5);
      b.data()[ch] = static_cast<float>(-(0.5 - mean) * w.data()[ch] / sd);
    }
    for (Tensor* t : {&x, &w, &b}) t->set_requires_grad(true);
    Tensor rm = Tensor::Zeros({c}), rv = Tensor::Ones({c});
    Tensor y = ops::BatchNormRelu(x, w, b, rm, rv, true, 0.1f, 1e-5f);
    Tensor gy = Rand(shape, 33, 0.5f, 1.0f);
    y.backward(gy);
    int64_t on_kink = 0, passed = 0;
    for (int64_t ch = 0; ch < c; ++ch) {
      double expect = 0;
      for (int64_t i = 0; i < n; ++i)
        for (int64_t q = 0; q < plane; ++q) {
          const int64_t at = (i * c + ch) * plane + q;
          if (y.data()[at] > 0) expect += gy.data()[at];
          if (x.data()[at] == 0.5f) {
            ++on_kink;
            passed += y.data()[at] > 0;
          }
        }
      EXPECT_NEAR(b.grad().data()[ch], expect, 0.05) << "channel " << ch;
    }
    EXPECT_GT(on_kink, 800);  // the inputs the test is about are there
    RecordProperty("passed_on_kink_" + isa, std::to_string(passed) + "/" + std::to_string(on_kink));
  }
  conv::SelectIsa(restore);
}

// An optimizer step between forward and backward (a layer server's client
// may step with micro-batches pending) changes weight and bias in place;
// the gradients are still those of the forward that ran, mask included,
// as when nothing changed. Fused and plain, training and evaluation.
TEST(OpsNnGrad, BatchNormBackwardUsesTheWeightsItsForwardUsed) {
  for (bool relu : {true, false})
    for (bool training : {true, false}) {
      SCOPED_TRACE(std::string(relu ? "relu " : "") + (training ? "train" : "eval"));
      auto run = [&](bool step_between) {
        Tensor x = Rand({4, 6, 5, 5}, 41, -2, 2);
        Tensor w = Rand({6}, 42, 0.5f, 1.5f), b = Rand({6}, 43, -0.5f, 0.5f);
        for (Tensor* t : {&x, &w, &b}) t->set_requires_grad(true);
        Tensor rm = Tensor::Zeros({6}), rv = Tensor::Ones({6});
        Tensor y = relu ? ops::BatchNormRelu(x, w, b, rm, rv, training, 0.1f, 1e-5f)
                        : ops::BatchNorm(x, w, b, rm, rv, training, 0.1f, 1e-5f);
        if (step_between)
          for (int64_t ch = 0; ch < 6; ++ch) {
            w.data()[ch] *= 3.0f;
            b.data()[ch] += 1.0f;
          }
        y.backward(Rand(y.shape(), 44));
        std::vector<float> out = x.grad().ToVector();
        for (const Tensor* t : {&w, &b}) {
          const std::vector<float> v = t->grad().ToVector();
          out.insert(out.end(), v.begin(), v.end());
        }
        return out;
      };
      EXPECT_EQ(run(true), run(false));
    }
}

TEST(OpsNnGrad, BatchNormRunningStatsAndErrors) {
  // Channel 0 holds 1, 2, 3, 4: mean 2.5, biased var 1.25, unbiased 5/3.
  Tensor x = Tensor::FromVector({2, 2, 1, 2}, {1, 2, 0, 0, 3, 4, 0, 0});
  Tensor rm = Tensor::Zeros({2}), rv = Tensor::Ones({2});
  Tensor y = ops::BatchNorm(x, Tensor(), Tensor(), rm, rv, true, 0.1f, 0.0001f);
  EXPECT_NEAR(rm.data()[0], 0.25f, 1e-6);
  EXPECT_NEAR(rv.data()[0], 0.9f + 0.1f * 5.0f / 3.0f, 1e-6);
  EXPECT_NEAR(rv.data()[1], 0.9f, 1e-6);  // a constant channel: variance 0
  EXPECT_NEAR(y.data()[0], -1.5f / std::sqrt(1.25f + 0.0001f), 1e-5);
  EXPECT_EQ(y.data()[2], 0.0f);
  // Evaluation leaves the running statistics alone.
  ops::BatchNorm(x, Tensor(), Tensor(), rm, rv, false, 0.1f, 1e-5f);
  EXPECT_NEAR(rm.data()[0], 0.25f, 1e-6);
  EXPECT_THROW(
      ops::BatchNorm(Tensor::Zeros({2, 2, 2}), Tensor(), Tensor(), rm, rv, true, 0.1f, 1e-5f),
      std::invalid_argument);
  EXPECT_THROW(ops::BatchNorm(x, Tensor::Ones({3}), Tensor(), rm, rv, true, 0.1f, 1e-5f),
               std::invalid_argument);
  // One value per channel cannot give a batch variance.
  EXPECT_THROW(ops::BatchNorm(Tensor::Zeros({1, 2}), Tensor(), Tensor(), rm, rv, true, 0.1f, 1e-5f),
               std::invalid_argument);
}

TEST(OpsNnGrad, BatchNormStatisticsFarFromZero) {
  // Mean 1000, spread 0.05: a float sum of squares minus squared mean would
  // lose every digit. With momentum 1 the running statistics are the batch's
  // mean and unbiased variance; compare with double arithmetic on the same
  // float values.
  for (const Shape& shape : {Shape{16, 3, 9, 7}, Shape{200, 3}}) {
    Tensor x = Rand(shape, 5, 1000.0f - 0.05f, 1000.0f + 0.05f);
    const int64_t c = 3, plane = x.numel() / (shape[0] * c), m = shape[0] * plane;
    Tensor rm = Tensor::Zeros({c}), rv = Tensor::Zeros({c});
    ops::BatchNorm(x, Tensor(), Tensor(), rm, rv, true, 1.0f, 1e-5f);
    for (int64_t ch = 0; ch < c; ++ch) {
      double s = 0, ss = 0;
      for (int64_t i = 0; i < shape[0]; ++i)
        for (int64_t p = 0; p < plane; ++p) s += x.data()[(i * c + ch) * plane + p];
      const double mean = s / m;
      for (int64_t i = 0; i < shape[0]; ++i)
        for (int64_t p = 0; p < plane; ++p) {
          const double d = x.data()[(i * c + ch) * plane + p] - mean;
          ss += d * d;
        }
      EXPECT_NEAR(rm.data()[ch], mean, 1e-4);
      EXPECT_NEAR(rv.data()[ch], ss / (m - 1), 1e-5 * ss / (m - 1)) << ShapeToString(shape);
    }
  }
}

// Batch norm on [n, c, h, w] against plain double arithmetic, forward and
// backward, with and without the fused ReLU: planes that leave a vector tail
// (1x2, 1x7, 7x7), run longer than one sum block of 1024 floats (33x33), and
// a NaN in one channel, which must reach that channel's outputs and its
// gradients and no other channel's. The kernels run per instruction set
// (the avx2.* reruns take the AVX2 ones).
void CheckBatchNormAgainstReference(const Shape& shape, bool relu) {
  SCOPED_TRACE(ShapeToString(shape) + (relu ? " relu" : ""));
  const int64_t n = shape[0], c = shape[1], plane = shape[2] * shape[3], m = n * plane;
  const float eps = 1e-5f;
  Tensor x = Rand(shape, 31, -2, 2);
  x.data()[plane + 1] = NAN;  // sample 0, channel 1 (when c > 1)
  Tensor w = Rand({c}, 32, 0.5f, 1.5f), b = Rand({c}, 33);
  for (Tensor* t : {&x, &w, &b}) t->set_requires_grad(true);
  Tensor rm = Tensor::Zeros({c}), rv = Tensor::Ones({c});
  Tensor y = relu ? ops::BatchNormRelu(x, w, b, rm, rv, true, 0.1f, eps)
                  : ops::BatchNorm(x, w, b, rm, rv, true, 0.1f, eps);
  Tensor gy = Rand(shape, 34, -1, 1);
  y.backward(gy);
  auto at = [&](int64_t i, int64_t ch, int64_t p) { return (i * c + ch) * plane + p; };
  auto near = [](double want, float got) {
    return std::isnan(want) ? std::isnan(got) : std::abs(got - want) <= 1e-4 * (1 + std::abs(want));
  };
  for (int64_t ch = 0; ch < c; ++ch) {
    SCOPED_TRACE(ch);
    double s = 0, ss = 0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t p = 0; p < plane; ++p) s += x.data()[at(i, ch, p)];
    const double mean = s / m;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t p = 0; p < plane; ++p) ss += std::pow(x.data()[at(i, ch, p)] - mean, 2);
    const double is = 1 / std::sqrt(ss / m + eps);
    // The gradient reaching the batch norm (after ReLU's mask) and its sums.
    std::vector<double> gm(static_cast<size_t>(m)), xhat(static_cast<size_t>(m));
    double sg = 0, sgx = 0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t p = 0; p < plane; ++p) {
        const int64_t e = at(i, ch, p), q = i * plane + p;
        xhat[q] = (x.data()[e] - mean) * is;
        double out = xhat[q] * w.data()[ch] + b.data()[ch];
        if (relu && out <= 0) out = 0;
        ASSERT_TRUE(near(out, y.data()[e])) << "y " << i << "," << p;
        gm[q] = relu && !(out > 0) ? 0.0 : gy.data()[e];
        sg += gm[q];
        sgx += gm[q] * xhat[q];
      }
    ASSERT_TRUE(near(sg, b.grad().data()[ch])) << "gb";
    ASSERT_TRUE(near(sgx, w.grad().data()[ch])) << "gw";
    for (int64_t i = 0; i < n; ++i)
      for (int64_t p = 0; p < plane; ++p) {
        const int64_t q = i * plane + p;
        const double gx = w.data()[ch] * is / m * (m * gm[q] - sg - xhat[q] * sgx);
        ASSERT_TRUE(near(gx, x.grad().data()[at(i, ch, p)])) << "gx " << i << "," << p;
      }
  }
}

TEST(OpsNnGrad, BatchNormPlanesAgainstReference) {
  for (bool relu : {false, true})
    for (const Shape& shape :
         {Shape{3, 2, 1, 2}, Shape{5, 3, 1, 7}, Shape{4, 3, 7, 7}, Shape{2, 3, 33, 33}})
      CheckBatchNormAgainstReference(shape, relu);
}

TEST(OpsNnGrad, LayerNorm) {
  ExpectGradientsMatch([](auto& in) { return ops::LayerNorm(in[0], in[1], in[2], 8, 1e-5f); },
                       {Rand({3, 2, 4}, 1, -2, 2), Rand({8}, 2, 0.5f, 1.5f), Rand({8}, 3)}, 1e-3f,
                       3e-3f, 1e-2f);
  ExpectGradientsMatch([](auto& in) { return ops::LayerNorm(in[0], in[1], in[2], 4, 1e-5f); },
                       {Rand({3, 2, 4}, 4, -2, 2), Rand({4}, 5, 0.5f, 1.5f), Rand({4}, 6)}, 1e-3f,
                       3e-3f, 1e-2f);
  ExpectGradientsMatch([](auto& in) { return ops::LayerNorm(in[0], Tensor(), Tensor(), 5, 1e-5f); },
                       {Rand({4, 5}, 7, -2, 2)}, 1e-3f, 3e-3f, 1e-2f);
  EXPECT_THROW(ops::LayerNorm(Tensor::Zeros({3, 2, 4}), Tensor(), Tensor(), 6, 1e-5f),
               std::invalid_argument);
  EXPECT_THROW(ops::LayerNorm(Tensor::Zeros({3, 4}), Tensor::Ones({3}), Tensor(), 4, 1e-5f),
               std::invalid_argument);
}

TEST(OpsNnGrad, MaxPoolStrideAndPadding) {
  struct Case {
    int64_t k, s, p;
    Shape x;
  };
  for (const Case& c : {Case{3, 2, 1, {2, 2, 5, 6}}, Case{2, 2, 0, {1, 2, 4, 5}},
                        Case{3, 1, 1, {1, 2, 4, 4}}, Case{2, 1, 1, {1, 1, 3, 3}}}) {
    SCOPED_TRACE(::testing::PrintToString(c.x) + " k" + std::to_string(c.k) + " s" +
                 std::to_string(c.s) + " p" + std::to_string(c.p));
    ExpectGradientsMatch([c](auto& in) { return ops::MaxPool2d(in[0], c.k, c.s, c.p); },
                         {DistinctValues(c.x, 3)});
  }
}

TEST(OpsNnGrad, MaxPoolPaddingIsMinusInfinity) {
  // All inputs negative: a zero pad would win, -inf never does.
  Tensor x = Tensor::FromVector({1, 1, 2, 2}, {-4, -3, -2, -1});
  Tensor y = ops::MaxPool2d(x, 2, 1, 1);
  EXPECT_EQ(y.shape(), (Shape{1, 1, 3, 3}));
  EXPECT_EQ(y.ToVector(), (std::vector<float>{-4, -3, -3, -2, -1, -1, -2, -1, -1}));
  EXPECT_THROW(ops::MaxPool2d(x, 2, 1, 2), std::invalid_argument);  // padding > kernel / 2
  EXPECT_THROW(ops::MaxPool2d(x, 3, 1, 0), std::invalid_argument);
}

TEST(OpsNnGrad, AvgPoolStrideAndPadding) {
  struct Case {
    int64_t k, s, p;
    Shape x;
  };
  for (const Case& c :
       {Case{3, 2, 1, {2, 2, 5, 6}}, Case{2, 2, 0, {1, 2, 4, 5}}, Case{3, 1, 1, {1, 1, 4, 4}}}) {
    ExpectGradientsMatch([c](auto& in) { return ops::AvgPool2d(in[0], c.k, c.s, c.p); },
                         {Rand(c.x, 3)});
  }
  // count_include_pad: the corner window holds one input and three zeros.
  Tensor y = ops::AvgPool2d(Tensor::Full({1, 1, 2, 2}, 4.0f), 2, 2, 1);
  EXPECT_EQ(y.ToVector(), (std::vector<float>{1, 1, 1, 1}));
}

TEST(OpsNnGrad, GlobalAvgPool) {
  ExpectGradientsMatch([](auto& in) { return ops::GlobalAvgPool2d(in[0]); },
                       {Rand({2, 3, 3, 2}, 1)});
  Tensor y = ops::GlobalAvgPool2d(Tensor::FromVector({1, 2, 1, 2}, {1, 2, 3, 5}));
  EXPECT_EQ(y.shape(), (Shape{1, 2}));
  EXPECT_EQ(y.ToVector(), (std::vector<float>{1.5f, 4.0f}));
}

TEST(OpsNnGrad, CrossEntropyLabelSmoothing) {
  std::vector<int32_t> labels = {2, 0, 3};
  for (float eps : {0.0f, 0.1f, 1.0f}) {
    ExpectGradientsMatch([&](auto& in) { return ops::CrossEntropy(in[0], labels, eps); },
                         {Rand({3, 4}, 1, -2, 2)}, 1e-3f, 1e-3f, 1e-2f);
  }
  // Uniform logits: every class has logp = -log(k) whatever the smoothing.
  Tensor y = ops::CrossEntropy(Tensor::Zeros({3, 4}), labels, 0.3f);
  EXPECT_NEAR(y.item(), std::log(4.0f), 1e-6);
  EXPECT_THROW(ops::CrossEntropy(Tensor::Zeros({3, 4}), labels, 1.5f), std::invalid_argument);
}

}  // namespace
}  // namespace dnnd
