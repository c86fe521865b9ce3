// Graph model specs: blocks and repeats, the shipped ResNet/VGG specs, every
// graph error (named, positioned, all at once), cuts, and canonical text.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "tensor/model_spec.h"

namespace dnnd {
namespace {

std::string ReadSource(const std::string& rel) {
  std::ifstream in(std::string(DNND_SOURCE_DIR) + "/" + rel);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

template <typename T>
T ValueOrDie(Result<T> r) {
  if (!r.ok()) throw std::runtime_error(r.status().ToString());
  return std::move(r).value();
}

std::string ErrorOf(const std::string& text) {
  auto spec = ParseModelSpecText(text, "g.toml");
  if (!spec.ok()) return spec.status().message();
  auto model = BuildModel(*spec, 1);
  return model.ok() ? "" : model.status().message();
}

bool Has(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// The shipped ResNet-20 spec, and a model of it on 1x12x12 inputs (seed 3).
ModelSpec Resnet20Spec() {
  return ValueOrDie(
      ParseModelSpecText(ReadSource("configs/models/resnet20.toml"), "resnet20.toml"));
}
auto SmallResnet20() {
  ModelSpec spec = Resnet20Spec();
  spec.input = {1, 12, 12};
  return ValueOrDie(BuildModel(spec, 3));
}

TEST(GraphSpec, ResNet20HasTorchvisionNamesAndShapes) {
  ModelSpec spec = Resnet20Spec();
  auto model = ValueOrDie(BuildModel(spec, 7));
  // 3 stages x 3 blocks, ResNet-20's 0.27 M parameters (He et al. 2016).
  EXPECT_EQ(model->ParameterCount(), 272474);
  std::set<std::string> names;
  for (const auto& [n, t] : model->NamedState()) names.insert(n);
  for (const char* n : {"conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight",
                        "layer1.2.bn2.num_batches_tracked", "layer2.0.downsample.0.weight",
                        "layer2.0.downsample.1.running_var", "layer3.2.conv2.weight", "fc.bias"})
    EXPECT_TRUE(names.count(n)) << n;
  EXPECT_FALSE(names.count("layer1.0.downsample.0.weight"));  // identity shortcut
  EXPECT_EQ(model->IntegerBufferNames().count("bn1.num_batches_tracked"), 1u);
  EXPECT_EQ(ValueOrDie(model->OutputShape({3, 32, 32})), (Shape{10}));
  Tensor y = model->Forward(Tensor::Zeros({2, 3, 32, 32}));
  EXPECT_EQ(y.shape(), (Shape{2, 10}));
}

TEST(GraphSpec, ShippedModelsBuild) {
  struct Case {
    const char* file;
    int64_t params;
  } cases[] = {{"configs/models/resnet18.toml", 11173962},
               {"configs/models/resnet34.toml", 21282122},
               {"configs/models/vgg11_bn.toml", 9231114}};
  for (const auto& c : cases) {
    auto spec = ValueOrDie(ParseModelSpecText(ReadSource(c.file), c.file));
    auto model = ValueOrDie(BuildModel(spec, 1));
    EXPECT_EQ(model->ParameterCount(), c.params) << c.file;
    EXPECT_EQ(ValueOrDie(model->OutputShape(spec.input)), (Shape{10})) << c.file;
  }
}

TEST(GraphSpec, CutsAreBlockBoundariesAndRangesCompose) {
  auto model = SmallResnet20();
  const int block1 = model->Find("layer1.1.conv1"), inside = model->Find("layer1.0.bn2");
  ASSERT_GT(block1, 0);
  EXPECT_TRUE(model->IsCut(block1));
  EXPECT_FALSE(model->IsCut(inside));  // layer1.0's input is still needed by its add
  model->Eval();
  Rng rng(5);
  Tensor x = Tensor::Uniform({2, 1, 12, 12}, -1, 1, rng);
  Tensor whole = model->Forward(x);
  Tensor half = model->ForwardRange(x, 0, block1);
  Tensor rest = model->ForwardRange(half, block1, model->size());
  EXPECT_EQ(whole.ToVector(), rest.ToVector());
  EXPECT_THROW(model->Place(inside, model->size(), nullptr), std::invalid_argument);
}

// In training, a batch norm or an add whose only reader is a ReLU runs with
// it as one op (one pass less over memory); a range that ends between the
// two runs them apart, so a layer-server cut still hands over the node's own
// output.
TEST(GraphSpec, BatchNormAndAddRunFusedWithTheReluAfterThem) {
  auto model = SmallResnet20();
  const int begin = model->Find("layer1.1.conv1"), bn1 = model->Find("layer1.1.bn1");
  const int add = model->Find("layer1.1.add"), relu2 = model->Find("layer1.1.relu2");
  ASSERT_TRUE(begin > 0 && bn1 > begin && add > bn1 && relu2 == add + 1);
  Rng rng(5);
  Tensor x = Tensor::Uniform({2, 16, 12, 12}, -1, 1, rng);
  x.set_requires_grad(true);
  auto op_of = [](const Tensor& t) { return std::string(t.grad_fn() ? t.grad_fn()->name : ""); };
  EXPECT_EQ(op_of(model->ForwardRange(x, begin, bn1 + 2)), "BatchNormRelu");
  EXPECT_EQ(op_of(model->ForwardRange(x, begin, bn1 + 1)), "BatchNorm");
  EXPECT_EQ(op_of(model->ForwardRange(x, begin, relu2 + 1)), "AddRelu");
  EXPECT_EQ(op_of(model->ForwardRange(x, begin, add + 1)), "Add");
}

TEST(GraphSpec, CanonicalTextRoundTripsWithNamesAndInputs) {
  ModelSpec spec = Resnet20Spec();
  const std::string text = ModelSpecToToml(spec);
  EXPECT_TRUE(Has(text, "name = \"layer2.0.downsample.0\"")) << text;
  auto again = ValueOrDie(ParseModelSpecText(text, "canonical"));
  EXPECT_EQ(ModelSpecToToml(again), text);
  EXPECT_EQ(ArchitectureDifference(spec, again), "");
  auto a = ValueOrDie(BuildModel(spec, 9)), b = ValueOrDie(BuildModel(again, 9));
  EXPECT_EQ(a->NamedState().size(), b->NamedState().size());
  EXPECT_EQ(a->Parameters()[0].ToVector(), b->Parameters()[0].ToVector());
}

const char* kHead = "[model]\ninput = [4, 8, 8]\n";

TEST(GraphSpec, DanglingInputNamesNodeAndSuggests) {
  const std::string m = ErrorOf(std::string(kHead) +
                                "[[model.nodes]]\nname = \"conv\"\ntype = \"conv2d\"\nout = 4\n"
                                "kernel = 3\npadding = 1\n"
                                "[[model.nodes]]\nname = \"sum\"\ntype = \"add\"\n"
                                "inputs = [\"conv\", \"cnov2\"]\n");
  EXPECT_TRUE(Has(m, "g.toml:9:1: node 'sum' reads 'cnov2', which no node is named")) << m;
  EXPECT_TRUE(Has(m, "did you mean 'conv'?")) << m;
}

TEST(GraphSpec, CycleUnusedAndDuplicateAreErrors) {
  std::string cycle = std::string(kHead) +
                      "[[model.nodes]]\nname = \"a\"\ntype = \"relu\"\ninputs = [\"b\"]\n"
                      "[[model.nodes]]\nname = \"b\"\ntype = \"relu\"\ninputs = [\"a\"]\n"
                      "[[model.nodes]]\nname = \"out\"\ntype = \"add\"\ninputs = [\"b\", "
                      "\"input\"]\n";
  EXPECT_TRUE(Has(ErrorOf(cycle), "the nodes a, b read each other in a cycle")) << ErrorOf(cycle);
  std::string unused = std::string(kHead) +
                       "[[model.nodes]]\nname = \"side\"\ntype = \"relu\"\n"
                       "[[model.nodes]]\nname = \"out\"\ntype = \"tanh\"\ninputs = [\"input\"]\n";
  EXPECT_TRUE(Has(ErrorOf(unused), "g.toml:3:1: node 'side' is never used")) << ErrorOf(unused);
  std::string dup = std::string(kHead) +
                    "[[model.nodes]]\nname = \"x\"\ntype = \"relu\"\n"
                    "[[model.nodes]]\nname = \"x\"\ntype = \"tanh\"\n";
  EXPECT_TRUE(Has(ErrorOf(dup), "g.toml:6:1: node 'x' is defined twice (first at g.toml:3:1)"))
      << ErrorOf(dup);
}

TEST(GraphSpec, ShapeErrorNamesNodePositionAndShapes) {
  const std::string m = ErrorOf(std::string(kHead) +
                                "[[model.nodes]]\nname = \"wide\"\ntype = \"conv2d\"\nout = 8\n"
                                "kernel = 1\n"
                                "[[model.nodes]]\nname = \"sum\"\ntype = \"add\"\n"
                                "inputs = [\"wide\", \"input\"]\n");
  EXPECT_TRUE(Has(m, "g.toml:8:1: node 'sum' (add)")) << m;
  EXPECT_TRUE(Has(m, "[8, 8, 8], [4, 8, 8]")) << m;
}

TEST(GraphSpec, EveryErrorIsReportedAtOnce) {
  const std::string m = ErrorOf(std::string(kHead) +
                                "[[model.nodes]]\nname = \"a\"\ntype = \"batchnorm3d\"\n"
                                "[[model.nodes]]\nname = \"b\"\ntype = \"conv2d\"\nkernel = 3\n"
                                "[model.optimizer]\ntype = \"adamm\"\nlr = -1\n");
  EXPECT_TRUE(Has(m, "unknown layer type 'batchnorm3d'")) << m;
  EXPECT_TRUE(Has(m, "missing required key 'out'")) << m;
  EXPECT_TRUE(Has(m, "unknown optimizer 'adamm'")) << m;
  EXPECT_TRUE(Has(m, "model.optimizer.lr: -1 is outside")) << m;
}

TEST(GraphSpec, BlockErrorsNameTheBlock) {
  const std::string use = std::string(kHead) +
                          "[[model.nodes]]\nname = \"stage\"\ntype = \"block\"\n"
                          "block = \"unit\"\nrepeat = 2\nargs = { width = 4, depth = 2 }\n"
                          "[model.blocks.unit]\nparams = { width = 8 }\n"
                          "[[model.blocks.unit.nodes]]\nname = \"c\"\ntype = \"conv2d\"\n"
                          "out = \"widht\"\nkernel = 1\n";
  const std::string m = ErrorOf(use);
  EXPECT_TRUE(Has(m, "block 'unit' has no param 'depth' (params: width)")) << m;
  const std::string missing = std::string(kHead) +
                              "[[model.nodes]]\nname = \"stage\"\ntype = \"block\"\n"
                              "block = \"unti\"\n[model.blocks.unit]\n"
                              "[[model.blocks.unit.nodes]]\nname = \"c\"\ntype = \"relu\"\n";
  EXPECT_TRUE(Has(ErrorOf(missing), "no [model.blocks.unti]; did you mean 'unit'?"))
      << ErrorOf(missing);
  const std::string typo = std::string(kHead) +
                           "[[model.nodes]]\nname = \"stage\"\ntype = \"block\"\n"
                           "block = \"unit\"\n[model.blocks.unit]\nparams = { width = 8 }\n"
                           "[[model.blocks.unit.nodes]]\nname = \"c\"\ntype = \"conv2d\"\n"
                           "out = \"widht\"\nkernel = 1\n";
  EXPECT_TRUE(Has(ErrorOf(typo), "'widht' is not a parameter of the block (params: width)"))
      << ErrorOf(typo);
}

TEST(GraphSpec, RepeatGivesEachCopyItsOwnParameters) {
  const std::string text = std::string(kHead) +
                           "[[model.nodes]]\nname = \"stage\"\ntype = \"block\"\n"
                           "block = \"res\"\nrepeat = 3\nstart = 1\n"
                           "[[model.nodes]]\nname = \"pool\"\ntype = \"global_avgpool2d\"\n"
                           "[model.blocks.res]\nparams = { width = 4 }\n"
                           "[[model.blocks.res.nodes]]\nname = \"conv\"\ntype = \"conv2d\"\n"
                           "out = \"width\"\nkernel = 3\npadding = 1\n"
                           "[[model.blocks.res.nodes]]\nname = \"bn\"\ntype = \"batchnorm2d\"\n"
                           "[[model.blocks.res.nodes]]\nname = \"sum\"\ntype = \"add\"\n"
                           "inputs = [\"bn\", \"in\"]\n";
  auto spec = ValueOrDie(ParseModelSpecText(text, "g.toml"));
  auto model = ValueOrDie(BuildModel(spec, 2));
  ASSERT_EQ(model->size(), 10u);
  EXPECT_EQ(model->name(0), "stage.1.conv");
  EXPECT_EQ(model->name(8), "stage.3.sum");
  EXPECT_EQ(model->inputs(8), (std::vector<int>{7, 5}));  // stage.3.bn and stage.2.sum
  auto p = model->NamedParameters();
  ASSERT_GE(p.size(), 6u);
  EXPECT_NE(p[0].second.ToVector(), p[3].second.ToVector());  // copies differ
}

TEST(GraphSpec, MergingNodesNeedTheGraphForm) {
  const std::string m = ErrorOf(std::string(kHead) + "[[model.layers]]\ntype = \"add\"\n");
  EXPECT_TRUE(Has(m, "needs the graph form")) << m;
}

}  // namespace
}  // namespace dnnd
