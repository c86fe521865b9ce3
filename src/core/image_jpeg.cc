// JPEG decoding for DecodeImage (core/image_codecs.h): libjpeg-turbo's
// libjpeg API, after a count of the scans.
//
// libjpeg reports errors by calling error_exit, which must not return: it
// longjmps back to the step that called libjpeg. The steps (ReadHeader,
// ReadPixels) are plain functions whose frames hold no C++ objects, so the
// jump skips no destructor; the caller allocates between them.
#include <cstdio>  // jpeglib.h needs FILE
// clang-format off
#include <jpeglib.h>
#include <jerror.h>
// clang-format on

#include <csetjmp>
#include <memory>
#include <new>
#include <string>

#include "core/image_codecs.h"

namespace dnnd::image_internal {
namespace {

// Counts the scans (SOS markers) of a JPEG by walking its marker segments
// and skipping each scan's entropy-coded data; refuses more than the limit.
// A progressive decoder walks the whole image once per scan, so a file of
// thousands of empty scans costs minutes of CPU. A malformed structure stops
// the count: libjpeg then reports the corruption.
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

struct Decoder {
  jpeg_decompress_struct info{};
  jpeg_error_mgr errors{};
  std::jmp_buf jump{};
  char message[JMSG_LENGTH_MAX] = {};
  bool ended_early = false;  // libjpeg's "premature end" warning: it pads with grey
};

Decoder* Of(j_common_ptr info) { return reinterpret_cast<Decoder*>(info->client_data); }

[[noreturn]] void ErrorExit(j_common_ptr info) {
  (*info->err->format_message)(info, Of(info)->message);
  std::longjmp(Of(info)->jump, 1);
}

// Warnings (level -1) are not printed; the one that means the data ended
// before the image did is remembered and refused: the image would be
// padded with grey where the data ran out.
void EmitMessage(j_common_ptr info, int level) {
  if (level < 0 && info->err->msg_code == JWRN_JPEG_EOF) Of(info)->ended_early = true;
}

// jpeg_create_decompress may fail too (out of memory): its jump needs a target.
bool Create(Decoder* d) {
  if (setjmp(d->jump)) return false;
  jpeg_create_decompress(&d->info);
  return true;
}

bool ReadHeader(Decoder* d, const uint8_t* data, size_t size, int want) {
  if (setjmp(d->jump)) return false;
  jpeg_mem_src(&d->info, data, static_cast<unsigned long>(size));
  jpeg_read_header(&d->info, TRUE);
  d->info.out_color_space = want == 3 ? JCS_RGB : JCS_GRAYSCALE;
  return true;
}

bool ReadPixels(Decoder* d, uint8_t* out, size_t row_bytes) {
  if (setjmp(d->jump)) return false;
  jpeg_start_decompress(&d->info);
  while (d->info.output_scanline < d->info.output_height) {
    JSAMPROW row = out + static_cast<size_t>(d->info.output_scanline) * row_bytes;
    jpeg_read_scanlines(&d->info, &row, 1);
  }
  jpeg_finish_decompress(&d->info);
  return true;
}

}  // namespace

Result<Image> DecodeJpeg(std::string_view bytes, int want, const ImageLimits& limits,
                         int* source_channels) {
  auto d = std::make_unique<Decoder>();
  d->info.err = jpeg_std_error(&d->errors);
  d->errors.error_exit = ErrorExit;
  d->errors.emit_message = EmitMessage;
  d->info.client_data = d.get();
  // Safe on a struct never created: it frees only what was allocated.
  std::unique_ptr<jpeg_decompress_struct, void (*)(j_decompress_ptr)> guard(
      &d->info, jpeg_destroy_decompress);
  if (!Create(d.get()))
    return ResourceExhausted(std::string("cannot decode image: JPEG ") + d->message);
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  if (!ReadHeader(d.get(), data, bytes.size(), want))
    return InvalidArgument(std::string("cannot decode image: JPEG ") + d->message);
  const int file_channels = d->info.num_components;
  DNND_RETURN_IF_ERROR(
      CheckHeader(d->info.image_width, d->info.image_height, file_channels, want, limits));
  if (source_channels) *source_channels = file_channels;
  DNND_RETURN_IF_ERROR(CheckJpegScans(bytes, limits));
  const int w = static_cast<int>(d->info.image_width), h = static_cast<int>(d->info.image_height);
  Image out{w, h, {}, want};
  const size_t row_bytes = static_cast<size_t>(w) * static_cast<size_t>(want);
  try {
    out.pixels.resize(row_bytes * static_cast<size_t>(h));
  } catch (const std::bad_alloc&) {
    return ResourceExhausted("out of memory holding a " + std::to_string(w) + "x" +
                             std::to_string(h) + " image");
  }
  if (!ReadPixels(d.get(), out.pixels.data(), row_bytes))
    return InvalidArgument(std::string("cannot decode image: JPEG ") + d->message);
  if (d->ended_early)
    return InvalidArgument("cannot decode image: JPEG data ends before the image does");
  return out;
}

}  // namespace dnnd::image_internal
