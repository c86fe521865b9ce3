// IDX reading (plain and gzip), its error paths, and batching.
#include <gtest/gtest.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>

#include "tensor/data/idx.h"
#include "tests/core/hostile_files.h"

namespace dnnd::data {
namespace {

std::vector<uint8_t> Idx(uint8_t dtype, std::vector<uint32_t> dims, std::vector<uint8_t> body) {
  std::vector<uint8_t> b = {0, 0, dtype, static_cast<uint8_t>(dims.size())};
  for (uint32_t d : dims)
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(d >> s));
  b.insert(b.end(), body.begin(), body.end());
  return b;
}

class TempDir {
 public:
  TempDir()
      : path_(std::filesystem::temp_directory_path() /
              ("dnnd_data_" + std::to_string(::getpid()))) {
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string Write(const std::string& name, const std::vector<uint8_t>& bytes, bool gzip = false) {
    std::string p = (path_ / name).string();
    if (gzip) {
      gzFile f = gzopen(p.c_str(), "wb");
      gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
      gzclose(f);
    } else {
      std::ofstream(p, std::ios::binary)
          .write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    }
    return p;
  }

 private:
  std::filesystem::path path_;
};

TEST(Idx, DecodesUint8AndBigEndianTypes) {
  auto a = DecodeIdx(Idx(0x08, {2, 2}, {1, 2, 3, 4}).data(), 8 + 4 + 4, "x");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->dims, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(a->u8, (std::vector<uint8_t>{1, 2, 3, 4}));
  auto bytes = Idx(0x0B, {2}, {0x01, 0x00, 0xFF, 0xFE});  // int16 256, -2
  auto b = DecodeIdx(bytes.data(), bytes.size(), "x");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->f32, (std::vector<float>{256.0f, -2.0f}));
}

struct BadIdx {
  std::vector<uint8_t> bytes;
  const char* expect;
};

TEST(Idx, ErrorsAreSpecific) {
  std::vector<BadIdx> cases = {
      {{0, 0}, "truncated IDX header"},
      {{1, 0, 8, 1, 0, 0, 0, 1, 5}, "bad IDX magic"},
      {Idx(0x07, {1}, {0}), "unsupported IDX dtype 0x07"},
      {Idx(0x08, {3}, {1, 2}), "needs 3 bytes, the stream has 2"},
      {Idx(0x08, {1}, {1, 2}), "trailing"},
      {{0, 0, 8, 3, 0, 0, 0}, "truncated IDX header"},
      {Idx(0x08, {0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF}, {}), "overflow"},
  };
  for (const auto& c : cases) {
    auto r = DecodeIdx(c.bytes.data(), c.bytes.size(), "file.idx");
    ASSERT_FALSE(r.ok()) << c.expect;
    EXPECT_NE(r.status().message().find(c.expect), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find("file.idx"), std::string::npos);
  }
}

TEST(Idx, GzipAndPlainFilesLoadAsDataset) {
  TempDir dir;
  auto images =
      dir.Write("img.gz", Idx(0x08, {3, 2, 2}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}), true);
  auto labels = dir.Write("lab", Idx(0x08, {3}, {2, 0, 1}));
  auto d = LoadIdxDataset(images, labels);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->size(), 3);
  EXPECT_EQ(d->sample_shape, (Shape{1, 2, 2}));
  EXPECT_EQ(d->num_classes, 3);
  EXPECT_EQ(d->ClassHistogram(), (std::vector<int64_t>{1, 1, 1}));
}

TEST(Idx, MismatchedCountsNameBothFiles) {
  TempDir dir;
  auto images = dir.Write("img", Idx(0x08, {3, 1}, {0, 1, 2}));
  auto labels = dir.Write("lab", Idx(0x08, {2}, {0, 1}));
  auto d = LoadIdxDataset(images, labels);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("has 3 samples but"), std::string::npos)
      << d.status().message();
  EXPECT_NE(d.status().message().find("has 2"), std::string::npos);
}

TEST(Idx, CorruptAndTruncatedGzip) {
  TempDir dir;
  auto full = Idx(0x08, {100}, std::vector<uint8_t>(100, 7));
  std::string good = dir.Write("g.gz", full, true);
  std::ifstream in(good, std::ios::binary);
  std::vector<uint8_t> gz((std::istreambuf_iterator<char>(in)), {});
  std::vector<uint8_t> cut(gz.begin(), gz.begin() + gz.size() / 2);
  auto r = ReadIdxFile(dir.Write("cut.gz", cut));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("cut.gz"), std::string::npos) << r.status().message();
  auto missing = ReadIdxFile("/nonexistent/x.idx");
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
}

TEST(Idx, FloatLabelsAreRejected) {
  TempDir dir;
  auto images = dir.Write("img", Idx(0x08, {1, 1}, {0}));
  auto labels = dir.Write("lab", Idx(0x0D, {1}, {0, 0, 0, 0}));
  EXPECT_EQ(LoadIdxDataset(images, labels).status().code(), StatusCode::kUnsupported);
}

TEST(Idx, RealFashionMnist) {
  const std::string dir = "/usr/share/datasets/fashion-mnist/";
  if (!std::filesystem::exists(dir + "train-images-idx3-ubyte.gz")) GTEST_SKIP() << "not installed";
  auto d = LoadIdxDataset(dir + "train-images-idx3-ubyte.gz", dir + "train-labels-idx1-ubyte.gz");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->size(), 60000);
  EXPECT_EQ(d->sample_shape, (Shape{1, 28, 28}));
  EXPECT_EQ(d->ClassHistogram(), std::vector<int64_t>(10, 6000));
  EXPECT_EQ(d->u8.size(), 60000u * 784u);  // compact: uint8 stays uint8
}

TEST(DataLoader, EpochCoversEverySampleOnceAndIsReproducible) {
  Dataset d;
  d.sample_shape = {1};
  d.type = SampleType::kFloat32;
  for (int i = 0; i < 10; ++i) {
    d.f32.push_back(static_cast<float>(i));
    d.labels.push_back(i % 2);
  }
  d.num_classes = 2;
  DataLoader a(d, {.batch_size = 3, .shuffle = true, .seed = 7});
  DataLoader b(d, {.batch_size = 3, .shuffle = true, .seed = 7});
  ASSERT_EQ(a.num_batches(), 4);
  std::vector<float> seen;
  for (int64_t i = 0; i < a.num_batches(); ++i) {
    Batch x = a.GetBatch(1, i);
    Batch y = b.GetBatch(1, i);  // same (seed, epoch) -> same batch, even out of order
    EXPECT_EQ(x.x.ToVector(), y.x.ToVector());
    for (float v : x.x.ToVector()) seen.push_back(v);
  }
  std::sort(seen.begin(), seen.end());
  for (int i = 0; i < 10; ++i) EXPECT_EQ(seen[i], i);
  EXPECT_NE(a.GetBatch(1, 0).x.ToVector(), a.GetBatch(2, 0).x.ToVector());  // reshuffled per epoch
}

TEST(DataLoader, NormalisesUint8) {
  Dataset d;
  d.sample_shape = {2};
  d.u8 = {0, 255};
  d.labels = {0};
  d.num_classes = 1;
  DataLoader l(d, {.batch_size = 1, .shuffle = false, .seed = 0, .mean = {0.5f}, .std = {0.5f}});
  EXPECT_EQ(l.GetBatch(0, 0).x.ToVector(), (std::vector<float>{-1.0f, 1.0f}));
}

TEST(IdxLimits, AGzipBombIsRefusedFromItsHeaderNamingTheSetting) {
  TempDir dir;
  // 64 MiB of zeros in ~65 KB of gzip; the limit is 16 MiB.
  const std::string bomb = testing::GzipIdxBomb({65536, 32, 32});
  ASSERT_LT(bomb.size(), 200000u);
  const std::string path = dir.Write("bomb.gz", std::vector<uint8_t>(bomb.begin(), bomb.end()));
  const long before = testing::PeakRssMib();
  auto r =
      ReadIdxFile(path, {.max_bytes = 16 << 20, .bytes_setting = "controller.max_dataset_bytes"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(r.status().message().find(
                "67108864 bytes; the limit is 16777216 (controller.max_dataset_bytes)"),
            std::string::npos)
      << r.status().message();
  EXPECT_LT(testing::PeakRssMib() - before, 16) << "refused before decompressing";
}

TEST(IdxLimits, AHeaderThatLiesCostsOnlyTheDataThatIsThere) {
  // Declares 1 GiB (under the default limit), holds 10 bytes: truncated, and
  // the array grew only with what arrived.
  std::string lie = testing::IdxHeader(0x08, {1 << 20, 32, 32}) + std::string(10, '\x07');
  const long before = testing::PeakRssMib();
  auto r = DecodeIdx(reinterpret_cast<const uint8_t*>(lie.data()), lie.size(), "lie.idx");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("truncated"), std::string::npos) << r.status().message();
  EXPECT_LT(testing::PeakRssMib() - before, 16);
  // Float types count at 4 bytes an element (they become float32), and the rank is capped.
  auto i8 = testing::IdxHeader(0x09, {16, 16});
  auto r2 = DecodeIdx(reinterpret_cast<const uint8_t*>(i8.data()), i8.size(), "i8.idx",
                      {.max_bytes = 1000});
  EXPECT_NE(r2.status().message().find("1024 bytes; the limit is 1000 (data.max_decoded_bytes)"),
            std::string::npos)
      << r2.status().message();
  auto deep = testing::IdxHeader(0x08, std::vector<uint32_t>(40, 1));
  auto r3 = DecodeIdx(reinterpret_cast<const uint8_t*>(deep.data()), deep.size(), "deep.idx");
  EXPECT_NE(r3.status().message().find("rank 40 is over the limit of 32"), std::string::npos)
      << r3.status().message();
}

}  // namespace
}  // namespace dnnd::data
