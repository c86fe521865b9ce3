#include "core/image.h"

#include <stb/stb_image.h>
#include <stb/stb_image_resize.h>

#include <memory>
#include <string>

namespace dnnd {

Result<GrayImage> DecodeGrayImage(std::string_view bytes, int64_t max_pixels) {
  if (bytes.empty()) return InvalidArgument("cannot decode image: the body is empty");
  if (bytes.size() > static_cast<size_t>(INT32_MAX)) return ResourceExhausted("image is larger than 2 GiB");
  const auto* data = reinterpret_cast<const stbi_uc*>(bytes.data());
  const int len = static_cast<int>(bytes.size());
  int w = 0, h = 0, channels = 0;
  const bool sized = stbi_info_from_memory(data, len, &w, &h, &channels);
  if (sized && static_cast<int64_t>(w) * h > max_pixels)
    return ResourceExhausted("image is " + std::to_string(w) + "x" + std::to_string(h) + " pixels; the limit is " +
                             std::to_string(max_pixels) + " pixels");
  // When the header cannot be read, stbi_info's reason is only "unknown
  // image type" (it tries every format in turn); loading gives the format's
  // own reason ("first not IHDR", "bad huffman code") and fails just as early.
  std::unique_ptr<stbi_uc, void (*)(void*)> pixels(stbi_load_from_memory(data, len, &w, &h, &channels, 1),
                                                   stbi_image_free);
  if (!pixels) return InvalidArgument(std::string("cannot decode image: ") + stbi_failure_reason());
  if (!sized && static_cast<int64_t>(w) * h > max_pixels)
    return ResourceExhausted("image is " + std::to_string(w) + "x" + std::to_string(h) + " pixels; the limit is " +
                             std::to_string(max_pixels) + " pixels");
  GrayImage out{w, h, {}};
  out.pixels.assign(pixels.get(), pixels.get() + static_cast<size_t>(w) * static_cast<size_t>(h));
  return out;
}

GrayImage ResizeGray(const GrayImage& image, int width, int height) {
  if (image.width == width && image.height == height) return image;
  GrayImage out{width, height, std::vector<uint8_t>(static_cast<size_t>(width) * static_cast<size_t>(height))};
  stbir_resize_uint8(image.pixels.data(), image.width, image.height, 0, out.pixels.data(), width, height, 0, 1);
  return out;
}

bool HasLightBorder(const GrayImage& image) {
  const int w = image.width, h = image.height;
  if (w == 0 || h == 0) return false;
  int64_t light = 0, total = 0;
  auto visit = [&](int x, int y) {
    total += 1;
    light += image.pixels[static_cast<size_t>(y) * static_cast<size_t>(w) + static_cast<size_t>(x)] > 127;
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
