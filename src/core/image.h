// Decoding PNG and JPEG images into 8-bit grayscale or RGB, resizing, and the
// light-background test that lets a black-on-white drawing be fed to a model
// trained on light-on-dark images (Fashion-MNIST, MNIST).
//
//   DNND_ASSIGN_OR_RETURN(GrayImage img, DecodeGrayImage(body, ImageLimits{}));
//   if (HasLightBorder(img)) Invert(img);
//   GrayImage small = ResizeGray(img, 28, 28);
//
// Decoding is libpng and libjpeg-turbo (core/image_codecs.h says why not
// stb), linked statically; resizing is stb_image_resize, on pixels already
// decoded. Every call owns its decoder state: concurrent decodes are safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace dnnd {

// An 8-bit image: grayscale (channels 1) or RGB (channels 3).
struct Image {
  int width = 0, height = 0;
  // Row-major, width * height * channels, channels interleaved (RGBRGB...); 0 = black.
  std::vector<uint8_t> pixels;
  int channels = 1;
};
using GrayImage = Image;

// What one decode may cost. Images come from anyone who may predict, so the
// work and memory a decode spends are bounded before its pixels are decoded:
// the header's width x height, the scans of a JPEG (a progressive decoder
// walks the whole image once per scan: thousands of empty scans cost minutes
// of CPU), and the bytes a PNG's compressed data inflates to (a zlib bomb).
// The setting names go into the errors.
struct ImageLimits {
  int64_t max_pixels = int64_t{4096} * 4096;
  int64_t max_jpeg_scans = 64;
  std::string pixels_setting = "controller.max_image_pixels";
  std::string scans_setting = "controller.max_jpeg_scans";
};

enum class ImageFormat { kUnknown, kPng, kJpeg };
// The format by its magic bytes (PNG: 89 'P' 'N' 'G' 0D 0A 1A 0A; JPEG: FF D8 FF).
ImageFormat SniffImageFormat(std::string_view bytes);

// Decodes a PNG or JPEG to 8-bit grayscale (a colour JPEG gives its luma
// channel, a colour PNG libpng's sRGB luma; transparency in a PNG is
// composited onto white, as a viewer shows it). Unsupported for anything
// else (GIF, BMP, ...: only PNG and JPEG are accepted, by their magic bytes);
// ResourceExhausted naming the setting, before any pixel is decoded, when the
// header declares more than max_pixels pixels, a JPEG has more than
// max_jpeg_scans scans, or a PNG's image data inflates past the size its
// header declares; InvalidArgument naming the decoder's reason for corrupt
// or cut-short images (and for CMYK JPEGs, which it does not convert).
Result<GrayImage> DecodeGrayImage(std::string_view bytes, const ImageLimits& limits);

// Decodes a PNG or JPEG to `channels` (1: grayscale as DecodeGrayImage; 3:
// RGB, transparency composited onto white), under the same limits and with the same errors. A
// grayscale image (one colour channel in the file, with or without alpha)
// asked for as RGB is InvalidArgument, not silently replicated: a model of
// colour images takes colour images. `source_channels`, when given, receives
// the file's channel count (1-4: gray, gray+alpha, RGB, RGBA; a JPEG's
// components, 4 for CMYK).
Result<Image> DecodeImage(std::string_view bytes, int channels, const ImageLimits& limits,
                          int* source_channels = nullptr);

// `image` resampled to width x height (stb_image_resize's default filters),
// each channel alike; a copy when the size already matches.
Image ResizeImage(const Image& image, int width, int height);
inline GrayImage ResizeGray(const GrayImage& image, int width, int height) {
  return ResizeImage(image, width, height);
}

// The pixels channel-major ([channels, height, width], as models take them)
// rather than interleaved.
std::vector<uint8_t> ChannelMajor(const Image& image);

// True when most of the outermost ring of pixels is light (> 127, the mean of
// the channels): a dark drawing on a light background, the opposite of
// MNIST-style data.
bool HasLightBorder(const GrayImage& image);

// p -> 255 - p for every pixel.
void Invert(GrayImage& image);

}  // namespace dnnd
