// NPY / NPZ / CSV readers: round trips, numpy interop through real files, and
// every error path.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "tensor/data/csv.h"
#include "tensor/data/npy.h"
#include "tests/core/hostile_files.h"

namespace dnnd::data {
namespace {

class TempDir {
 public:
  TempDir()
      : path_(std::filesystem::temp_directory_path() / ("dnnd_npy_" + std::to_string(::getpid()))) {
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string operator/(const std::string& n) const { return (path_ / n).string(); }

 private:
  std::filesystem::path path_;
};

bool HaveNumpy() { return std::system("/usr/bin/python3 -c 'import numpy' 2>/dev/null") == 0; }

TEST(Npy, RoundTrip) {
  NdArray a = FromFloat({1.5f, -2.0f, 3.0f, 4.0f, 5.0f, 6.0f}, {2, 3});
  std::string bytes = EncodeNpy(a);
  auto b = DecodeNpy(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "mem");
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ(b->shape, (Shape{2, 3}));
  EXPECT_EQ(ToFloat(*b), ToFloat(a));
}

TEST(Npy, ErrorsAreSpecific) {
  auto decode = [](const std::string& s) {
    return DecodeNpy(reinterpret_cast<const uint8_t*>(s.data()), s.size(), "f.npy");
  };
  auto header = [](const std::string& dict) {
    std::string h = dict + "\n";
    return std::string("\x93NUMPY\x01\x00", 8) + static_cast<char>(h.size()) + '\0' + h;
  };
  EXPECT_NE(decode("hello world").status().message().find("bad magic"), std::string::npos);
  EXPECT_NE(decode(header("{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }") + "abcd")
                .status()
                .message()
                .find("big-endian"),
            std::string::npos);
  EXPECT_NE(decode(header("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }") + "abcdefgh")
                .status()
                .message()
                .find("dtype <c8"),
            std::string::npos);
  EXPECT_NE(decode(header("{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }") + "abcd")
                .status()
                .message()
                .find("fortran_order"),
            std::string::npos);
  EXPECT_NE(decode(header("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }") + "abcd")
                .status()
                .message()
                .find("needs 12 bytes, file has 4"),
            std::string::npos);
  EXPECT_NE(decode(header("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, "
                          "4294967296, 4294967296), }"))
                .status()
                .message()
                .find("overflows"),
            std::string::npos);
}

TEST(Npz, RoundTripAndMissingKey) {
  TempDir dir;
  std::map<std::string, NdArray> arrays = {{"x", FromUint8({1, 2, 3, 4, 5, 6}, {3, 2})},
                                           {"y", FromLabels({0, 2, 1})}};
  ASSERT_TRUE(WriteNpzFile(dir / "d.npz", arrays).ok());
  auto d = LoadNpzDataset(dir / "d.npz");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->size(), 3);
  EXPECT_EQ(d->sample_shape, (Shape{2}));
  EXPECT_EQ(d->num_classes, 3);
  auto bad = LoadNpzDataset(dir / "d.npz", "images", "y");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("it has: x, y"), std::string::npos)
      << bad.status().message();
  { std::ofstream(dir / "junk.npz") << "not a zip"; }
  EXPECT_EQ(ReadNpzFile(dir / "junk.npz").status().code(), StatusCode::kCorruption);
}

TEST(Npz, NumpyReadsOursAndWeReadNumpys) {
  if (!HaveNumpy()) GTEST_SKIP() << "/usr/bin/python3 has no numpy";
  TempDir dir;
  ASSERT_TRUE(WriteNpzFile(dir / "ours.npz",
                           {{"x", FromFloat({0.5f, 1.5f}, {1, 2})}, {"y", FromLabels({7})}})
                  .ok());
  std::string check = "/usr/bin/python3 -c \"import numpy as np; d=np.load('" + (dir / "ours.npz") +
                      "'); assert d['x'].tolist()==[[0.5,1.5]] and d['y'].tolist()==[7], d['x']\"";
  EXPECT_EQ(std::system(check.c_str()), 0);
  // numpy's compressed (deflated) NPZ, uint8 images of rank 3.
  std::string make =
      "/usr/bin/python3 -c \"import numpy as np; np.savez_compressed('" + (dir / "np.npz") +
      "', x=np.arange(2*4*4, dtype=np.uint8).reshape(2,4,4), y=np.array([1,0], dtype=np.int64))\"";
  ASSERT_EQ(std::system(make.c_str()), 0);
  auto d = LoadNpzDataset(dir / "np.npz");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->sample_shape, (Shape{1, 4, 4}));
  EXPECT_EQ(d->type, SampleType::kUint8);
  EXPECT_EQ(d->u8[31], 31);
  EXPECT_EQ(d->labels, (std::vector<int32_t>{1, 0}));
}

TEST(Csv, ParsesKaggleLayoutAsBytes) {
  auto d = ParseCsvDataset("label,p0,p1\n3,0,255\n1,12,7\n", {}, "m.csv");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->type, SampleType::kUint8);
  EXPECT_EQ(d->labels, (std::vector<int32_t>{3, 1}));
  EXPECT_EQ(d->u8, (std::vector<uint8_t>{0, 255, 12, 7}));
  auto f = ParseCsvDataset("0.5,1\n-1.25,0\n", {.label_column = -1, .header = false}, "f.csv");
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->type, SampleType::kFloat32);
  EXPECT_EQ(f->f32, (std::vector<float>{0.5f, -1.25f}));
}

TEST(Csv, ErrorsNameRowAndColumn) {
  auto ragged = ParseCsvDataset("l,a,b\n1,2,3\n1,2\n", {}, "r.csv");
  EXPECT_NE(ragged.status().message().find("r.csv:3: 2 columns"), std::string::npos)
      << ragged.status().message();
  auto nan = ParseCsvDataset("l,a\n1,x\n", {}, "n.csv");
  EXPECT_NE(nan.status().message().find("n.csv:2:2: not a number: 'x'"), std::string::npos)
      << nan.status().message();
  auto label = ParseCsvDataset("l,a\n1.5,2\n", {}, "l.csv");
  EXPECT_NE(label.status().message().find("not an integer"), std::string::npos);
  EXPECT_NE(ParseCsvDataset("l,a\n", {}, "e.csv").status().message().find("no data rows"),
            std::string::npos);
}

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

const DecodeLimits kSmall{.max_bytes = 16 << 20,
                          .max_members = 4,
                          .bytes_setting = "controller.max_dataset_bytes",
                          .members_setting = "controller.max_dataset_members"};

TEST(NpyLimits, AGzippedBombIsRefusedFromItsHeader) {
  TempDir dir;
  WriteBytes(dir / "bomb.npy", testing::GzipNpyBomb(16 << 20));  // 64 MiB of float32 zeros
  const long before = testing::PeakRssMib();
  auto r = ReadNpyFile(dir / "bomb.npy", kSmall);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(r.status().message().find(
                "67108864 bytes; the limit is 16777216 (controller.max_dataset_bytes)"),
            std::string::npos)
      << r.status().message();
  EXPECT_LT(testing::PeakRssMib() - before, 16);
  // int8 becomes float32 in a dataset: counted at 4 bytes an element.
  const std::string i1 = testing::NpyHeader("|i1", "(8000000,)");
  auto r2 = DecodeNpy(reinterpret_cast<const uint8_t*>(i1.data()), i1.size(), "i1.npy", kSmall);
  EXPECT_NE(r2.status().message().find("32000000 bytes"), std::string::npos)
      << r2.status().message();
  // A rank past the limit.
  std::string shape = "(";
  for (int i = 0; i < 40; ++i) shape += "1, ";
  const std::string d = testing::NpyHeader("<f4", shape + ")");
  auto r3 = DecodeNpy(reinterpret_cast<const uint8_t*>(d.data()), d.size(), "deep.npy", kSmall);
  EXPECT_NE(r3.status().message().find("more than 32 dimensions"), std::string::npos)
      << r3.status().message();
}

TEST(NpzLimits, AMemberClaiming12GiBIsRefusedBeforeAnythingIsAllocated) {
  TempDir dir;
  NdArray small = FromUint8({1, 2, 3, 4}, {2, 2});
  const std::string npz = testing::NpzClaiming("x.npy", EncodeNpy(small), uint64_t{12} << 30);
  ASSERT_LT(npz.size(), 400u);
  WriteBytes(dir / "lie.npz", npz);
  const long before = testing::PeakRssMib();
  auto r = ReadNpzFile(dir / "lie.npz", kSmall);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted);
  // minizip reads the claim as 4 GiB - 1 (what the old reader zero-filled).
  EXPECT_NE(
      r.status().message().find("member x.npy decodes to 4294967295 bytes; the limit is 16777216 "
                                "(controller.max_dataset_bytes)"),
      std::string::npos)
      << r.status().message();
  // Under the default limit (16 GiB) the claim still costs nothing: the
  // member's .npy header (4 bytes of data) is what is allocated, and the
  // member is refused for holding less than it claims.
  auto r2 = ReadNpzFile(dir / "lie.npz");
  ASSERT_FALSE(r2.ok());
  EXPECT_LT(testing::PeakRssMib() - before, 16);
  // Too many members.
  std::map<std::string, NdArray> many;
  for (int i = 0; i < 5; ++i) many["a" + std::to_string(i)] = small;
  ASSERT_TRUE(WriteNpzFile(dir / "many.npz", many).ok());
  auto r3 = ReadNpzFile(dir / "many.npz", kSmall);
  EXPECT_NE(r3.status().message().find("more than 4 members (controller.max_dataset_members)"),
            std::string::npos)
      << r3.status().message();
  // A real archive still reads.
  ASSERT_TRUE(WriteNpzFile(dir / "ok.npz", {{"x", small}, {"y", FromLabels({0, 1})}}).ok());
  EXPECT_TRUE(LoadNpzDataset(dir / "ok.npz", "x", "y", kSmall).ok());
}

TEST(CsvLimits, TextAndSamplesAreCapped) {
  TempDir dir;
  std::string rows = "label,a,b\n";
  for (int i = 0; i < 1000; ++i) rows += "1,2,3\n";
  auto r = ParseCsvDataset(rows, {}, "rows.csv", {.max_bytes = 4000});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("the limit is 4000 (data.max_decoded_bytes)"),
            std::string::npos)
      << r.status().message();
  // Gzipped text past the limit is refused while it is inflated.
  WriteBytes(dir / "big.csv", testing::Deflate("label,a\n", 64 << 20, true));
  auto r2 = LoadCsvDataset(dir / "big.csv", {}, kSmall);
  ASSERT_FALSE(r2.ok());
  EXPECT_NE(r2.status().message().find("(controller.max_dataset_bytes)"), std::string::npos)
      << r2.status().message();
}

}  // namespace
}  // namespace dnnd::data
