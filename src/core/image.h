// Decoding PNG and JPEG images into 8-bit grayscale, resizing, and the
// light-background test that lets a black-on-white drawing be fed to a model
// trained on light-on-dark images (Fashion-MNIST, MNIST).
//
//   DNND_ASSIGN_OR_RETURN(GrayImage img, DecodeGrayImage(body, ImageLimits{}));
//   if (HasLightBorder(img)) Invert(img);
//   GrayImage small = ResizeGray(img, 28, 28);
//
// Decoding is Debian's stb (libstb-dev, linked statically from libstb.a);
// its failure reason is thread-local there, so concurrent decodes report
// their own errors.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace dnnd {

struct GrayImage {
  int width = 0, height = 0;
  std::vector<uint8_t> pixels;  // row-major, width * height, 0 = black
};

// What one decode may cost. Images come from anyone who may predict, so the
// work and memory stb spends are bounded before stb is called: the header's
// width x height, the scans of a JPEG (stb walks the whole image once per
// scan: a progressive JPEG of thousands of empty scans costs minutes of CPU),
// and the bytes a PNG's compressed data inflates to (stb inflates into a
// buffer that grows without bound). The setting names go into the errors.
struct ImageLimits {
  int64_t max_pixels = int64_t{4096} * 4096;
  int64_t max_jpeg_scans = 64;
  std::string pixels_setting = "controller.max_image_pixels";
  std::string scans_setting = "controller.max_jpeg_scans";
};

enum class ImageFormat { kUnknown, kPng, kJpeg };
// The format by its magic bytes (PNG: 89 'P' 'N' 'G' 0D 0A 1A 0A; JPEG: FF D8 FF).
ImageFormat SniffImageFormat(std::string_view bytes);

// Decodes a PNG or JPEG to grayscale (colour is converted with stb's luma
// weights; alpha is dropped). Unsupported for anything else (GIF, BMP, ...:
// only PNG and JPEG are accepted, by their magic bytes); ResourceExhausted
// naming the setting, before stb decodes anything, when the header declares
// more than max_pixels pixels, a JPEG has more than max_jpeg_scans scans, or
// a PNG's image data inflates past the size its header declares;
// InvalidArgument naming stb's reason for corrupt images.
Result<GrayImage> DecodeGrayImage(std::string_view bytes, const ImageLimits& limits);

// `image` resampled to width x height (stb_image_resize's default filters);
// a copy when the size already matches.
GrayImage ResizeGray(const GrayImage& image, int width, int height);

// True when most of the outermost ring of pixels is light (> 127): a dark
// drawing on a light background, the opposite of MNIST-style data.
bool HasLightBorder(const GrayImage& image);

// p -> 255 - p for every pixel.
void Invert(GrayImage& image);

}  // namespace dnnd
