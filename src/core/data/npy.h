// NumPy's .npy (format versions 1-3) and .npz (a zip of .npy members) files.
// https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
//
// Supported dtypes: |u1 |i1 <i2 <u2 <i4 <u4 <i8 <u8 <f4 <f8 |b1 (little-endian,
// C order). Big-endian data and fortran_order=True are clear Unsupported
// errors. NPZ uses minizip (zip is not a format to hand-parse); members are
// keyed by their name without ".npy".
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/data/dataset.h"
#include "core/status.h"

namespace dnnd::data {

struct NdArray {
  std::string dtype;  // numpy descr without byte order: "u1", "f4", ...
  Shape shape;
  std::vector<uint8_t> bytes;  // C-order little-endian data
  int64_t numel() const { return ShapeNumel(shape); }
};

Result<NdArray> DecodeNpy(const uint8_t* data, size_t size, const std::string& what);
std::string EncodeNpy(const NdArray& a);
Result<NdArray> ReadNpyFile(const std::string& path);

// Reads every member of an .npz; member sizes are capped at `max_member_bytes`.
Result<std::map<std::string, NdArray>> ReadNpzFile(const std::string& path,
                                                   uint64_t max_member_bytes = uint64_t{1} << 34);
// Writes an .npz (stored members) atomically: temp file, fsync, rename.
Status WriteNpzFile(const std::string& path, const std::map<std::string, NdArray>& arrays);

// Element conversions. Labels must be integral and within [0, 65535].
std::vector<float> ToFloat(const NdArray& a);
Result<std::vector<int32_t>> ToLabels(const NdArray& a, const std::string& what);
NdArray FromFloat(const std::vector<float>& v, const Shape& shape);
NdArray FromUint8(const std::vector<uint8_t>& v, const Shape& shape);
NdArray FromLabels(const std::vector<int32_t>& v);

// Datasets: samples x [n, ...] (uint8 stays uint8) and labels y [n].
Result<Dataset> DatasetFromArrays(const NdArray& x, const NdArray& y, const std::string& what);
Result<Dataset> LoadNpyDataset(const std::string& x_path, const std::string& y_path);
Result<Dataset> LoadNpzDataset(const std::string& path, const std::string& x_key = "x",
                               const std::string& y_key = "y");

}  // namespace dnnd::data
