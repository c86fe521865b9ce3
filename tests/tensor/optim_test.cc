// Optimisers against PyTorch 1.13's numbers for the same problem:
//   p = [1, -2, 0.5]; loss = sum(p^3) + sum(p * [1, 2, 3]); three steps.
// Expected values were produced by torch.optim with the settings named in
// each test (see the commit that added this file).
#include "tensor/optim.h"

#include <gtest/gtest.h>

#include "tensor/ops.h"

namespace dnnd {
namespace {

std::vector<float> RunThreeSteps(const optim::OptimizerOptions& o) {
  Tensor p = Tensor::FromVector({3}, {1.0f, -2.0f, 0.5f}).set_requires_grad(true);
  Tensor c = Tensor::FromVector({3}, {1.0f, 2.0f, 3.0f});
  auto opt = ValueOrThrow(optim::MakeOptimizer(o, {{"p", p}}));
  for (int i = 0; i < 3; ++i) {
    opt->ZeroGrad();
    Tensor loss = ops::Add(ops::Sum(ops::Mul(ops::Mul(p, p), p)), ops::Sum(ops::Mul(p, c)));
    loss.backward();
    opt->Step();
  }
  return p.ToVector();
}

void ExpectNear(const std::vector<float>& got, const std::vector<float>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_NEAR(got[i], want[i], 2e-5 * std::max(1.0f, std::abs(want[i]))) << "element " << i;
}

TEST(Optim, SgdMatchesPyTorch) {
  ExpectNear(RunThreeSteps({.type = "sgd", .lr = 0.1f}), {0.2459008f, -22.25499f, -0.4893738f});
}

TEST(Optim, SgdNesterovWeightDecayMatchesPyTorch) {
  ExpectNear(
      RunThreeSteps(
          {.type = "sgd", .lr = 0.1f, .momentum = 0.9f, .nesterov = true, .weight_decay = 0.01f}),
      {-0.9407788f, -220.7585f, -2.915005f});
}

TEST(Optim, AdamMatchesPyTorch) {
  ExpectNear(RunThreeSteps({.type = "adam", .lr = 0.01f}), {0.9700154f, -2.030008f, 0.4700079f});
}

TEST(Optim, AdamL2MatchesPyTorch) {
  ExpectNear(RunThreeSteps({.type = "adam", .lr = 0.01f, .weight_decay = 0.1f}),
             {0.9700153f, -2.030008f, 0.470008f});
}

TEST(Optim, AdamWMatchesPyTorch) {
  ExpectNear(RunThreeSteps({.type = "adamw", .lr = 0.01f, .weight_decay = 0.1f}),
             {0.9670501f, -2.023982f, 0.4685397f});
}

TEST(Optim, StateRoundTripResumesExactly) {
  optim::OptimizerOptions o{.type = "adam", .lr = 0.01f};
  auto run = [&](int steps, std::unique_ptr<optim::Optimizer>* keep, Tensor p) {
    auto opt = ValueOrThrow(optim::MakeOptimizer(o, {{"p", p}}));
    for (int i = 0; i < steps; ++i) {
      opt->ZeroGrad();
      ops::Sum(ops::Mul(p, p)).backward();
      opt->Step();
    }
    *keep = std::move(opt);
  };
  Tensor a = Tensor::FromVector({2}, {1.0f, -1.0f}).set_requires_grad(true);
  std::unique_ptr<optim::Optimizer> oa;
  run(5, &oa, a);
  // Resume: 2 steps, save state, restore into a fresh optimiser, 3 more.
  Tensor b = Tensor::FromVector({2}, {1.0f, -1.0f}).set_requires_grad(true);
  std::unique_ptr<optim::Optimizer> ob;
  run(2, &ob, b);
  nn::NamedTensors saved;
  for (auto& [k, v] : ob->State()) saved.emplace_back(k, v.clone());
  auto fresh = ValueOrThrow(optim::MakeOptimizer(o, {{"p", b}}));
  ASSERT_TRUE(fresh->LoadState(saved).ok());
  EXPECT_EQ(fresh->step_count(), 2);
  for (int i = 0; i < 3; ++i) {
    fresh->ZeroGrad();
    ops::Sum(ops::Mul(b, b)).backward();
    fresh->Step();
  }
  EXPECT_EQ(a.ToVector(), b.ToVector());  // bit-identical
}

TEST(Optim, LoadStateReportsMismatches) {
  Tensor p = Tensor::Zeros({2, 2}).set_requires_grad(true);
  auto opt = ValueOrThrow(optim::MakeOptimizer({.type = "adam"}, {{"w", p}}));
  Status s = opt->LoadState({{"step", Tensor::Scalar(1)},
                             {"w.exp_avg", Tensor::Zeros({3})},
                             {"w.exp_avg_sq", Tensor::Zeros({2, 2})}});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("w.exp_avg is [3]"), std::string::npos) << s.message();
}

TEST(Optim, RejectsInvalidOptions) {
  EXPECT_FALSE(optim::MakeOptimizer({.type = "rmsprop"}, {}).ok());
  EXPECT_FALSE(optim::MakeOptimizer({.type = "sgd", .lr = -1.0f}, {}).ok());
  EXPECT_FALSE(optim::MakeOptimizer({.type = "sgd", .lr = 0.1f, .nesterov = true}, {}).ok());
}

}  // namespace
}  // namespace dnnd

namespace dnnd {
namespace {

// decay_bias_and_norm = false: one-dimensional parameters (biases, norm
// weights) take no weight decay; matrices still do. With a zero gradient,
// decay is the only change.
TEST(Optim, WeightDecayCanSkipBiasesAndNorms) {
  for (const char* type : {"sgd", "adam", "adamw"}) {
    Tensor w = Tensor::Full({2, 3}, 1.0f), b = Tensor::Full({3}, 1.0f);
    w.set_requires_grad(true);
    b.set_requires_grad(true);
    optim::OptimizerOptions o{.type = type, .lr = 0.1f, .weight_decay = 0.5f};
    o.decay_bias_and_norm = false;
    auto opt = ValueOrThrow(optim::MakeOptimizer(o, {{"fc.weight", w}, {"fc.bias", b}}));
    w.set_grad(Tensor::Zeros({2, 3}));
    b.set_grad(Tensor::Zeros({3}));
    opt->Step();
    EXPECT_LT(w.data()[0], 1.0f) << type;
    EXPECT_EQ(b.data()[0], 1.0f) << type;
    // The default decays both, as PyTorch does.
    Tensor b2 = Tensor::Full({3}, 1.0f);
    b2.set_requires_grad(true);
    o.decay_bias_and_norm = true;
    auto all = ValueOrThrow(optim::MakeOptimizer(o, {{"fc.bias", b2}}));
    b2.set_grad(Tensor::Zeros({3}));
    all->Step();
    EXPECT_LT(b2.data()[0], 1.0f) << type;
  }
}

}  // namespace
}  // namespace dnnd
