// Graph models (named nodes, blocks, residual connections, BatchNorm) through
// the controller: registered as JSON over the API and as a TOML file with
// `dnnd ctl model create`, trained by a pool worker, and served by predict.
#include <cmath>

#include "fixture.h"
#include "tensor/safetensors.h"

namespace dnnd {
namespace {

using namespace dnnd::controller_testing;

// A residual network with BatchNorm in the JSON form: nodes, a block with
// params and an `add` reading the block's input.
constexpr const char* kResidualBnJson = R"({
  "input": [1, 28, 28],
  "nodes": [
    {"name": "conv1", "type": "conv2d", "out": 4, "kernel": 3, "stride": 2, "padding": 1,
     "bias": false},
    {"name": "bn1", "type": "batchnorm2d"},
    {"name": "relu", "type": "relu"},
    {"name": "layer1", "type": "block", "block": "basic", "args": {"planes": 4}},
    {"name": "avgpool", "type": "global_avgpool2d"},
    {"name": "fc", "type": "linear", "out": 10}
  ],
  "blocks": {"basic": {"params": {"planes": 8}, "nodes": [
    {"name": "conv1", "type": "conv2d", "out": "planes", "kernel": 3, "padding": 1, "bias": false},
    {"name": "bn1", "type": "batchnorm2d"},
    {"name": "relu1", "type": "relu"},
    {"name": "conv2", "type": "conv2d", "out": "planes", "kernel": 3, "padding": 1, "bias": false},
    {"name": "bn2", "type": "batchnorm2d", "momentum": 0.25},
    {"name": "add", "type": "add", "inputs": ["bn2", "in"]},
    {"name": "relu2", "type": "relu"}
  ]}},
  "optimizer": {"type": "sgd", "lr": 0.05, "momentum": 0.9}
})";

// {"inputs": [...]}: `n` distinct flat 28x28 images in [0, 1].
std::string Inputs(int n) {
  json::array inputs;
  for (int k = 0; k < n; ++k) {
    json::array flat;
    for (int i = 0; i < 784; ++i) flat.push_back(((i * 7 + k * 53) % 255) / 255.0);
    inputs.push_back(std::move(flat));
  }
  return json::serialize(json::object{{"inputs", std::move(inputs)}});
}

std::vector<double> Probabilities(const json::value& prediction) {
  std::vector<double> out;
  for (const auto& p : prediction.at("probabilities").as_array())
    out.push_back(p.to_number<double>());
  return out;
}

TEST(ControllerGraphModels, ResidualBatchNormAndResNet20TrainOnThePoolAndPredict) {
  if (!std::filesystem::exists(kFm + "train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "dataset-fashion-mnist missing";
  TempDir dir;
  ControllerProcess c(dir, "--set controller.local_workers=0");
  ASSERT_GT(c.port(), 0) << c.daemon().output();
  auto worker = StartPoolWorker(dir, c.port(), "graph-worker");
  ASSERT_TRUE(WaitForNodes(c, 1, std::chrono::seconds(20))) << worker->output();
  UploadFashionMnist(c, "fm");

  // JSON: conv 36 + bn 8 + block (2 x 144 + 2 x 8) + fc 50 = 398 parameters.
  std::string r = c.Send("POST", "/api/v1/models",
                         std::string(R"({"name":"resbn","spec":)") + kResidualBnJson + "}");
  ASSERT_EQ(HttpStatus(r), 201) << r;
  EXPECT_EQ(json::parse(HttpBody(r)).at("parameters").as_int64(), 398) << r;
  const std::string spec(json::parse(HttpBody(r)).at("spec").as_string());
  EXPECT_NE(spec.find("layer1.add"), std::string::npos) << spec;
  EXPECT_NE(spec.find("momentum = 0.25"), std::string::npos) << spec;
  // A JSON null is refused, naming where it is.
  r = c.Send("POST", "/api/v1/models",
             R"({"name":"bad","spec":{"input":[1,28,28],"nodes":[{"name":"a","type":"flatten",)"
             R"("inputs":null}]}})");
  EXPECT_EQ(HttpStatus(r), 400) << r;
  EXPECT_NE(ErrorMessage(r).find("model.nodes[0].inputs: null"), std::string::npos) << r;

  // TOML file with [[model.nodes]] and [model.blocks.*], through dnnd ctl.
  std::string resnet = ReadFile(Src("configs/models/resnet20.toml"));
  resnet.replace(resnet.find("input = [3, 32, 32]"), 19, "input = [1, 28, 28]");
  const std::string ctl = "ctl --controller 127.0.0.1:" + std::to_string(c.port()) + " ";
  Outcome o = Dnnd(ctl + "model create resnet20 --spec " + dir.Write("resnet20.toml", resnet));
  ASSERT_EQ(o.code, 0) << o.output;
  EXPECT_GT(c.Json("GET", "/api/v1/models/resnet20").at("parameters").as_int64(), 270000);

  for (const auto& [model, job] :
       {std::pair<std::string, std::string>{"resbn", R"("limit_train":512,"limit_test":64)"},
        {"resnet20", R"("limit_train":64,"limit_test":32)"}}) {
    r = c.Send("POST", "/api/v1/jobs",
               R"({"model":")" + model + R"(","dataset":"fm","epochs":1,"batch":32,"workers":1,)" +
                   job + "}");
    ASSERT_EQ(HttpStatus(r), 201) << r;
    const int64_t id = json::parse(HttpBody(r)).at("id").as_int64();
    auto done = WaitForJob(c, id, JobOver, std::chrono::seconds(120));
    ASSERT_EQ(done.at("state").as_string(), "succeeded")
        << model << ": " << done << "\n"
        << HttpBody(c.Send("GET", "/api/v1/jobs/" + std::to_string(id) + "/logs"));
    // The trained checkpoint holds BatchNorm's running statistics.
    const std::string ckpt = c.Send("GET", "/api/v1/jobs/" + std::to_string(id) + "/checkpoint");
    ASSERT_EQ(HttpStatus(ckpt), 200);
    auto file = DecodeSafetensors(HttpBody(ckpt), "checkpoint");
    ASSERT_TRUE(file.ok()) << file.status().ToString();
    bool moved = false, tracked = false;
    for (const auto& [name, t] : file->tensors) {
      if (name == "layer1.0.bn2.running_mean" || name == "layer1.bn2.running_mean")
        for (float v : t.ToVector()) moved |= std::abs(v) > 1e-6;
      if (name == "bn1.num_batches_tracked") tracked = t.ToVector().at(0) > 0;
    }
    EXPECT_TRUE(moved) << model;
    EXPECT_TRUE(tracked) << model;

    // Predictions use the running statistics (evaluation mode): an image's
    // probabilities do not depend on the other images of the request.
    r = c.Send("POST", "/api/v1/models/" + model + "/predict", Inputs(3));
    ASSERT_EQ(HttpStatus(r), 200) << r;
    auto three = json::parse(HttpBody(r)).at("predictions").as_array();
    ASSERT_EQ(three.size(), 3u);
    r = c.Send("POST", "/api/v1/models/" + model + "/predict", Inputs(1));
    ASSERT_EQ(HttpStatus(r), 200) << r;
    const auto alone = Probabilities(json::parse(HttpBody(r)).at("predictions").as_array().at(0));
    const auto batched = Probabilities(three[0]);
    ASSERT_EQ(alone.size(), 10u);
    ASSERT_EQ(batched.size(), alone.size());
    for (size_t k = 0; k < alone.size(); ++k) EXPECT_NEAR(batched[k], alone[k], 1e-5) << model;
  }
}

}  // namespace
}  // namespace dnnd
