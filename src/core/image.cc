#include "core/image.h"

#include <stb/stb_image.h>
#include <stb/stb_image_resize.h>
#include <zlib.h>

#include <algorithm>
#include <memory>
#include <new>
#include <string>

namespace dnnd {
namespace {

uint32_t Be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

Status TooManyPixels(int64_t w, int64_t h, const ImageLimits& limits) {
  return ResourceExhausted("image is " + std::to_string(w) + "x" + std::to_string(h) +
                           " pixels; the limit is " + std::to_string(limits.max_pixels) +
                           " pixels (" + limits.pixels_setting + ")");
}

// Counts the scans (SOS markers) of a JPEG by walking its marker segments
// and skipping each scan's entropy-coded data; refuses more than the limit.
// A malformed structure stops the count: stb then reports the corruption.
Status CheckJpegScans(std::string_view bytes, const ImageLimits& limits) {
  const auto* b = reinterpret_cast<const uint8_t*>(bytes.data());
  const size_t n = bytes.size();
  int64_t scans = 0;
  size_t i = 2;  // after SOI
  while (i < n && b[i] == 0xFF) {
    while (i < n && b[i] == 0xFF) ++i;  // fill bytes
    if (i >= n) break;
    const uint8_t m = b[i++];
    if (m == 0xD9) break;                                 // EOI
    if ((m >= 0xD0 && m <= 0xD7) || m == 0x01) continue;  // no length
    if (i + 2 > n) break;
    const size_t len = (size_t{b[i]} << 8) | b[i + 1];
    if (len < 2) break;
    i += len;
    if (m != 0xDA) continue;
    if (++scans > limits.max_jpeg_scans)
      return ResourceExhausted("JPEG has more than " + std::to_string(limits.max_jpeg_scans) +
                               " scans (a progressive JPEG has about 10); the limit is " +
                               limits.scans_setting);
    // Entropy-coded data runs to the next marker that is not a stuffed
    // 0xFF00 or a restart marker.
    while (i + 1 < n &&
           !(b[i] == 0xFF && b[i + 1] != 0x00 && !(b[i + 1] >= 0xD0 && b[i + 1] <= 0xD7)))
      ++i;
  }
  return Status::Ok();
}

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
// as soon as it yields more than the header's image needs: stb would inflate
// all of it into memory (a 1 MiB zlib bomb is a 1 GiB buffer). The stream
// must also be one zlib accepts, through to its end: stb 2.27 (Debian 12)
// reads zeros past the end of a cut-short stream and a corrupt one can decode
// as endless output, which it grows by doubling to 2 GiB.
Status CheckPngInflate(std::string_view bytes) {
  const auto* b = reinterpret_cast<const uint8_t*>(bytes.data());
  const size_t n = bytes.size();
  if (n < 33 || Be32(b + 12) != 0x49484452u) return Status::Ok();  // no IHDR first: stb refuses it
  const uint64_t w = Be32(b + 16), h = Be32(b + 20);
  const uint64_t want = PngRawBytes(w, h, b[24], b[25], b[28] != 0);
  z_stream z{};
  if (inflateInit(&z) != Z_OK) return ResourceExhausted("cannot check the PNG: out of memory");
  std::unique_ptr<z_stream, int (*)(z_stream*)> guard(&z, inflateEnd);
  uint8_t scratch[1 << 15];
  uint64_t out = 0;
  for (size_t i = 8; i + 12 <= n;) {
    const uint64_t len = Be32(b + i);
    const uint32_t type = Be32(b + i + 4);
    if (len > n - i - 12) break;     // truncated chunk: stb refuses it
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
  if (z.total_in == 0) return Status::Ok();  // no image data: stb says what is missing
  return InvalidArgument("cannot decode image: PNG image data ends before its zlib stream does");
}

}  // namespace

ImageFormat SniffImageFormat(std::string_view b) {
  static constexpr std::string_view kPng("\x89PNG\r\n\x1a\n", 8);
  if (b.substr(0, 8) == kPng) return ImageFormat::kPng;
  if (b.size() >= 3 && static_cast<uint8_t>(b[0]) == 0xFF && static_cast<uint8_t>(b[1]) == 0xD8 &&
      static_cast<uint8_t>(b[2]) == 0xFF)
    return ImageFormat::kJpeg;
  return ImageFormat::kUnknown;
}

Result<GrayImage> DecodeGrayImage(std::string_view bytes, const ImageLimits& limits) {
  return DecodeImage(bytes, 1, limits);
}

Result<Image> DecodeImage(std::string_view bytes, int want, const ImageLimits& limits,
                          int* source_channels) {
  if (want != 1 && want != 3)
    return InvalidArgument("images decode to 1 (grayscale) or 3 (RGB) channels, not " +
                           std::to_string(want));
  if (bytes.empty()) return InvalidArgument("cannot decode image: the body is empty");
  if (bytes.size() > static_cast<size_t>(INT32_MAX))
    return ResourceExhausted("image is larger than 2 GiB");
  const ImageFormat format = SniffImageFormat(bytes);
  if (format == ImageFormat::kUnknown)
    return Unsupported(
        "only PNG and JPEG images are accepted (recognised by their first bytes); this is neither");
  const auto* data = reinterpret_cast<const stbi_uc*>(bytes.data());
  const int len = static_cast<int>(bytes.size());
  int w = 0, h = 0, channels = 0;
  if (stbi_info_from_memory(data, len, &w, &h, &channels)) {
    if (static_cast<int64_t>(w) * h > limits.max_pixels) return TooManyPixels(w, h, limits);
    if (source_channels) *source_channels = channels;
    if (want == 3 && channels < 3)
      return InvalidArgument("the image is grayscale (" + std::to_string(w) + "x" +
                             std::to_string(h) +
                             ", one colour channel) but the model takes colour (RGB) images");
    DNND_RETURN_IF_ERROR(format == ImageFormat::kJpeg ? CheckJpegScans(bytes, limits)
                                                      : CheckPngInflate(bytes));
  } else {
    // stbi_info's reason is only "unknown image type"; loading a header it
    // cannot read fails just as early, with the format's own reason.
    std::unique_ptr<stbi_uc, void (*)(void*)> none(
        stbi_load_from_memory(data, len, &w, &h, &channels, 1), stbi_image_free);
    if (!none) return InvalidArgument(std::string("cannot decode image: ") + stbi_failure_reason());
    return InvalidArgument("cannot decode image: its header does not read");
  }
  std::unique_ptr<stbi_uc, void (*)(void*)> pixels(
      stbi_load_from_memory(data, len, &w, &h, &channels, want), stbi_image_free);
  if (!pixels) return InvalidArgument(std::string("cannot decode image: ") + stbi_failure_reason());
  Image out{w, h, {}, want};
  try {
    out.pixels.assign(pixels.get(), pixels.get() + static_cast<size_t>(w) * static_cast<size_t>(h) *
                                                       static_cast<size_t>(want));
  } catch (const std::bad_alloc&) {
    return ResourceExhausted("out of memory holding a " + std::to_string(w) + "x" +
                             std::to_string(h) + " image");
  }
  return out;
}

Image ResizeImage(const Image& image, int width, int height) {
  if (image.width == width && image.height == height) return image;
  Image out{width, height,
            std::vector<uint8_t>(static_cast<size_t>(width) * static_cast<size_t>(height) *
                                 static_cast<size_t>(image.channels)),
            image.channels};
  stbir_resize_uint8(image.pixels.data(), image.width, image.height, 0, out.pixels.data(), width,
                     height, 0, image.channels);
  return out;
}

std::vector<uint8_t> ChannelMajor(const Image& image) {
  const size_t plane = static_cast<size_t>(image.width) * static_cast<size_t>(image.height);
  const auto c = static_cast<size_t>(image.channels);
  std::vector<uint8_t> out(plane * c);
  for (size_t k = 0; k < plane; ++k)
    for (size_t j = 0; j < c; ++j) out[j * plane + k] = image.pixels[k * c + j];
  return out;
}

bool HasLightBorder(const GrayImage& image) {
  const int w = image.width, h = image.height;
  if (w == 0 || h == 0) return false;
  int64_t light = 0, total = 0;
  const auto c = static_cast<size_t>(std::max(1, image.channels));
  auto visit = [&](int x, int y) {
    total += 1;
    const size_t at =
        (static_cast<size_t>(y) * static_cast<size_t>(w) + static_cast<size_t>(x)) * c;
    int sum = 0;
    for (size_t j = 0; j < c; ++j) sum += image.pixels[at + j];
    light += sum > 127 * static_cast<int>(c);
  };
  for (int x = 0; x < w; ++x) {
    visit(x, 0);
    if (h > 1) visit(x, h - 1);
  }
  for (int y = 1; y + 1 < h; ++y) {
    visit(0, y);
    if (w > 1) visit(w - 1, y);
  }
  return 2 * light > total;
}

void Invert(GrayImage& image) {
  for (auto& p : image.pixels) p = static_cast<uint8_t>(255 - p);
}

}  // namespace dnnd
