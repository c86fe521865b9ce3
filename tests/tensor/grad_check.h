// Central finite-difference gradient checks for autograd ops.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <vector>

#include "tensor/ops.h"
#include "tensor/tensor.h"

namespace dnnd::testing {

// Uniform values in [lo, hi) from `seed`.
inline Tensor Rand(const Shape& s, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  Rng rng(seed);
  return Tensor::Uniform(s, lo, hi, rng);
}

// |x| >= 0.1: no kink (ReLU, LeakyReLU, max ties) within the finite-difference
// step.
inline Tensor RandAwayFromZero(const Shape& s, uint64_t seed) {
  Tensor t = Rand(s, seed);
  for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] += t.data()[i] >= 0 ? 0.1f : -0.1f;
  return t;
}

// Checks d/d inputs of  L = sum(f(inputs) * R)  (R fixed random) against central
// differences. `f` must be deterministic (reseed any RNG inside it).
inline void ExpectGradientsMatch(const std::function<Tensor(std::vector<Tensor>&)>& f,
                                 std::vector<Tensor> inputs, float eps = 1e-3f, float atol = 2e-3f,
                                 float rtol = 1e-2f) {
  for (auto& t : inputs) t.set_requires_grad(true);
  Tensor out = f(inputs);
  Rng rng(1234);
  Tensor r = Tensor::Uniform(out.shape(), -1.0f, 1.0f, rng);
  auto loss_of = [&](std::vector<Tensor>& in) {
    NoGradGuard guard;
    Tensor y = f(in);
    double s = 0;
    for (int64_t i = 0; i < y.numel(); ++i) s += double(y.data()[i]) * r.data()[i];
    return s;
  };
  Tensor loss = ops::Sum(ops::Mul(out, r));
  loss.backward();
  for (size_t k = 0; k < inputs.size(); ++k) {
    Tensor g = inputs[k].grad();
    ASSERT_TRUE(g.defined()) << "input " << k << " got no gradient";
    for (int64_t i = 0; i < inputs[k].numel(); ++i) {
      float* p = inputs[k].data() + i;
      const float orig = *p;
      *p = orig + eps;
      double up = loss_of(inputs);
      *p = orig - eps;
      double down = loss_of(inputs);
      *p = orig;
      double numeric = (up - down) / (2.0 * eps);
      double analytic = g.data()[i];
      EXPECT_NEAR(analytic, numeric, atol + rtol * std::abs(numeric))
          << "input " << k << " element " << i;
    }
  }
}

}  // namespace dnnd::testing
