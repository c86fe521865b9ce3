#include "tensor/data/npy.h"

#include <minizip/unzip.h>
#include <minizip/zip.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "core/files.h"
#include "tensor/data/idx.h"

namespace dnnd::data {
namespace {

// numpy writes headers of a few hundred bytes; anything beyond this is not one.
constexpr size_t kMaxNpyHeaderBytes = 1 << 16;

int DtypeSize(const std::string& d) {
  if (d == "u1" || d == "i1" || d == "b1") return 1;
  if (d == "i2" || d == "u2") return 2;
  if (d == "i4" || d == "u4" || d == "f4") return 4;
  if (d == "i8" || d == "u8" || d == "f8") return 8;
  return 0;
}

template <typename T>
T Load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

double ElementAt(const NdArray& a, int64_t i) {
  const uint8_t* p = a.bytes.data() + i * DtypeSize(a.dtype);
  const std::string& d = a.dtype;
  if (d == "u1" || d == "b1") return p[0];
  if (d == "i1") return static_cast<int8_t>(p[0]);
  if (d == "i2") return Load<int16_t>(p);
  if (d == "u2") return Load<uint16_t>(p);
  if (d == "i4") return Load<int32_t>(p);
  if (d == "u4") return Load<uint32_t>(p);
  if (d == "i8") return static_cast<double>(Load<int64_t>(p));
  if (d == "u8") return static_cast<double>(Load<uint64_t>(p));
  if (d == "f4") return Load<float>(p);
  return Load<double>(p);
}

// Extracts the value text of 'key' from the header dict literal.
std::string DictValue(const std::string& h, const std::string& key) {
  size_t k = h.find("'" + key + "'");
  if (k == std::string::npos) return "";
  size_t colon = h.find(':', k);
  if (colon == std::string::npos) return "";
  size_t start = h.find_first_not_of(' ', colon + 1);
  if (start == std::string::npos) return "";
  if (h[start] == '(') {
    size_t end = h.find(')', start);
    return end == std::string::npos ? "" : h.substr(start, end - start + 1);
  }
  size_t end = h.find_first_of(",}", start);
  return h.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

}  // namespace

Result<NdArray> DecodeNpy(ByteSource& src, const std::string& what, const DecodeLimits& limits,
                          uint64_t stream_bytes) {
  static const uint8_t kMagic[] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  uint8_t pre[12];
  DNND_ASSIGN_OR_RETURN(size_t got, src.Read(pre, 10));
  if (got < 10 || std::memcmp(pre, kMagic, 6) != 0)
    return Corruption(what + ": not an .npy file (bad magic)");
  const int major = pre[6];
  size_t header_len, header_start;
  if (major == 1) {
    header_len = pre[8] | (pre[9] << 8);
    header_start = 10;
  } else if (major == 2 || major == 3) {
    DNND_ASSIGN_OR_RETURN(size_t more, src.Read(pre + 10, 2));
    if (more < 2) return Corruption(what + ": truncated .npy header");
    header_len = Load<uint32_t>(pre + 8);
    header_start = 12;
  } else {
    return Unsupported(what + ": .npy format version " + std::to_string(major) +
                       " (expected 1, 2 or 3)");
  }
  if (header_len > kMaxNpyHeaderBytes || header_start + header_len > stream_bytes)
    return Corruption(what + ": .npy header length " + std::to_string(header_len) +
                      " runs past the file");
  std::string h(header_len, '\0');
  DNND_ASSIGN_OR_RETURN(size_t hgot, src.Read(h.data(), header_len));
  if (hgot < header_len)
    return Corruption(what + ": .npy header length " + std::to_string(header_len) +
                      " runs past the file");
  std::string descr = DictValue(h, "descr");
  if (descr.size() < 4 || (descr.front() != '\'' && descr.front() != '"'))
    return Corruption(what + ": .npy header has no descr: " + h);
  descr = descr.substr(1, descr.size() - 2);
  if (descr[0] == '>' && descr.substr(1) != "u1" && descr.substr(1) != "i1")
    return Unsupported(what + ": big-endian dtype " + descr + " (save with '<' byte order)");
  NdArray a;
  a.dtype = (descr[0] == '<' || descr[0] == '|' || descr[0] == '=' || descr[0] == '>')
                ? descr.substr(1)
                : descr;
  if (DtypeSize(a.dtype) == 0)
    return Unsupported(what + ": dtype " + descr +
                       " (supported: u1 i1 b1 i2 u2 i4 u4 i8 u8 f4 f8)");
  if (DictValue(h, "fortran_order").rfind("True", 0) == 0)
    return Unsupported(what + ": fortran_order=True arrays (save with np.ascontiguousarray)");
  const std::string shape = DictValue(h, "shape");
  if (shape.empty() || shape.front() != '(') return Corruption(what + ": .npy header has no shape");
  for (size_t i = 1; i < shape.size();) {
    size_t j = shape.find_first_of(",)", i);
    std::string part = shape.substr(i, j - i);
    part.erase(0, part.find_first_not_of(' '));
    if (!part.empty()) {
      char* end = nullptr;
      long long v = std::strtoll(part.c_str(), &end, 10);
      if (*end != '\0' && *end != ' ') return Corruption(what + ": bad shape " + shape);
      if (v < 0) return Corruption(what + ": negative dimension in " + shape);
      a.shape.push_back(v);
      if (static_cast<int64_t>(a.shape.size()) > limits.max_rank)
        return Corruption(what + ": shape " + shape + " has more than " +
                          std::to_string(limits.max_rank) + " dimensions");
    }
    if (j == std::string::npos || shape[j] == ')') break;
    i = j + 1;
  }
  const int64_t n = ShapeNumel(a.shape);
  const int esize = DtypeSize(a.dtype);
  if (n < 0 || n > INT64_MAX / 8) return Corruption(what + ": shape " + shape + " overflows");
  const uint64_t want = static_cast<uint64_t>(n) * esize;
  // What the array becomes in a dataset: uint8 stays, the rest turns into float32.
  const uint64_t decoded =
      a.dtype == "u1" ? want : std::max<uint64_t>(want, 4 * static_cast<uint64_t>(n));
  DNND_RETURN_IF_ERROR(limits.CheckBytes(decoded, what + ": shape " + shape + " of " + a.dtype));
  const uint64_t have = stream_bytes - header_start - header_len;
  if (have < want)
    return Corruption(what + ": truncated .npy data: shape " + shape + " of " + a.dtype +
                      " needs " + std::to_string(want) + " bytes, file has " +
                      std::to_string(have));
  DNND_RETURN_IF_ERROR(src.AppendExact(&a.bytes, want, what + ": .npy data of shape " + shape));
  return a;
}

Result<NdArray> DecodeNpy(const uint8_t* data, size_t size, const std::string& what,
                          const DecodeLimits& limits) {
  ByteSource src = ByteSource::FromMemory(data, size);
  return DecodeNpy(src, what, limits, size);
}

std::string EncodeNpy(const NdArray& a) {
  std::string shape = "(";
  for (size_t i = 0; i < a.shape.size(); ++i)
    shape += std::to_string(a.shape[i]) +
             (a.shape.size() == 1 ? "," : (i + 1 < a.shape.size() ? ", " : ""));
  shape += ")";
  const char order = (a.dtype == "u1" || a.dtype == "i1" || a.dtype == "b1") ? '|' : '<';
  std::string h = "{'descr': '" + std::string(1, order) + a.dtype +
                  "', 'fortran_order': False, 'shape': " + shape + ", }";
  // Pad so the data starts 64-byte aligned, newline-terminated (as numpy does).
  const size_t total = 10 + h.size() + 1;
  h.append((64 - total % 64) % 64, ' ');
  h += '\n';
  std::string out = "\x93NUMPY";
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(h.size() & 0xff);
  out += static_cast<char>(h.size() >> 8);
  out += h;
  out.append(reinterpret_cast<const char*>(a.bytes.data()), a.bytes.size());
  return out;
}

Result<NdArray> ReadNpyFile(const std::string& path, const DecodeLimits& limits) {
  DNND_ASSIGN_OR_RETURN(ByteSource src, ByteSource::OpenFile(path));
  // A gzipped file's length is unknown until the end: the data is read as a
  // stream under limits, and a short stream is reported then.
  return DecodeNpy(src, path, limits, UINT64_MAX);
}

Result<std::map<std::string, NdArray>> ReadNpzFile(const std::string& path,
                                                   const DecodeLimits& limits) {
  if (!std::filesystem::exists(path)) return NotFound(path + ": no such file");
  unzFile zf = unzOpen64(path.c_str());
  if (!zf) return Corruption(path + ": not a zip (.npz) archive");
  std::map<std::string, NdArray> out;
  Status status;
  int64_t members = 0;
  for (int r = unzGoToFirstFile(zf); r == UNZ_OK; r = unzGoToNextFile(zf)) {
    unz_file_info64 info;
    char name[512];
    if (unzGetCurrentFileInfo64(zf, &info, name, sizeof name, nullptr, 0, nullptr, 0) != UNZ_OK) {
      status = Corruption(path + ": unreadable zip directory entry");
      break;
    }
    const std::string member(name);
    if (++members > limits.max_members) {
      status = ResourceExhausted(path + ": more than " + std::to_string(limits.max_members) +
                                 " members (" + limits.members_setting + ")");
      break;
    }
    // The directory's declared size, checked before anything is read or
    // allocated; the member's own .npy header is checked again below.
    status = limits.CheckBytes(info.uncompressed_size, path + ": member " + member);
    if (!status.ok()) break;
    if (unzOpenCurrentFile(zf) != UNZ_OK) {
      status = Corruption(path + ": cannot open member " + member);
      break;
    }
    // The member is inflated as a stream, never past its declared size.
    uint64_t left = info.uncompressed_size;
    ByteSource src = ByteSource::FromFunction(
        [zf, &left, &path, &member](void* dst, size_t n) -> Result<size_t> {
          const unsigned k = static_cast<unsigned>(std::min<uint64_t>({n, left, 1u << 30}));
          if (k == 0) return size_t{0};
          const int got = unzReadCurrentFile(zf, dst, k);
          if (got < 0)
            return Corruption(path + ": member " + member + " is corrupt (zip error " +
                              std::to_string(got) + ")");
          left -= static_cast<uint64_t>(got);
          return static_cast<size_t>(got);
        });
    auto a = DecodeNpy(src, path + ":" + member, limits, info.uncompressed_size);
    if (a.ok() && left != 0)
      a = Corruption(path + ": member " + member + " has " + std::to_string(left) +
                     " bytes after its .npy data");
    const int crc = unzCloseCurrentFile(zf);  // reports CRC mismatches
    if (!a.ok()) {
      status = a.status();
      break;
    }
    if (crc != UNZ_OK) {
      status = Corruption(path + ": member " + member + " is truncated or fails its CRC");
      break;
    }
    std::string key = member.size() > 4 && member.substr(member.size() - 4) == ".npy"
                          ? member.substr(0, member.size() - 4)
                          : member;
    out.emplace(key, std::move(a).value());
  }
  unzClose(zf);
  if (!status.ok()) return status;
  return out;
}

Status WriteNpzFile(const std::string& path, const std::map<std::string, NdArray>& arrays) {
  const std::string tmp = TempPathFor(path);
  zipFile zf = zipOpen64(tmp.c_str(), APPEND_STATUS_CREATE);
  if (!zf) return IoError(tmp + ": cannot create");
  for (const auto& [key, a] : arrays) {
    const std::string bytes = EncodeNpy(a);
    zip_fileinfo zi{};
    if (zipOpenNewFileInZip64(zf, (key + ".npy").c_str(), &zi, nullptr, 0, nullptr, 0, nullptr, 0,
                              0, bytes.size() >= 0xffffffffu) != ZIP_OK ||
        zipWriteInFileInZip(zf, bytes.data(), static_cast<unsigned>(bytes.size())) != ZIP_OK ||
        zipCloseFileInZip(zf) != ZIP_OK) {
      zipClose(zf, nullptr);
      ::unlink(tmp.c_str());
      return IoError(tmp + ": writing member " + key + " failed");
    }
  }
  if (zipClose(zf, nullptr) != ZIP_OK) {
    ::unlink(tmp.c_str());
    return IoError(tmp + ": closing the archive failed");
  }
  return CommitTempFile(tmp, path);
}

std::vector<float> ToFloat(const NdArray& a) {
  std::vector<float> v(static_cast<size_t>(a.numel()));
  if (a.dtype == "f4") {
    std::memcpy(v.data(), a.bytes.data(), v.size() * 4);
  } else {
    for (int64_t i = 0; i < a.numel(); ++i) v[i] = static_cast<float>(ElementAt(a, i));
  }
  return v;
}

Result<std::vector<int32_t>> ToLabels(const NdArray& a, const std::string& what) {
  std::vector<int32_t> v(static_cast<size_t>(a.numel()));
  for (int64_t i = 0; i < a.numel(); ++i) {
    const double x = ElementAt(a, i);
    if (x != std::floor(x) || x < 0 || x > 65535)
      return InvalidArgument(what + ": label " + std::to_string(x) + " of sample " +
                             std::to_string(i) + " is not an integer in [0, 65535]");
    v[i] = static_cast<int32_t>(x);
  }
  return v;
}

NdArray FromFloat(const std::vector<float>& v, const Shape& shape) {
  NdArray a{"f4", shape, {}};
  a.bytes.resize(v.size() * 4);
  std::memcpy(a.bytes.data(), v.data(), a.bytes.size());
  return a;
}

NdArray FromUint8(const std::vector<uint8_t>& v, const Shape& shape) { return {"u1", shape, v}; }

NdArray FromLabels(const std::vector<int32_t>& v) {
  NdArray a{"i4", {static_cast<int64_t>(v.size())}, {}};
  a.bytes.resize(v.size() * 4);
  std::memcpy(a.bytes.data(), v.data(), a.bytes.size());
  return a;
}

Result<Dataset> DatasetFromArrays(NdArray x, const NdArray& y, const std::string& what) {
  if (x.shape.size() < 2)
    return InvalidArgument(what + ": samples must have shape [n, ...]; got " +
                           ShapeToString(x.shape));
  if (y.shape.size() != 1)
    return InvalidArgument(what + ": labels must have shape [n]; got " + ShapeToString(y.shape));
  if (x.shape[0] != y.shape[0])
    return InvalidArgument(what + ": " + std::to_string(x.shape[0]) + " samples but " +
                           std::to_string(y.shape[0]) + " labels");
  Dataset d;
  if (x.shape.size() == 3)
    d.sample_shape = {1, x.shape[1], x.shape[2]};
  else
    d.sample_shape.assign(x.shape.begin() + 1, x.shape.end());
  if (x.dtype == "u1") {
    d.type = SampleType::kUint8;
    d.u8 = std::move(x.bytes);
  } else {
    d.type = SampleType::kFloat32;
    d.f32 = ToFloat(x);
  }
  DNND_ASSIGN_OR_RETURN(d.labels, ToLabels(y, what));
  for (int32_t l : d.labels) d.num_classes = std::max(d.num_classes, l + 1);
  return d;
}

Result<Dataset> LoadNpyDataset(const std::string& x_path, const std::string& y_path,
                               const DecodeLimits& limits) {
  DNND_ASSIGN_OR_RETURN(NdArray x, ReadNpyFile(x_path, limits));
  DNND_ASSIGN_OR_RETURN(NdArray y, ReadNpyFile(y_path, limits));
  return DatasetFromArrays(std::move(x), y, x_path + " + " + y_path);
}

Result<Dataset> LoadNpzDataset(const std::string& path, const std::string& x_key,
                               const std::string& y_key, const DecodeLimits& limits) {
  DNND_ASSIGN_OR_RETURN(auto arrays, ReadNpzFile(path, limits));
  auto x = arrays.find(x_key), y = arrays.find(y_key);
  if (x == arrays.end() || y == arrays.end()) {
    std::string keys;
    for (const auto& [k, v] : arrays) keys += (keys.empty() ? "" : ", ") + k;
    return InvalidArgument(path + ": needs arrays '" + x_key + "' and '" + y_key +
                           "'; it has: " + keys);
  }
  return DatasetFromArrays(std::move(x->second), y->second, path);
}

}  // namespace dnnd::data
