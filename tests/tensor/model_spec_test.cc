// Model specs: parsing, validation errors with positions, shape chaining,
// and parameter naming compatible with PyTorch's nn.Sequential.
#include "tensor/model_spec.h"

#include <gtest/gtest.h>

namespace dnnd {
namespace {

const char* kMlp = R"(
[model]
input = [1, 28, 28]
loss = "cross_entropy"
[[model.layers]]
type = "flatten"
[[model.layers]]
type = "linear"
out = 100
[[model.layers]]
type = "relu"
[[model.layers]]
type = "linear"
in = 100
out = 10
[model.optimizer]
type = "sgd"
lr = 0.05
momentum = 0.9
)";

TEST(ModelSpec, BuildsNamedParametersLikePyTorch) {
  auto spec = ParseModelSpecText(kMlp, "mlp.toml");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->optimizer.type, "sgd");
  EXPECT_FLOAT_EQ(spec->optimizer.momentum, 0.9f);
  auto model = BuildModel(*spec, 7);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  std::vector<std::string> names;
  for (auto& [n, t] : (*model)->NamedParameters()) names.push_back(n);
  EXPECT_EQ(names, (std::vector<std::string>{"1.weight", "1.bias", "3.weight", "3.bias"}));
  EXPECT_EQ((*model)->ParameterCount(), 784 * 100 + 100 + 100 * 10 + 10);
  Tensor y = (*model)->Forward(Tensor::Zeros({4, 1, 28, 28}));
  EXPECT_EQ(y.shape(), (Shape{4, 10}));
}

TEST(ModelSpec, SameSeedSameWeights) {
  auto spec = ValueOrThrow(ParseModelSpecText(kMlp, "mlp.toml"));
  auto a = ValueOrThrow(BuildModel(spec, 3)), b = ValueOrThrow(BuildModel(spec, 3));
  auto c = ValueOrThrow(BuildModel(spec, 4));
  EXPECT_EQ(a->Parameters()[0].ToVector(), b->Parameters()[0].ToVector());
  EXPECT_NE(a->Parameters()[0].ToVector(), c->Parameters()[0].ToVector());
}

TEST(ModelSpec, ShapeMismatchNamesLayerAndBothShapes) {
  std::string text = kMlp;
  text.replace(text.find("in = 100"), 8, "in = 784");
  auto spec = ValueOrThrow(ParseModelSpecText(text, "bad.toml"));
  auto model = BuildModel(spec, 1);
  ASSERT_FALSE(model.ok());
  const std::string m = model.status().message();
  EXPECT_NE(m.find("layer 3 (linear)"), std::string::npos) << m;
  EXPECT_NE(m.find("784"), std::string::npos) << m;
  EXPECT_NE(m.find("[100]"), std::string::npos) << m;
  EXPECT_NE(m.find("bad.toml:"), std::string::npos) << m;
}

TEST(ModelSpec, LinearAfterImageNeedsFlatten) {
  auto spec = ValueOrThrow(ParseModelSpecText(
      "[model]\ninput = [1, 28, 28]\n[[model.layers]]\ntype = \"linear\"\nout = 10\n", "x.toml"));
  auto model = BuildModel(spec, 1);
  ASSERT_FALSE(model.ok());
  EXPECT_NE(model.status().message().find("flatten"), std::string::npos);
}

struct BadSpec {
  const char* text;
  const char* expect;
};

class ModelSpecErrors : public ::testing::TestWithParam<BadSpec> {};

TEST_P(ModelSpecErrors, AreClearAndPositioned) {
  auto spec = ParseModelSpecText(GetParam().text, "m.toml");
  ASSERT_FALSE(spec.ok());
  EXPECT_NE(spec.status().message().find(GetParam().expect), std::string::npos)
      << spec.status().message();
  EXPECT_NE(spec.status().message().find("m.toml:"), std::string::npos) << spec.status().message();
}

INSTANTIATE_TEST_SUITE_P(
    All, ModelSpecErrors,
    ::testing::Values(
        BadSpec{"[model]\n[[model.layers]]\ntype=\"relu\"\n", "missing required key 'input'"},
        BadSpec{"[model]\ninput=[3]\n", "model.layers"},
        BadSpec{"[model]\ninput=[3]\n[[model.layers]]\ntype=\"lstm\"\n",
                "unknown layer type 'lstm'"},
        BadSpec{"[model]\ninput=[3]\n[[model.layers]]\ntype=\"linear\"\n",
                "missing required key 'out'"},
        BadSpec{"[model]\ninput=[3]\n[[model.layers]]\ntype=\"linear\"\nout=\"ten\"\n",
                "expected an integer"},
        BadSpec{"[model]\ninput=[3]\n[[model.layers]]\ntype=\"linear\"\nout=0\n",
                "below the minimum"},
        BadSpec{"[model]\ninput=[3]\n[[model.layers]]\ntype=\"relu\"\nout=3\n",
                "unknown key 'out'"},
        BadSpec{"[model]\ninput=[3]\nloss=\"hinge\"\n[[model.layers]]\ntype=\"relu\"\n",
                "unknown loss"},
        BadSpec{"[model]\ninput=[0]\n[[model.layers]]\ntype=\"relu\"\n", "model.input"},
        BadSpec{"[model]\ninput=[3]\n[[model.layers]]\ntype=\"dropout\"\np=1.5\n", "outside"},
        BadSpec{"[model]\ninput=[3]\n[[model.layers]]\ntype=\"relu\"\n[model.optimizer]\ntype="
                "\"sgd\"\nlr=0.1\nnesterov=true\n",
                "nesterov"},
        BadSpec{"[model]\ninput=[3]\n[[model.layers]]\ntype=\"relu\"\n[model.optimizer]\ntype="
                "\"lbfgs\"\n",
                "unknown optimizer"},
        BadSpec{"[model\ninput=[3]\n", "m.toml:1"}));

// Found by tests/fuzz/run.sh: spec text reached toml++ without the guard.
TEST(ModelSpec, MalformedTextThatCrashesTomlppIsAnError) {
  auto spec = ParseModelSpecText("a = 1\n[\n  ]=bc\"x\"\n", "spec.toml");
  ASSERT_FALSE(spec.ok());
  EXPECT_NE(spec.status().message().find("spec.toml:2:1"), std::string::npos)
      << spec.status().message();
}

TEST(ModelSpec, CanonicalTextRoundTrips) {
  auto spec = ValueOrThrow(ParseModelSpecText(kMlp, "mlp.toml"));
  std::string text = ModelSpecToToml(spec);
  auto again = ParseModelSpecText(text, "canonical");
  ASSERT_TRUE(again.ok()) << again.status().ToString() << "\n" << text;
  EXPECT_EQ(ModelSpecToToml(*again), text);
}

}  // namespace
}  // namespace dnnd
