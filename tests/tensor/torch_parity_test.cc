// The new ops against PyTorch 1.13 on the same inputs: forward, input and
// parameter gradients (of sum(y * r)), BatchNorm's running statistics. The
// cases of the tests that will run go to one python process
// (torch_reference.h) when the suite starts; each test then runs dnnd's ops
// and compares. PyTorch computes in float64,
// so the tolerance measures dnnd's float32 error alone.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <map>
#include <memory>

#include "tensor/ops.h"
#include "tensor/parallel.h"
#include "tests/tensor/torch_reference.h"

namespace dnnd {
namespace {

using testing::RunTorchReference;
using testing::RunTorchReferenceBatch;
using testing::TorchCase;
using testing::TorchResult;

using Inputs = std::map<std::string, Tensor>;

// A case: torch's op and attributes, the inputs, and dnnd's op on them
// (which may update the running statistics in `in`).
struct Spec {
  TorchCase torch;
  std::function<Tensor(Inputs& in)> run;
};

Tensor Rand(const Shape& s, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  Rng rng(seed);
  return Tensor::Uniform(s, lo, hi, rng);
}

// The output's cotangent r for a case whose output has shape `out`.
Tensor Cotangent(const Shape& out, uint64_t seed) { return Rand(out, seed + 1000); }

bool TakesGrad(const std::string& name) {
  return name != "r" && name != "labels" && name != "running_mean" && name != "running_var";
}

std::vector<int32_t> Labels(const Tensor& t) {
  std::vector<int32_t> out;
  for (float v : t.ToVector()) out.push_back(static_cast<int32_t>(v));
  return out;
}

void Add(std::map<std::string, Spec>& specs, std::string name, std::string op, std::string attrs,
         nn::NamedTensors inputs, std::function<Tensor(Inputs&)> run) {
  specs[name] =
      Spec{TorchCase{name, std::move(op), std::move(attrs), std::move(inputs)}, std::move(run)};
}

void AddBatchNorm(std::map<std::string, Spec>& specs, const std::string& name, const Shape& x,
                  bool training, bool affine, uint64_t seed, float offset = 0.0f) {
  const int64_t c = x[1];
  // A shifted, scaled input checks the mean-then-variance computation.
  Tensor xs = Rand(x, seed, offset - 2.0f, offset + 2.0f);
  nn::NamedTensors in = {{"x", xs},
                         {"r", Cotangent(x, seed)},
                         {"running_mean", Rand({c}, seed + 1, -0.5f, 0.5f)},
                         {"running_var", Rand({c}, seed + 2, 0.5f, 2.0f)}};
  if (affine) {
    in.emplace_back("weight", Rand({c}, seed + 3, 0.5f, 1.5f));
    in.emplace_back("bias", Rand({c}, seed + 4));
  }
  const float momentum = 0.1f, eps = 1e-5f;
  std::string attrs = std::string("{\"training\": ") + (training ? "true" : "false") +
                      ", \"momentum\": 0.1, \"eps\": 1e-05}";
  Add(specs, name, "batch_norm", attrs, in, [=](Inputs& t) {
    Tensor w = affine ? t["weight"] : Tensor();
    Tensor b = affine ? t["bias"] : Tensor();
    return ops::BatchNorm(t["x"], w, b, t["running_mean"], t["running_var"], training, momentum,
                          eps);
  });
}

std::string PoolAttrs(int64_t k, int64_t s, int64_t p) {
  return "{\"kernel\": " + std::to_string(k) + ", \"stride\": " + std::to_string(s) +
         ", \"padding\": " + std::to_string(p) + "}";
}

void AddPool(std::map<std::string, Spec>& specs, const std::string& name, bool max, const Shape& x,
             int64_t k, int64_t s, int64_t p, uint64_t seed) {
  const int64_t oh = (x[2] + 2 * p - k) / s + 1, ow = (x[3] + 2 * p - k) / s + 1;
  Add(specs, name, max ? "max_pool2d" : "avg_pool2d", PoolAttrs(k, s, p),
      {{"x", Rand(x, seed)}, {"r", Cotangent({x[0], x[1], oh, ow}, seed)}}, [=](Inputs& t) {
        return max ? ops::MaxPool2d(t["x"], k, s, p) : ops::AvgPool2d(t["x"], k, s, p);
      });
}

std::map<std::string, Spec> MakeSpecs() {
  std::map<std::string, Spec> specs;
  Add(specs, "leaky_relu", "leaky_relu", "{\"slope\": 0.2}",
      {{"x", Rand({4, 5, 6}, 1)}, {"r", Cotangent({4, 5, 6}, 1)}},
      [](Inputs& t) { return ops::LeakyRelu(t["x"], 0.2f); });
  Add(specs, "leaky_relu_negative_slope", "leaky_relu", "{\"slope\": -0.5}",
      {{"x", Rand({50}, 2)}, {"r", Cotangent({50}, 2)}},
      [](Inputs& t) { return ops::LeakyRelu(t["x"], -0.5f); });
  Add(specs, "gelu", "gelu", "{}", {{"x", Rand({1000}, 3, -6, 6)}, {"r", Cotangent({1000}, 3)}},
      [](Inputs& t) { return ops::Gelu(t["x"]); });
  struct ConcatCase {
    const char* name;
    int dim;
    Shape a, b, c, out;
  };
  for (const ConcatCase& cc :
       {ConcatCase{"concat_dim0", 0, {2, 3, 4}, {1, 3, 4}, {3, 3, 4}, {6, 3, 4}},
        ConcatCase{"concat_channels", 1, {2, 3, 4, 5}, {2, 1, 4, 5}, {2, 2, 4, 5}, {2, 6, 4, 5}},
        ConcatCase{"concat_last", -1, {3, 2, 4}, {3, 2, 1}, {3, 2, 3}, {3, 2, 8}}}) {
    const int dim = cc.dim;
    Add(specs, cc.name, "concat", "{\"n\": 3, \"dim\": " + std::to_string(dim) + "}",
        {{"x0", Rand(cc.a, 4)},
         {"x1", Rand(cc.b, 5)},
         {"x2", Rand(cc.c, 6)},
         {"r", Cotangent(cc.out, 4)}},
        [dim](Inputs& t) {
          return ops::Concat({t["x0"], t["x1"], t["x2"]}, dim);
        });
  }
  AddBatchNorm(specs, "bn1d_train_affine", {16, 10}, true, true, 10);
  AddBatchNorm(specs, "bn1d_train_plain", {16, 10}, true, false, 20);
  AddBatchNorm(specs, "bn1d_eval_affine", {16, 10}, false, true, 30);
  AddBatchNorm(specs, "bn1d_eval_plain", {7, 3}, false, false, 40);
  AddBatchNorm(specs, "bn2d_train_affine", {8, 6, 7, 5}, true, true, 50);
  AddBatchNorm(specs, "bn2d_train_plain", {8, 6, 7, 5}, true, false, 60);
  AddBatchNorm(specs, "bn2d_eval_affine", {8, 6, 7, 5}, false, true, 70);
  AddBatchNorm(specs, "bn2d_eval_plain", {4, 3, 5, 5}, false, false, 80);
  // Large enough to split across the two threads (kernels_nn.cc's grain is
  // 64k elements per chunk) and far from zero mean: the variance computed
  // around the mean stays accurate.
  AddBatchNorm(specs, "bn2d_train_resnet", {64, 16, 16, 16}, true, true, 90, 50.0f);
  AddBatchNorm(specs, "bn1d_train_wide", {256, 600}, true, true, 100, -20.0f);
  Add(specs, "layer_norm_affine", "layer_norm", "{\"normalized\": 24, \"eps\": 1e-05}",
      {{"x", Rand({4, 3, 8}, 7, -3, 3)},
       {"weight", Rand({24}, 8, 0.5f, 1.5f)},
       {"bias", Rand({24}, 9)},
       {"r", Cotangent({4, 3, 8}, 7)}},
      [](Inputs& t) { return ops::LayerNorm(t["x"], t["weight"], t["bias"], 24, 1e-5f); });
  // 256 rows of 512: split across the threads, partial parameter sums folded.
  Add(specs, "layer_norm_big", "layer_norm", "{\"normalized\": 512, \"eps\": 1e-05}",
      {{"x", Rand({256, 512}, 19, -3, 3)},
       {"weight", Rand({512}, 20, 0.5f, 1.5f)},
       {"bias", Rand({512}, 21)},
       {"r", Cotangent({256, 512}, 19)}},
      [](Inputs& t) { return ops::LayerNorm(t["x"], t["weight"], t["bias"], 512, 1e-5f); });
  Add(specs, "layer_norm_plain", "layer_norm", "{\"normalized\": 8, \"eps\": 1e-05}",
      {{"x", Rand({4, 3, 8}, 10, 5, 9)}, {"r", Cotangent({4, 3, 8}, 10)}},
      [](Inputs& t) { return ops::LayerNorm(t["x"], Tensor(), Tensor(), 8, 1e-5f); });
  AddPool(specs, "max_pool_k3_s2_p1", true, {2, 3, 9, 9}, 3, 2, 1, 11);
  AddPool(specs, "max_pool_k2_s2", true, {2, 3, 8, 7}, 2, 2, 0, 12);
  AddPool(specs, "max_pool_k3_s1_p1", true, {1, 2, 6, 5}, 3, 1, 1, 13);
  AddPool(specs, "avg_pool_k3_s2_p1", false, {2, 3, 9, 9}, 3, 2, 1, 14);
  AddPool(specs, "avg_pool_k2_s2", false, {2, 3, 8, 7}, 2, 2, 0, 15);
  AddPool(specs, "avg_pool_k3_s1_p1", false, {1, 2, 6, 5}, 3, 1, 1, 16);
  Add(specs, "global_avg_pool", "global_avg_pool2d", "{}",
      {{"x", Rand({4, 5, 6, 7}, 17)}, {"r", Cotangent({4, 5}, 17)}},
      [](Inputs& t) { return ops::GlobalAvgPool2d(t["x"]); });
  for (float eps : {0.0f, 0.1f}) {
    Tensor labels = Tensor::FromVector({8}, {3, 0, 9, 9, 1, 5, 2, 7});
    Add(specs, eps == 0 ? "cross_entropy" : "cross_entropy_smoothed", "cross_entropy",
        "{\"label_smoothing\": " + std::to_string(eps) + "}",
        {{"x", Rand({8, 10}, 18, -3, 3)}, {"labels", labels}, {"r", Tensor::Scalar(0.7f)}},
        [eps](Inputs& t) { return ops::CrossEntropy(t["x"], Labels(t["labels"]), eps); });
  }
  return specs;
}

// Element-wise |got - ref| <= rtol * (|ref| + max|ref|): relative for the
// large elements, and absolute at the tensor's scale for those near zero
// (sums with cancellation, where a float32 result cannot be relatively exact).
void ExpectClose(const std::string& what, const Tensor& got, const Tensor& ref,
                 double rtol = 1e-5) {
  ASSERT_TRUE(got.defined()) << what << ": dnnd has no value";
  ASSERT_EQ(got.numel(), ref.numel()) << what << ": shapes " << ShapeToString(got.shape())
                                      << " and torch's " << ShapeToString(ref.shape());
  double scale = 0;
  for (int64_t i = 0; i < ref.numel(); ++i)
    scale = std::max(scale, std::abs(double(ref.data()[i])));
  int reported = 0;
  for (int64_t i = 0; i < ref.numel(); ++i) {
    const double g = got.data()[i], r = ref.data()[i];
    if (std::abs(g - r) > rtol * (std::abs(r) + scale) && reported++ < 5)
      ADD_FAILURE() << what << "[" << i << "]: dnnd " << g << ", torch " << r;
  }
}

// Each test checks the cases whose names start with one of its group's
// prefixes (few tests: each costs a torch import under ctest).
// Under ctest every test is its own process (gtest_discover_tests), so the
// suite sends torch only the cases of the tests that will run: one python
// process per ctest test, one for a whole-binary run.
const std::map<std::string, std::vector<std::string>>& Groups() {
  static const std::map<std::string, std::vector<std::string>> groups = {
      {"Activations", {"leaky_relu", "gelu"}},
      {"Concat", {"concat"}},
      {"BatchNorm", {"bn1d", "bn2d"}},
      {"LayerNorm", {"layer_norm"}},
      {"Pooling", {"max_pool", "avg_pool", "global_avg_pool"}},
      {"CrossEntropy", {"cross_entropy"}}};
  return groups;
}

bool InGroup(const std::string& case_name, const std::vector<std::string>& prefixes) {
  for (const std::string& p : prefixes)
    if (case_name.compare(0, p.size(), p) == 0) return true;
  return false;
}

class TorchParity : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    specs_ = std::make_unique<std::map<std::string, Spec>>(MakeSpecs());
    const ::testing::TestSuite* suite = ::testing::UnitTest::GetInstance()->current_test_suite();
    std::vector<std::string> prefixes;
    for (int i = 0; i < suite->total_test_count(); ++i) {
      const ::testing::TestInfo* info = suite->GetTestInfo(i);
      auto it = Groups().find(info->name());
      if (info->should_run() && it != Groups().end())
        prefixes.insert(prefixes.end(), it->second.begin(), it->second.end());
    }
    std::vector<TorchCase> cases;
    for (auto& [name, spec] : *specs_)
      if (InGroup(name, prefixes)) cases.push_back(spec.torch);
    torch_ = std::make_unique<TorchResult>(RunTorchReferenceBatch(cases));
  }
  static void TearDownTestSuite() {
    specs_.reset();
    torch_.reset();
  }
  // Two threads, so the channel- and row-parallel paths split their work.
  void SetUp() override {
    threads_ = GetThreads();
    SetThreads(2);
  }
  void TearDown() override { SetThreads(threads_); }

  // Checks every case of the running test's group.
  void CheckGroup() {
    if (torch_->skipped) GTEST_SKIP() << torch_->skip_reason;
    const std::string test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    ASSERT_TRUE(Groups().count(test)) << test << " has no group";
    int checked = 0;
    for (const auto& [name, spec] : *specs_) {
      if (!InGroup(name, Groups().at(test))) continue;
      SCOPED_TRACE(name);
      Check(name, spec);
      ++checked;
    }
    EXPECT_GT(checked, 0);
  }

  void Check(const std::string& name, const Spec& spec) {
    ASSERT_TRUE(torch_->outputs.count(name)) << "torch wrote nothing for " << name;
    const auto& ref = torch_->outputs.at(name);
    Inputs in;
    for (const auto& [k, t] : spec.torch.inputs) {
      in[k] = t.clone();
      if (TakesGrad(k)) in[k].set_requires_grad(true);
    }
    Tensor y = spec.run(in);
    ExpectClose(name + " y", y, ref.at("y"));
    ASSERT_EQ(y.shape(), ref.at("y").shape());
    ops::Sum(ops::Mul(y, in["r"])).backward();
    for (const auto& [k, t] : in) {
      if (TakesGrad(k)) {
        ASSERT_TRUE(ref.count("grad." + k)) << name << ": torch has no grad." << k;
        ExpectClose(name + " grad." + k, t.grad(), ref.at("grad." + k));
      }
    }
    for (const char* k : {"running_mean", "running_var"})
      if (ref.count(k)) ExpectClose(name + " " + k, in[k], ref.at(k));
  }

  static std::unique_ptr<std::map<std::string, Spec>> specs_;
  static std::unique_ptr<TorchResult> torch_;
  int threads_ = 1;
};

std::unique_ptr<std::map<std::string, Spec>> TorchParity::specs_;
std::unique_ptr<TorchResult> TorchParity::torch_;

// Cases: MakeSpecs() (BatchNorm: train and eval, with and without affine, a
// ResNet-sized and a wide offset-mean case; pools with stride and padding;
// CrossEntropy with and without label smoothing).
TEST_F(TorchParity, Activations) { CheckGroup(); }  // LeakyRelu, Gelu
TEST_F(TorchParity, Concat) { CheckGroup(); }
TEST_F(TorchParity, BatchNorm) { CheckGroup(); }  // 1d and 2d
TEST_F(TorchParity, LayerNorm) { CheckGroup(); }
TEST_F(TorchParity, Pooling) { CheckGroup(); }  // MaxPool2d, AvgPool2d, GlobalAvgPool2d
TEST_F(TorchParity, CrossEntropy) { CheckGroup(); }

// The harness's single-op form (one process per call), as other tests may
// use it: torch's GELU of three values.
TEST(TorchReference, SingleOp) {
  TorchResult r = RunTorchReference(
      "gelu", {{"x", Tensor::FromVector({3}, {-1, 0, 2})}, {"r", Tensor::Ones({3})}});
  if (r.skipped) GTEST_SKIP() << r.skip_reason;
  const Tensor& y = r.outputs.at("").at("y");
  EXPECT_NEAR(y.data()[0], -0.158655f, 1e-6);
  EXPECT_NEAR(y.data()[2], 1.954500f, 1e-6);
  // d/dx x Phi(x) at 0 is 1/2.
  EXPECT_NEAR(r.outputs.at("").at("grad.x").data()[1], 0.5f, 1e-6);
}

}  // namespace
}  // namespace dnnd
