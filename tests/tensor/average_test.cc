// Weighted model averaging and the architecture comparison the aggregator
// relies on.
#include "tensor/average.h"

#include <gtest/gtest.h>

#include "tensor/model_spec.h"

namespace dnnd {
namespace {

WeightedModel Model(const std::string& source, float w, float b, double weight,
                    Shape wshape = {2}) {
  return {
      source, {{"0.weight", Tensor::Full(wshape, w)}, {"0.bias", Tensor::Full({1}, b)}}, weight};
}

TEST(WeightedAverage, WeighsBySamples) {
  auto r = WeightedAverage({Model("a", 1.0f, 10.0f, 1000), Model("b", 5.0f, 30.0f, 3000)});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].first, "0.weight");
  EXPECT_EQ((*r)[0].second.ToVector(), (std::vector<float>{4.0f, 4.0f}));  // (1*1 + 5*3) / 4
  EXPECT_EQ((*r)[1].second.ToVector(), (std::vector<float>{25.0f}));
  // One model averages to itself.
  auto one = WeightedAverage({Model("a", 0.1f, 0.2f, 7)});
  ASSERT_TRUE(one.ok());
  EXPECT_EQ((*one)[0].second.ToVector(), (std::vector<float>{0.1f, 0.1f}));
}

TEST(WeightedAverage, MismatchNamesTheTensorBothSourcesAndBothShapes) {
  auto r =
      WeightedAverage({Model("w0.safetensors", 1, 1, 1), Model("w1.safetensors", 1, 1, 1, {3})});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find(
                "tensor 0.weight has shape [2] in w0.safetensors but [3] in w1.safetensors"),
            std::string::npos)
      << r.status().message();
  WeightedModel extra = Model("w2", 1, 1, 1);
  extra.tensors.emplace_back("1.weight", Tensor::Zeros({4}));
  WeightedModel fewer = Model("w3", 1, 1, 1);
  fewer.tensors.pop_back();
  auto r2 = WeightedAverage({Model("w0", 1, 1, 1), extra, fewer});
  ASSERT_FALSE(r2.ok());
  EXPECT_NE(r2.status().message().find("tensor 1.weight [4] is in w2 but not in w0"),
            std::string::npos)
      << r2.status().message();
  EXPECT_NE(r2.status().message().find("tensor 0.bias is in w0 [1] but missing from w3"),
            std::string::npos)
      << r2.status().message();
}

TEST(WeightedAverage, RejectsNonPositiveWeightsAndNoInput) {
  EXPECT_FALSE(WeightedAverage({}).ok());
  auto r = WeightedAverage({Model("a", 1, 1, 0)});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("a: weight"), std::string::npos);
}

TEST(ModelSpec, ArchitectureDifferenceIgnoresOptimizerButNotActivations) {
  auto spec = [](const std::string& act, double lr) {
    return ParseModelSpecText(
        "[model]\ninput = [3]\nloss = \"mse\"\n[[model.layers]]\ntype = \"linear\"\nout = 4\n"
        "[[model.layers]]\ntype = \"" +
            act + "\"\n[model.optimizer]\ntype = \"sgd\"\nlr = " + std::to_string(lr) + "\n",
        "mem");
  };
  auto a = spec("relu", 0.1), b = spec("relu", 0.5), c = spec("tanh", 0.1);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(ArchitectureDifference(*a, *b), "");
  EXPECT_EQ(ArchitectureDifference(*a, *c), "layer 1: relu vs tanh");
}

}  // namespace
}  // namespace dnnd
