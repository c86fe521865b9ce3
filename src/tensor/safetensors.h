// safetensors, the tensor file format PyTorch and Hugging Face read:
//   8-byte little-endian header length N, N bytes of JSON
//   {"<name>": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"key": "string value"}}
//   then the data buffer (offsets are relative to its start).
// https://github.com/huggingface/safetensors (README, "Format").
//
// Written files hold F32 tensors; readers accept F32, F16, BF16 and F64
// (converted to float32). Decoding validates everything a hostile file could
// lie about (header size, offsets, overlaps, shapes) before touching data.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/status.h"
#include "tensor/nn.h"

namespace dnnd {

struct SafetensorsFile {
  nn::NamedTensors tensors;  // in file order (sorted by name, as the writer sorts)
  std::map<std::string, std::string> metadata;
};

// Encodes tensors (sorted by name) and metadata to the file format's bytes.
std::string EncodeSafetensors(const nn::NamedTensors& tensors,
                              const std::map<std::string, std::string>& metadata);
// What one decode may hold: files come from peers and API users (a job's
// uploaded model). Checked from the header, before the data is copied.
struct SafetensorsLimits {
  uint64_t max_header_bytes = 100 << 20;
  int64_t max_tensors = 1 << 16;
  uint64_t max_decoded_bytes = uint64_t{1} << 34;  // float32 bytes of all tensors together
};

// Decodes bytes; `what` names the source in errors. F32 tensors are views of
// one 64-byte-aligned copy of the data section. Past a limit, or when memory
// runs out, ResourceExhausted (never an abort).
Result<SafetensorsFile> DecodeSafetensors(const std::string& bytes, const std::string& what,
                                          const SafetensorsLimits& limits = {});

// Writes atomically: temp file in the same directory, fsync, rename, fsync dir.
Status SaveSafetensors(const std::string& path, const nn::NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata = {});
Result<SafetensorsFile> LoadSafetensors(const std::string& path);

}  // namespace dnnd
