#include "tensor/safetensors.h"

#include <algorithm>
#include <boost/json.hpp>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <new>

#include "core/files.h"

namespace dnnd {
namespace {

namespace json = boost::json;

float HalfToFloat(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while ((mant & 0x400) == 0) {
        mant <<= 1;
        --exp;
      }
      bits = sign | (exp << 23) | ((mant & 0x3ff) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

int DtypeSize(const std::string& d) {
  if (d == "F32") return 4;
  if (d == "F16" || d == "BF16") return 2;
  if (d == "F64" || d == "I64") return 8;
  if (d == "I32") return 4;
  if (d == "U8") return 1;
  return 0;
}

}  // namespace

std::string EncodeSafetensors(const nn::NamedTensors& tensors,
                              const std::map<std::string, std::string>& metadata,
                              const std::set<std::string>& int64_names) {
  std::vector<std::pair<std::string, Tensor>> sorted(tensors.begin(), tensors.end());
  std::sort(sorted.begin(), sorted.end(), [](auto& a, auto& b) { return a.first < b.first; });
  json::object header;
  if (!metadata.empty()) {
    json::object meta;
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = std::move(meta);
  }
  uint64_t offset = 0;
  for (const auto& [name, t] : sorted) {
    json::array shape;
    for (int64_t d : t.shape()) shape.push_back(d);
    const bool i64 = int64_names.count(name) > 0;
    const uint64_t bytes = i64 ? 8 * static_cast<uint64_t>(t.numel()) : t.nbytes();
    json::object entry{{"dtype", i64 ? "I64" : "F32"},
                       {"shape", std::move(shape)},
                       {"data_offsets", json::array{offset, offset + bytes}}};
    header[name] = std::move(entry);
    offset += bytes;
  }
  std::string h = json::serialize(header);
  h.append((8 - h.size() % 8) % 8, ' ');  // the reference pads to 8 bytes
  std::string out(8, '\0');
  uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  out += h;
  out.reserve(out.size() + offset);
  for (const auto& [name, t] : sorted) {
    if (!int64_names.count(name)) {
      out.append(reinterpret_cast<const char*>(t.data()), t.nbytes());
      continue;
    }
    for (int64_t i = 0; i < t.numel(); ++i) {
      const int64_t v = std::llround(t.data()[i]);
      out.append(reinterpret_cast<const char*>(&v), 8);  // little-endian hosts only, as F32
    }
  }
  return out;
}

Result<SafetensorsFile> DecodeSafetensors(const std::string& bytes, const std::string& what,
                                          const SafetensorsLimits& limits) try {
  if (bytes.size() < 8) return Corruption(what + ": shorter than the 8-byte header length");
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t{static_cast<uint8_t>(bytes[i])} << (8 * i);
  // Past the end first: a file that is not safetensors at all (its first 8
  // bytes read as a huge length) is malformed, not too large.
  if (n > bytes.size() - 8)
    return Corruption(what + ": header length " + std::to_string(n) +
                      " runs past the end of the file (" + std::to_string(bytes.size()) +
                      " bytes)");
  if (n > limits.max_header_bytes)
    return ResourceExhausted(what + ": header length " + std::to_string(n) +
                             " exceeds the limit of " + std::to_string(limits.max_header_bytes) +
                             " bytes");
  boost::system::error_code ec;
  json::value root = json::parse(std::string_view(bytes).substr(8, n), ec);
  if (ec) return Corruption(what + ": header is not valid JSON (" + ec.message() + ")");
  if (!root.is_object()) return Corruption(what + ": header is not a JSON object");
  const size_t tensors =
      root.as_object().size() - (root.as_object().contains("__metadata__") ? 1 : 0);
  if (tensors > static_cast<uint64_t>(limits.max_tensors))
    return ResourceExhausted(what + ": " + std::to_string(tensors) + " tensors; the limit is " +
                             std::to_string(limits.max_tensors));
  const uint64_t data_size = bytes.size() - 8 - n;
  const char* data = bytes.data() + 8 + n;
  // One aligned copy of the data section: F32 tensors become views of it.
  auto storage = Storage::Allocate(std::max<uint64_t>(data_size, 1));
  std::memcpy(storage->data(), data, data_size);

  SafetensorsFile file;
  struct Span {
    uint64_t begin, end;
    std::string name;
  };
  std::vector<Span> spans;
  uint64_t decoded = 0;
  for (const auto& [key, value] : root.as_object()) {
    std::string name(key);
    if (name == "__metadata__") {
      if (!value.is_object()) return Corruption(what + ": __metadata__ is not an object");
      for (const auto& [mk, mv] : value.as_object()) {
        if (!mv.is_string())
          return Corruption(what + ": metadata value '" + std::string(mk) + "' is not a string");
        file.metadata[std::string(mk)] = std::string(mv.as_string());
      }
      continue;
    }
    const std::string ctx = what + ": tensor '" + name + "'";
    const json::object* e = value.if_object();
    if (!e) return Corruption(ctx + " is not an object");
    const json::value* dt = e->if_contains("dtype");
    const json::value* sh = e->if_contains("shape");
    const json::value* off = e->if_contains("data_offsets");
    if (!dt || !dt->is_string() || !sh || !sh->is_array() || !off || !off->is_array() ||
        off->as_array().size() != 2)
      return Corruption(ctx +
                        " needs dtype (string), shape (array) and data_offsets ([begin, end])");
    const std::string dtype(dt->as_string());
    const int esize = DtypeSize(dtype);
    if (esize == 0)
      return Unsupported(ctx + " has dtype " + dtype +
                         " (supported: F32, F16, BF16, F64, I64, I32, U8)");
    Shape shape;
    for (const auto& d : sh->as_array()) {
      if (!d.is_int64() && !d.is_uint64())
        return Corruption(ctx + ": shape entries must be integers");
      int64_t v = d.is_int64() ? d.as_int64()
                               : static_cast<int64_t>(std::min<uint64_t>(d.as_uint64(), INT64_MAX));
      if (v < 0) return Corruption(ctx + ": negative dimension");
      shape.push_back(v);
    }
    const int64_t numel = ShapeNumel(shape);
    if (numel < 0 || numel > std::numeric_limits<int64_t>::max() / esize)
      return Corruption(ctx + ": shape " + ShapeToString(shape) + " overflows");
    uint64_t b = 0, en = 0;
    for (int i = 0; i < 2; ++i) {
      const json::value& o = off->as_array()[i];
      if (!o.is_int64() && !o.is_uint64())
        return Corruption(ctx + ": data_offsets must be integers");
      if (o.is_int64() && o.as_int64() < 0) return Corruption(ctx + ": negative data offset");
      (i == 0 ? b : en) = o.is_int64() ? static_cast<uint64_t>(o.as_int64()) : o.as_uint64();
    }
    if (b > en || en > data_size)
      return Corruption(ctx + ": data_offsets [" + std::to_string(b) + ", " + std::to_string(en) +
                        "] outside the " + std::to_string(data_size) + "-byte data section");
    if (en - b != static_cast<uint64_t>(numel) * esize)
      return Corruption(ctx + ": " + std::to_string(en - b) + " bytes for shape " +
                        ShapeToString(shape) + " of " + dtype);
    spans.push_back({b, en, name});
    decoded += 4 * static_cast<uint64_t>(numel);  // every dtype becomes float32
    if (decoded > limits.max_decoded_bytes)
      return ResourceExhausted(ctx + " takes the file past " +
                               std::to_string(limits.max_decoded_bytes) + " decoded bytes");
    Tensor t;
    if (dtype == "F32" && b % 4 == 0) {
      t = Tensor::FromStorage(storage, static_cast<int64_t>(b / 4), shape);
    } else {
      t = Tensor::Empty(shape);
      const char* src = static_cast<const char*>(storage->data()) + b;
      float* dst = t.data();
      for (int64_t i = 0; i < numel; ++i) {
        if (dtype == "F32") {
          std::memcpy(dst + i, src + 4 * i, 4);
        } else if (dtype == "F64") {
          double d;
          std::memcpy(&d, src + 8 * i, 8);
          dst[i] = static_cast<float>(d);
        } else if (dtype == "I64") {
          int64_t v;
          std::memcpy(&v, src + 8 * i, 8);
          dst[i] = static_cast<float>(v);
        } else if (dtype == "I32") {
          int32_t v;
          std::memcpy(&v, src + 4 * i, 4);
          dst[i] = static_cast<float>(v);
        } else if (dtype == "U8") {
          dst[i] = static_cast<float>(static_cast<uint8_t>(src[i]));
        } else {
          uint16_t h;
          std::memcpy(&h, src + 2 * i, 2);
          if (dtype == "F16") {
            dst[i] = HalfToFloat(h);
          } else {
            uint32_t bits = uint32_t{h} << 16;
            std::memcpy(dst + i, &bits, 4);
          }
        }
      }
    }
    if (dtype == "I64" || dtype == "I32") file.int64_names.insert(name);
    if (dtype == "U8") file.uint8_names.insert(name);
    file.tensors.emplace_back(name, std::move(t));
  }
  std::sort(spans.begin(), spans.end(), [](auto& a, auto& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < spans.size(); ++i)
    if (spans[i].begin < spans[i - 1].end)
      return Corruption(what + ": tensors '" + spans[i - 1].name + "' and '" + spans[i].name +
                        "' overlap");
  std::sort(file.tensors.begin(), file.tensors.end(),
            [](auto& a, auto& b) { return a.first < b.first; });
  return file;
} catch (const std::bad_alloc&) {
  return ResourceExhausted(what + ": out of memory decoding " + std::to_string(bytes.size()) +
                           " bytes");
}

Status SaveSafetensors(const std::string& path, const nn::NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata,
                       const std::set<std::string>& int64_names) {
  return WriteFileAtomic(path, EncodeSafetensors(tensors, metadata, int64_names));
}

Result<SafetensorsFile> LoadSafetensors(const std::string& path) {
  DNND_ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(path));
  return DecodeSafetensors(bytes, path);
}

}  // namespace dnnd
