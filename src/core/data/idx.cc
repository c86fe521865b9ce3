#include "core/data/idx.h"

#include "core/files.h"

#include <zlib.h>

#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>

namespace dnnd::data {
namespace {

uint32_t ReadBe32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

int ElementSize(uint8_t dtype) {
  switch (dtype) {
    case 0x08: case 0x09: return 1;
    case 0x0B: return 2;
    case 0x0C: case 0x0D: return 4;
    case 0x0E: return 8;
    default: return 0;
  }
}

// Big-endian element i of `p` as float.
float ElementAsFloat(uint8_t dtype, const uint8_t* p) {
  switch (dtype) {
    case 0x09: return static_cast<float>(static_cast<int8_t>(p[0]));
    case 0x0B: return static_cast<float>(static_cast<int16_t>((p[0] << 8) | p[1]));
    case 0x0C: return static_cast<float>(static_cast<int32_t>(ReadBe32(p)));
    case 0x0D: {
      uint32_t u = ReadBe32(p);
      float f;
      std::memcpy(&f, &u, 4);
      return f;
    }
    case 0x0E: {
      uint64_t u = (uint64_t{ReadBe32(p)} << 32) | ReadBe32(p + 4);
      double d;
      std::memcpy(&d, &u, 8);
      return static_cast<float>(d);
    }
    default: return static_cast<float>(p[0]);
  }
}

}  // namespace

int64_t IdxArray::numel() const { return ShapeNumel(dims); }

Result<IdxArray> DecodeIdx(const uint8_t* data, size_t size, const std::string& what) {
  if (size < 4) return Corruption(what + ": truncated IDX header (" + std::to_string(size) + " bytes)");
  if (data[0] != 0 || data[1] != 0)
    return Corruption(what + ": bad IDX magic (first two bytes must be zero; is this an IDX file?)");
  IdxArray a;
  a.dtype = data[2];
  const int esize = ElementSize(a.dtype);
  if (esize == 0) {
    char code[8];
    std::snprintf(code, sizeof code, "0x%02X", a.dtype);
    return Unsupported(what + ": unsupported IDX dtype " + code +
                       " (expected 0x08, 0x09, 0x0B, 0x0C, 0x0D or 0x0E)");
  }
  const int rank = data[3];
  if (rank == 0) return Corruption(what + ": IDX rank is 0");
  const size_t header = 4 + 4 * static_cast<size_t>(rank);
  if (size < header)
    return Corruption(what + ": truncated IDX header: rank " + std::to_string(rank) + " needs " +
                      std::to_string(header) + " bytes, file has " + std::to_string(size));
  for (int i = 0; i < rank; ++i) a.dims.push_back(ReadBe32(data + 4 + 4 * i));
  const int64_t n = ShapeNumel(a.dims);
  if (n < 0 || n > std::numeric_limits<int64_t>::max() / esize)
    return Corruption(what + ": IDX dimensions " + ShapeToString(a.dims) + " overflow");
  const uint64_t want = header + static_cast<uint64_t>(n) * esize;
  if (size < want)
    return Corruption(what + ": truncated IDX data: dimensions " + ShapeToString(a.dims) + " need " +
                      std::to_string(want) + " bytes, file has " + std::to_string(size));
  if (size > want)
    return Corruption(what + ": " + std::to_string(size - want) +
                      " unexpected trailing bytes after the IDX data");
  const uint8_t* body = data + header;
  if (a.dtype == 0x08) {
    a.u8.assign(body, body + n);
  } else {
    a.f32.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) a.f32[i] = ElementAsFloat(a.dtype, body + i * esize);
  }
  return a;
}

Result<std::string> ReadMaybeGzipped(const std::string& path, size_t max_bytes) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), std::fclose);
  if (!f) return NotFound(path + ": " + std::strerror(errno));
  unsigned char magic[2] = {0, 0};
  const size_t got = std::fread(magic, 1, 2, f.get());
  f.reset();
  if (got != 2 || magic[0] != 0x1f || magic[1] != 0x8b) return ReadFileToString(path, max_bytes);
  gzFile gz = gzopen(path.c_str(), "rb");
  if (!gz) return IoError(path + ": cannot open as gzip");
  gzbuffer(gz, 1 << 17);
  std::string out;
  std::vector<char> chunk(1 << 20);
  for (;;) {
    int r = gzread(gz, chunk.data(), static_cast<unsigned>(chunk.size()));
    if (r < 0) {
      int errnum = 0;
      std::string msg = gzerror(gz, &errnum);
      gzclose(gz);
      return Corruption(path + ": corrupt gzip data (" + msg + ")");
    }
    if (r == 0) break;
    if (out.size() + r > max_bytes) {
      gzclose(gz);
      return ResourceExhausted(path + ": decompresses to more than " + std::to_string(max_bytes) +
                               " bytes");
    }
    out.append(chunk.data(), r);
  }
  // gzread returns 0 at a truncated stream's end too; gzclose reports it.
  int errnum = 0;
  gzerror(gz, &errnum);
  if (gzclose(gz) != Z_OK || errnum != Z_OK) return Corruption(path + ": truncated gzip stream");
  return out;
}

Result<IdxArray> ReadIdxFile(const std::string& path, size_t max_bytes) {
  DNND_ASSIGN_OR_RETURN(std::string bytes, ReadMaybeGzipped(path, max_bytes));
  return DecodeIdx(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), path);
}

Result<Dataset> LoadIdxDataset(const std::string& images_path, const std::string& labels_path) {
  DNND_ASSIGN_OR_RETURN(IdxArray images, ReadIdxFile(images_path));
  DNND_ASSIGN_OR_RETURN(IdxArray labels, ReadIdxFile(labels_path));
  if (images.dims.size() < 2)
    return InvalidArgument(images_path + ": images must have rank >= 2 ([n, ...]); got " +
                           ShapeToString(images.dims));
  if (labels.dims.size() != 1)
    return InvalidArgument(labels_path + ": labels must have rank 1; got " + ShapeToString(labels.dims));
  if (labels.dtype == 0x0D || labels.dtype == 0x0E)
    return Unsupported(labels_path + ": labels must be integers, not floating point");
  if (images.dims[0] != labels.dims[0])
    return InvalidArgument(images_path + " has " + std::to_string(images.dims[0]) + " samples but " +
                           labels_path + " has " + std::to_string(labels.dims[0]));
  Dataset d;
  // [n, h, w] images get a channel dimension: [1, h, w] per sample (NCHW).
  if (images.dims.size() == 3) d.sample_shape = {1, images.dims[1], images.dims[2]};
  else d.sample_shape.assign(images.dims.begin() + 1, images.dims.end());
  if (images.dtype == 0x08) {
    d.type = SampleType::kUint8;
    d.u8 = std::move(images.u8);
  } else {
    d.type = SampleType::kFloat32;
    d.f32 = std::move(images.f32);
  }
  const int64_t n = labels.dims[0];
  d.labels.resize(static_cast<size_t>(n));
  int32_t max_label = -1;
  for (int64_t i = 0; i < n; ++i) {
    const float v = labels.dtype == 0x08 ? labels.u8[i] : labels.f32[i];
    if (v < 0 || v > 65535)
      return InvalidArgument(labels_path + ": label " + std::to_string(static_cast<int64_t>(v)) +
                             " of sample " + std::to_string(i) + " is outside [0, 65535]");
    d.labels[i] = static_cast<int32_t>(v);
    max_label = std::max(max_label, d.labels[i]);
  }
  d.num_classes = max_label + 1;
  return d;
}

}  // namespace dnnd::data
