#include "transport/codec.h"

#include <zstd.h>

#include <Eigen/Core>
#include <cstring>
#include <memory>
#include <string>

namespace dnnd::wire {
namespace {

// Contexts are reused per thread: creating one costs more than compressing a
// small gradient.
struct ZstdContexts {
  std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> c{ZSTD_createCCtx(), ZSTD_freeCCtx};
  std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> d{ZSTD_createDCtx(), ZSTD_freeDCtx};
};
ZstdContexts& Contexts() {
  thread_local ZstdContexts contexts;
  return contexts;
}

template <size_t kElem>
void ShuffleFixed(const uint8_t* __restrict in, uint8_t* __restrict out, size_t n) {
  for (size_t i = 0; i < n; ++i)
    for (size_t b = 0; b < kElem; ++b) out[b * n + i] = in[i * kElem + b];
}
template <size_t kElem>
void UnshuffleFixed(const uint8_t* __restrict in, uint8_t* __restrict out, size_t n) {
  for (size_t i = 0; i < n; ++i)
    for (size_t b = 0; b < kElem; ++b) out[i * kElem + b] = in[b * n + i];
}

}  // namespace

void ShuffleBytes(const uint8_t* in, uint8_t* out, size_t n, size_t elem_size) {
  switch (elem_size) {
    case 1:
      std::memcpy(out, in, n);
      return;
    case 2:
      ShuffleFixed<2>(in, out, n);
      return;
    case 4:
      ShuffleFixed<4>(in, out, n);
      return;
    case 8:
      ShuffleFixed<8>(in, out, n);
      return;
    default:
      for (size_t i = 0; i < n; ++i)
        for (size_t b = 0; b < elem_size; ++b) out[b * n + i] = in[i * elem_size + b];
  }
}

void UnshuffleBytes(const uint8_t* in, uint8_t* out, size_t n, size_t elem_size) {
  switch (elem_size) {
    case 1:
      std::memcpy(out, in, n);
      return;
    case 2:
      UnshuffleFixed<2>(in, out, n);
      return;
    case 4:
      UnshuffleFixed<4>(in, out, n);
      return;
    case 8:
      UnshuffleFixed<8>(in, out, n);
      return;
    default:
      for (size_t i = 0; i < n; ++i)
        for (size_t b = 0; b < elem_size; ++b) out[i * elem_size + b] = in[b * n + i];
  }
}

size_t ShuffleZstdBound(size_t raw_len) { return ZSTD_compressBound(raw_len); }

Result<size_t> ShuffleZstdEncode(const uint8_t* raw, size_t raw_len, size_t elem_size,
                                 uint8_t* scratch, uint8_t* out, size_t out_capacity, int level) {
  const size_t n = raw_len / elem_size;
  ShuffleBytes(raw, scratch, n, elem_size);
  ZSTD_CCtx* cctx = Contexts().c.get();
  ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters);
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1);
  const size_t r = ZSTD_compress2(cctx, out, out_capacity, scratch, raw_len);
  if (ZSTD_isError(r))
    return Internal(std::string("zstd compression failed: ") + ZSTD_getErrorName(r));
  return r;
}

Status ShuffleZstdCheck(const uint8_t* encoded, size_t encoded_len, size_t raw_len) {
  const unsigned long long declared = ZSTD_getFrameContentSize(encoded, encoded_len);
  if (declared == ZSTD_CONTENTSIZE_ERROR) return Corruption("not a zstd frame");
  if (declared == ZSTD_CONTENTSIZE_UNKNOWN)
    return Corruption("zstd frame does not declare its content size");
  if (declared != raw_len)
    return Corruption("zstd frame declares " + std::to_string(declared) +
                      " bytes, descriptor says " + std::to_string(raw_len));
  // Exactly one frame must fill the encoded bytes: anything after it would be
  // silently ignored otherwise.
  const size_t frame_len = ZSTD_findFrameCompressedSize(encoded, encoded_len);
  if (ZSTD_isError(frame_len) || frame_len != encoded_len)
    return Corruption("zstd payload is not exactly one frame of " + std::to_string(encoded_len) +
                      " bytes");
  return Status::Ok();
}

Status ShuffleZstdDecode(const uint8_t* encoded, size_t encoded_len, size_t elem_size,
                         uint8_t* scratch, uint8_t* out, size_t raw_len) {
  DNND_RETURN_IF_ERROR(ShuffleZstdCheck(encoded, encoded_len, raw_len));
  const size_t r = ZSTD_decompressDCtx(Contexts().d.get(), scratch, raw_len, encoded, encoded_len);
  if (ZSTD_isError(r)) return Corruption(std::string("zstd: ") + ZSTD_getErrorName(r));
  if (r != raw_len)
    return Corruption("zstd frame decoded to " + std::to_string(r) + " bytes, expected " +
                      std::to_string(raw_len));
  UnshuffleBytes(scratch, out, raw_len / elem_size, elem_size);
  return Status::Ok();
}

// Eigen's conversions are the reference implementations (round-to-nearest-
// even, NaN and subnormal handling) and use F16C where the build allows.
void FloatToBF16(const float* in, uint16_t* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = Eigen::numext::bit_cast<uint16_t>(Eigen::bfloat16(in[i]));
}
void BF16ToFloat(const uint16_t* in, float* out, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    const uint32_t bits = uint32_t{in[i]} << 16;
    std::memcpy(&out[i], &bits, 4);
  }
}
void FloatToF16(const float* in, uint16_t* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = Eigen::numext::bit_cast<uint16_t>(Eigen::half(in[i]));
}
void F16ToFloat(const uint16_t* in, float* out, size_t n) {
  for (size_t i = 0; i < n; ++i)
    out[i] = static_cast<float>(Eigen::numext::bit_cast<Eigen::half>(in[i]));
}

}  // namespace dnnd::wire
