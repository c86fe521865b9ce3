#include "tensor/data/idx.h"

#include <algorithm>
#include <boost/endian/conversion.hpp>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <new>

namespace dnnd::data {
namespace {

using boost::endian::load_big_u32;

int ElementSize(uint8_t dtype) {
  switch (dtype) {
    case 0x08:
    case 0x09:
      return 1;
    case 0x0B:
      return 2;
    case 0x0C:
    case 0x0D:
      return 4;
    case 0x0E:
      return 8;
    default:
      return 0;
  }
}

// Big-endian element i of `p` as float.
float ElementAsFloat(uint8_t dtype, const uint8_t* p) {
  switch (dtype) {
    case 0x09:
      return static_cast<float>(static_cast<int8_t>(p[0]));
    case 0x0B:
      return static_cast<float>(static_cast<int16_t>((p[0] << 8) | p[1]));
    case 0x0C:
      return static_cast<float>(static_cast<int32_t>(load_big_u32(p)));
    case 0x0D: {
      uint32_t u = load_big_u32(p);
      float f;
      std::memcpy(&f, &u, 4);
      return f;
    }
    case 0x0E: {
      uint64_t u = (uint64_t{load_big_u32(p)} << 32) | load_big_u32(p + 4);
      double d;
      std::memcpy(&d, &u, 8);
      return static_cast<float>(d);
    }
    default:
      return static_cast<float>(p[0]);
  }
}

}  // namespace

int64_t IdxArray::numel() const { return ShapeNumel(dims); }

Result<IdxArray> DecodeIdx(ByteSource& src, const std::string& what, const DecodeLimits& limits) {
  uint8_t head[4];
  if (auto got = src.Read(head, 4); !got.ok() || *got < 4) {
    if (!got.ok()) return got.status();
    return Corruption(what + ": truncated IDX header (" + std::to_string(*got) + " bytes)");
  }
  if (head[0] != 0 || head[1] != 0)
    return Corruption(what +
                      ": bad IDX magic (first two bytes must be zero; is this an IDX file?)");
  IdxArray a;
  a.dtype = head[2];
  const int esize = ElementSize(a.dtype);
  if (esize == 0) {
    char code[8];
    std::snprintf(code, sizeof code, "0x%02X", a.dtype);
    return Unsupported(what + ": unsupported IDX dtype " + code +
                       " (expected 0x08, 0x09, 0x0B, 0x0C, 0x0D or 0x0E)");
  }
  const int rank = head[3];
  if (rank == 0) return Corruption(what + ": IDX rank is 0");
  if (rank > limits.max_rank)
    return Corruption(what + ": IDX rank " + std::to_string(rank) + " is over the limit of " +
                      std::to_string(limits.max_rank) + " dimensions");
  std::vector<uint8_t> dims(4 * static_cast<size_t>(rank));
  if (auto got = src.Read(dims.data(), dims.size()); !got.ok() || *got < dims.size()) {
    if (!got.ok()) return got.status();
    return Corruption(what + ": truncated IDX header: rank " + std::to_string(rank) + " needs " +
                      std::to_string(4 + dims.size()) + " bytes, file has " +
                      std::to_string(4 + *got));
  }
  for (int i = 0; i < rank; ++i) a.dims.push_back(load_big_u32(dims.data() + 4 * i));
  const int64_t n = ShapeNumel(a.dims);
  if (n < 0 || n > std::numeric_limits<int64_t>::max() / 4 / esize)
    return Corruption(what + ": IDX dimensions " + ShapeToString(a.dims) + " overflow");
  // Checked before anything is allocated: the raw bytes and what they
  // become (uint8 stays uint8, every other type turns into float32).
  const uint64_t raw = static_cast<uint64_t>(n) * esize;
  DNND_RETURN_IF_ERROR(limits.CheckBytes(
      std::max<uint64_t>(raw, a.dtype == 0x08 ? raw : 4 * static_cast<uint64_t>(n)),
      what + ": IDX dimensions " + ShapeToString(a.dims)));
  const std::string data_what = what + ": IDX data of dimensions " + ShapeToString(a.dims);
  if (a.dtype == 0x08) {
    DNND_RETURN_IF_ERROR(src.AppendExact(&a.u8, raw, data_what));
  } else {
    // Converted chunk by chunk: memory grows with the data actually read.
    constexpr int64_t kChunk = 1 << 16;
    std::vector<uint8_t> chunk;
    try {
      a.f32.reserve(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; i += kChunk) {
        const int64_t k = std::min(kChunk, n - i);
        chunk.clear();
        DNND_RETURN_IF_ERROR(src.AppendExact(&chunk, static_cast<uint64_t>(k) * esize, data_what));
        for (int64_t j = 0; j < k; ++j)
          a.f32.push_back(ElementAsFloat(a.dtype, chunk.data() + j * esize));
      }
    } catch (const std::bad_alloc&) {
      return ResourceExhausted(data_what + ": out of memory");
    }
  }
  DNND_ASSIGN_OR_RETURN(bool end, src.AtEnd());
  if (!end) return Corruption(what + ": unexpected trailing bytes after the IDX data");
  return a;
}

Result<IdxArray> DecodeIdx(const uint8_t* data, size_t size, const std::string& what,
                           const DecodeLimits& limits) {
  ByteSource src = ByteSource::FromMemory(data, size);
  return DecodeIdx(src, what, limits);
}

Result<std::string> ReadMaybeGzipped(const std::string& path, const DecodeLimits& limits) {
  DNND_ASSIGN_OR_RETURN(ByteSource src, ByteSource::OpenFile(path));
  std::vector<uint8_t> chunk(1 << 20);
  std::string out;
  for (;;) {
    DNND_ASSIGN_OR_RETURN(size_t got, src.Read(chunk.data(), chunk.size()));
    if (got == 0) break;
    DNND_RETURN_IF_ERROR(limits.CheckBytes(out.size() + got, path));
    try {
      out.append(reinterpret_cast<const char*>(chunk.data()), got);
    } catch (const std::bad_alloc&) {
      return ResourceExhausted(path + ": out of memory after " + std::to_string(out.size()) +
                               " bytes");
    }
  }
  return out;
}

Result<IdxArray> ReadIdxFile(const std::string& path, const DecodeLimits& limits) {
  DNND_ASSIGN_OR_RETURN(ByteSource src, ByteSource::OpenFile(path));
  return DecodeIdx(src, path, limits);
}

Result<Dataset> LoadIdxDataset(const std::string& images_path, const std::string& labels_path,
                               const DecodeLimits& limits) {
  DNND_ASSIGN_OR_RETURN(IdxArray images, ReadIdxFile(images_path, limits));
  DNND_ASSIGN_OR_RETURN(IdxArray labels, ReadIdxFile(labels_path, limits));
  if (images.dims.size() < 2)
    return InvalidArgument(images_path + ": images must have rank >= 2 ([n, ...]); got " +
                           ShapeToString(images.dims));
  if (labels.dims.size() != 1)
    return InvalidArgument(labels_path + ": labels must have rank 1; got " +
                           ShapeToString(labels.dims));
  if (labels.dtype == 0x0D || labels.dtype == 0x0E)
    return Unsupported(labels_path + ": labels must be integers, not floating point");
  if (images.dims[0] != labels.dims[0])
    return InvalidArgument(images_path + " has " + std::to_string(images.dims[0]) +
                           " samples but " + labels_path + " has " +
                           std::to_string(labels.dims[0]));
  Dataset d;
  // [n, h, w] images get a channel dimension: [1, h, w] per sample (NCHW).
  if (images.dims.size() == 3)
    d.sample_shape = {1, images.dims[1], images.dims[2]};
  else
    d.sample_shape.assign(images.dims.begin() + 1, images.dims.end());
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
