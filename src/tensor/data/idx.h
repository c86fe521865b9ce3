// IDX files (the MNIST / Fashion-MNIST format), plain or gzip-compressed.
//
// Layout: 2 zero bytes, a dtype code (0x08 uint8, 0x09 int8, 0x0B int16,
// 0x0C int32, 0x0D float32, 0x0E float64), the rank, `rank` big-endian uint32
// dimensions, then the row-major data (big-endian for multi-byte types).
// https://yann.lecun.com/exdb/mnist/ (section "THE IDX FILE FORMAT").
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "tensor/data/dataset.h"
#include "tensor/data/source.h"

namespace dnnd::data {

struct IdxArray {
  uint8_t dtype = 0;  // the IDX type code
  std::vector<int64_t> dims;
  std::vector<uint8_t> u8;  // dtype 0x08
  std::vector<float> f32;   // every other dtype, converted
  int64_t numel() const;
};

// Decodes an IDX stream. `what` names the source in errors. The dimensions
// are checked against `limits` (rank, decoded bytes) before anything is
// allocated, and the data is read as a stream; trailing bytes are an error.
Result<IdxArray> DecodeIdx(ByteSource& src, const std::string& what,
                           const DecodeLimits& limits = {});
// Decodes IDX bytes (already decompressed).
Result<IdxArray> DecodeIdx(const uint8_t* data, size_t size, const std::string& what,
                           const DecodeLimits& limits = {});
// Reads a file, gunzipping it on the fly when it starts with the gzip magic (1f 8b).
Result<IdxArray> ReadIdxFile(const std::string& path, const DecodeLimits& limits = {});
// Reads the whole file into memory, gunzipping when it starts with the gzip
// magic, refusing (ResourceExhausted naming limits.bytes_setting) as soon as
// more than limits.max_bytes have come out (the CSV reader's input).
Result<std::string> ReadMaybeGzipped(const std::string& path, const DecodeLimits& limits);

// An images file (rank 2 [n, d] or rank >= 3 [n, h, w, ...], uint8 or float)
// and a labels file (rank 1, integer) into a classification dataset. Errors
// name both files when the counts differ or a label is negative.
Result<Dataset> LoadIdxDataset(const std::string& images_path, const std::string& labels_path,
                               const DecodeLimits& limits = {});

}  // namespace dnnd::data
