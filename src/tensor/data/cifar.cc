#include "tensor/data/cifar.h"

#include <filesystem>
#include <new>
#include <system_error>

namespace dnnd::data {
namespace {

std::string Join(const std::string& dir, const std::string& name) {
  return (std::filesystem::path(dir) / name).string();
}

// "record 3 (bytes 9219..12291)": where a record sits in its file.
std::string Record(int64_t r) {
  return "record " + std::to_string(r) + " (bytes " + std::to_string(r * kCifarRecord) + ".." +
         std::to_string((r + 1) * kCifarRecord - 1) + ")";
}

bool IsGzipped(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  unsigned char m[2] = {0, 0};
  const size_t got = std::fread(m, 1, 2, f);
  std::fclose(f);
  return got == 2 && m[0] == 0x1f && m[1] == 0x8b;
}

// Appends the records of `path` to `d`.
Status AppendFile(const std::string& path, const DecodeLimits& limits, Dataset& d) {
  DNND_ASSIGN_OR_RETURN(ByteSource src, ByteSource::OpenFile(path));
  const std::string format = "CIFAR-10 records are " + std::to_string(kCifarRecord) +
                             " bytes (1 label byte, " + std::to_string(kCifarPixels) +
                             " pixel bytes)";
  if (!IsGzipped(path)) {
    // A plain file's size says up front whether it holds whole records.
    std::error_code ec;
    const uintmax_t size = std::filesystem::file_size(path, ec);
    if (!ec) {
      if (size == 0) return InvalidArgument(path + ": empty file; " + format);
      if (size % kCifarRecord != 0) {
        const auto whole = static_cast<int64_t>(size / kCifarRecord);
        return Corruption(path + ": " + std::to_string(size) + " bytes is not a multiple of " +
                          std::to_string(kCifarRecord) + ": " + Record(whole) +
                          " is cut short after " + std::to_string(size % kCifarRecord) +
                          " bytes; " + format);
      }
      DNND_RETURN_IF_ERROR(limits.CheckBytes(d.u8.size() + size / kCifarRecord * kCifarPixels,
                                             path + ": CIFAR-10 pixels"));
      try {
        d.u8.reserve(d.u8.size() + size / kCifarRecord * kCifarPixels);
        d.labels.reserve(d.labels.size() + size / kCifarRecord);
      } catch (const std::bad_alloc&) {
        return ResourceExhausted(path + ": out of memory for " + std::to_string(size) + " bytes");
      }
    }
  }
  uint8_t record[kCifarRecord];
  for (int64_t r = 0;; ++r) {
    DNND_ASSIGN_OR_RETURN(size_t got, src.Read(record, sizeof record));
    if (got == 0) {
      if (r == 0) return InvalidArgument(path + ": empty file; " + format);
      break;
    }
    if (got < sizeof record)
      return Corruption(path + ": " + Record(r) + " is cut short after " + std::to_string(got) +
                        " bytes (the file ends there; its size is not a multiple of " +
                        std::to_string(kCifarRecord) + "); " + format);
    if (record[0] > 9)
      return InvalidArgument(path + ": " + Record(r) + " has label byte " +
                             std::to_string(record[0]) + "; CIFAR-10 labels are 0..9");
    DNND_RETURN_IF_ERROR(limits.CheckBytes(d.u8.size() + kCifarPixels, path + ": CIFAR-10 pixels"));
    try {
      d.labels.push_back(record[0]);
      d.u8.insert(d.u8.end(), record + 1, record + kCifarRecord);
    } catch (const std::bad_alloc&) {
      return ResourceExhausted(path + ": out of memory at " + Record(r));
    }
  }
  return Status::Ok();
}

}  // namespace

std::vector<std::string> Cifar10TrainFiles(const std::string& dir) {
  std::vector<std::string> files;
  for (int i = 1; i <= 5; ++i)
    files.push_back(Join(dir, "data_batch_" + std::to_string(i) + ".bin"));
  return files;
}

std::vector<std::string> Cifar10TestFiles(const std::string& dir) {
  return {Join(dir, "test_batch.bin")};
}

Result<Dataset> LoadCifar10Files(const std::vector<std::string>& paths,
                                 const DecodeLimits& limits) {
  if (paths.empty()) return InvalidArgument("no CIFAR-10 files given");
  Dataset d;
  d.sample_shape = {3, 32, 32};
  d.type = SampleType::kUint8;
  d.num_classes = 10;
  for (const auto& path : paths) DNND_RETURN_IF_ERROR(AppendFile(path, limits, d));
  return d;
}

}  // namespace dnnd::data
