// The two decoders behind DecodeImage (core/image.h), one per format, and
// the header check they share. Internal to core: callers use DecodeImage.
//
// Both are well-kept, fuzzed libraries linked statically from Debian's
// archives: libpng 1.6 (libpng-dev) and libjpeg-turbo (libjpeg62-turbo-dev).
// stb_image, which decoded before them, states it is not meant for untrusted
// input, and Debian 12's copy crashed (SEGV) in CI's image fuzzer.
//
// Threading: every call owns its decoder state; concurrent calls are safe.
// Errors: as DecodeImage documents; the library's own reason is named.
#pragma once

#include <cstdint>
#include <string_view>

#include "core/image.h"
#include "core/status.h"

namespace dnnd::image_internal {

// ResourceExhausted, naming the setting, past max_pixels. Defined in image.cc.
Status CheckPixels(int64_t width, int64_t height, const ImageLimits& limits);
// The decoded header against the limits and the channels asked for:
// CheckPixels, then InvalidArgument for a grayscale file asked for as RGB.
Status CheckHeader(int64_t width, int64_t height, int file_channels, int want,
                   const ImageLimits& limits);

// `bytes` starts with the format's magic; `want` is 1 or 3.
Result<Image> DecodePng(std::string_view bytes, int want, const ImageLimits& limits,
                        int* source_channels);
Result<Image> DecodeJpeg(std::string_view bytes, int want, const ImageLimits& limits,
                         int* source_channels);

}  // namespace dnnd::image_internal
