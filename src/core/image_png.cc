// PNG decoding for DecodeImage (core/image_codecs.h): libpng's simplified
// read API, after a cheap inflate check of the image data.
#include <png.h>
#include <zlib.h>

#include <boost/endian/conversion.hpp>
#include <memory>
#include <new>
#include <string>

#include "core/image_codecs.h"

namespace dnnd::image_internal {
namespace {

using boost::endian::load_big_u32;

// Bytes of a PNG's filtered scanlines (what its zlib stream must inflate
// to) for the IHDR's width, height, bit depth, colour type and interlace.
uint64_t PngRawBytes(uint64_t w, uint64_t h, int depth, int color, bool interlaced) {
  const int channels = color == 2 ? 3 : color == 4 ? 2 : color == 6 ? 4 : 1;
  auto rows = [&](uint64_t pw, uint64_t ph) {
    return pw == 0 || ph == 0 ? 0
                              : ph * (1 + (pw * channels * static_cast<uint64_t>(depth) + 7) / 8);
  };
  if (!interlaced) return rows(w, h);
  static const int kPass[7][4] = {{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4},
                                  {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2}};
  uint64_t total = 0;
  for (const auto& p : kPass)
    total += rows((w + p[2] - 1 - p[0]) / p[2], (h + p[3] - 1 - p[1]) / p[3]);
  return total;
}

// Inflates a PNG's IDAT data into a scratch buffer, counting, and refuses it
// as soon as it yields more than the header's image needs (a 1 MiB zlib bomb
// inflates to 1 GiB), or when zlib refuses the stream or it ends early. The
// cost is one inflate of at most the image's own size in 32 KiB pieces, and
// the error says what is wrong in the image's terms before libpng starts.
Status CheckPngInflate(std::string_view bytes) {
  const auto* b = reinterpret_cast<const uint8_t*>(bytes.data());
  const size_t n = bytes.size();
  if (n < 33 || load_big_u32(b + 12) != 0x49484452u)
    return Status::Ok();  // no IHDR first: libpng says so
  const uint64_t w = load_big_u32(b + 16), h = load_big_u32(b + 20);
  const uint64_t want = PngRawBytes(w, h, b[24], b[25], b[28] != 0);
  z_stream z{};
  if (inflateInit(&z) != Z_OK) return ResourceExhausted("cannot check the PNG: out of memory");
  std::unique_ptr<z_stream, int (*)(z_stream*)> guard(&z, inflateEnd);
  uint8_t scratch[1 << 15];
  uint64_t out = 0;
  for (size_t i = 8; i + 12 <= n;) {
    const uint64_t len = load_big_u32(b + i);
    const uint32_t type = load_big_u32(b + i + 4);
    if (len > n - i - 12) break;     // truncated chunk: libpng refuses it
    if (type == 0x49454E44u) break;  // IEND
    if (type == 0x49444154u) {       // IDAT
      z.next_in = const_cast<Bytef*>(b + i + 8);
      z.avail_in = static_cast<uInt>(len);
      while (z.avail_in > 0) {
        z.next_out = scratch;
        z.avail_out = sizeof scratch;
        const int r = inflate(&z, Z_NO_FLUSH);
        out += sizeof scratch - z.avail_out;
        if (out > want)
          return ResourceExhausted("PNG image data inflates past the " + std::to_string(want) +
                                   " bytes its " + std::to_string(w) + "x" + std::to_string(h) +
                                   " header declares");
        if (r == Z_STREAM_END) return Status::Ok();
        if (r != Z_OK)
          return InvalidArgument(std::string("cannot decode image: PNG image data is corrupt (") +
                                 (z.msg != nullptr ? z.msg : "zlib error " + std::to_string(r)) +
                                 ")");
      }
    }
    i += 12 + len;
  }
  if (z.total_in == 0) return Status::Ok();  // no image data: libpng says what is missing
  return InvalidArgument("cannot decode image: PNG image data ends before its zlib stream does");
}

}  // namespace

Result<Image> DecodePng(std::string_view bytes, int want, const ImageLimits& limits,
                        int* source_channels) {
  // The size the IHDR declares is refused before libpng reads further (it
  // reads on to the first image data, and checks the IHDR's CRC first).
  const auto* b = reinterpret_cast<const uint8_t*>(bytes.data());
  if (bytes.size() >= 24 && load_big_u32(b + 12) == 0x49484452u)
    DNND_RETURN_IF_ERROR(CheckPixels(load_big_u32(b + 16), load_big_u32(b + 20), limits));
  png_image png{};
  png.version = PNG_IMAGE_VERSION;
  // png_image_free is a no-op once libpng has freed its state itself.
  std::unique_ptr<png_image, void (*)(png_imagep)> guard(&png, png_image_free);
  if (!png_image_begin_read_from_memory(&png, bytes.data(), bytes.size()))
    return InvalidArgument(std::string("cannot decode image: PNG ") + png.message);
  const int file_channels = static_cast<int>(PNG_IMAGE_SAMPLE_CHANNELS(png.format));
  DNND_RETURN_IF_ERROR(CheckHeader(png.width, png.height, file_channels, want, limits));
  if (source_channels) *source_channels = file_channels;
  DNND_RETURN_IF_ERROR(CheckPngInflate(bytes));
  // 8-bit sRGB gray or RGB; transparency is composited onto white, as a
  // viewer shows it (a drawing on a transparent canvas is dark on light).
  png.format = want == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
  Image out{static_cast<int>(png.width), static_cast<int>(png.height), {}, want};
  try {
    out.pixels.resize(PNG_IMAGE_SIZE(png));
  } catch (const std::bad_alloc&) {
    return ResourceExhausted("out of memory holding a " + std::to_string(png.width) + "x" +
                             std::to_string(png.height) + " image");
  }
  const png_color white{255, 255, 255};
  if (!png_image_finish_read(&png, &white, out.pixels.data(), 0, nullptr))
    return InvalidArgument(std::string("cannot decode image: PNG ") + png.message);
  return out;
}

}  // namespace dnnd::image_internal
