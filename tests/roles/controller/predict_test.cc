// Predictions against the real controller process: a small MLP job trained
// on the real Fashion-MNIST, then real test images sent as PNG, JPEG,
// resized, inverted and as JSON; bad inputs; concurrent callers; and
// `dnnd ctl predict`.
#include <gtest/gtest.h>
#include <stb/stb_image_write.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <memory>
#include <thread>

#include "tensor/data/idx.h"
#include "tensor/safetensors.h"
#include "tests/roles/controller/fixture.h"
#include "tests/roles/controller_process.h"
#include "tests/roles/dnnd_process.h"

namespace dnnd {
namespace {

using namespace dnnd::testing;
namespace json = boost::json;

constexpr int kSide = 28, kPixels = kSide * kSide;
constexpr int kImages = 100;  // test images sent

void AppendBytes(void* context, void* data, int size) {
  static_cast<std::string*>(context)->append(static_cast<const char*>(data),
                                             static_cast<size_t>(size));
}
std::string Png(const uint8_t* pixels, int w, int h) {
  std::string out;
  stbi_write_png_to_func(AppendBytes, &out, w, h, 1, pixels, w);
  return out;
}
std::string Jpeg(const uint8_t* pixels, int w, int h) {
  std::string out;
  stbi_write_jpg_to_func(AppendBytes, &out, w, h, 1, pixels, 95);
  return out;
}

// {"inputs": [...]} of test images first..first+n, scaled as the DataLoader
// scales training pixels; `shaped` nests each as [1, 28, 28].
std::string JsonInputs(const data::Dataset& test, int first, int n, bool shaped) {
  json::array inputs;
  for (int i = first; i < first + n; ++i) {
    const uint8_t* p = test.u8.data() + static_cast<size_t>(i) * kPixels;
    json::array flat;
    for (int k = 0; k < kPixels; ++k)
      flat.push_back(static_cast<double>(static_cast<float>(p[k]) * (1.0f / 255.0f)));
    if (!shaped) {
      inputs.push_back(std::move(flat));
      continue;
    }
    json::array rows;
    for (int y = 0; y < kSide; ++y)
      rows.push_back(json::array(flat.begin() + y * kSide, flat.begin() + (y + 1) * kSide));
    inputs.push_back(json::array{std::move(rows)});
  }
  return json::serialize(json::object{{"inputs", std::move(inputs)}});
}

// One controller with a trained MLP ("mlp", job 1) and an untrained model
// ("fresh"), shared by the tests below: training once keeps the suite fast.
class Predict : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!std::filesystem::exists(kFm + "train-images-idx3-ubyte.gz")) return;
    dir_ = new TempDir;
    c_ = new ControllerProcess(*dir_, "--set http.max_body_bytes=2000000");
    ASSERT_GT(c_->port(), 0) << c_->daemon().output();
    UploadFashionMnist(*c_, "fm");
    for (const char* name : {"mlp", "fresh"})
      ASSERT_EQ(HttpStatus(c_->Send(
                    "POST", "/api/v1/models",
                    std::string(R"({"name":")") + name + R"(","spec":)" + MlpSpecJson() + "}")),
                201);
    const std::string r = c_->Send(
        "POST", "/api/v1/jobs",
        R"({"model":"mlp","dataset":"fm","epochs":1,"batch":64,"workers":1,"limit_train":12000,"limit_test":500})");
    ASSERT_EQ(HttpStatus(r), 201) << r;
    auto job = WaitForJob(*c_, 1, JobOver, std::chrono::seconds(90));
    ASSERT_EQ(job.at("state").as_string(), "succeeded") << job << c_->daemon().output();
    auto test =
        data::LoadIdxDataset(kFm + "t10k-images-idx3-ubyte.gz", kFm + "t10k-labels-idx1-ubyte.gz");
    ASSERT_TRUE(test.ok()) << test.status().ToString();
    test_ = new data::Dataset(test->Take(kImages));
  }
  static void TearDownTestSuite() {
    delete test_;
    delete c_;
    delete dir_;
  }
  void SetUp() override {
    if (!test_) GTEST_SKIP() << "dataset-fashion-mnist missing or the training job failed";
  }

  static const uint8_t* Image(int i) { return test_->u8.data() + static_cast<size_t>(i) * kPixels; }
  static std::string PostImage(const std::string& bytes, const std::string& type = "image/png",
                               const std::string& query = "") {
    return c_->Send("POST", "/api/v1/models/mlp/predict" + query, bytes, type);
  }
  // The first prediction of a 200 answer.
  static json::object First(const std::string& response) {
    EXPECT_EQ(HttpStatus(response), 200) << response;
    return json::parse(HttpBody(response)).at("predictions").as_array().at(0).as_object();
  }

  static inline TempDir* dir_ = nullptr;
  static inline ControllerProcess* c_ = nullptr;
  static inline data::Dataset* test_ = nullptr;
};

TEST_F(Predict, PngTestImagesGetTheirLabelsAndMatchTheSameImagesAsJson) {
  int correct = 0;
  std::vector<json::object> from_png;
  for (int i = 0; i < kImages; ++i) {
    const std::string r = PostImage(Png(Image(i), kSide, kSide));
    ASSERT_EQ(HttpStatus(r), 200) << r;
    auto v = json::parse(HttpBody(r));
    EXPECT_EQ(v.at("model"), "mlp");
    EXPECT_EQ(v.at("job").as_int64(), 1);
    json::object p = v.at("predictions").as_array().at(0).as_object();
    const auto& probs = p.at("probabilities").as_array();
    ASSERT_EQ(probs.size(), 10u);
    double sum = 0, best = -1;
    int64_t argmax = -1;
    for (size_t k = 0; k < probs.size(); ++k) {
      const double x = probs[k].to_number<double>();
      EXPECT_GE(x, 0.0);
      sum += x;
      if (x > best) best = x, argmax = static_cast<int64_t>(k);
    }
    EXPECT_NEAR(sum, 1.0, 1e-5);
    EXPECT_EQ(p.at("class").as_int64(), argmax);
    EXPECT_EQ(p.at("inverted"), false);  // light garment on a dark background: left alone
    correct += p.at("class").as_int64() == test_->labels[i];
    from_png.push_back(std::move(p));
  }
  // One epoch on 12,000 images reaches about 80 % on the test set.
  EXPECT_GE(correct, 70) << correct << " of " << kImages;
  std::printf("%d of %d test images classified right\n", correct, kImages);

  // The same images as JSON, in one request: the PNG path scaled its pixels
  // exactly as the dataset readers do, so the answers agree.
  std::string r =
      c_->Send("POST", "/api/v1/models/mlp/predict", JsonInputs(*test_, 0, kImages, false));
  ASSERT_EQ(HttpStatus(r), 200) << r;
  const json::value answer = json::parse(HttpBody(r));
  const auto& batch = answer.at("predictions").as_array();
  ASSERT_EQ(batch.size(), static_cast<size_t>(kImages));
  for (int i = 0; i < kImages; ++i) {
    EXPECT_EQ(batch[i].at("class"), from_png[i].at("class")) << i;
    for (int k = 0; k < 10; ++k)
      EXPECT_NEAR(batch[i].at("probabilities").at(k).to_number<double>(),
                  from_png[i].at("probabilities").at(k).to_number<double>(), 1e-5);
  }
  // Samples shaped [1, 28, 28] are the flat ones, value for value.
  EXPECT_EQ(
      HttpBody(c_->Send("POST", "/api/v1/models/mlp/predict", JsonInputs(*test_, 3, 2, true))),
      HttpBody(c_->Send("POST", "/api/v1/models/mlp/predict", JsonInputs(*test_, 3, 2, false))));
  // ?job= names the weights explicitly.
  EXPECT_EQ(HttpBody(PostImage(Png(Image(0), kSide, kSide), "image/png", "?job=1")),
            HttpBody(PostImage(Png(Image(0), kSide, kSide))));
}

TEST_F(Predict, JpegResizedAndBlackOnWhiteImagesAreUnderstood) {
  int jpeg_same = 0, resized_same = 0;
  for (int i = 0; i < kImages; ++i) {
    const json::object original = First(PostImage(Png(Image(i), kSide, kSide)));
    jpeg_same += First(PostImage(Jpeg(Image(i), kSide, kSide), "image/jpeg")).at("class") ==
                 original.at("class");
    // Twice the size (nearest neighbour): resized back to 28x28 by the controller.
    std::vector<uint8_t> big(4 * kPixels);
    for (int y = 0; y < 2 * kSide; ++y)
      for (int x = 0; x < 2 * kSide; ++x)
        big[y * 2 * kSide + x] = Image(i)[(y / 2) * kSide + x / 2];
    resized_same +=
        First(PostImage(Png(big.data(), 2 * kSide, 2 * kSide))).at("class") == original.at("class");
    // Dark garment on white paper: auto-inverted back to exactly the original pixels.
    std::vector<uint8_t> negative(Image(i), Image(i) + kPixels);
    for (auto& p : negative) p = static_cast<uint8_t>(255 - p);
    json::object inverted = First(PostImage(Png(negative.data(), kSide, kSide)));
    EXPECT_EQ(inverted.at("inverted"), true) << i;
    inverted["inverted"] = false;
    EXPECT_EQ(inverted, original) << i;
    // invert=false leaves the negative as it is.
    EXPECT_EQ(First(PostImage(Png(negative.data(), kSide, kSide), "image/png", "?invert=false"))
                  .at("inverted"),
              false);
  }
  EXPECT_GE(jpeg_same, 90) << "JPEG (quality 95) agreed with PNG on " << jpeg_same << " of "
                           << kImages;
  EXPECT_GE(resized_same, 85) << "56x56 agreed with 28x28 on " << resized_same << " of " << kImages;
}

TEST_F(Predict, BadRequestsGetPreciseErrorsAndTheControllerKeepsServing) {
  const std::string png = Png(Image(0), kSide, kSide);
  auto expect = [&](const std::string& r, int status, const std::string& code,
                    const std::string& words) {
    EXPECT_EQ(HttpStatus(r), status) << r;
    if (HttpStatus(r) < 400) return;
    EXPECT_EQ(ErrorCode(r), code) << r;
    EXPECT_NE(ErrorMessage(r).find(words), std::string::npos) << r;
  };
  expect(c_->Send("POST", "/api/v1/models/nope/predict", png, "image/png"), 404, "not_found",
         "nope");
  expect(c_->Send("POST", "/api/v1/models/fresh/predict", png, "image/png"), 409, "not_trained",
         "no succeeded job");
  expect(c_->Send("POST", "/api/v1/models/fresh/predict?job=1", png, "image/png"), 400,
         "invalid_argument", "job 1 trained model 'mlp'");
  expect(PostImage(png, "image/png", "?job=999"), 404, "not_found", "999");
  expect(PostImage(png, "image/png", "?job=abc"), 400, "invalid_argument", "invalid job id 'abc'");
  expect(PostImage(png, "image/png", "?invert=maybe"), 400, "invalid_argument",
         "invert is 'maybe'");
  // Not a PNG or JPEG, a truncated one, one whose header claims 20000 x 20000 pixels.
  expect(PostImage("GIF? no, plain text", "image/png"), 415, "unsupported_media_type",
         "only PNG and JPEG");
  const std::string truncated =
      PostImage(png.substr(0, 60), "image/png");  // stb's PNG reader says why
  expect(truncated, 400, "invalid_argument", "cannot decode image: ");
  EXPECT_EQ(ErrorMessage(truncated).find("unknown image type"), std::string::npos) << truncated;
  std::string huge = png;
  for (int at : {16, 20})
    huge.replace(at, 4, std::string("\x00\x00\x4e\x20", 4));  // IHDR width, height
  expect(PostImage(huge, "image/png"), 413, "payload_too_large", "20000x20000");
  // JSON of the wrong size, ragged, empty; not JSON; another media type; too large.
  expect(c_->Send("POST", "/api/v1/models/mlp/predict", R"({"inputs":[[1,2,3,4,5]]})"), 400,
         "invalid_argument",
         "inputs[0] has shape [5] (5 values); the model takes [1, 28, 28] (784 values");
  expect(c_->Send("POST", "/api/v1/models/mlp/predict", R"({"inputs":[[[1,2],[3]]]})"), 400,
         "invalid_argument", "ragged");
  expect(c_->Send("POST", "/api/v1/models/mlp/predict", R"({"inputs":[]})"), 400,
         "invalid_argument", "at least one");
  expect(c_->Send("POST", "/api/v1/models/mlp/predict", "{\"inputs\": [1,"), 400,
         "invalid_argument", "");
  expect(c_->Send("POST", "/api/v1/models/mlp/predict", png, "text/plain"), 415,
         "unsupported_media_type", "text/plain");
  expect(PostImage(std::string(2000001, 'x'), "image/png"), 413, "payload_too_large",
         "http.max_body_bytes");
  // A checkpoint damaged on the controller's disk is the server's fault (500),
  // and the cache notices the file changed (and changed back).
  const std::string checkpoint = dir_->path() + "/data/jobs/1/model/model.safetensors";
  const std::string weights = ReadFile(checkpoint);
  ASSERT_GT(weights.size(), 1000u);
  const std::string answer = HttpBody(PostImage(png));
  std::ofstream(checkpoint, std::ios::binary | std::ios::trunc) << weights.substr(0, 1000);
  expect(PostImage(png), 500, "internal", "cannot load the checkpoint of job 1");
  std::ofstream(checkpoint, std::ios::binary | std::ios::trunc) << weights;
  // Still answering, and right.
  EXPECT_EQ(HttpStatus(c_->Send("GET", "/healthz")), 200);
  EXPECT_EQ(HttpBody(PostImage(png)), answer);
}

TEST_F(Predict, ConcurrentCallersGetIdenticalAnswers) {
  const std::string png = Png(Image(7), kSide, kSide), json_body = JsonInputs(*test_, 10, 4, false);
  const std::string png_answer = HttpBody(PostImage(png));
  const std::string json_answer =
      HttpBody(c_->Send("POST", "/api/v1/models/mlp/predict", json_body));
  ASSERT_NE(png_answer.find("predictions"), std::string::npos) << png_answer;
  std::atomic<int> same{0}, different{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        const bool image = (t + i) % 2 == 0;
        const std::string body =
            image ? HttpBody(PostImage(png))
                  : HttpBody(c_->Send("POST", "/api/v1/models/mlp/predict", json_body));
        (body == (image ? png_answer : json_answer) ? same : different) += 1;
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(same.load(), 200);
  EXPECT_EQ(different.load(), 0);
}

// The model -> job resolution is kept between calls: a newer job succeeding,
// and jobs deleted, are seen by the next call without a restart.
TEST_F(Predict, ANewerSucceededJobAnswersAndDeletedJobsAreNotServed) {
  const std::string png = Png(Image(0), kSide, kSide);
  auto job_of = [](const std::string& r) { return json::parse(HttpBody(r)).at("job").as_int64(); };
  // Resolved (and kept) for the default and for ?job=1 before anything changes.
  const std::string first = PostImage(png);
  ASSERT_EQ(HttpStatus(first), 200) << first;
  EXPECT_EQ(job_of(first), 1);
  EXPECT_EQ(HttpBody(PostImage(png, "image/png", "?job=1")), HttpBody(first));

  // A second, different job of the same model: while it is queued or running
  // job 1 answers; once it succeeds, it does.
  std::string r = c_->Send(
      "POST", "/api/v1/jobs",
      R"({"model":"mlp","dataset":"fm","epochs":1,"batch":32,"workers":1,"limit_train":3000,)"
      R"("limit_test":200,"seed":7})");
  ASSERT_EQ(HttpStatus(r), 201) << r;
  const int64_t second = json::parse(HttpBody(r)).at("id").as_int64();
  ASSERT_EQ(second, 2);
  EXPECT_EQ(job_of(PostImage(png)), 1);
  auto job = WaitForJob(*c_, second, JobOver, std::chrono::seconds(90));
  ASSERT_EQ(job.at("state").as_string(), "succeeded") << job;
  r = PostImage(png);
  ASSERT_EQ(HttpStatus(r), 200) << r;
  EXPECT_EQ(job_of(r), 2);
  EXPECT_NE(First(r).at("probabilities"), First(first).at("probabilities"))
      << "job 2's weights, not job 1's";
  EXPECT_EQ(HttpBody(PostImage(png, "image/png", "?job=2")), HttpBody(r));

  // Job 2 deleted: job 1 answers again, and ?job=2 (answered just before) is gone.
  ASSERT_EQ(HttpStatus(c_->Send("DELETE", "/api/v1/jobs/2")), 200);
  EXPECT_EQ(HttpBody(PostImage(png)), HttpBody(first));
  r = PostImage(png, "image/png", "?job=2");
  EXPECT_EQ(HttpStatus(r), 404) << r;
  // A model whose only job is deleted has nothing to answer with. (Another
  // model: the suite's other tests keep using job 1.)
  ASSERT_EQ(HttpStatus(c_->Send("POST", "/api/v1/models",
                                R"({"name":"mlp-b","spec":)" + MlpSpecJson() + "}")),
            201);
  r = c_->Send(
      "POST", "/api/v1/jobs",
      R"({"model":"mlp-b","dataset":"fm","epochs":1,"batch":32,"workers":1,"limit_train":3000,)"
      R"("limit_test":200})");
  ASSERT_EQ(HttpStatus(r), 201) << r;
  const int64_t only = json::parse(HttpBody(r)).at("id").as_int64();
  job = WaitForJob(*c_, only, JobOver, std::chrono::seconds(90));
  ASSERT_EQ(job.at("state").as_string(), "succeeded") << job;
  auto post_b = [&](const std::string& query) {
    return c_->Send("POST", "/api/v1/models/mlp-b/predict" + query, png, "image/png");
  };
  r = post_b("");
  ASSERT_EQ(HttpStatus(r), 200) << r;
  EXPECT_EQ(job_of(r), only);
  ASSERT_EQ(HttpStatus(c_->Send("DELETE", "/api/v1/jobs/" + std::to_string(only))), 200);
  r = post_b("");
  EXPECT_EQ(HttpStatus(r), 409) << r;
  EXPECT_EQ(ErrorCode(r), "not_trained") << r;
  r = post_b("?job=" + std::to_string(only));
  EXPECT_EQ(HttpStatus(r), 404) << r;
  // Job 1 still answers for mlp.
  EXPECT_EQ(HttpBody(PostImage(png)), HttpBody(first));
}

TEST_F(Predict, CtlPredictPrintsClassesWithScriptableExitCodes) {
  TempDir files;
  const std::string png = files.Write("shirt.png", Png(Image(0), kSide, kSide));
  const std::string js = files.Write("two.json", JsonInputs(*test_, 1, 2, false));
  const std::string ctl = "ctl --controller 127.0.0.1:" + std::to_string(c_->port()) + " ";
  const int64_t label = test_->labels[0];
  std::vector<uint8_t> negative(Image(0),
                                Image(0) + kPixels);  // a dark boot on white: inverted back
  for (auto& p : negative) p = static_cast<uint8_t>(255 - p);
  Outcome r = Dnnd(ctl + "predict mlp " + png + " " + js);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("CLASS"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(png), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("sample 1"), std::string::npos)
      << r.output;  // the JSON file's second sample
  r = Dnnd(ctl + "predict mlp " + files.Write("negative.png", Png(negative.data(), kSide, kSide)));
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("image, inverted  " + std::to_string(label)), std::string::npos)
      << r.output;
  r = Dnnd(ctl + "-o json predict mlp " + png + " " + js + " --job 1 --invert false");
  ASSERT_EQ(r.code, 0) << r.output;
  auto v = json::parse(r.output);
  ASSERT_EQ(v.as_array().size(), 2u);
  EXPECT_EQ(v.at(0).at("file").as_string(), png);
  EXPECT_EQ(v.at(0).at("job").as_int64(), 1);
  EXPECT_EQ(v.at(1).at("predictions").as_array().size(), 2u);
  EXPECT_EQ(v.at(0).at("predictions").at(0).at("class").as_int64(), label)
      << "test image 0 is a class-" << label;
  // 3: refused by the controller (message on stderr); 2: usage; 1: unreachable.
  r = Dnnd(ctl + "predict fresh " + png);
  EXPECT_EQ(r.code, 3);
  EXPECT_NE(r.output.find("no succeeded job"), std::string::npos) << r.output;
  EXPECT_EQ(Dnnd(ctl + "predict mlp " + png + " --invert maybe").code, 3);
  EXPECT_EQ(Dnnd(ctl + "predict mlp " + files.path() + "/missing.png").code, 2);
  EXPECT_EQ(Dnnd(ctl + "predict mlp " + files.Write("x.txt", "hello")).code, 2);
  EXPECT_EQ(Dnnd(ctl + "predict mlp").code, 2);
  EXPECT_EQ(Dnnd("ctl --controller 127.0.0.1:1 predict mlp " + png).code, 1);
  r = Dnnd("ctl predict --help");
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.output.find("predict <model>"), std::string::npos) << r.output;
}

// A dataset registered with class names: GET shows them, its jobs write them
// into their models, and predictions answer them next to the indices.
TEST(PredictClassNames, ADatasetsClassNamesReachItsModelsAndPredictions) {
  TempDir dir;
  ControllerProcess c(dir);
  ASSERT_GT(c.port(), 0) << c.daemon().output();
  const std::string ctl = "ctl --controller 127.0.0.1:" + std::to_string(c.port()) + " ";
  std::string labels = controller_testing::Idx({10}, 0);
  labels[labels.size() - 1] = 1;  // two classes
  const std::string images = dir.Write("x.idx", controller_testing::Idx({10, 4, 4}, 7)),
                    ys = dir.Write("y.idx", labels);
  const std::string create =
      ctl + "dataset create d --format idx --train-images " + images + " --train-labels " + ys;
  // One name per class, or the registration is refused naming the field.
  Outcome r = Dnnd(create + " --classes a,b,c");
  EXPECT_EQ(r.code, 3) << r.output;
  EXPECT_NE(r.output.find("field 'classes' lists 3 class names"), std::string::npos) << r.output;
  r = Dnnd(create + " --classes 'plain,marked'");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(json::serialize(c.Json("GET", "/api/v1/datasets/d").at("classes")),
            R"(["plain","marked"])");
  r = Dnnd(ctl + "dataset get d");
  EXPECT_NE(r.output.find("class names: plain, marked"), std::string::npos) << r.output;
  const std::string spec = dir.Write("m.toml",
                                     "[model]\ninput = [1, 4, 4]\n[[model.layers]]\ntype = "
                                     "\"flatten\"\n[[model.layers]]\ntype = \"linear\"\nout = 2\n");
  ASSERT_EQ(Dnnd(ctl + "model create m --spec " + spec).code, 0);
  r = Dnnd(ctl + "job create --model m --dataset d --epochs 2 --batch 5");
  ASSERT_EQ(r.code, 0) << r.output;
  auto job = WaitForJob(c, 1, JobOver, std::chrono::seconds(60));
  ASSERT_EQ(job.at("state").as_string(), "succeeded") << job << c.daemon().output();
  json::array flat;
  for (int i = 0; i < 16; ++i) flat.push_back(7.0 / 255);
  const std::string body = json::serialize(json::object{{"inputs", json::array{flat}}});
  const std::string answer = c.Send("POST", "/api/v1/models/m/predict", body);
  ASSERT_EQ(HttpStatus(answer), 200) << answer;
  const json::value v = json::parse(HttpBody(answer));
  EXPECT_EQ(json::serialize(v.at("classes")), R"(["plain","marked"])");
  const auto& p = v.at("predictions").at(0);
  EXPECT_EQ(p.at("class_name").as_string(), p.at("class").as_int64() == 0 ? "plain" : "marked");
  // dnnd ctl predict shows the name beside the index.
  r = Dnnd(ctl + "predict m " + dir.Write("one.json", body));
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find(std::to_string(p.at("class").as_int64()) + " " +
                          std::string(p.at("class_name").as_string())),
            std::string::npos)
      << r.output;
  // The job's model file carries them for dnnd infer too, with the job's normalisation.
  auto model = LoadSafetensors(dir.path() + "/data/jobs/1/model/model.safetensors");
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  EXPECT_EQ(model->metadata.at("dnnd.classes"), R"(["plain","marked"])");
  EXPECT_EQ(model->metadata.at("dnnd.input_shape"), "[1,4,4]");
  EXPECT_TRUE(model->metadata.count("dnnd.normalize_mean"));
}

}  // namespace
}  // namespace dnnd
