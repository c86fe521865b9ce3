// Decoding images (PNG, JPEG, and whatever else stb_image reads: BMP, GIF,
// TGA, PNM...) into 8-bit grayscale, resizing, and the light-background test
// that lets a black-on-white drawing be fed to a model trained on
// light-on-dark images (Fashion-MNIST, MNIST).
//
//   DNND_ASSIGN_OR_RETURN(GrayImage img, DecodeGrayImage(body, 4096 * 4096));
//   if (HasLightBorder(img)) Invert(img);
//   GrayImage small = ResizeGray(img, 28, 28);
//
// Decoding is Debian's stb (libstb-dev, linked statically from libstb.a);
// its failure reason is thread-local there, so concurrent decodes report
// their own errors.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace dnnd {

struct GrayImage {
  int width = 0, height = 0;
  std::vector<uint8_t> pixels;  // row-major, width * height, 0 = black
};

// Decodes `bytes` to grayscale (colour is converted with stb's luma weights;
// alpha is dropped). InvalidArgument naming stb's reason ("cannot decode
// image: unknown image type") for bytes that are not an image or are
// corrupt; ResourceExhausted, before any pixel is allocated, when the header
// declares more than `max_pixels` pixels (a few bytes of PNG can claim 2^31).
Result<GrayImage> DecodeGrayImage(std::string_view bytes, int64_t max_pixels);

// `image` resampled to width x height (stb_image_resize's default filters);
// a copy when the size already matches.
GrayImage ResizeGray(const GrayImage& image, int width, int height);

// True when most of the outermost ring of pixels is light (> 127): a dark
// drawing on a light background, the opposite of MNIST-style data.
bool HasLightBorder(const GrayImage& image);

// p -> 255 - p for every pixel.
void Invert(GrayImage& image);

}  // namespace dnnd
