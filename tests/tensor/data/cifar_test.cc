// CIFAR-10's binary format (tensor/data/cifar.h) on files written here in
// that exact layout, data.format = "cifar10", per-channel normalisation, and
// the training augmentation of DataLoader (crop after zero padding, flip).
#include "tensor/data/cifar.h"

#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include "core/config.h"
#include "tensor/data/from_config.h"

namespace dnnd::data {
namespace {

class CifarDir {
 public:
  CifarDir()
      : path_(std::filesystem::temp_directory_path() /
              ("dnnd_cifar_" + std::to_string(::getpid()))) {
    std::filesystem::create_directories(path_);
  }
  ~CifarDir() { std::filesystem::remove_all(path_); }
  std::string Write(const std::string& name, const std::vector<uint8_t>& bytes, bool gzip = false) {
    const std::string p = (path_ / name).string();
    if (gzip) {
      gzFile f = gzopen(p.c_str(), "wb");
      gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
      gzclose(f);
    } else {
      std::ofstream(p, std::ios::binary)
          .write(reinterpret_cast<const char*>(bytes.data()),
                 static_cast<std::streamsize>(bytes.size()));
    }
    return p;
  }
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

// Pixel (c, y, x) of record `r` in a test file: distinct per position and record.
uint8_t Pixel(int r, int c, int y, int x) {
  return static_cast<uint8_t>(r * 31 + c * 85 + y * 7 + x);
}

// `labels.size()` records in CIFAR-10's layout: a label byte, then the red
// plane, the green plane, the blue plane, each 32 rows of 32 bytes.
std::vector<uint8_t> Records(const std::vector<uint8_t>& labels, int first = 0) {
  std::vector<uint8_t> b;
  for (size_t i = 0; i < labels.size(); ++i) {
    const int r = first + static_cast<int>(i);
    b.push_back(labels[i]);
    for (int c = 0; c < 3; ++c)
      for (int y = 0; y < 32; ++y)
        for (int x = 0; x < 32; ++x) b.push_back(Pixel(r, c, y, x));
  }
  return b;
}

TEST(Cifar10, LabelsAndPixelsRoundTripChannelMajor) {
  CifarDir dir;
  const std::string a = dir.Write("a.bin", Records({3, 0, 9}));
  const std::string b = dir.Write("b.bin.gz", Records({7, 1}, 3), /*gzip=*/true);
  auto d = LoadCifar10Files({a, b});
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->sample_shape, (Shape{3, 32, 32}));
  EXPECT_EQ(d->type, SampleType::kUint8);  // the raw bytes, not floats
  EXPECT_EQ(d->num_classes, 10);
  ASSERT_EQ(d->size(), 5);
  EXPECT_EQ(d->labels, (std::vector<int32_t>{3, 0, 9, 7, 1}));
  ASSERT_EQ(d->u8.size(), 5u * 3072);
  for (int r = 0; r < 5; ++r)
    for (int c = 0; c < 3; ++c)
      for (int y = 0; y < 32; y += 5)
        for (int x = 0; x < 32; x += 3)
          ASSERT_EQ(d->u8[r * 3072 + c * 1024 + y * 32 + x], Pixel(r, c, y, x))
              << "record " << r << " channel " << c << " (" << y << ", " << x << ")";
  // Through the loader: x/255, channel-major [n, 3, 32, 32].
  DataLoader loader(*d, {.batch_size = 5, .shuffle = false});
  Batch batch = loader.GetBatch(0, 0);
  EXPECT_EQ(batch.x.shape(), (Shape{5, 3, 32, 32}));
  EXPECT_FLOAT_EQ(batch.x.ToVector()[4 * 3072 + 2 * 1024 + 5 * 32 + 6], Pixel(4, 2, 5, 6) / 255.0f);
  EXPECT_EQ(batch.target.labels, (std::vector<int32_t>{3, 0, 9, 7, 1}));
}

TEST(Cifar10, ARecordCutShortNamesFileAndRecord) {
  CifarDir dir;
  std::vector<uint8_t> bytes = Records({1, 2, 3});
  bytes.resize(2 * kCifarRecord + 100);  // record 2 has its label and 99 pixels
  const std::string p = dir.Write("cut.bin", bytes);
  auto d = LoadCifar10Files({p});
  ASSERT_FALSE(d.ok());
  const std::string m = d.status().message();
  EXPECT_NE(m.find(p), std::string::npos) << m;
  EXPECT_NE(m.find("record 2 "), std::string::npos) << m;
  EXPECT_NE(m.find("cut short after 100 bytes"), std::string::npos) << m;
  // Gzipped, the size is only known at the end: the same file and record.
  const std::string gz = dir.Write("cut.bin.gz", bytes, /*gzip=*/true);
  auto g = LoadCifar10Files({gz});
  ASSERT_FALSE(g.ok());
  const std::string gm = g.status().message();
  EXPECT_NE(gm.find(gz), std::string::npos) << gm;
  EXPECT_NE(gm.find("record 2 "), std::string::npos) << gm;
  EXPECT_NE(gm.find("cut short after 100 bytes"), std::string::npos) << gm;
}

TEST(Cifar10, ASizeNotAMultipleOfTheRecordIsRefusedBeforeReading) {
  CifarDir dir;
  std::vector<uint8_t> bytes = Records({1, 2, 3, 4});
  bytes.push_back(5);  // a fifth record that is only a label
  const std::string p = dir.Write("odd.bin", bytes);
  auto d = LoadCifar10Files({p});
  ASSERT_FALSE(d.ok());
  const std::string m = d.status().message();
  EXPECT_NE(
      m.find(p + ": " + std::to_string(4 * kCifarRecord + 1) + " bytes is not a multiple of 3073"),
      std::string::npos)
      << m;
  EXPECT_NE(m.find("record 4 "), std::string::npos) << m;
  // Shorter than one record.
  const std::string tiny = dir.Write("tiny.bin", std::vector<uint8_t>(10, 0));
  auto t = LoadCifar10Files({tiny});
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find(tiny), std::string::npos);
  EXPECT_NE(t.status().message().find("record 0 "), std::string::npos) << t.status().message();
  // Empty.
  const std::string empty = dir.Write("empty.bin", {});
  auto e = LoadCifar10Files({empty});
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find(empty + ": empty file"), std::string::npos)
      << e.status().message();
}

TEST(Cifar10, ALabelAboveNineNamesFileAndRecord) {
  CifarDir dir;
  const std::string good = dir.Write("good.bin", Records({0, 1}));
  const std::string bad = dir.Write("bad.bin", Records({9, 4, 10, 2}));
  auto d = LoadCifar10Files({good, bad});
  ASSERT_FALSE(d.ok());
  const std::string m = d.status().message();
  EXPECT_NE(m.find(bad + ": record 2 "), std::string::npos) << m;  // counted within its file
  EXPECT_NE(m.find("label byte 10"), std::string::npos) << m;
  EXPECT_EQ(m.find(good), std::string::npos) << m;
}

TEST(Cifar10, AMissingFileIsNamed) {
  CifarDir dir;
  auto d = LoadCifar10Files({dir.path() + "/data_batch_1.bin"});
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("data_batch_1.bin"), std::string::npos);
}

TEST(Cifar10, ByteLimitIsChecked) {
  CifarDir dir;
  const std::string p = dir.Write("a.bin", Records({1, 2}));
  DecodeLimits limits;
  limits.max_bytes = 3072;  // one image's pixels
  auto d = LoadCifar10Files({p}, limits);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(d.status().message().find("data.max_decoded_bytes"), std::string::npos);
}

TEST(Cifar10, FromConfigReadsADirectoryOrExplicitFiles) {
  CifarDir dir;
  for (int i = 1; i <= 5; ++i)
    dir.Write("data_batch_" + std::to_string(i) + ".bin",
              Records({static_cast<uint8_t>(i), static_cast<uint8_t>(i)}, 2 * i));
  dir.Write("test_batch.bin", Records({0, 9, 8}));
  auto cfg = Config::FromString(
      "[data]\nformat = \"cifar10\"\ncifar_dir = " + TomlQuote(dir.path()) + "\n", "c.toml");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  auto train = LoadTrainingSet(*cfg);
  ASSERT_TRUE(train.ok()) << train.status().ToString();
  EXPECT_EQ(train->size(), 10);
  EXPECT_EQ(train->labels, (std::vector<int32_t>{1, 1, 2, 2, 3, 3, 4, 4, 5, 5}));
  auto test = LoadTestSet(*cfg);
  ASSERT_TRUE(test.ok()) << test.status().ToString();
  ASSERT_TRUE(test->has_value());
  EXPECT_EQ((*test)->labels, (std::vector<int32_t>{0, 9, 8}));

  // Explicit lists win over the directory; no test files and no directory: no test set.
  auto files =
      Config::FromString("[data]\nformat = \"cifar10\"\ntrain_files = [" +
                             TomlQuote(dir.path() + "/data_batch_2.bin") + ", " +
                             TomlQuote(dir.path() + "/test_batch.bin") + "]\nlimit_train = 4\n",
                         "c.toml");
  ASSERT_TRUE(files.ok()) << files.status().ToString();
  auto t2 = LoadTrainingSet(*files);
  ASSERT_TRUE(t2.ok()) << t2.status().ToString();
  EXPECT_EQ(t2->labels, (std::vector<int32_t>{2, 2, 0, 9}));
  auto none = LoadTestSet(*files);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());

  // Neither: an error naming the keys.
  auto empty = Config::FromString("[data]\nformat = \"cifar10\"\n", "c.toml");
  ASSERT_TRUE(empty.ok());
  auto e = LoadTrainingSet(*empty);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("data.cifar_dir or data.train_files"), std::string::npos)
      << e.status().message();
}

// ---- per-channel normalisation ----

Dataset Tiny(Shape shape, std::vector<uint8_t> pixels, int n = 1) {
  Dataset d;
  d.sample_shape = std::move(shape);
  d.type = SampleType::kUint8;
  d.u8 = std::move(pixels);
  for (int i = 0; i < n; ++i) d.labels.push_back(0);
  d.num_classes = 1;
  return d;
}

void ExpectNear(const std::vector<float>& got, const std::vector<float>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-5) << "value " << i;
}

TEST(Normalize, PerChannelMeanAndStd) {
  // [3, 1, 2]: channel c holds {0, 255}.
  Dataset d = Tiny({3, 1, 2}, {0, 255, 0, 255, 0, 255});
  DataLoader l(
      d,
      {.batch_size = 1, .shuffle = false, .mean = {0.0f, 0.5f, 1.0f}, .std = {1.0f, 0.5f, 0.25f}});
  ExpectNear(l.GetBatch(0, 0).x.ToVector(),
             (std::vector<float>{0.0f, 1.0f, -1.0f, 1.0f, -4.0f, 0.0f}));
  // One value still applies to every channel.
  DataLoader one(d, {.batch_size = 1, .shuffle = false, .mean = {0.5f}, .std = {0.5f}});
  ExpectNear(one.GetBatch(0, 0).x.ToVector(),
             (std::vector<float>{-1.0f, 1.0f, -1.0f, 1.0f, -1.0f, 1.0f}));
  // Float samples are normalised per channel as stored.
  Dataset f;
  f.sample_shape = {2, 1, 1};
  f.type = SampleType::kFloat32;
  f.f32 = {3.0f, 3.0f};
  f.labels = {0};
  f.num_classes = 1;
  DataLoader lf(f, {.batch_size = 1, .shuffle = false, .mean = {1.0f, 2.0f}, .std = {2.0f, 1.0f}});
  ExpectNear(lf.GetBatch(0, 0).x.ToVector(), (std::vector<float>{1.0f, 1.0f}));
}

TEST(Normalize, ACountThatIsNotTheChannelsIsAnError) {
  const Shape grey = {1, 28, 28}, colour = {3, 32, 32};
  EXPECT_TRUE(CheckLoaderOptions(colour, {.mean = {0.1f, 0.2f, 0.3f}, .std = {0.5f}}).ok());
  Status s = CheckLoaderOptions(grey, {.mean = {0.1f, 0.2f, 0.3f}});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("data.normalize_mean has 3 values"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("[1, 28, 28]"), std::string::npos) << s.message();
  Status t = CheckLoaderOptions(colour, {.std = {0.2f, 0.3f}});
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.message().find("data.normalize_std has 2 values"), std::string::npos) << t.message();
  EXPECT_NE(t.message().find("3 channels"), std::string::npos) << t.message();
  // The loader refuses them too (callers check first).
  Dataset d = Tiny({1, 1, 2}, {0, 255});
  EXPECT_THROW(DataLoader(d, {.mean = {0.1f, 0.2f}}), std::invalid_argument);
  // Augmenting a flat sample is an error.
  EXPECT_FALSE(CheckLoaderOptions({784}, {.flip = true}).ok());
}

TEST(Normalize, ConfigTakesANumberOrAnArray) {
  auto one = Config::FromString("[data]\nnormalize_mean = 0.5\nnormalize_std = 2\n", "c.toml");
  ASSERT_TRUE(one.ok()) << one.status().ToString();
  EXPECT_EQ(one->GetFloats("data.normalize_mean"), (std::vector<double>{0.5}));
  EXPECT_EQ(one->GetFloats("data.normalize_std"), (std::vector<double>{2.0}));
  auto three = Config::FromString(
      "[data]\nnormalize_mean = [0.4914, 0.4822, 0.4465]\nnormalize_std = [0.247, 0.243, 0.261]\n",
      "c.toml", {"data.augment_crop_padding=4", "data.augment_flip=true"});
  ASSERT_TRUE(three.ok()) << three.status().ToString();
  EXPECT_EQ(three->GetFloats("data.normalize_mean"), (std::vector<double>{0.4914, 0.4822, 0.4465}));
  EXPECT_EQ(three->GetInt("data.augment_crop_padding"), 4);
  EXPECT_TRUE(three->GetBool("data.augment_flip"));
  for (const char* bad : {"normalize_std = [0.2, 0]", "normalize_mean = []",
                          "normalize_mean = [\"a\"]", "normalize_mean = \"0.5\""}) {
    auto c = Config::FromString(std::string("[data]\n") + bad + "\n", "c.toml");
    EXPECT_FALSE(c.ok()) << bad;
  }
}

// ---- augmentation ----

// Two samples [1, 3, 3] holding 1..9 and 11..19.
Dataset Squares() {
  std::vector<uint8_t> px;
  for (int s = 0; s < 2; ++s)
    for (int k = 1; k <= 9; ++k) px.push_back(static_cast<uint8_t>(s * 10 + k));
  return Tiny({1, 3, 3}, px, 2);
}

// The loader's output as raw pixel values (std 1/255 undoes the /255).
std::vector<float> Pixels(DataLoader& l, int64_t epoch, int64_t b) {
  std::vector<float> v = l.GetBatch(epoch, b).x.ToVector();
  for (float& x : v) x = std::round(x);
  return v;
}

TEST(Augment, FlipMirrorsRows) {
  Dataset d = Squares();
  DataLoader l(d, {.batch_size = 2, .shuffle = false, .std = {1.0f / 255}, .flip = true});
  // Over a few epochs each sample is either itself or its mirror, and both occur.
  const std::vector<float> same = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  const std::vector<float> mirror = {3, 2, 1, 6, 5, 4, 9, 8, 7};
  int flipped = 0, kept = 0;
  for (int64_t e = 0; e < 16; ++e) {
    std::vector<float> v = Pixels(l, e, 0);
    std::vector<float> first(v.begin(), v.begin() + 9);
    if (first == mirror)
      ++flipped;
    else if (first == same)
      ++kept;
    else
      ADD_FAILURE() << "epoch " << e << ": neither the image nor its mirror";
  }
  EXPECT_GT(flipped, 0);
  EXPECT_GT(kept, 0);
}

// Where the crop of `pad` landed: the (dy, dx) offsets whose crop of the
// zero-padded 3x3 sample 1..9 is `v`, or (-1, -1).
std::pair<int, int> CropOffset(const std::vector<float>& v, int pad) {
  for (int dy = 0; dy <= 2 * pad; ++dy)
    for (int dx = 0; dx <= 2 * pad; ++dx) {
      bool match = true;
      for (int y = 0; y < 3 && match; ++y)
        for (int x = 0; x < 3 && match; ++x) {
          const int sy = y + dy - pad, sx = x + dx - pad;
          const float want = sy >= 0 && sy < 3 && sx >= 0 && sx < 3 ? 1 + sy * 3 + sx : 0;
          match = v[y * 3 + x] == want;
        }
      if (match) return {dy, dx};
    }
  return {-1, -1};
}

TEST(Augment, CropIsAShiftWithZeroPadding) {
  Dataset d = Squares();
  DataLoader l(d, {.batch_size = 1, .shuffle = false, .std = {1.0f / 255}, .crop_padding = 1});
  std::set<std::pair<int, int>> offsets;
  for (int64_t e = 0; e < 40; ++e) {
    std::vector<float> v = Pixels(l, e, 0);
    const auto at = CropOffset(v, 1);
    ASSERT_NE(at.first, -1) << "epoch " << e << ": not a crop of the padded image";
    offsets.insert(at);
  }
  EXPECT_GT(offsets.size(), 4u);  // of the 9 possible offsets
  // A hand-checked one: offset (0, 2) of padding 1 shifts the image down and left.
  EXPECT_EQ(CropOffset({0, 0, 0, 2, 3, 0, 5, 6, 0}, 1), (std::pair<int, int>{0, 2}));
  // Padded values are normalised zeros: mean 0.5 -> (0 - 0.5) / std.
  DataLoader m(d, {.batch_size = 1,
                   .shuffle = false,
                   .mean = {0.5f},
                   .std = {0.5f},
                   .crop_padding = 3});  // offsets 0 or 6 leave the image entirely
  bool all_padding_seen = false;
  for (int64_t e = 0; e < 60 && !all_padding_seen; ++e) {
    std::vector<float> v = m.GetBatch(e, 0).x.ToVector();
    all_padding_seen = std::all_of(v.begin(), v.end(), [](float x) { return x == -1.0f; });
  }
  EXPECT_TRUE(all_padding_seen);
}

TEST(Augment, DeterministicPerSeedEpochAndBatch) {
  // 64 CIFAR-shaped samples of distinct content.
  std::vector<uint8_t> px(64 * 3 * 8 * 8);
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>((i * 37) ^ (i >> 3));
  Dataset d = Tiny({3, 8, 8}, px, 64);
  const LoaderOptions o = {.batch_size = 16,
                           .shuffle = true,
                           .seed = 11,
                           .mean = {0.4914f, 0.4822f, 0.4465f},
                           .std = {0.247f, 0.243f, 0.261f},
                           .crop_padding = 2,
                           .flip = true};
  DataLoader a(d, o), b(d, o);
  // Same seed: identical batches, in any order of asking.
  const std::vector<float> a3 = a.GetBatch(2, 3).x.ToVector();
  const std::vector<float> a1 = a.GetBatch(2, 1).x.ToVector();
  EXPECT_EQ(b.GetBatch(2, 1).x.ToVector(), a1);
  EXPECT_EQ(b.GetBatch(2, 3).x.ToVector(), a3);
  // Augmentation differs from the plain batch (same order: only crops/flips differ).
  LoaderOptions plain = o;
  plain.crop_padding = 0;
  plain.flip = false;
  DataLoader p(d, plain);
  EXPECT_NE(p.GetBatch(2, 1).x.ToVector(), a1);
  // Another epoch: other crops of the same samples (no shuffle, so only augmentation differs).
  LoaderOptions fixed = o;
  fixed.shuffle = false;
  DataLoader f(d, fixed), g(d, fixed);
  EXPECT_NE(f.GetBatch(0, 0).x.ToVector(), f.GetBatch(1, 0).x.ToVector());
  EXPECT_EQ(f.GetBatch(1, 0).x.ToVector(), g.GetBatch(1, 0).x.ToVector());
  // Another seed: other crops.
  LoaderOptions other = fixed;
  other.seed = 12;
  DataLoader h(d, other);
  EXPECT_NE(h.GetBatch(1, 0).x.ToVector(), f.GetBatch(1, 0).x.ToVector());
}

}  // namespace
}  // namespace dnnd::data
