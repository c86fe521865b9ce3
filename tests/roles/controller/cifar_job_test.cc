// CIFAR-10 through the controller: the binary files uploaded as a dataset
// (validated by the same reader, bad records refused naming the record), a
// job on a small CNN with crop and flip augmentation, then predictions from
// a colour PNG (a grayscale one is a clear 400).
#include <gtest/gtest.h>
#include <stb/stb_image_write.h>

#include <boost/json.hpp>
#include <string>
#include <vector>

#include "tests/roles/controller_process.h"
#include "tests/roles/dnnd_process.h"

namespace dnnd {
namespace {

using namespace dnnd::testing;
namespace json = boost::json;

// `n` CIFAR-10 records: label i % 10, a colour per class plus a moving bright square.
std::string Cifar(int n, int first, int bad_label_at = -1) {
  std::string bytes;
  for (int i = first; i < first + n; ++i) {
    const int label = i % 10;
    bytes.push_back(static_cast<char>(i - first == bad_label_at ? 12 : label));
    for (int c = 0; c < 3; ++c)
      for (int y = 0; y < 32; ++y)
        for (int x = 0; x < 32; ++x) {
          const bool square =
              y >= (i % 20) && y < (i % 20) + 8 && x >= label * 2 && x < label * 2 + 8;
          bytes.push_back(static_cast<char>(square ? 250 : (label * 25 + c * 40 + x) % 256));
        }
  }
  return bytes;
}

void AppendBytes(void* context, void* data, int size) {
  static_cast<std::string*>(context)->append(static_cast<const char*>(data),
                                             static_cast<size_t>(size));
}

std::string Png(int side, int channels) {
  std::vector<uint8_t> px(static_cast<size_t>(side) * side * channels);
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>(i * 13);
  std::string out;
  stbi_write_png_to_func(AppendBytes, &out, side, side, channels, px.data(), side * channels);
  return out;
}

const char* kCnn = R"(
[model]
input = [3, 32, 32]
loss = "cross_entropy"
[[model.layers]]
type = "conv2d"
out = 4
kernel = 3
padding = 1
[[model.layers]]
type = "relu"
[[model.layers]]
type = "maxpool2d"
kernel = 4
[[model.layers]]
type = "flatten"
[[model.layers]]
type = "linear"
out = 10
[model.optimizer]
type = "sgd"
lr = 0.05
)";

TEST(ControllerCifar, UploadTrainWithAugmentationAndPredictFromAColourPng) {
  TempDir dir;
  ControllerProcess c(dir);
  ASSERT_GT(c.port(), 0) << c.daemon().output();

  // A bad record is refused at registration, naming the part and the record.
  ASSERT_EQ(HttpStatus(c.Send("PUT", "/api/v1/datasets/bad/files/train", Cifar(8, 0, 5))), 201);
  std::string r = c.Send("POST", "/api/v1/datasets", R"({"name":"bad","format":"cifar10"})");
  ASSERT_EQ(HttpStatus(r), 400) << r;
  EXPECT_NE(ErrorMessage(r).find("record 5"), std::string::npos) << r;
  EXPECT_NE(ErrorMessage(r).find("label byte 12"), std::string::npos) << r;

  // Two batch files concatenated are one training part.
  ASSERT_EQ(
      HttpStatus(c.Send("PUT", "/api/v1/datasets/cifar/files/train", Cifar(48, 0) + Cifar(48, 48))),
      201);
  ASSERT_EQ(HttpStatus(c.Send("PUT", "/api/v1/datasets/cifar/files/test", Cifar(20, 96))), 201);
  r = c.Send("POST", "/api/v1/datasets", R"({"name":"cifar","format":"cifar10"})");
  ASSERT_EQ(HttpStatus(r), 201) << r;
  const json::value d = json::parse(HttpBody(r));
  EXPECT_EQ(d.at("train_samples").as_int64(), 96);
  EXPECT_EQ(d.at("test_samples").as_int64(), 20);
  EXPECT_EQ(d.at("num_classes").as_int64(), 10);
  EXPECT_EQ(json::serialize(d.at("sample_shape")), "[3,32,32]");

  r = c.Send("POST", "/api/v1/models",
             json::serialize(json::object{{"name", "cnn"}, {"spec", kCnn}}));
  ASSERT_EQ(HttpStatus(r), 201) << r;
  r = c.Send("POST", "/api/v1/jobs",
             R"({"model":"cnn","dataset":"cifar","epochs":2,"batch":16,"workers":1,)"
             R"("augment_crop_padding":4,"augment_flip":true})");
  ASSERT_EQ(HttpStatus(r), 201) << r;
  const json::value created = json::parse(HttpBody(r));
  EXPECT_EQ(created.at("params").at("augment_crop_padding").as_int64(), 4);
  EXPECT_EQ(created.at("params").at("augment_flip"), true);
  const int64_t id = created.at("id").as_int64();
  auto job = WaitForJob(c, id, JobOver, std::chrono::seconds(120));
  ASSERT_EQ(job.at("state"), "succeeded") << job << c.daemon().output();

  // A colour PNG (any size: resized) for the [3, 32, 32] model.
  r = c.Send("POST", "/api/v1/models/cnn/predict", Png(40, 3), "image/png");
  ASSERT_EQ(HttpStatus(r), 200) << r;
  const json::value p = json::parse(HttpBody(r));
  EXPECT_EQ(json::serialize(p.at("input")), "[3,32,32]");
  EXPECT_EQ(p.at("predictions").at(0).at("probabilities").as_array().size(), 10u);
  EXPECT_EQ(p.at("predictions").at(0).at("inverted"), false);
  // A grayscale one: 400, saying why.
  r = c.Send("POST", "/api/v1/models/cnn/predict", Png(32, 1), "image/png");
  ASSERT_EQ(HttpStatus(r), 400) << r;
  EXPECT_NE(ErrorMessage(r).find("grayscale"), std::string::npos) << r;
}

}  // namespace
}  // namespace dnnd
