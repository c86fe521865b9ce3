// Warm starts through the controller: a spec model given initial weights
// (PUT /api/v1/models/{name}/initial, `dnnd ctl model create --init-from`),
// every way the upload can be wrong, and a job that fine-tunes part of it
// (`freeze`) on the pool: the frozen tensor comes back bit-identical.
#include "fixture.h"
#include "tensor/safetensors.h"

namespace dnnd {
namespace {

using namespace dnnd::controller_testing;

// The tiny model's state (flatten, then linear 16 -> 2: "1.weight", "1.bias").
nn::NamedTensors TinyState(float w, float b, int64_t in = 16) {
  return {{"1.bias", Tensor::FromVector({2}, {b, -b})},
          {"1.weight", Tensor::FromVector({2, in}, std::vector<float>(2 * in, w))}};
}

std::map<std::string, std::vector<float>> Values(const std::string& safetensors) {
  std::map<std::string, std::vector<float>> out;
  auto file = DecodeSafetensors(safetensors, "reply");
  EXPECT_TRUE(file.ok()) << file.status().ToString();
  if (file.ok())
    for (const auto& [name, t] : file->tensors) out[name] = t.ToVector();
  return out;
}

TEST(ControllerWarmStart, InitialWeightsAreCheckedSetOnceAndFrozenTensorsStayBitIdentical) {
  TempDir dir;
  ControllerProcess c(dir);
  ASSERT_GT(c.port(), 0) << c.daemon().output();
  TinyFiles files(dir);
  const std::string ctl = "ctl --controller 127.0.0.1:" + std::to_string(c.port()) + " ";
  ASSERT_EQ(Dnnd(ctl + "dataset upload d --format idx --train-images " + files.images +
                 " --train-labels " + files.labels)
                .code,
            0);
  ASSERT_EQ(Dnnd(ctl + "model create m --spec " + files.spec).code, 0);

  // The wrong model, not safetensors, names and shapes that do not fit.
  const std::string good = EncodeSafetensors(TinyState(0.125f, 0.5f), {});
  std::string r = c.Send("PUT", "/api/v1/models/nope/initial", good);
  EXPECT_EQ(HttpStatus(r), 404) << r;
  r = c.Send("PUT", "/api/v1/models/m/initial", "not safetensors at all");
  EXPECT_EQ(HttpStatus(r), 400) << r;
  EXPECT_NE(ErrorMessage(r).find("invalid initial weights for model 'm'"), std::string::npos) << r;
  nn::NamedTensors wrong = TinyState(0.125f, 0.5f, 15);             // mis-shaped weight
  wrong.emplace_back("2.weight", Tensor::FromVector({1}, {1.0f}));  // unexpected
  wrong.erase(wrong.begin());                                       // 1.bias missing
  r = c.Send("PUT", "/api/v1/models/m/initial", EncodeSafetensors(wrong, {}));
  EXPECT_EQ(HttpStatus(r), 400) << r;
  for (const char* name : {"1.weight", "2.weight", "1.bias"})
    EXPECT_NE(ErrorMessage(r).find(name), std::string::npos) << name << ": " << r;
  EXPECT_EQ(HttpStatus(c.Send("GET", "/api/v1/models/m/initial")), 404);  // nothing was kept

  // Accepted once; the model now says so and serves them back.
  r = c.Send("PUT", "/api/v1/models/m/initial", good);
  ASSERT_EQ(HttpStatus(r), 200) << r;
  EXPECT_TRUE(json::parse(HttpBody(r)).at("initial_weights").as_bool());
  r = c.Send("PUT", "/api/v1/models/m/initial", EncodeSafetensors(TinyState(1, 1), {}));
  EXPECT_EQ(HttpStatus(r), 409) << r;
  r = c.Send("GET", "/api/v1/models/m/initial");
  ASSERT_EQ(HttpStatus(r), 200) << r;
  EXPECT_EQ(Values(HttpBody(r)), Values(good));

  // Job fields: a freeze pattern must match, must leave something to train;
  // momentum is SGD's.
  r = c.Send("POST", "/api/v1/jobs", R"({"model":"m","dataset":"d","freeze":["stem.*"]})");
  EXPECT_EQ(HttpStatus(r), 400) << r;
  EXPECT_NE(ErrorMessage(r).find("field 'freeze': 'stem.*' matches no parameter"),
            std::string::npos)
      << r;
  r = c.Send("POST", "/api/v1/jobs", R"({"model":"m","dataset":"d","freeze":["1.*"]})");
  EXPECT_EQ(HttpStatus(r), 400) << r;
  EXPECT_NE(ErrorMessage(r).find("leaves no parameter"), std::string::npos) << r;
  r = c.Send("POST", "/api/v1/jobs", R"({"model":"m","dataset":"d","freeze":"1.weight"})");
  EXPECT_EQ(HttpStatus(r), 400) << r;
  r = c.Send("POST", "/api/v1/jobs",
             R"({"model":"m","dataset":"d","optimizer":"adam","momentum":0.9})");
  EXPECT_EQ(HttpStatus(r), 400) << r;
  EXPECT_NE(ErrorMessage(r).find("'momentum' is SGD's"), std::string::npos) << r;

  // Fine-tuning the bias only, with `dnnd ctl`: the weight is the upload's,
  // bit for bit; the bias moved from it.
  Outcome o = Shell(std::string(DNND_BINARY) + " " + ctl +
                    "job create --model m --dataset d --epochs 3 --batch 5 --workers 2 "
                    "--optimizer sgd --lr 0.5 --momentum 0.9 --weight-decay 0.01 "
                    "--freeze 1.weight 2>/dev/null");
  ASSERT_EQ(o.code, 0) << o.output;
  const int64_t id = std::stoll(o.output);  // just the id
  auto job = WaitForJob(c, id, JobOver, std::chrono::seconds(90));
  ASSERT_EQ(job.at("state").as_string(), "succeeded")
      << job << HttpBody(c.Send("GET", "/api/v1/jobs/" + std::to_string(id) + "/logs"));
  const auto& params = job.at("params").as_object();
  EXPECT_EQ(json::serialize(params.at("freeze")), R"(["1.weight"])");
  EXPECT_DOUBLE_EQ(params.at("momentum").as_double(), 0.9);
  r = c.Send("GET", "/api/v1/jobs/" + std::to_string(id) + "/checkpoint");
  ASSERT_EQ(HttpStatus(r), 200) << r;
  auto trained = Values(HttpBody(r));
  EXPECT_EQ(trained["1.weight"], std::vector<float>(32, 0.125f));
  ASSERT_EQ(trained["1.bias"].size(), 2u);
  EXPECT_NE(trained["1.bias"], (std::vector<float>{0.5f, -0.5f}));

  // `dnnd ctl model create --init-from`: registered with its start; refused
  // beside --onnx, and for a file that does not exist.
  const std::string weights = dir.Write("w.safetensors", good);
  o = Dnnd(ctl + "model create m2 --spec " + files.spec + " --init-from " + weights);
  ASSERT_EQ(o.code, 0) << o.output;
  EXPECT_TRUE(c.Json("GET", "/api/v1/models/m2").at("initial_weights").as_bool());
  EXPECT_EQ(Dnnd(ctl + "model create m3 --onnx x.onnx --init-from " + weights).code, 2);
  o = Dnnd(ctl + "model create m3 --spec " + files.spec + " --init-from " + dir.path() + "/no");
  EXPECT_EQ(o.code, 2) << o.output;
  EXPECT_EQ(HttpStatus(c.Send("GET", "/api/v1/models/m3")), 404);  // nothing half-registered
}

}  // namespace
}  // namespace dnnd
