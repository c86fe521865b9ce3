#include "core/image.h"

#include <stb/stb_image_resize.h>

#include <algorithm>
#include <string>

#include "core/image_codecs.h"

namespace dnnd {

namespace image_internal {

Status CheckPixels(int64_t width, int64_t height, const ImageLimits& limits) {
  // width * height could overflow: a PNG header declares up to 2^32 - 1 each.
  if (width < 0 || height < 0 || (height > 0 && width > limits.max_pixels / height))
    return ResourceExhausted("image is " + std::to_string(width) + "x" + std::to_string(height) +
                             " pixels; the limit is " + std::to_string(limits.max_pixels) +
                             " pixels (" + limits.pixels_setting + ")");
  return Status::Ok();
}

Status CheckHeader(int64_t width, int64_t height, int file_channels, int want,
                   const ImageLimits& limits) {
  DNND_RETURN_IF_ERROR(CheckPixels(width, height, limits));
  if (want == 3 && file_channels < 3)
    return InvalidArgument("the image is grayscale (" + std::to_string(width) + "x" +
                           std::to_string(height) +
                           ", one colour channel) but the model takes colour (RGB) images");
  return Status::Ok();
}

}  // namespace image_internal

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
  return format == ImageFormat::kPng
             ? image_internal::DecodePng(bytes, want, limits, source_channels)
             : image_internal::DecodeJpeg(bytes, want, limits, source_channels);
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
