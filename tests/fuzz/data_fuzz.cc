// libFuzzer target: the dataset decoders a controller runs on uploads (IDX,
// NPY, NPZ, CSV, plain or gzipped) and the safetensors reader, under small
// limits so a declared size past them must be refused, not allocated. Every
// input must come back as a value or an error, never a crash, hang or
// sanitizer report. Run with tests/fuzz/run.sh data.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "tensor/data/csv.h"
#include "tensor/data/idx.h"
#include "tensor/data/npy.h"
#include "tensor/safetensors.h"

namespace {

const dnnd::data::DecodeLimits kLimits{.max_bytes = 1 << 24, .max_members = 8};

// The readers that take a path (gzip, zip) read the input from this file.
const std::string& ScratchFile() {
  static const std::string path = "/tmp/dnnd_data_fuzz_" + std::to_string(::getpid());
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dnnd::data;
  const std::string text(reinterpret_cast<const char*>(data), size);
  (void)DecodeIdx(data, size, "fuzz.idx", kLimits);
  (void)DecodeNpy(data, size, "fuzz.npy", kLimits);
  (void)ParseCsvDataset(text, {}, "fuzz.csv", kLimits);
  (void)ParseCsvDataset(text, {.label_column = -1, .header = false}, "fuzz.csv", kLimits);
  (void)dnnd::DecodeSafetensors(text, "fuzz.safetensors",
                                {.max_tensors = 64, .max_decoded_bytes = 1 << 24});
  if (FILE* f = std::fopen(ScratchFile().c_str(), "wb")) {
    std::fwrite(data, 1, size, f);
    std::fclose(f);
    (void)ReadIdxFile(ScratchFile(), kLimits);
    (void)ReadNpyFile(ScratchFile(), kLimits);
    (void)ReadNpzFile(ScratchFile(), kLimits);
    (void)LoadCsvDataset(ScratchFile(), {}, kLimits);
  }
  return 0;
}
