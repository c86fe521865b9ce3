// ops::Conv2d against a naive reference convolution (forward, input, weight
// and bias gradients) on odd shapes, with groups, under every instruction set
// this CPU can run; and central-difference gradient checks with groups.
#include "tensor/conv.h"

#include <gtest/gtest.h>

#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "tensor/isa.h"
#include "tensor/ops.h"
#include "tensor/parallel.h"
#include "tests/tensor/grad_check.h"

namespace dnnd {
namespace {

struct Case {
  int64_t n, c, h, w, oc, kh, kw, stride, pad, groups;
  bool bias;
};

std::string Name(const Case& k) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "n%ld c%ld %ldx%ld oc%ld k%ldx%ld s%ld p%ld g%ld%s", k.n, k.c, k.h,
                k.w, k.oc, k.kh, k.kw, k.stride, k.pad, k.groups, k.bias ? " bias" : "");
  return buf;
}

// Double-precision reference: y, and for a given gy, gx, gw, gb.
struct Reference {
  std::vector<double> y, gx, gw, gb;
};

Reference Naive(const Case& k, const Tensor& x, const Tensor& w, const Tensor& b,
                const Tensor& gy) {
  const int64_t oh = (k.h + 2 * k.pad - k.kh) / k.stride + 1;
  const int64_t ow = (k.w + 2 * k.pad - k.kw) / k.stride + 1;
  const int64_t cg = k.c / k.groups, ocg = k.oc / k.groups;
  Reference r;
  r.y.assign(static_cast<size_t>(k.n * k.oc * oh * ow), 0.0);
  r.gx.assign(static_cast<size_t>(x.numel()), 0.0);
  r.gw.assign(static_cast<size_t>(w.numel()), 0.0);
  r.gb.assign(static_cast<size_t>(k.oc), 0.0);
  for (int64_t n = 0; n < k.n; ++n)
    for (int64_t o = 0; o < k.oc; ++o) {
      const int64_t g = o / ocg;
      for (int64_t oy = 0; oy < oh; ++oy)
        for (int64_t ox = 0; ox < ow; ++ox) {
          const int64_t yi = ((n * k.oc + o) * oh + oy) * ow + ox;
          double acc = k.bias ? b.data()[o] : 0.0;
          const double gyv = gy.data()[yi];
          r.gb[o] += gyv;
          for (int64_t ci = 0; ci < cg; ++ci)
            for (int64_t ky = 0; ky < k.kh; ++ky)
              for (int64_t kx = 0; kx < k.kw; ++kx) {
                const int64_t iy = oy * k.stride - k.pad + ky, ix = ox * k.stride - k.pad + kx;
                if (iy < 0 || iy >= k.h || ix < 0 || ix >= k.w) continue;
                const int64_t xi = ((n * k.c + g * cg + ci) * k.h + iy) * k.w + ix;
                const int64_t wi = ((o * cg + ci) * k.kh + ky) * k.kw + kx;
                acc += double(x.data()[xi]) * w.data()[wi];
                r.gx[xi] += gyv * w.data()[wi];
                r.gw[wi] += gyv * x.data()[xi];
              }
          r.y[yi] = acc;
        }
    }
  return r;
}

void ExpectClose(const char* what, const std::vector<double>& want, const Tensor& got, double tol) {
  ASSERT_EQ(static_cast<int64_t>(want.size()), got.numel()) << what;
  double worst = 0;
  int64_t at = -1;
  for (int64_t i = 0; i < got.numel(); ++i) {
    const double err = std::abs(want[i] - got.data()[i]) / (1.0 + std::abs(want[i]));
    if (err > worst) worst = err, at = i;
  }
  EXPECT_LE(worst, tol) << what << " element " << at << ": want " << want[at] << " got "
                        << got.data()[at];
}

// Random x, w (and b), forward, and backward from a random gy.
struct ConvRun {
  Tensor x, w, b, y, gy;
};
ConvRun RunCase(const Case& k, uint64_t seed) {
  Rng rng(seed);
  ConvRun r;
  r.x = Tensor::Uniform({k.n, k.c, k.h, k.w}, -1.0f, 1.0f, rng);
  r.w = Tensor::Uniform({k.oc, k.c / k.groups, k.kh, k.kw}, -0.5f, 0.5f, rng);
  r.b = k.bias ? Tensor::Uniform({k.oc}, -0.5f, 0.5f, rng) : Tensor();
  r.x.set_requires_grad(true);
  r.w.set_requires_grad(true);
  if (k.bias) r.b.set_requires_grad(true);
  r.y = ops::Conv2d(r.x, r.w, r.b, k.stride, k.pad, k.groups);
  r.gy = Tensor::Uniform(r.y.shape(), -1.0f, 1.0f, rng);
  r.y.backward(r.gy);
  return r;
}

// An infinite and a NaN input reach exactly the outputs and weight-gradient
// taps the reference says they reach: the grid's dropped columns multiply
// inputs by zero, which must not leak NaN elsewhere.
void ExpectNonFiniteWhereTheReferenceSays(const Case& k) {
  SCOPED_TRACE(Name(k));
  Rng rng(13);
  Tensor x = Tensor::Uniform({k.n, k.c, k.h, k.w}, -1.0f, 1.0f, rng);
  x.data()[(1 * k.c + 2) * k.h * k.w + k.w + 0] = INFINITY;  // sample 1, channel 2, (1, 0)
  x.data()[k.h * k.w - 1] = NAN;                             // sample 0, channel 0, last
  Tensor w = Tensor::Uniform({k.oc, k.c / k.groups, k.kh, k.kw}, -0.5f, 0.5f, rng);
  Tensor b = k.bias ? Tensor::Uniform({k.oc}, -0.5f, 0.5f, rng) : Tensor();
  x.set_requires_grad(true);
  w.set_requires_grad(true);
  Tensor y = ops::Conv2d(x, w, b, k.stride, k.pad, k.groups);
  Tensor gy = Tensor::Uniform(y.shape(), -1.0f, 1.0f, rng);
  y.backward(gy);
  const Reference r = Naive(k, x, w, b, gy);
  auto same_finite = [](const char* what, const std::vector<double>& want, const Tensor& got) {
    for (int64_t i = 0; i < got.numel(); ++i)
      ASSERT_EQ(std::isfinite(want[i]), std::isfinite(got.data()[i]))
          << what << " element " << i << ": want " << want[i] << " got " << got.data()[i];
  };
  same_finite("y", r.y, y);
  same_finite("gx", r.gx, x.grad());
  same_finite("gw", r.gw, w.grad());
}

void CheckCase(const Case& k) {
  SCOPED_TRACE(Name(k));
  {
    // Pooled buffers come back holding old values: a kernel that reads
    // memory it did not write must not pass on fresh zeroed pages alone.
    std::vector<Tensor> junk;
    for (int64_t n = 16; n <= (int64_t{1} << 22); n *= 2) junk.push_back(Tensor::Full({n}, 1e3f));
  }
  const ConvRun run = RunCase(k, 11);
  const Tensor &x = run.x, &w = run.w, &b = run.b, &y = run.y;
  const Reference r = Naive(k, x, w, b, run.gy);
  const double tol = 2e-5 * std::sqrt(double(k.c / k.groups * k.kh * k.kw + k.n * 64));
  ExpectClose("y", r.y, y, tol);
  ExpectClose("gx", r.gx, x.grad(), tol);
  ExpectClose("gw", r.gw, w.grad(), tol);
  if (k.bias) ExpectClose("gb", r.gb, b.grad(), tol);
}

const Case kCases[] = {
    // ResNet-20-like, small batch.
    {4, 32, 16, 16, 32, 3, 3, 1, 1, 1, false},  // ResNet-20 CIFAR layer2
    {4, 32, 16, 16, 64, 3, 3, 2, 1, 1, false},  // ResNet-20 CIFAR layer3.0
    {4, 32, 16, 16, 64, 1, 1, 2, 0, 1, false},  // and its downsample
    {4, 3, 32, 32, 16, 3, 3, 1, 1, 1, false},   // ResNet-20 CIFAR stem
    {4, 16, 32, 32, 16, 3, 3, 1, 1, 1, false},
    {4, 16, 32, 32, 32, 1, 1, 2, 0, 1, false},
    {3, 16, 28, 28, 16, 3, 3, 1, 1, 1, true},
    {2, 16, 28, 28, 32, 3, 3, 2, 1, 1, false},
    {5, 64, 7, 7, 64, 3, 3, 1, 1, 1, true},
    {4, 32, 14, 14, 64, 3, 3, 2, 1, 1, true},
    {3, 16, 28, 28, 32, 1, 1, 2, 0, 1, false},
    // batch 1 and 13, channels not multiples of 8, 1-wide, odd sizes.
    {1, 3, 9, 11, 5, 3, 3, 1, 1, 1, true},
    {13, 5, 7, 6, 11, 3, 3, 2, 1, 1, true},
    {13, 3, 5, 1, 7, 3, 1, 1, 1, 1, true},
    {2, 2, 1, 9, 3, 1, 3, 2, 0, 1, false},
    {1, 1, 1, 1, 1, 1, 1, 1, 0, 1, true},
    {2, 7, 10, 10, 9, 5, 5, 1, 2, 1, true},
    {2, 4, 8, 9, 6, 5, 3, 1, 1, 1, true},
    {3, 6, 9, 9, 4, 3, 3, 3, 0, 1, true},
    {2, 3, 6, 6, 10, 2, 2, 1, 0, 1, true},
    {2, 3, 5, 5, 2, 3, 3, 1, 2, 1, true},  // padding > kernel - 1
    // groups 2 and depthwise (groups == c), with multipliers.
    {3, 8, 9, 9, 6, 3, 3, 1, 1, 2, true},
    {13, 6, 7, 7, 4, 3, 3, 2, 1, 2, false},
    {2, 12, 14, 14, 12, 3, 3, 1, 1, 12, true},
    {1, 12, 14, 14, 24, 3, 3, 2, 1, 12, true},
    {5, 7, 6, 5, 7, 5, 5, 1, 2, 7, true},
    {2, 9, 4, 4, 9, 1, 1, 1, 0, 3, true},
    // Stride 1 runs on the padded grid: valid (padding 0) and "same" convs,
    // padding 1 with 2-wide kernels, non-square kernels, 1-wide planes,
    // more samples than one chunk, and planes whose rows are shorter than a
    // vector or straddle tiles.
    {3, 5, 9, 7, 6, 3, 3, 1, 0, 1, true},
    {2, 3, 6, 7, 5, 2, 2, 1, 1, 1, true},
    {2, 3, 7, 6, 4, 3, 2, 1, 1, 1, false},
    {3, 2, 1, 17, 5, 1, 3, 1, 0, 1, true},
    {3, 2, 17, 1, 5, 3, 1, 1, 1, 1, true},
    {19, 6, 7, 7, 17, 3, 3, 1, 1, 1, true},
    {2, 4, 3, 3, 9, 3, 3, 1, 2, 1, true},
    {40, 3, 2, 2, 3, 1, 1, 1, 0, 1, true},
    {6, 16, 31, 33, 16, 3, 3, 1, 1, 1, false},
    {9, 4, 12, 12, 8, 5, 5, 1, 0, 2, true},
    // Stride > 1 (the input gradient through col2im; forward and weight
    // gradient through im2col, or on the phase grid for larger outputs):
    // kernels smaller than the stride, padding at and over the kernel's
    // size, odd and 1-wide planes, non-square kernels, groups, more samples
    // than one chunk; on the phase grid strides 2 and 3, 3x3 and 4x4
    // kernels, odd sizes, groups, and 7x7 outputs that stay on im2col.
    {3, 8, 28, 28, 6, 3, 3, 2, 1, 1, true},
    {2, 4, 30, 26, 5, 4, 4, 2, 1, 1, true},
    {5, 16, 22, 22, 8, 3, 3, 2, 1, 2, false},
    {3, 12, 31, 29, 4, 3, 3, 3, 0, 1, true},
    {17, 16, 14, 14, 32, 3, 3, 2, 1, 1, false},
    {3, 8, 11, 9, 5, 2, 2, 3, 0, 1, true},
    {2, 4, 9, 10, 6, 5, 5, 2, 2, 1, true},
    {2, 8, 7, 7, 5, 3, 3, 2, 2, 1, true},
    {3, 12, 11, 1, 7, 3, 1, 2, 1, 1, false},
    {2, 12, 1, 13, 7, 1, 3, 2, 1, 1, true},
    {2, 16, 9, 9, 8, 3, 3, 2, 1, 2, true},
    {5, 40, 6, 6, 9, 1, 1, 2, 0, 1, true},
    {2, 6, 8, 12, 4, 3, 4, 3, 1, 1, true},
    {23, 16, 10, 10, 16, 3, 3, 2, 1, 1, true},
    // torchvision's ResNet-18 on 64x64 (OnnxParity): wide channels, small planes.
    {4, 512, 2, 2, 512, 3, 3, 1, 1, 1, false},
    {4, 256, 4, 4, 256, 3, 3, 1, 1, 1, false},
    {4, 128, 8, 8, 256, 3, 3, 2, 1, 1, false},
    {4, 128, 8, 8, 128, 3, 3, 1, 1, 1, false},
    {4, 64, 16, 16, 128, 1, 1, 2, 0, 1, false},
    {4, 64, 16, 16, 128, 3, 3, 2, 1, 1, false},
    {4, 64, 16, 16, 64, 3, 3, 1, 1, 1, false},
    {4, 3, 64, 64, 64, 7, 7, 2, 3, 1, false},
};

class ConvIsa : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { ASSERT_TRUE(conv::SelectIsa(GetParam())); }
  void TearDown() override {
    conv::SelectIsa(conv::AvailableIsas().front());
    SetThreads(1);
  }
};

TEST_P(ConvIsa, MatchesNaiveReference) {
  for (int threads : {1, 2}) {
    SetThreads(threads);
    for (const Case& k : kCases) CheckCase(k);
  }
}

TEST_P(ConvIsa, LargeBatchMatchesNaiveReference) {
  SetThreads(2);
  CheckCase({37, 16, 14, 14, 32, 3, 3, 1, 1, 1, true});
  CheckCase({29, 32, 7, 7, 64, 3, 3, 1, 1, 1, false});
}

TEST_P(ConvIsa, GradCheckGroups) {
  using testing::ExpectGradientsMatch;
  Rng rng(5);
  auto rand = [&](Shape s) { return Tensor::Uniform(std::move(s), -1.0f, 1.0f, rng); };
  ExpectGradientsMatch([](auto& in) { return ops::Conv2d(in[0], in[1], in[2], 1, 1, 2); },
                       {rand({2, 4, 5, 5}), rand({6, 2, 3, 3}), rand({6})});
  ExpectGradientsMatch([](auto& in) { return ops::Conv2d(in[0], in[1], in[2], 2, 1, 3); },
                       {rand({3, 3, 5, 4}), rand({3, 1, 3, 3}), rand({3})});
  ExpectGradientsMatch([](auto& in) { return ops::Conv2d(in[0], in[1], Tensor(), 1, 0, 2); },
                       {rand({1, 2, 4, 1}), rand({4, 1, 3, 1})});
}

// Inf and NaN inputs on every path: the grid (stride 1 and phases), im2col.
TEST_P(ConvIsa, NonFiniteInputsReachWhatTheReferenceSays) {
  const Case cases[] = {{3, 4, 9, 8, 5, 3, 3, 1, 1, 1, true},
                        {2, 3, 7, 7, 4, 3, 3, 1, 0, 1, false},
                        {2, 3, 9, 9, 4, 3, 3, 2, 1, 1, true},
                        {2, 8, 9, 9, 4, 3, 3, 2, 1, 1, true},
                        {2, 8, 28, 28, 4, 3, 3, 2, 1, 1, true}};
  for (int threads : {1, 2}) {
    SetThreads(threads);
    for (const Case& k : cases) ExpectNonFiniteWhereTheReferenceSays(k);
  }
}

// Two threads claim convolution chunks in whatever order they get to them;
// the weight gradient's sums still come out bit-identical run after run
// (they are added in fixed groups of chunks, not per thread), and the
// outputs and input gradient, disjoint per chunk, are identical too. The
// batch makes 64 chunks of the weight gradient, so a per-thread order would
// show.
TEST_P(ConvIsa, TwoThreadsGiveBitIdenticalResultsEveryRun) {
  SetThreads(2);
  Rng rng(21);
  Tensor x = Tensor::Uniform({128, 16, 14, 14}, -1.0f, 1.0f, rng);
  Tensor w = Tensor::Uniform({16, 16, 3, 3}, -0.5f, 0.5f, rng);
  Tensor gy = Tensor::Uniform({128, 16, 14, 14}, -1.0f, 1.0e3f, rng);  // sums that round
  const conv::Params p{128, 16, 14, 14, 16, 3, 3, 1, 1, 1};
  // Separately, and through Backward (both products on one grid of gy).
  for (bool fused : {false, true}) {
    SCOPED_TRACE(fused ? "Backward" : "BackwardData + BackwardWeight");
    auto run = [&](std::vector<float>& y, std::vector<float>& gx, std::vector<float>& gw,
                   std::vector<float>& gb) {
      y.assign(static_cast<size_t>(x.numel()), 0.0f);
      gx.assign(static_cast<size_t>(x.numel()), 0.0f);
      gw.assign(static_cast<size_t>(w.numel()), 0.0f);
      gb.assign(16, 0.0f);
      conv::Forward(p, x.data(), w.data(), nullptr, y.data());
      if (fused) {
        conv::Backward(p, x.data(), gy.data(), w.data(), gx.data(), gw.data(), gb.data());
      } else {
        conv::BackwardData(p, gy.data(), w.data(), gx.data());
        conv::BackwardWeight(p, x.data(), gy.data(), gw.data(), gb.data());
      }
    };
    std::vector<float> y0, gx0, gw0, gb0, y, gx, gw, gb;
    run(y0, gx0, gw0, gb0);
    for (int i = 0; i < 10; ++i) {
      run(y, gx, gw, gb);
      ASSERT_EQ(y, y0) << "run " << i;
      ASSERT_EQ(gx, gx0) << "run " << i;
      ASSERT_EQ(gw, gw0) << "run " << i;
      ASSERT_EQ(gb, gb0) << "run " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Conv2d, ConvIsa, ::testing::ValuesIn(conv::AvailableIsas()),
                         [](const auto& info) { return info.param; });

// --- bfloat16 products (isa.h's Precision) ---

// x rounded to bf16 (nearest even) and back: what the bf16 kernels multiply.
Tensor RoundedToBf16(const Tensor& x) {
  Tensor r = x.detach().clone();
  for (int64_t i = 0; i < r.numel(); ++i)
    r.data()[i] = static_cast<float>(Eigen::bfloat16(r.data()[i]));
  return r;
}

// Runs on the avx512 set with bf16 selected; skipped on a CPU without
// AVX512-BF16 and in the forced-AVX2 run (DNND_KERNELS=avx2), where bf16 is
// inert (Bf16IsInertOffTheAvx512Set checks that instead).
class ConvBf16 : public ::testing::Test {
 protected:
  void SetUp() override {
    previous_ = isa::CurrentName();
    if (!isa::Cpu().avx512_bf16 || previous_ != "avx512") GTEST_SKIP() << "bf16 does not run here";
    ASSERT_TRUE(isa::SelectPrecision("bf16"));
    ASSERT_TRUE(isa::Bf16Active());
  }
  void TearDown() override {
    isa::SelectPrecision("fp32");
    isa::Select(previous_);
    SetThreads(1);
  }

 private:
  std::string previous_;
};

// With bf16 selected but the avx2 (or portable) set running, convolutions
// are float32, bit for bit.
TEST(ConvBf16Inert, Bf16IsInertOffTheAvx512Set) {
  if (!isa::Cpu().avx512_bf16) GTEST_SKIP() << "no AVX512-BF16";
  const std::string previous = isa::CurrentName();
  const Case k{3, 16, 9, 8, 16, 3, 3, 1, 1, 1, true};
  for (const std::string& set : isa::Available()) {
    if (set == "avx512") continue;
    SCOPED_TRACE(set);
    ASSERT_TRUE(isa::Select(set));
    ASSERT_TRUE(isa::SelectPrecision("fp32"));
    const ConvRun fp32 = RunCase(k, 5);
    ASSERT_TRUE(isa::SelectPrecision("bf16"));
    EXPECT_FALSE(isa::Bf16Active());
    const ConvRun bf16 = RunCase(k, 5);
    EXPECT_EQ(fp32.y.ToVector(), bf16.y.ToVector());
    EXPECT_EQ(fp32.x.grad().ToVector(), bf16.x.grad().ToVector());
    EXPECT_EQ(fp32.w.grad().ToVector(), bf16.w.grad().ToVector());
  }
  isa::SelectPrecision("fp32");
  isa::Select(previous);
}

// Each product matches a double-precision reference computed on its own
// operands rounded to bf16 (y: x and w; gx: gy and w; gw: gy and x; gb: gy
// unrounded) to float32 accumulation's tolerance, and differs from the
// unrounded reference (so it is the bf16 path that ran). Shapes: ResNet's,
// odd channel counts (a pair with a zero partner), 1x1, 5x5, "valid",
// chunk tails; one and two threads.
TEST_F(ConvBf16, ProductsMatchTheReferenceOnRoundedOperands) {
  const Case cases[] = {
      {4, 32, 16, 16, 32, 3, 3, 1, 1, 1, false}, {3, 16, 28, 28, 16, 3, 3, 1, 1, 1, true},
      {5, 64, 7, 7, 64, 3, 3, 1, 1, 1, true},    {3, 5, 9, 8, 7, 3, 3, 1, 1, 1, true},
      {4, 40, 6, 6, 48, 1, 1, 1, 0, 1, true},    {2, 8, 11, 13, 6, 5, 5, 1, 2, 1, false},
      {2, 12, 10, 9, 10, 3, 3, 1, 0, 1, true}};
  for (int threads : {1, 2}) {
    SetThreads(threads);
    for (const Case& k : cases) {
      SCOPED_TRACE(Name(k) + " threads " + std::to_string(threads));
      const ConvRun run = RunCase(k, 17);
      const Tensor &x = run.x, &w = run.w, &b = run.b, &y = run.y, &gy = run.gy;
      const Tensor xr = RoundedToBf16(x), wr = RoundedToBf16(w), gyr = RoundedToBf16(gy);
      const double tol = 4e-5 * std::sqrt(double(k.c * k.kh * k.kw + k.n * 64));
      ExpectClose("y", Naive(k, xr, wr, b, gy).y, y, tol);
      ExpectClose("gx", Naive(k, x, wr, b, gyr).gx, x.grad(), tol);
      ExpectClose("gw", Naive(k, xr, w, b, gyr).gw, w.grad(), tol);
      const Reference exact = Naive(k, x, w, b, gy);
      if (k.bias) ExpectClose("gb", exact.gb, b.grad(), tol);
      double worst = 0;
      for (int64_t i = 0; i < y.numel(); ++i)
        worst = std::max(worst, std::abs(exact.y[i] - y.data()[i]));
      EXPECT_GT(worst, 5 * tol) << "y matches the unrounded reference: bf16 did not run";
    }
  }
}

// Inf and NaN inputs reach exactly the outputs and gradients the reference
// says, on the bf16 path too (its grid multiplies dropped columns by zero).
TEST_F(ConvBf16, NonFiniteInputsReachWhatTheReferenceSays) {
  ExpectNonFiniteWhereTheReferenceSays({3, 16, 9, 8, 16, 3, 3, 1, 1, 1, true});
}

TEST(Conv2dShapes, RejectsBadGroups) {
  Tensor x = Tensor::Zeros({1, 4, 5, 5});
  EXPECT_THROW(ops::Conv2d(x, Tensor::Zeros({4, 4, 3, 3}), Tensor(), 1, 1, 2),
               std::invalid_argument);
  EXPECT_THROW(ops::Conv2d(x, Tensor::Zeros({3, 2, 3, 3}), Tensor(), 1, 1, 2),
               std::invalid_argument);
  EXPECT_THROW(ops::Conv2d(x, Tensor::Zeros({4, 4, 3, 3}), Tensor(), 1, 1, 0),
               std::invalid_argument);
  EXPECT_THROW(ops::Conv2d(x, Tensor::Zeros({4, 4, 3, 3}), Tensor::Zeros({3}), 1, 1, 1),
               std::invalid_argument);
}

}  // namespace
}  // namespace dnnd
