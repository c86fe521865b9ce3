// kernels::Gemm on every kernel set this CPU can run (tensor/isa.h), against a
// triple loop accumulating in double: all four transpose combinations, the
// edge sizes around the AVX-512 kernel's 12 x 32 tile and 16-float vectors,
// alpha/beta (beta == 0 ignores old C, as in BLAS), NaN/Inf propagation, the
// two-thread split, and the kernel-set selection itself.
#include <gtest/gtest.h>

#include <Eigen/Core>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "tensor/conv.h"
#include "tensor/isa.h"
#include "tensor/kernels.h"
#include "tensor/parallel.h"

namespace dnnd {
namespace {

struct Problem {
  bool ta, tb;
  int m, n, k;
  float alpha, beta;
  std::vector<float> a, b, c;  // a: [m,k] or [k,m]; b: [k,n] or [n,k]; c: [m,n]

  float A(int i, int p) const { return ta ? a[p * m + i] : a[i * k + p]; }
  float B(int p, int j) const { return tb ? b[j * k + p] : b[p * n + j]; }
};

Problem Random(bool ta, bool tb, int m, int n, int k, float alpha, float beta, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1, 1);
  Problem p{ta, tb, m, n, k, alpha, beta, {}, {}, {}};
  p.a.resize(static_cast<size_t>(m) * k);
  p.b.resize(static_cast<size_t>(k) * n);
  p.c.resize(static_cast<size_t>(m) * n);
  for (auto* v : {&p.a, &p.b, &p.c})
    for (float& x : *v) x = u(rng);
  return p;
}

// Runs kernels::Gemm on a copy of p.c and returns the result.
std::vector<float> Multiply(const Problem& p) {
  std::vector<float> c = p.c;
  kernels::Gemm(p.ta, p.tb, p.m, p.n, p.k, p.alpha, p.a.data(), p.b.data(), p.beta, c.data());
  return c;
}

// Checks `got` against the double-accumulated product. The tolerance is the
// standard bound for a float dot product of length k, (k + 2) u sum |terms|,
// so any summation order passes and a wrong element does not.
void ExpectMatchesReference(const Problem& p, const std::vector<float>& got) {
  constexpr double kUnit = std::numeric_limits<float>::epsilon();
  for (int i = 0; i < p.m; ++i)
    for (int j = 0; j < p.n; ++j) {
      double s = 0, mag = 0;
      for (int q = 0; q < p.k; ++q) {
        const double t = double(p.A(i, q)) * p.B(q, j);
        s += t;
        mag += std::fabs(t);
      }
      const double old = p.beta == 0.0f ? 0.0 : double(p.beta) * p.c[i * p.n + j];
      const double want = p.alpha * s + old;
      const double tol = (p.k + 2) * kUnit * (std::fabs(p.alpha) * mag + std::fabs(old)) + 1e-30;
      ASSERT_NEAR(got[i * p.n + j], want, tol)
          << "ta " << p.ta << " tb " << p.tb << " m " << p.m << " n " << p.n << " k " << p.k
          << " alpha " << p.alpha << " beta " << p.beta << " at (" << i << ", " << j << ")";
    }
}

// Every test runs once per available kernel set; the set in use before is
// restored afterwards.
class GemmOnKernelSet : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    previous_ = isa::CurrentName();
    ASSERT_TRUE(isa::Select(GetParam()));
  }
  void TearDown() override { isa::Select(previous_); }

 private:
  std::string previous_;
};

constexpr bool kBools[] = {false, true};

TEST_P(GemmOnKernelSet, EdgeSizesInEveryLayout) {
  // Around the tile (12 x 32), the vector (16) and the transpose block (16).
  const int sizes[] = {1, 2, 15, 16, 17, 31, 33, 63, 65, 127, 129};
  const int depths[] = {1, 2, 16, 17, 33, 129};
  uint32_t seed = 1;
  for (bool ta : kBools)
    for (bool tb : kBools)
      for (int m : sizes)
        for (int n : sizes)
          for (int k : depths) {
            // Cycle alpha/beta through 1/0 (the common case), a scale with
            // beta == 0, and both general.
            const float alphas[] = {1.0f, -0.75f, 1.5f};
            const float betas[] = {0.0f, 0.0f, 0.5f};
            const Problem p = Random(ta, tb, m, n, k, alphas[seed % 3], betas[seed % 3], seed);
            ++seed;
            ExpectMatchesReference(p, Multiply(p));
            if (HasFatalFailure()) return;
          }
}

TEST_P(GemmOnKernelSet, LargerOddShapesSpanSeveralBlocks) {
  // Depth 800 is two depth blocks; 451 and 1000 columns span B blocks.
  struct Shape {
    int m, n, k;
  };
  for (const Shape s : {Shape{67, 451, 800}, Shape{131, 1000, 97}, Shape{300, 45, 385}})
    for (bool ta : kBools)
      for (bool tb : kBools) {
        const Problem p = Random(ta, tb, s.m, s.n, s.k, 0.5f, 2.0f, s.m + s.n);
        ExpectMatchesReference(p, Multiply(p));
        if (HasFatalFailure()) return;
      }
}

TEST_P(GemmOnKernelSet, BetaZeroOverwritesNaNInC) {
  for (bool ta : kBools)
    for (bool tb : kBools)
      for (int m : {1, 5, 13, 40})
        for (int n : {1, 17, 33}) {
          Problem p = Random(ta, tb, m, n, 19, 1.0f, 0.0f, 3);
          for (float& x : p.c) x = std::numeric_limits<float>::quiet_NaN();
          const std::vector<float> got = Multiply(p);
          for (float x : got) ASSERT_FALSE(std::isnan(x)) << "m " << m << " n " << n;
          ExpectMatchesReference(p, got);
        }
}

TEST_P(GemmOnKernelSet, NaNAndInfInTheOperandsPropagate) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (bool ta : kBools)
    for (bool tb : kBools)
      for (int m : {1, 14, 29}) {
        const int n = 37, k = 21;
        Problem p = Random(ta, tb, m, n, k, 1.0f, 0.0f, 5);
        // Positive operands, so an Inf cannot meet an opposite Inf.
        for (float& x : p.a) x = std::fabs(x) + 0.1f;
        for (float& x : p.b) x = std::fabs(x) + 0.1f;
        const int nan_row = m - 1, inf_col = 34;
        (ta ? p.a[3 * m + nan_row] : p.a[nan_row * k + 3]) = nan;
        (tb ? p.b[inf_col * k + 7] : p.b[7 * n + inf_col]) = inf;
        const std::vector<float> got = Multiply(p);
        for (int i = 0; i < m; ++i)
          for (int j = 0; j < n; ++j) {
            const float x = got[i * n + j];
            if (i == nan_row)
              ASSERT_TRUE(std::isnan(x)) << "(" << i << ", " << j << ") " << x;
            else if (j == inf_col)
              ASSERT_EQ(x, inf) << "(" << i << ", " << j << ")";
            else
              ASSERT_TRUE(std::isfinite(x)) << "(" << i << ", " << j << ") " << x;
          }
      }
}

TEST_P(GemmOnKernelSet, TwoThreadsSplitAtAnyBoundary) {
  const int saved = GetThreads();
  SetThreads(2);
  struct Shape {
    int m, n, k;
  };
  // Row splits (m >= n) and column splits, with sizes that are not tile
  // multiples; each is large enough (> 4 MFLOP) to be split.
  for (const Shape s : {Shape{211, 97, 150}, Shape{50, 333, 160}, Shape{128, 512, 64}})
    for (bool ta : kBools)
      for (bool tb : kBools) {
        const Problem p = Random(ta, tb, s.m, s.n, s.k, 1.0f, 1.0f, 11);
        ExpectMatchesReference(p, Multiply(p));
        if (HasFatalFailure()) break;
      }
  SetThreads(saved);
}

INSTANTIATE_TEST_SUITE_P(Kernels, GemmOnKernelSet, ::testing::ValuesIn(isa::Available()),
                         [](const auto& info) { return info.param; });

// x rounded to bfloat16 (nearest even): what the bf16 products multiply.
float RoundedToBf16(float x) { return static_cast<float>(Eigen::bfloat16(x)); }

// kernels::LayerGemm with the opt-in bf16 precision matches the reference on
// bf16-rounded operands to float32's bound, in every layout, across depth
// blocks, with odd depths (a pair with a zero partner) and edge tiles; is
// not the float32 product (so bf16 ran); and a C of one row (the GEMV) and
// precision fp32 are exactly Gemm.
TEST(GemmBf16, LayerProductsMatchTheReferenceOnRoundedOperands) {
  // Skipped in the forced-AVX2 run too, where bf16 is inert.
  const std::string previous = isa::CurrentName();
  if (!isa::Cpu().avx512_bf16 || previous != "avx512") GTEST_SKIP() << "bf16 does not run here";
  struct Shape {
    int m, n, k;
  };
  const Shape shapes[] = {{13, 33, 17}, {128, 256, 512}, {67, 451, 800}, {2, 10, 1}, {1, 40, 33}};
  for (const char* precision : {"bf16", "fp32"}) {
    ASSERT_TRUE(isa::SelectPrecision(precision));
    const bool bf16 = std::string(precision) == "bf16";
    uint32_t seed = 7;
    for (const Shape s : shapes)
      for (bool ta : kBools)
        for (bool tb : kBools) {
          SCOPED_TRACE(std::string(precision) + " " + std::to_string(s.m) + "x" +
                       std::to_string(s.n) + "x" + std::to_string(s.k));
          const Problem p = Random(ta, tb, s.m, s.n, s.k, 0.5f, seed % 2 ? 2.0f : 0.0f, seed);
          ++seed;
          std::vector<float> got = p.c;
          kernels::LayerGemm(p.ta, p.tb, p.m, p.n, p.k, p.alpha, p.a.data(), p.b.data(), p.beta,
                             got.data());
          const std::vector<float> exact = Multiply(p);
          if (!bf16 || s.m == 1) {
            ASSERT_EQ(got, exact) << "not Gemm's float32 product";
            continue;
          }
          Problem rounded = p;
          for (auto* v : {&rounded.a, &rounded.b})
            for (float& x : *v) x = RoundedToBf16(x);
          ExpectMatchesReference(rounded, got);
          if (HasFatalFailure()) break;
          if (s.k > 1) EXPECT_NE(got, exact) << "the float32 product: bf16 did not run";
        }
  }
  isa::SelectPrecision("fp32");
  isa::Select(previous);
}

TEST(KernelSet, SelectionIsSharedByGemmAndConvolution) {
  const std::vector<std::string> sets = isa::Available();
  ASSERT_FALSE(sets.empty());
  EXPECT_EQ(sets.back(), "portable");
  const std::string previous = isa::CurrentName();
  for (const std::string& name : sets) {
    ASSERT_TRUE(isa::Select(name));
    EXPECT_EQ(isa::CurrentName(), name);
    EXPECT_EQ(conv::CurrentIsa(), name);
  }
  ASSERT_TRUE(conv::SelectIsa(sets.back()));
  EXPECT_EQ(isa::CurrentName(), sets.back());
  EXPECT_EQ(conv::AvailableIsas(), sets);
  ASSERT_TRUE(isa::Select("auto"));
  EXPECT_EQ(isa::CurrentName(), sets.front());
  isa::Select(previous);
}

TEST(KernelSet, UnknownOrUnavailableNamesAreRefused) {
  const std::string previous = isa::CurrentName();
  EXPECT_FALSE(isa::Select("avx1024"));
  EXPECT_FALSE(isa::Select(""));
  const auto& f = isa::Cpu();
  if (!(f.avx512f && f.avx512dq && f.avx512bw && f.avx512vl && f.avx2 && f.fma)) {
    EXPECT_FALSE(isa::Select("avx512"));
  }
  EXPECT_EQ(isa::CurrentName(), previous);  // a refused name changes nothing
}

}  // namespace
}  // namespace dnnd
