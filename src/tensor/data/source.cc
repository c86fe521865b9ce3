#include "tensor/data/source.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>

namespace dnnd::data {

Status DecodeLimits::CheckBytes(uint64_t n, const std::string& what) const {
  if (n <= max_bytes) return Status::Ok();
  return ResourceExhausted(what + " decodes to " + std::to_string(n) + " bytes; the limit is " +
                           std::to_string(max_bytes) + " (" + bytes_setting + ")");
}

Result<ByteSource> ByteSource::OpenFile(const std::string& path) {
  // gzopen reads a file without the gzip magic as it is ("transparent"
  // mode), so one reader serves plain and gzipped files alike.
  std::unique_ptr<FILE, int (*)(FILE*)> probe(std::fopen(path.c_str(), "rb"), std::fclose);
  if (!probe) return NotFound(path + ": " + std::strerror(errno));
  probe.reset();
  gzFile raw = gzopen(path.c_str(), "rb");
  if (!raw) return IoError(path + ": cannot open");
  gzbuffer(raw, 1 << 17);
  auto gz = std::shared_ptr<gzFile_s>(raw, [](gzFile f) { gzclose(f); });
  return ByteSource([gz, path](void* dst, size_t n) -> Result<size_t> {
    const int r = gzread(gz.get(), dst, static_cast<unsigned>(std::min<size_t>(n, 1u << 30)));
    int errnum = 0;
    const char* msg = gzerror(gz.get(), &errnum);
    // gzread returns short at a truncated stream's end too; gzerror says so.
    if (r < 0 || (errnum != Z_OK && errnum != Z_BUF_ERROR))
      return Corruption(path + ": corrupt gzip data (" + msg + ")");
    if (r == 0 && errnum == Z_BUF_ERROR) return Corruption(path + ": truncated gzip stream");
    return static_cast<size_t>(r);
  });
}

ByteSource ByteSource::FromMemory(const void* data, size_t size) {
  auto p = static_cast<const uint8_t*>(data);
  auto left = std::make_shared<size_t>(size);
  return ByteSource([p, size, left](void* dst, size_t n) -> Result<size_t> {
    const size_t k = std::min(n, *left);
    if (k) std::memcpy(dst, p + (size - *left), k);
    *left -= k;
    return k;
  });
}

ByteSource ByteSource::FromFunction(ReadFn read) { return ByteSource(std::move(read)); }

Result<size_t> ByteSource::Read(void* dst, size_t n) {
  size_t got = 0;
  while (got < n) {
    DNND_ASSIGN_OR_RETURN(size_t k, read_(static_cast<uint8_t*>(dst) + got, n - got));
    if (k == 0) break;
    got += k;
  }
  return got;
}

Status ByteSource::ReadExact(void* dst, size_t n, const std::string& what) {
  DNND_ASSIGN_OR_RETURN(size_t got, Read(dst, n));
  if (got != n)
    return Corruption(what + ": truncated: needs " + std::to_string(n) +
                      " more bytes, the stream has " + std::to_string(got));
  return Status::Ok();
}

Status ByteSource::AppendExact(std::vector<uint8_t>* out, uint64_t n, const std::string& what) {
  constexpr uint64_t kChunk = 1 << 20;
  try {
    // Reserved address space costs no memory until written.
    out->reserve(out->size() + static_cast<size_t>(n));
    for (uint64_t done = 0; done < n;) {
      const size_t step = static_cast<size_t>(std::min(kChunk, n - done));
      const size_t at = out->size();
      out->resize(at + step);
      DNND_ASSIGN_OR_RETURN(size_t got, Read(out->data() + at, step));
      if (got != step)
        return Corruption(what + ": truncated: needs " + std::to_string(n) +
                          " bytes, the stream has " + std::to_string(done + got));
      done += step;
    }
  } catch (const std::bad_alloc&) {
    return ResourceExhausted(what + ": out of memory reading " + std::to_string(n) + " bytes");
  } catch (const std::length_error&) {
    return ResourceExhausted(what + ": " + std::to_string(n) + " bytes cannot be held in memory");
  }
  return Status::Ok();
}

Result<bool> ByteSource::AtEnd() {
  uint8_t b;
  DNND_ASSIGN_OR_RETURN(size_t got, Read(&b, 1));
  return got == 0;
}

}  // namespace dnnd::data
