// libFuzzer target: config loading, the model spec inside it (parsed and
// built under a parameter limit), and the data and checkpoint decoders
// (tests/fuzz/data_fuzz.cc covers those under their limits, gzip and zip included), and
// ONNX import. Every input
// must come back as a value or an error, never a crash, hang or sanitizer report. Run with
// tests/fuzz/run.sh.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/config.h"
#include "tensor/data/idx.h"
#include "tensor/data/npy.h"
#include "tensor/model_spec.h"
#include "tensor/onnx/onnx_import.h"
#include "tensor/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto cfg = dnnd::Config::FromString(text, "fuzz.toml", {}, {});
  if (cfg.ok()) {
    (void)cfg->Dump();
    if (cfg->Section("model")) (void)dnnd::ParseModelSpecText(text, "fuzz.toml");
  }
  // Any spec that parses is built: the parameter limit, checked before each
  // layer is allocated, is what keeps a hostile one cheap.
  auto spec = dnnd::ParseModelSpecText(text, "fuzz.toml");
  if (spec.ok()) (void)dnnd::BuildModel(*spec, 1, {.max_parameters = 1 << 20});
  (void)dnnd::data::DecodeIdx(data, size, "fuzz.idx");
  (void)dnnd::data::DecodeNpy(data, size, "fuzz.npy");
  (void)dnnd::DecodeSafetensors(text, "fuzz.safetensors");
  // ONNX models (corpus: tiny.onnx), built under the same parameter limit.
  (void)dnnd::onnx::ImportOnnx(text, "fuzz.onnx", {.max_parameters = 1 << 20});
  return 0;
}
