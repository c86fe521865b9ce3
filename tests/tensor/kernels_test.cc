// kernels::Gemm against a naive triple loop, for the shapes that take a
// different BLAS path (one row of C goes through GEMV).
#include "tensor/kernels.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

namespace dnnd {
namespace {

// C = alpha * op(A) op(B) + beta * C, row-major, the slow obvious way.
std::vector<float> Naive(bool ta, bool tb, int m, int n, int k, float alpha,
                         const std::vector<float>& a, const std::vector<float>& b, float beta,
                         std::vector<float> c) {
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      double s = 0;
      for (int p = 0; p < k; ++p)
        s += double(ta ? a[p * m + i] : a[i * k + p]) * (tb ? b[j * k + p] : b[p * n + j]);
      c[i * n + j] = static_cast<float>(alpha * s + beta * c[i * n + j]);
    }
  return c;
}

TEST(Gemm, OneRowAndManyRowsMatchTheNaiveProductInEveryLayout) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1, 1);
  for (int m : {1, 3})  // 1 row: GEMV; 3: GEMM
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        const int n = 37, k = 53;
        std::vector<float> a(m * k), b(k * n), c(m * n);
        for (auto* v : {&a, &b, &c})
          for (auto& x : *v) x = u(rng);
        const std::vector<float> want = Naive(ta, tb, m, n, k, 0.5f, a, b, 2.0f, c);
        kernels::Gemm(ta, tb, m, n, k, 0.5f, a.data(), b.data(), 2.0f, c.data());
        for (int i = 0; i < m * n; ++i)
          ASSERT_NEAR(c[i], want[i], 1e-4)
              << "m " << m << " ta " << ta << " tb " << tb << " at " << i;
      }
}

}  // namespace
}  // namespace dnnd
