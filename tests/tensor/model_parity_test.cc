// Whole graph models against PyTorch 1.13: torch_reference.py's GraphModel
// interprets the canonical TOML of a dnnd model spec (ModelSpecToToml) as
// torch.nn modules named like dnnd's nodes, loads dnnd's parameters and
// buffers strictly (so the state_dict names match dnnd's NamedState names),
// and runs one training-mode forward + backward of sum(y * r) in float64.
// dnnd does the same in float32; the tests compare the output, the gradient
// of every parameter and of the input, the buffers after the step (running
// statistics, num_batches_tracked) and then an eval-mode forward with the
// updated statistics.
//
// BatchNorm/LayerNorm parameters and running statistics start from random
// values (not ones/zeros), so eval mode and the running-statistics update are
// exercised, and num_batches_tracked starts at 3.
//
// Each test is one case and one python process (ctest runs every test in its
// own process); only the cases of the tests that will run are built.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>

#include "tensor/model_spec.h"
#include "tensor/ops.h"
#include "tensor/parallel.h"
#include "tests/tensor/torch_reference.h"

namespace dnnd {
namespace {

using testing::ExpectClose;
using testing::RunTorchReferenceBatch;
using testing::TorchCase;
using testing::TorchResult;

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

ModelSpec SpecFromText(const std::string& text, const std::string& source) {
  auto spec = ParseModelSpecText(text, source);
  if (!spec.ok()) throw std::runtime_error(source + ": " + spec.status().ToString());
  return *spec;
}

ModelSpec SpecFromFile(const std::string& rel) {
  const std::string path = std::string(DNND_SOURCE_DIR) + "/" + rel;
  return SpecFromText(ReadText(path), path);
}

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (unsigned char ch : s) {
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += static_cast<char>(ch);
    } else if (ch == '\n') {
      out += "\\n";
    } else if (ch < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", ch);
      out += buf;
    } else {
      out += static_cast<char>(ch);
    }
  }
  return out + "\"";
}

Tensor Rand(const Shape& s, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  Rng rng(seed);
  return Tensor::Uniform(s, lo, hi, rng);
}

void Fill(Tensor& t, const Tensor& values) {
  ASSERT_EQ(t.numel(), values.numel());
  std::copy(values.data(), values.data() + values.numel(), t.data());
}

// A built model with non-trivial normalisation state, its input, the
// output's cotangent, and torch's case.
struct ModelCase {
  ModelSpec spec;
  std::shared_ptr<nn::Graph> model;
  Tensor x, r;
  nn::NamedTensors initial_state;  // clones, before the step
  TorchCase torch;
};

std::unique_ptr<ModelCase> MakeCase(const std::string& name, ModelSpec spec, int64_t batch,
                                    uint64_t seed) {
  auto c = std::make_unique<ModelCase>();
  c->spec = std::move(spec);
  auto built = BuildModel(c->spec, seed);
  if (!built.ok()) throw std::runtime_error(name + ": " + built.status().ToString());
  c->model = *built;
  std::map<std::string, std::string> type_of;
  for (const LayerSpec& l : c->spec.layers) type_of[l.name] = l.type;
  uint64_t k = seed * 1000;
  for (auto& [tname, t] : c->model->NamedState()) {
    const size_t dot = tname.rfind('.');
    const std::string node = tname.substr(0, dot), what = tname.substr(dot + 1);
    const std::string& type = type_of.at(node);
    const bool norm = type == "batchnorm1d" || type == "batchnorm2d" || type == "layernorm";
    Tensor v;
    if (what == "running_mean") v = Rand(t.shape(), ++k, -0.5f, 0.5f);
    if (what == "running_var") v = Rand(t.shape(), ++k, 0.5f, 2.0f);
    if (what == "num_batches_tracked") v = Tensor::Full(t.shape(), 3.0f);
    if (norm && what == "weight") v = Rand(t.shape(), ++k, 0.5f, 1.5f);
    if (norm && what == "bias") v = Rand(t.shape(), ++k, -0.5f, 0.5f);
    if (v.defined()) Fill(t, v);
  }
  Shape in = c->spec.input, out = *c->model->OutputShape(c->spec.input);
  in.insert(in.begin(), batch);
  out.insert(out.begin(), batch);
  c->x = Rand(in, seed + 1, -2.0f, 2.0f);
  c->r = Rand(out, seed + 2);
  c->torch.name = name;
  c->torch.op = "model";
  c->torch.attrs = "{\"toml\": " + JsonString(ModelSpecToToml(c->spec)) +
                   ", \"training\": true, \"eval_after\": true}";
  c->torch.inputs = {{"x", c->x}, {"r", c->r}};
  for (const auto& [tname, t] : c->model->NamedState()) {
    c->initial_state.emplace_back(tname, t.clone());
    c->torch.inputs.emplace_back("state." + tname, t.clone());
  }
  return c;
}

// A small graph of the other node types: two branches concatenated,
// layernorm over [c, h, w] and over the last dimension, gelu, leaky_relu,
// avg and max pools with stride and padding, dropout with p = 0, batchnorm
// 1d and 2d with a non-default momentum, a three-input add, tanh, sigmoid,
// softmax; nested names ("side.conv").
constexpr const char* kSmallGraph = R"([model]
input = [4, 8, 8]
loss = "cross_entropy"
[[model.nodes]]
name = "conv"
type = "conv2d"
out = 6
kernel = 3
padding = 1
[[model.nodes]]
name = "ln"
type = "layernorm"
dims = 3
[[model.nodes]]
name = "gelu"
type = "gelu"
[[model.nodes]]
name = "side.conv"
type = "conv2d"
inputs = ["input"]
out = 2
kernel = 1
bias = false
[[model.nodes]]
name = "side.act"
type = "leaky_relu"
slope = 0.2
[[model.nodes]]
name = "cat"
type = "concat"
inputs = ["gelu", "side.act"]
[[model.nodes]]
name = "avgpool"
type = "avgpool2d"
kernel = 3
stride = 2
padding = 1
[[model.nodes]]
name = "bn"
type = "batchnorm2d"
momentum = 0.2
[[model.nodes]]
name = "maxpool"
type = "maxpool2d"
kernel = 2
[[model.nodes]]
name = "drop"
type = "dropout"
p = 0.0
[[model.nodes]]
name = "flatten"
type = "flatten"
[[model.nodes]]
name = "fc1"
type = "linear"
out = 16
[[model.nodes]]
name = "bn1d"
type = "batchnorm1d"
eps = 1e-3
[[model.nodes]]
name = "tanh"
type = "tanh"
[[model.nodes]]
name = "fc2"
type = "linear"
inputs = ["flatten"]
out = 16
[[model.nodes]]
name = "sig"
type = "sigmoid"
[[model.nodes]]
name = "sum"
type = "add"
inputs = ["tanh", "sig", "fc1"]
[[model.nodes]]
name = "ln2"
type = "layernorm"
[[model.nodes]]
name = "head"
type = "linear"
out = 5
[[model.nodes]]
name = "softmax"
type = "softmax"
)";

// Test name -> its case.
const std::map<std::string, std::function<std::unique_ptr<ModelCase>()>>& Factories() {
  static const std::map<std::string, std::function<std::unique_ptr<ModelCase>()>> f = {
      {"ResNet20Cifar",
       [] {
         return MakeCase("resnet20_cifar", SpecFromFile("configs/models/resnet20.toml"), 4, 14);
       }},
      {"ResNet20Mnist",
       [] {
         ModelSpec s = SpecFromFile("configs/models/resnet20.toml");
         s.input = {1, 28, 28};
         return MakeCase("resnet20_mnist", s, 4, 11);
       }},
      {"Vgg11Bn",
       [] { return MakeCase("vgg11_bn", SpecFromFile("configs/models/vgg11_bn.toml"), 2, 3); }},
      {"SmallGraph",
       [] { return MakeCase("small_graph", SpecFromText(kSmallGraph, "small_graph"), 6, 4); }},
      {"LeNetListForm",
       [] { return MakeCase("lenet", SpecFromFile("configs/models/lenet.toml"), 3, 5); }},
  };
  return f;
}

// Element-wise |got - ref| <= rtol * (|ref| + max|ref|) (as torch_parity_test).
class ModelParity : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    cases_ = std::make_unique<std::map<std::string, std::unique_ptr<ModelCase>>>();
    const ::testing::TestSuite* suite = ::testing::UnitTest::GetInstance()->current_test_suite();
    std::vector<TorchCase> torch_cases;
    for (int i = 0; i < suite->total_test_count(); ++i) {
      const ::testing::TestInfo* info = suite->GetTestInfo(i);
      auto it = Factories().find(info->name());
      if (!info->should_run() || it == Factories().end()) continue;
      auto c = it->second();
      torch_cases.push_back(c->torch);
      (*cases_)[info->name()] = std::move(c);
    }
    torch_ = std::make_unique<TorchResult>(RunTorchReferenceBatch(torch_cases));
  }
  static void TearDownTestSuite() {
    cases_.reset();
    torch_.reset();
  }
  void SetUp() override {
    threads_ = GetThreads();
    SetThreads(2);
  }
  void TearDown() override { SetThreads(threads_); }

  // float32 against float64 through ~20 layers (convolution sums of up to
  // 4608 products, batch statistics). Measured worst errors (relative to
  // |torch| + max|torch| of each tensor): ~2e-6 for outputs, gradients and
  // running statistics, ~2e-5 for the zero gradients below; 1e-4 leaves a
  // margin without hiding a wrong formula (those err by O(1)).
  void Check(double rtol = 1e-4) {
    if (torch_->skipped) GTEST_SKIP() << torch_->skip_reason;
    const std::string test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    ModelCase& c = *cases_->at(test);
    ASSERT_TRUE(torch_->outputs.count(c.torch.name)) << "torch wrote nothing for " << test;
    const auto& ref = torch_->outputs.at(c.torch.name);
    // A ReLU input within float32's rounding (~1e-6 here) of 0 goes either
    // way depending on summation order (the AVX-512, AVX2 and OpenBLAS
    // convolutions differ there), and the whole gradient behind it with it:
    // such a case compares rounding, not formulas. Seeds are chosen so every
    // ReLU input in torch's float64 run is clear of the kink.
    if (ref.count("min_relu_input")) {
      ASSERT_GT(ref.at("min_relu_input").item(), 2e-6)
          << "ill-conditioned case: a ReLU input is almost exactly 0; choose another seed";
    }
    nn::Graph& model = *c.model;
    double worst_y = 0, worst_grad = 0, worst_state = 0;

    model.Train();
    Tensor x = c.x.clone();
    x.set_requires_grad(true);
    model.ZeroGrad();
    Tensor y = model.Forward(x);
    ASSERT_EQ(y.shape(), ref.at("y").shape());
    worst_y = ExpectClose("y", y, ref.at("y"), rtol);
    ops::Sum(ops::Mul(y, c.r)).backward();
    worst_grad = std::max(worst_grad, ExpectClose("grad.x", x.grad(), ref.at("grad.x"), rtol));
    // A convolution's bias followed by training-mode BatchNorm has gradient
    // 0 (the normalisation removes any per-channel shift): torch's float64
    // gives ~1e-16, dnnd's float32 the rounding of a cancelling sum (~5e-7
    // in VGG's first layer, where 2048 positions are summed). Such tensors
    // (max|torch| below 1e-12 of the largest parameter gradient) are compared
    // at 1% of that largest gradient: |dnnd| <= rtol * 0.01 * largest.
    double grad_scale = 0;
    for (const auto& [name, t] : ref)
      if (name.rfind("grad.", 0) == 0 && name != "grad.x")
        for (float v : t.ToVector()) grad_scale = std::max(grad_scale, double(std::abs(v)));
    auto floor_of = [&](const Tensor& t) {
      double m = 0;
      for (float v : t.ToVector()) m = std::max(m, double(std::abs(v)));
      return m <= 1e-12 * grad_scale ? 0.01 * grad_scale : 0.0;
    };
    size_t params = 0;
    for (const auto& [name, p] : model.NamedParameters()) {
      ++params;
      ASSERT_TRUE(ref.count("grad." + name)) << "torch has no parameter " << name;
      worst_grad =
          std::max(worst_grad, ExpectClose("grad." + name, p.grad(), ref.at("grad." + name), rtol,
                                           floor_of(ref.at("grad." + name))));
    }
    size_t torch_grads = 0;
    for (const auto& [name, t] : ref)
      if (name.rfind("grad.", 0) == 0) ++torch_grads;
    EXPECT_EQ(torch_grads, params + 1) << "torch's parameters are not dnnd's";
    size_t buffers = 0;
    const std::set<std::string> integer = model.IntegerBufferNames();
    for (const auto& [name, b] : model.NamedBuffers()) {
      ++buffers;
      ASSERT_TRUE(ref.count("state." + name)) << "torch has no buffer " << name;
      const Tensor& want = ref.at("state." + name);
      if (integer.count(name)) {
        EXPECT_EQ(b.ToVector(), want.ToVector()) << name;
        EXPECT_EQ(b.ToVector(), std::vector<float>(b.numel(), 4.0f)) << name << ": 3 + one step";
      } else {
        worst_state = std::max(worst_state, ExpectClose(name, b, want, rtol));
      }
    }
    size_t torch_buffers = 0;
    for (const auto& [name, t] : ref)
      if (name.rfind("state.", 0) == 0) ++torch_buffers;
    EXPECT_EQ(torch_buffers, buffers) << "torch's buffers are not dnnd's";

    model.Eval();
    Tensor y_eval = model.Forward(c.x);
    const double worst_eval = ExpectClose("y_eval", y_eval, ref.at("y_eval"), rtol);
    std::fprintf(stderr,
                 "%s: %zu parameters, %zu buffers; worst |dnnd - torch| / (|torch| + max|torch|): "
                 "y %.2e, gradients %.2e, running statistics %.2e, eval y %.2e (largest "
                 "parameter gradient %.2e)\n",
                 test.c_str(), params, buffers, worst_y, worst_grad, worst_state, worst_eval,
                 grad_scale);
  }

  static std::unique_ptr<std::map<std::string, std::unique_ptr<ModelCase>>> cases_;
  static std::unique_ptr<TorchResult> torch_;
  int threads_ = 1;
};

std::unique_ptr<std::map<std::string, std::unique_ptr<ModelCase>>> ModelParity::cases_;
std::unique_ptr<TorchResult> ModelParity::torch_;

// configs/models/resnet20.toml at CIFAR-10's [3, 32, 32], batch 4.
TEST_F(ModelParity, ResNet20Cifar) { Check(); }
// The same spec at Fashion-MNIST's [1, 28, 28] (7x7 in the last stage).
TEST_F(ModelParity, ResNet20Mnist) { Check(); }
// configs/models/vgg11_bn.toml, batch 2 (BatchNorm over 8 values per channel
// in the last stage).
TEST_F(ModelParity, Vgg11Bn) { Check(); }
TEST_F(ModelParity, SmallGraph) { Check(); }
// The list form (nodes "0", "1", ...): configs/models/lenet.toml.
TEST_F(ModelParity, LeNetListForm) { Check(); }

}  // namespace
}  // namespace dnnd
