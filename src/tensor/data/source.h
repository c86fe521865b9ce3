// What the dataset decoders (IDX, NPY, NPZ, CSV) read from, and the limits
// they hold to.
//
// Dataset files come from users (the controller's uploads), so every decoder
// reads the declared sizes in a header first, compares them with
// DecodeLimits, and only then allocates; compressed input is decompressed as
// a stream, never into memory before the header is checked. Arrays grow as
// their bytes actually arrive (reserve, then append), so a header that lies
// about a size costs no more memory than the data that is really there.
//
//   DNND_ASSIGN_OR_RETURN(ByteSource src, ByteSource::OpenFile(path));   // gunzips when gzipped
//   DNND_RETURN_IF_ERROR(src.ReadExact(header, 16, path));
//   DNND_RETURN_IF_ERROR(limits.CheckBytes(declared, path + ": images"));
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"

namespace dnnd::data {

// Caps on one decoded array (or CSV text), named in the errors so a user
// knows which setting to raise. Defaults are the [data] section's defaults.
struct DecodeLimits {
  uint64_t max_bytes = uint64_t{1}
                       << 34;  // decoded bytes of one array, after conversion to float32
  int64_t max_members = 64;    // arrays in one .npz
  int max_rank = 32;           // dimensions of one array
  std::string bytes_setting = "data.max_decoded_bytes";
  std::string members_setting = "data.max_npz_members";

  // ResourceExhausted "<what> decodes to <n> bytes; the limit is <max> (<setting>)" when n >
  // max_bytes.
  Status CheckBytes(uint64_t n, const std::string& what) const;
};

// A byte stream: a file (gunzipped on the fly when it starts with the gzip
// magic 1f 8b), a memory buffer, or any read function (an NPZ member).
// Move-only; not thread-safe.
class ByteSource {
 public:
  // Reads up to n bytes into dst; returns how many (0 at the end) or an error.
  using ReadFn = std::function<Result<size_t>(void* dst, size_t n)>;

  static Result<ByteSource> OpenFile(const std::string& path);
  static ByteSource FromMemory(const void* data, size_t size);
  static ByteSource FromFunction(ReadFn read);

  // Up to n bytes (fewer only at the end of the stream).
  Result<size_t> Read(void* dst, size_t n);
  // Exactly n bytes; Corruption "<what>: truncated ..." when the stream ends first.
  Status ReadExact(void* dst, size_t n, const std::string& what);
  // Appends exactly n bytes to *out, growing it as data arrives (a short
  // stream costs only what it held). Corruption when the stream ends first,
  // ResourceExhausted when memory runs out.
  Status AppendExact(std::vector<uint8_t>* out, uint64_t n, const std::string& what);
  // True when no byte is left (reads at most one).
  Result<bool> AtEnd();

 private:
  explicit ByteSource(ReadFn read) : read_(std::move(read)) {}
  ReadFn read_;
};

}  // namespace dnnd::data
