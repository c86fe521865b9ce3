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

#include "core/status.h"
#include "tensor/data/dataset.h"
#include "tensor/data/source.h"

namespace dnnd::data {

struct NdArray {
  std::string dtype;  // numpy descr without byte order: "u1", "f4", ...
  Shape shape;
  std::vector<uint8_t> bytes;  // C-order little-endian data
  int64_t numel() const { return ShapeNumel(shape); }
};

// Decodes an .npy stream of `stream_bytes` bytes (UINT64_MAX when unknown,
// as for a gzipped file). The header's shape is checked against `limits`
// (rank, decoded bytes: float32 for every dtype but u1) and against
// `stream_bytes` before the data is allocated; the data is then read as it
// arrives. Bytes after the data are left unread.
Result<NdArray> DecodeNpy(ByteSource& src, const std::string& what, const DecodeLimits& limits,
                          uint64_t stream_bytes);
Result<NdArray> DecodeNpy(const uint8_t* data, size_t size, const std::string& what,
                          const DecodeLimits& limits = {});
std::string EncodeNpy(const NdArray& a);
// Reads an .npy file, gunzipping it on the fly when it is gzipped.
Result<NdArray> ReadNpyFile(const std::string& path, const DecodeLimits& limits = {});

// Reads every member of an .npz: at most limits.max_members members, each
// refused from its directory entry's declared size before it is inflated,
// then inflated as a stream into an array no larger than its .npy header says.
Result<std::map<std::string, NdArray>> ReadNpzFile(const std::string& path,
                                                   const DecodeLimits& limits = {});
// Writes an .npz (stored members) atomically: temp file, fsync, rename.
Status WriteNpzFile(const std::string& path, const std::map<std::string, NdArray>& arrays);

// Element conversions. Labels must be integral and within [0, 65535].
std::vector<float> ToFloat(const NdArray& a);
Result<std::vector<int32_t>> ToLabels(const NdArray& a, const std::string& what);
NdArray FromFloat(const std::vector<float>& v, const Shape& shape);
NdArray FromUint8(const std::vector<uint8_t>& v, const Shape& shape);
NdArray FromLabels(const std::vector<int32_t>& v);

// Datasets: samples x [n, ...] (uint8 stays uint8) and labels y [n].
// `x` is taken by value: uint8 samples move into the dataset without a copy.
Result<Dataset> DatasetFromArrays(NdArray x, const NdArray& y, const std::string& what);
Result<Dataset> LoadNpyDataset(const std::string& x_path, const std::string& y_path,
                               const DecodeLimits& limits = {});
Result<Dataset> LoadNpzDataset(const std::string& path, const std::string& x_key = "x",
                               const std::string& y_key = "y", const DecodeLimits& limits = {});

}  // namespace dnnd::data
