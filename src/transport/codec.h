// Per-tensor payload codecs of the wire protocol (docs/wire.md, "Tensor
// descriptor"): byte-shuffle + zstd for anything, and bf16 / f16 down-casts
// for float32 gradients. Pure functions over caller-provided buffers, so the
// frame code decides where every byte lives.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/status.h"

namespace dnnd::wire {

// Groups byte k of every element together (blosc's "shuffle"): float32
// exponents and high mantissa bytes sit next to each other and compress far
// better than interleaved. `out` holds n * elem_size bytes.
void ShuffleBytes(const uint8_t* in, uint8_t* out, size_t n, size_t elem_size);
void UnshuffleBytes(const uint8_t* in, uint8_t* out, size_t n, size_t elem_size);

// Upper bound of ShuffleZstdEncode's output for `raw_len` input bytes.
size_t ShuffleZstdBound(size_t raw_len);
// Shuffles then compresses `raw_len` bytes; returns the compressed length.
// `scratch` holds raw_len bytes. The zstd frame records its content size.
Result<size_t> ShuffleZstdEncode(const uint8_t* raw, size_t raw_len, size_t elem_size,
                                 uint8_t* scratch, uint8_t* out, size_t out_capacity, int level);
// Checks, without decompressing or allocating, that `encoded` is exactly one
// zstd frame whose declared content size is `raw_len` (a receiver calls it
// before allocating the output, so a bomb costs nothing).
Status ShuffleZstdCheck(const uint8_t* encoded, size_t encoded_len, size_t raw_len);
// Inverse of ShuffleZstdEncode. Runs ShuffleZstdCheck first, and never writes
// past `raw_len`. `scratch` holds raw_len bytes.
Status ShuffleZstdDecode(const uint8_t* encoded, size_t encoded_len, size_t elem_size,
                         uint8_t* scratch, uint8_t* out, size_t raw_len);

// float32 <-> bfloat16 / IEEE binary16, round-to-nearest-even; NaN stays NaN,
// f16 overflow becomes +-inf.
void FloatToBF16(const float* in, uint16_t* out, size_t n);
void BF16ToFloat(const uint16_t* in, float* out, size_t n);
void FloatToF16(const float* in, uint16_t* out, size_t n);
void F16ToFloat(const uint16_t* in, float* out, size_t n);

}  // namespace dnnd::wire
