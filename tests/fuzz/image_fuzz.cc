// libFuzzer target: image decoding for predictions (core/image.h): the magic
// check, the header's dimensions, the JPEG scan count, the PNG inflate bound,
// then stb's decode, resize and the border test. Small limits keep each input
// cheap; every input must come back as an image or an error, never a crash,
// hang or sanitizer report. Run with tests/fuzz/run.sh image.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto image = dnnd::DecodeGrayImage(bytes, {.max_pixels = 1 << 20, .max_jpeg_scans = 16});
  if (image.ok()) {
    if (dnnd::HasLightBorder(*image)) dnnd::Invert(*image);
    (void)dnnd::ResizeGray(*image, 28, 28);
  }
  return 0;
}
