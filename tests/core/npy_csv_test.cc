// NPY / NPZ / CSV readers: round trips, numpy interop through real files, and
// every error path.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "core/data/csv.h"
#include "core/data/npy.h"

namespace dnnd::data {
namespace {

class TempDir {
 public:
  TempDir() : path_(std::filesystem::temp_directory_path() / ("dnnd_npy_" + std::to_string(::getpid()))) {
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
                .status().message().find("big-endian"), std::string::npos);
  EXPECT_NE(decode(header("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }") + "abcdefgh")
                .status().message().find("dtype <c8"), std::string::npos);
  EXPECT_NE(decode(header("{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }") + "abcd")
                .status().message().find("fortran_order"), std::string::npos);
  EXPECT_NE(decode(header("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }") + "abcd")
                .status().message().find("needs 12 bytes, file has 4"), std::string::npos);
  EXPECT_NE(decode(header("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }"))
                .status().message().find("overflows"), std::string::npos);
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
  EXPECT_NE(bad.status().message().find("it has: x, y"), std::string::npos) << bad.status().message();
  { std::ofstream(dir / "junk.npz") << "not a zip"; }
  EXPECT_EQ(ReadNpzFile(dir / "junk.npz").status().code(), StatusCode::kCorruption);
}

TEST(Npz, NumpyReadsOursAndWeReadNumpys) {
  if (!HaveNumpy()) GTEST_SKIP() << "/usr/bin/python3 has no numpy";
  TempDir dir;
  ASSERT_TRUE(WriteNpzFile(dir / "ours.npz", {{"x", FromFloat({0.5f, 1.5f}, {1, 2})}, {"y", FromLabels({7})}}).ok());
  std::string check = "/usr/bin/python3 -c \"import numpy as np; d=np.load('" + (dir / "ours.npz") +
                      "'); assert d['x'].tolist()==[[0.5,1.5]] and d['y'].tolist()==[7], d['x']\"";
  EXPECT_EQ(std::system(check.c_str()), 0);
  // numpy's compressed (deflated) NPZ, uint8 images of rank 3.
  std::string make = "/usr/bin/python3 -c \"import numpy as np; np.savez_compressed('" + (dir / "np.npz") +
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
  EXPECT_NE(ragged.status().message().find("r.csv:3: 2 columns"), std::string::npos) << ragged.status().message();
  auto nan = ParseCsvDataset("l,a\n1,x\n", {}, "n.csv");
  EXPECT_NE(nan.status().message().find("n.csv:2:2: not a number: 'x'"), std::string::npos) << nan.status().message();
  auto label = ParseCsvDataset("l,a\n1.5,2\n", {}, "l.csv");
  EXPECT_NE(label.status().message().find("not an integer"), std::string::npos);
  EXPECT_NE(ParseCsvDataset("l,a\n", {}, "e.csv").status().message().find("no data rows"), std::string::npos);
}

}  // namespace
}  // namespace dnnd::data
