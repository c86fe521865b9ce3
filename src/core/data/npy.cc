#include "core/data/npy.h"

#include <minizip/unzip.h>
#include <minizip/zip.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>

#include "core/data/idx.h"
#include "core/files.h"

namespace dnnd::data {
namespace {

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

Result<NdArray> DecodeNpy(const uint8_t* data, size_t size, const std::string& what) {
  static const uint8_t kMagic[] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  if (size < 10 || std::memcmp(data, kMagic, 6) != 0)
    return Corruption(what + ": not an .npy file (bad magic)");
  const int major = data[6];
  size_t header_len, header_start;
  if (major == 1) {
    header_len = data[8] | (data[9] << 8);
    header_start = 10;
  } else if (major == 2 || major == 3) {
    if (size < 12) return Corruption(what + ": truncated .npy header");
    header_len = Load<uint32_t>(data + 8);
    header_start = 12;
  } else {
    return Unsupported(what + ": .npy format version " + std::to_string(major) + " (expected 1, 2 or 3)");
  }
  if (header_len > (1u << 20) || header_start + header_len > size)
    return Corruption(what + ": .npy header length " + std::to_string(header_len) + " runs past the file");
  const std::string h(reinterpret_cast<const char*>(data + header_start), header_len);
  std::string descr = DictValue(h, "descr");
  if (descr.size() < 4 || (descr.front() != '\'' && descr.front() != '"'))
    return Corruption(what + ": .npy header has no descr: " + h);
  descr = descr.substr(1, descr.size() - 2);
  if (descr[0] == '>' && descr.substr(1) != "u1" && descr.substr(1) != "i1")
    return Unsupported(what + ": big-endian dtype " + descr + " (save with '<' byte order)");
  NdArray a;
  a.dtype = (descr[0] == '<' || descr[0] == '|' || descr[0] == '=' || descr[0] == '>') ? descr.substr(1) : descr;
  if (DtypeSize(a.dtype) == 0)
    return Unsupported(what + ": dtype " + descr + " (supported: u1 i1 b1 i2 u2 i4 u4 i8 u8 f4 f8)");
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
    }
    if (j == std::string::npos || shape[j] == ')') break;
    i = j + 1;
  }
  const int64_t n = ShapeNumel(a.shape);
  const int esize = DtypeSize(a.dtype);
  if (n < 0 || n > INT64_MAX / esize) return Corruption(what + ": shape " + shape + " overflows");
  const uint64_t want = static_cast<uint64_t>(n) * esize;
  const uint64_t have = size - header_start - header_len;
  if (have < want)
    return Corruption(what + ": truncated .npy data: shape " + shape + " of " + a.dtype + " needs " +
                      std::to_string(want) + " bytes, file has " + std::to_string(have));
  const uint8_t* body = data + header_start + header_len;
  a.bytes.assign(body, body + want);
  return a;
}

std::string EncodeNpy(const NdArray& a) {
  std::string shape = "(";
  for (size_t i = 0; i < a.shape.size(); ++i) shape += std::to_string(a.shape[i]) + (a.shape.size() == 1 ? "," : (i + 1 < a.shape.size() ? ", " : ""));
  shape += ")";
  const char order = (a.dtype == "u1" || a.dtype == "i1" || a.dtype == "b1") ? '|' : '<';
  std::string h = "{'descr': '" + std::string(1, order) + a.dtype + "', 'fortran_order': False, 'shape': " + shape + ", }";
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

Result<NdArray> ReadNpyFile(const std::string& path) {
  DNND_ASSIGN_OR_RETURN(std::string bytes, ReadMaybeGzipped(path, uint64_t{1} << 34));
  return DecodeNpy(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), path);
}

Result<std::map<std::string, NdArray>> ReadNpzFile(const std::string& path, uint64_t max_member_bytes) {
  if (!std::filesystem::exists(path)) return NotFound(path + ": no such file");
  unzFile zf = unzOpen64(path.c_str());
  if (!zf) return Corruption(path + ": not a zip (.npz) archive");
  std::map<std::string, NdArray> out;
  Status status;
  for (int r = unzGoToFirstFile(zf); r == UNZ_OK; r = unzGoToNextFile(zf)) {
    unz_file_info64 info;
    char name[512];
    if (unzGetCurrentFileInfo64(zf, &info, name, sizeof name, nullptr, 0, nullptr, 0) != UNZ_OK) {
      status = Corruption(path + ": unreadable zip directory entry");
      break;
    }
    std::string member(name);
    if (info.uncompressed_size > max_member_bytes) {
      status = ResourceExhausted(path + ": member " + member + " is " + std::to_string(info.uncompressed_size) +
                                 " bytes, over the limit");
      break;
    }
    std::vector<uint8_t> bytes(info.uncompressed_size);
    if (unzOpenCurrentFile(zf) != UNZ_OK) {
      status = Corruption(path + ": cannot open member " + member);
      break;
    }
    int64_t got = 0;
    while (got < static_cast<int64_t>(bytes.size())) {
      int n = unzReadCurrentFile(zf, bytes.data() + got,
                                 static_cast<unsigned>(std::min<uint64_t>(bytes.size() - got, 1u << 30)));
      if (n <= 0) break;
      got += n;
    }
    const int crc = unzCloseCurrentFile(zf);  // reports CRC mismatches
    if (got != static_cast<int64_t>(bytes.size()) || crc != UNZ_OK) {
      status = Corruption(path + ": member " + member + " is truncated or fails its CRC");
      break;
    }
    std::string key = member.size() > 4 && member.substr(member.size() - 4) == ".npy"
                          ? member.substr(0, member.size() - 4) : member;
    auto a = DecodeNpy(bytes.data(), bytes.size(), path + ":" + member);
    if (!a) {
      status = a.status();
      break;
    }
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
    if (zipOpenNewFileInZip64(zf, (key + ".npy").c_str(), &zi, nullptr, 0, nullptr, 0, nullptr, 0, 0,
                              bytes.size() >= 0xffffffffu) != ZIP_OK ||
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
      return InvalidArgument(what + ": label " + std::to_string(x) + " of sample " + std::to_string(i) +
                             " is not an integer in [0, 65535]");
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

Result<Dataset> DatasetFromArrays(const NdArray& x, const NdArray& y, const std::string& what) {
  if (x.shape.size() < 2)
    return InvalidArgument(what + ": samples must have shape [n, ...]; got " + ShapeToString(x.shape));
  if (y.shape.size() != 1)
    return InvalidArgument(what + ": labels must have shape [n]; got " + ShapeToString(y.shape));
  if (x.shape[0] != y.shape[0])
    return InvalidArgument(what + ": " + std::to_string(x.shape[0]) + " samples but " +
                           std::to_string(y.shape[0]) + " labels");
  Dataset d;
  if (x.shape.size() == 3) d.sample_shape = {1, x.shape[1], x.shape[2]};
  else d.sample_shape.assign(x.shape.begin() + 1, x.shape.end());
  if (x.dtype == "u1") {
    d.type = SampleType::kUint8;
    d.u8 = x.bytes;
  } else {
    d.type = SampleType::kFloat32;
    d.f32 = ToFloat(x);
  }
  DNND_ASSIGN_OR_RETURN(d.labels, ToLabels(y, what));
  for (int32_t l : d.labels) d.num_classes = std::max(d.num_classes, l + 1);
  return d;
}

Result<Dataset> LoadNpyDataset(const std::string& x_path, const std::string& y_path) {
  DNND_ASSIGN_OR_RETURN(NdArray x, ReadNpyFile(x_path));
  DNND_ASSIGN_OR_RETURN(NdArray y, ReadNpyFile(y_path));
  return DatasetFromArrays(x, y, x_path + " + " + y_path);
}

Result<Dataset> LoadNpzDataset(const std::string& path, const std::string& x_key, const std::string& y_key) {
  DNND_ASSIGN_OR_RETURN(auto arrays, ReadNpzFile(path));
  auto x = arrays.find(x_key), y = arrays.find(y_key);
  if (x == arrays.end() || y == arrays.end()) {
    std::string keys;
    for (const auto& [k, v] : arrays) keys += (keys.empty() ? "" : ", ") + k;
    return InvalidArgument(path + ": needs arrays '" + x_key + "' and '" + y_key + "'; it has: " + keys);
  }
  return DatasetFromArrays(x->second, y->second, path);
}

}  // namespace dnnd::data
