// Crafted files that attack the decoders (issue 15, finding 5), generated in
// the tests rather than stored: a gzip bomb, IDX and NPY headers that declare
// more than they hold, an NPZ whose directory claims a 12 GiB member, a
// progressive JPEG of thousands of empty scans, a PNG whose IDAT is a zlib
// bomb. Shared by tests/core (the decoders) and tests/roles (the controller).
#pragma once

#include <sys/resource.h>
#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace dnnd::testing {

// This process's peak RSS in MiB (what the in-process decoder tests bound).
// Under AddressSanitizer or ThreadSanitizer (tests/sanitize/run.sh) the
// figure is their shadow memory and quarantine, not ours: it reads 0 there,
// and the bounds are held by the normal build.
inline long PeakRssMib() {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  return 0;
#endif
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss / 1024;
}

inline void PutBe32(std::string& s, uint32_t v) {
  for (int k = 24; k >= 0; k -= 8) s += static_cast<char>((v >> k) & 0xff);
}
inline void PutLe(std::string& s, uint64_t v, int bytes) {
  for (int k = 0; k < bytes; ++k) s += static_cast<char>((v >> (8 * k)) & 0xff);
}

// zlib (gzip = true: gzip) compression of `prefix` followed by `zeros` zero
// bytes, streamed: the zeros are never in memory at once.
inline std::string Deflate(const std::string& prefix, uint64_t zeros, bool gzip) {
  z_stream z{};
  deflateInit2(&z, 9, Z_DEFLATED, gzip ? 31 : 15, 9, Z_DEFAULT_STRATEGY);
  std::string out;
  std::vector<unsigned char> buf(1 << 16);
  const std::vector<unsigned char> zero(1 << 20, 0);
  auto pump = [&](const unsigned char* p, size_t n, int flush) {
    z.next_in = const_cast<unsigned char*>(p);
    z.avail_in = static_cast<uInt>(n);
    do {
      z.next_out = buf.data();
      z.avail_out = static_cast<uInt>(buf.size());
      deflate(&z, flush);
      out.append(reinterpret_cast<char*>(buf.data()), buf.size() - z.avail_out);
    } while (z.avail_out == 0 || (flush == Z_FINISH && z.avail_in > 0));
  };
  pump(reinterpret_cast<const unsigned char*>(prefix.data()), prefix.size(), Z_NO_FLUSH);
  for (uint64_t left = zeros; left > 0;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(left, zero.size()));
    pump(zero.data(), n, Z_NO_FLUSH);
    left -= n;
  }
  pump(nullptr, 0, Z_FINISH);
  deflateEnd(&z);
  return out;
}

// An IDX header of `dtype` and `dims` (the data follows).
inline std::string IdxHeader(uint8_t dtype, const std::vector<uint32_t>& dims) {
  std::string s = {0, 0, static_cast<char>(dtype), static_cast<char>(dims.size())};
  for (uint32_t d : dims) PutBe32(s, d);
  return s;
}

// A gzipped IDX of uint8 `dims` whose data is all zeros: a few hundred KB
// for hundreds of MB decoded.
inline std::string GzipIdxBomb(const std::vector<uint32_t>& dims) {
  uint64_t n = 1;
  for (uint32_t d : dims) n *= d;
  return Deflate(IdxHeader(0x08, dims), n, true);
}

// An .npy (version 1) header for `descr` and `shape` text like "(10, 3)".
inline std::string NpyHeader(const std::string& descr, const std::string& shape) {
  std::string h = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  h.append((64 - (10 + h.size() + 1) % 64) % 64, ' ');
  h += '\n';
  std::string s("\x93NUMPY\x01\x00", 8);
  PutLe(s, h.size(), 2);
  return s + h;
}

// A gzipped .npy of float32 zeros, `n` of them.
inline std::string GzipNpyBomb(uint64_t n) {
  return Deflate(NpyHeader("<f4", "(" + std::to_string(n) + ",)"), 4 * n, true);
}

// A zip (.npz) with one stored member `name` holding `member`, whose
// central directory claims `claimed` uncompressed bytes (zip64 extra field).
inline std::string NpzClaiming(const std::string& name, const std::string& member,
                               uint64_t claimed) {
  const uint32_t crc = static_cast<uint32_t>(
      crc32(0, reinterpret_cast<const Bytef*>(member.data()), static_cast<uInt>(member.size())));
  std::string z;
  PutLe(z, 0x04034b50, 4);  // local file header
  PutLe(z, 45, 2);
  PutLe(z, 0, 2);  // flags
  PutLe(z, 0, 2);  // stored
  PutLe(z, 0, 4);  // time, date
  PutLe(z, crc, 4);
  PutLe(z, member.size(), 4);
  PutLe(z, member.size(), 4);
  PutLe(z, name.size(), 2);
  PutLe(z, 0, 2);
  z += name + member;
  const size_t cd = z.size();
  PutLe(z, 0x02014b50, 4);  // central directory entry
  PutLe(z, 45, 2);
  PutLe(z, 45, 2);
  PutLe(z, 0, 2);
  PutLe(z, 0, 2);
  PutLe(z, 0, 4);
  PutLe(z, crc, 4);
  PutLe(z, member.size(), 4);  // compressed
  PutLe(z, 0xFFFFFFFFu, 4);    // uncompressed: see the zip64 extra field
  PutLe(z, name.size(), 2);
  PutLe(z, 12, 2);  // extra length
  PutLe(z, 0, 2);   // comment
  PutLe(z, 0, 2);   // disk
  PutLe(z, 0, 2);   // internal attributes
  PutLe(z, 0, 4);   // external attributes
  PutLe(z, 0, 4);   // local header offset
  z += name;
  PutLe(z, 0x0001, 2);
  PutLe(z, 8, 2);
  PutLe(z, claimed, 8);
  const size_t cd_size = z.size() - cd;
  PutLe(z, 0x06054b50, 4);  // end of central directory
  PutLe(z, 0, 4);
  PutLe(z, 1, 2);
  PutLe(z, 1, 2);
  PutLe(z, cd_size, 4);
  PutLe(z, cd, 4);
  PutLe(z, 0, 2);
  return z;
}

// A grayscale progressive JPEG of w x h pixels with `scans` DC scans that
// hold no data: stb walks every block of the image once per scan.
inline std::string ProgressiveJpegOfEmptyScans(int w, int h, int scans) {
  std::string s("\xFF\xD8", 2);
  s += std::string("\xFF\xDB\x00\x43\x00", 5) + std::string(64, '\x01');  // DQT: all ones
  s += std::string("\xFF\xC2\x00\x0B\x08", 5);                            // SOF2, 8 bits
  s += static_cast<char>(h >> 8);
  s += static_cast<char>(h & 0xff);
  s += static_cast<char>(w >> 8);
  s += static_cast<char>(w & 0xff);
  s += std::string("\x01\x01\x11\x00", 4);  // 1 component, 1x1, table 0
  s += std::string("\xFF\xC4\x00\x14\x00", 5) + '\x01' + std::string(15, '\0') +
       '\0';  // DHT: one code, symbol 0
  for (int i = 0; i < scans; ++i)
    s += std::string("\xFF\xDA\x00\x08\x01\x01\x00\x00\x00\x00", 10);  // SOS, DC
  s += std::string("\xFF\xD9", 2);
  return s;
}

// A PNG chunk with its CRC.
inline std::string PngChunk(const char* type, const std::string& data) {
  std::string c;
  PutBe32(c, static_cast<uint32_t>(data.size()));
  std::string body = std::string(type, 4) + data;
  c += body;
  PutBe32(c, static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(body.data()),
                                         static_cast<uInt>(body.size()))));
  return c;
}

// An 8-bit grayscale w x h PNG whose IDAT inflates to `inflated` bytes of
// zeros (a zlib bomb when that is far more than h * (w + 1)).
inline std::string PngZlibBomb(uint32_t w, uint32_t h, uint64_t inflated) {
  std::string ihdr;
  PutBe32(ihdr, w);
  PutBe32(ihdr, h);
  ihdr += std::string("\x08\x00\x00\x00\x00", 5);
  return std::string("\x89PNG\r\n\x1a\n", 8) + PngChunk("IHDR", ihdr) +
         PngChunk("IDAT", Deflate("", inflated, false)) + PngChunk("IEND", "");
}

}  // namespace dnnd::testing
