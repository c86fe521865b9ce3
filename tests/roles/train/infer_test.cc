// `dnnd infer` on raw inputs, with real processes and files: a worker trains
// the Fashion-MNIST MLP briefly with data.classes and a normalisation; its
// checkpoint carries the input shape, normalisation and class names; raw PNG,
// NPY and uint8 safetensors inputs get the classes the normalised tensors get
// in tensor mode; a plain state dict predicts with --spec and the flags; and
// bad inputs are refused naming the file or key.
#include <gtest/gtest.h>
#include <stb/stb_image_write.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>

#include "tensor/data/idx.h"
#include "tensor/data/npy.h"
#include "tensor/safetensors.h"
#include "tests/roles/dnnd_process.h"

namespace dnnd {
namespace {

namespace json = boost::json;
using testing::Dnnd;
using testing::Outcome;
using testing::Src;
using testing::TempDir;

const std::string kFm = "/usr/share/datasets/fashion-mnist/";
constexpr int kSide = 28, kPixels = kSide * kSide, kSamples = 6;
constexpr float kMean = 0.2860f, kStd = 0.3530f;
const char* kNames = "T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot";
const char* kNamesToml =
    R"(["T-shirt/top","Trouser","Pullover","Dress","Coat","Sandal","Shirt","Sneaker","Bag","Ankle boot"])";

void AppendBytes(void* context, void* data, int size) {
  static_cast<std::string*>(context)->append(static_cast<const char*>(data),
                                             static_cast<size_t>(size));
}

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

// The classes of `dnnd infer --json` output, in order.
std::vector<int64_t> JsonClasses(const Outcome& r, std::vector<std::string>* names = nullptr) {
  std::vector<int64_t> out;
  boost::system::error_code ec;
  const json::value v = json::parse(r.output.substr(r.output.find('{')), ec);
  EXPECT_FALSE(ec) << r.output;
  if (ec) return out;
  for (const auto& p : v.at("predictions").as_array()) {
    out.push_back(p.at("class").as_int64());
    if (names && p.as_object().contains("class_name"))
      names->emplace_back(p.at("class_name").as_string());
  }
  return out;
}

class Infer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!std::filesystem::exists(kFm + "t10k-images-idx3-ubyte.gz")) return;
    dir_ = new TempDir;
    const std::string ckpt = dir_->path() + "/ckpt";
    const Outcome r =
        Dnnd("--config " + Src("configs/worker-mlp.toml") +
             " --set data.limit_train=2000 --set data.limit_test=200 --set train.epochs=1"
             " --set train.progress=none --set node.threads=1 --set train.checkpoint_dir=" +
             ckpt + " --set 'data.classes=" + kNamesToml + "'");
    ASSERT_EQ(r.code, 0) << r.output;
    auto test =
        data::LoadIdxDataset(kFm + "t10k-images-idx3-ubyte.gz", kFm + "t10k-labels-idx1-ubyte.gz");
    ASSERT_TRUE(test.ok()) << test.status().ToString();
    test_ = new data::Dataset(test->Take(kSamples));
    // The samples as raw uint8 arrays, and normalised as training did.
    WriteBytes(dir_->path() + "/raw.npy",
               data::EncodeNpy(data::FromUint8(test_->u8, {kSamples, 1, kSide, kSide})));
    std::vector<float> norm;
    for (uint8_t p : test_->u8) norm.push_back((p / 255.0f - kMean) / kStd);
    ASSERT_TRUE(SaveSafetensors(dir_->path() + "/norm.safetensors",
                                {{"x", Tensor::FromVector({kSamples, 1, kSide, kSide}, norm)}})
                    .ok());
    const Outcome t = Dnnd("infer --model " + ckpt + " --input " + dir_->path() +
                           "/norm.safetensors --output " + dir_->path() + "/y.safetensors");
    ASSERT_EQ(t.code, 0) << t.output;
    auto y = LoadSafetensors(dir_->path() + "/y.safetensors");
    ASSERT_TRUE(y.ok()) << y.status().ToString();
    const std::vector<float> logits = y->tensors.at(0).second.ToVector();
    expected_ = new std::vector<int64_t>;
    for (int i = 0; i < kSamples; ++i) {
      const float* row = logits.data() + i * 10;
      expected_->push_back(std::max_element(row, row + 10) - row);
    }
  }
  static void TearDownTestSuite() {
    delete expected_;
    delete test_;
    delete dir_;
  }
  void SetUp() override {
    if (!expected_) GTEST_SKIP() << "dataset-fashion-mnist missing or training failed";
  }
  static std::string Ckpt() { return dir_->path() + "/ckpt"; }
  static std::string Png(int i) {
    std::string out;
    stbi_write_png_to_func(AppendBytes, &out, kSide, kSide, 1,
                           test_->u8.data() + static_cast<size_t>(i) * kPixels, kSide);
    const std::string path = dir_->path() + "/img" + std::to_string(i) + ".png";
    WriteBytes(path, out);
    return path;
  }

  static inline TempDir* dir_ = nullptr;
  static inline data::Dataset* test_ = nullptr;
  static inline std::vector<int64_t>* expected_ = nullptr;  // argmax of the normalised inputs
};

TEST_F(Infer, CheckpointCarriesInputShapeNormalisationAndClassNames) {
  auto f = LoadSafetensors(Ckpt() + "/model.safetensors");
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->metadata.at("dnnd.input_shape"), "[1,28,28]");
  EXPECT_EQ(f->metadata.at("dnnd.channel_order"), "\"chw\"");
  EXPECT_EQ(f->metadata.at("dnnd.normalize_mean"), "[0.286]");
  EXPECT_EQ(f->metadata.at("dnnd.normalize_std"), "[0.353]");
  EXPECT_EQ(f->metadata.at("dnnd.classes"), kNamesToml);
}

TEST_F(Infer, RawPngNpyAndUint8SafetensorsGetTheClassesOfTheNormalisedInput) {
  // The NPY batch: every sample's class is the tensor mode's on normalised x.
  Outcome r = Dnnd("infer --json --model " + Ckpt() + " " + dir_->path() + "/raw.npy");
  ASSERT_EQ(r.code, 0) << r.output;
  std::vector<std::string> names;
  EXPECT_EQ(JsonClasses(r, &names), *expected_);
  ASSERT_EQ(names.size(), static_cast<size_t>(kSamples));
  const std::vector<std::string> all = {"T-shirt/top", "Trouser",   "Pullover", "Dress",
                                        "Coat",        "Sandal",    "Shirt",    "Sneaker",
                                        "Bag",         "Ankle boot"};
  for (int i = 0; i < kSamples; ++i) EXPECT_EQ(names[i], all[(*expected_)[i]]);
  // Each PNG alone, and the text output: index, name, probability.
  for (int i = 0; i < kSamples; ++i) {
    const std::string png = Png(i);
    r = Dnnd("infer --model " + Ckpt() + " " + png);
    ASSERT_EQ(r.code, 0) << r.output;
    const std::string want =
        png + ": class " + std::to_string((*expected_)[i]) + " (" + all[(*expected_)[i]] + ") p=";
    EXPECT_NE(r.output.find(want), std::string::npos) << r.output << "\nwanted: " << want;
  }
  // --logits prints the raw outputs too.
  r = Dnnd("infer --logits --model " + Ckpt() + " " + Png(0));
  EXPECT_NE(r.output.find(" logits ["), std::string::npos) << r.output;
  // One sample as raw uint8 safetensors ([1, 28, 28], dtype U8), via --input.
  std::string header = R"({"x":{"dtype":"U8","shape":[1,28,28],"data_offsets":[0,784]}})";
  header.resize((header.size() + 7) / 8 * 8, ' ');
  std::string file(8, '\0');
  for (int b = 0; b < 8; ++b) file[b] = static_cast<char>((header.size() >> (8 * b)) & 0xff);
  file += header;
  file.append(reinterpret_cast<const char*>(test_->u8.data()) + 2 * kPixels, kPixels);
  WriteBytes(dir_->path() + "/raw2.safetensors", file);
  r = Dnnd("infer --json --model " + Ckpt() + " --input " + dir_->path() + "/raw2.safetensors");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(JsonClasses(r), std::vector<int64_t>{(*expected_)[2]});
}

TEST_F(Infer, PlainStateDictPredictsWithSpecAndFlags) {
  auto f = LoadSafetensors(Ckpt() + "/model.safetensors");
  ASSERT_TRUE(f.ok());
  const std::string plain = dir_->path() + "/plain.safetensors";
  ASSERT_TRUE(SaveSafetensors(plain, f->tensors, {}, f->int64_names).ok());
  // No metadata, no --spec: refused, saying what to do.
  Outcome r = Dnnd("infer --model " + plain + " " + dir_->path() + "/raw.npy");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find(plain + ": no dnnd.model_spec"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("--spec"), std::string::npos) << r.output;
  // --spec (a worker config's [model]) and the normalisation and names as flags.
  r = Dnnd("infer --json --model " + plain + " --spec " + Src("configs/worker-mlp.toml") +
           " --normalize-mean 0.2860 --normalize-std 0.3530 --classes '" + kNames + "' " +
           dir_->path() + "/raw.npy");
  ASSERT_EQ(r.code, 0) << r.output;
  std::vector<std::string> names;
  EXPECT_EQ(JsonClasses(r, &names), *expected_);
  EXPECT_EQ(names.size(), static_cast<size_t>(kSamples));
  // Without the normalisation it still runs, with a warning naming the file.
  r = Dnnd("infer --model " + plain + " --spec " + Src("configs/worker-mlp.toml") + " " +
           dir_->path() + "/raw.npy");
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("records no normalisation"), std::string::npos) << r.output;
}

TEST_F(Infer, BadInputsAreRefusedNamingTheFileOrKey) {
  // An image that is not one.
  const std::string bad = dir_->path() + "/bad.png";
  WriteBytes(bad, std::string("\x89PNG\r\n\x1a\n", 8) + "garbage");
  Outcome r = Dnnd("infer --model " + Ckpt() + " " + bad);
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find(bad), std::string::npos) << r.output;
  // An array of the wrong shape.
  const std::string wrong = dir_->path() + "/wrong.npy";
  WriteBytes(wrong, data::EncodeNpy(data::FromFloat(std::vector<float>(15, 0.5f), {3, 5})));
  r = Dnnd("infer --model " + Ckpt() + " " + wrong);
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find(wrong + " holds an array of shape [3, 5]"), std::string::npos)
      << r.output;
  // A file of no known kind.
  const std::string text = dir_->path() + "/notes.txt";
  WriteBytes(text, "hello");
  r = Dnnd("infer --model " + Ckpt() + " " + text);
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find(text + ": not a PNG or JPEG image"), std::string::npos) << r.output;
  // Class names that do not fit the model's outputs.
  r = Dnnd("infer --model " + Ckpt() + " --classes a,b " + dir_->path() + "/raw.npy");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("--classes lists 2 class names but the model's output size is 10"),
            std::string::npos)
      << r.output;
  // A normalisation of the wrong channel count.
  r = Dnnd("infer --model " + Ckpt() + " --normalize-mean 0.1,0.2 --normalize-std 1,1 " +
           dir_->path() + "/raw.npy");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("--normalize-mean"), std::string::npos) << r.output;
  // Prediction metadata that is not the JSON it should be: the file and key are named.
  auto f = LoadSafetensors(Ckpt() + "/model.safetensors");
  ASSERT_TRUE(f.ok());
  f->metadata["dnnd.normalize_std"] = "0.353";
  const std::string edited = dir_->path() + "/edited.safetensors";
  ASSERT_TRUE(SaveSafetensors(edited, f->tensors, f->metadata, f->int64_names).ok());
  r = Dnnd("infer --model " + edited + " " + dir_->path() + "/raw.npy");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find(edited + ": metadata dnnd.normalize_std is not a JSON array"),
            std::string::npos)
      << r.output;
  // --help documents inputs and outputs.
  r = Dnnd("infer --help");
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.output.find("--spec model.toml"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("x.npy"), std::string::npos) << r.output;
}

TEST_F(Infer, AWorkerRefusesClassNamesThatDoNotFitTheModel) {
  const Outcome r = Dnnd("--config " + Src("configs/worker-mlp.toml") +
                         " --set data.limit_train=200 --set data.limit_test=0"
                         " --set train.max_steps=1 --set train.progress=none"
                         " --set train.checkpoint_dir=" +
                         dir_->path() + "/refused --set 'data.classes=[\"a\",\"b\",\"c\"]'");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("data.classes lists 3 class names but the model's output size is 10"),
            std::string::npos)
      << r.output;
}

}  // namespace
}  // namespace dnnd
