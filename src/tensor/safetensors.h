// safetensors, the tensor file format PyTorch and Hugging Face read:
//   8-byte little-endian header length N, N bytes of JSON
//   {"<name>": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"key": "string value"}}
//   then the data buffer (offsets are relative to its start).
// https://github.com/huggingface/safetensors (README, "Format").
//
// Written files hold F32 tensors, and I64 for the names a writer lists
// (PyTorch's integer buffers, num_batches_tracked); readers accept F32, F16,
// BF16, F64, I64, I32 and U8 (converted to float32; SafetensorsFile::int64_names
// remembers which were I64/I32, uint8_names which were U8: raw pixels). Decoding validates
// everything a hostile file could lie about (header size, offsets, overlaps, shapes) before
// touching data.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "core/status.h"
#include "tensor/nn.h"

namespace dnnd {

struct SafetensorsFile {
  nn::NamedTensors tensors;  // in file order (sorted by name, as the writer sorts)
  std::map<std::string, std::string> metadata;
  std::set<std::string> int64_names;  // tensors stored as I64 or I32
  std::set<std::string> uint8_names;  // tensors stored as U8
};

// Encodes tensors (sorted by name) and metadata to the file format's bytes.
// Tensors named in `int64_names` are written as I64 (values rounded).
std::string EncodeSafetensors(const nn::NamedTensors& tensors,
                              const std::map<std::string, std::string>& metadata,
                              const std::set<std::string>& int64_names = {});
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
                       const std::map<std::string, std::string>& metadata = {},
                       const std::set<std::string>& int64_names = {});
Result<SafetensorsFile> LoadSafetensors(const std::string& path);

}  // namespace dnnd
