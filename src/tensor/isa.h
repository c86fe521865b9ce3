// Which instruction set dnnd's own compute kernels use: one setting for all
// of them (GEMM in kernels::Gemm, convolution in conv.h).
//
// The binary's baseline is portable x86-64-v2; the AVX2 and AVX-512 kernels
// live in files compiled for their instruction set and may only be called
// once this module has seen the CPU support it. Kernel sets, best first:
//   "avx512"    AVX-512 F/DQ/BW/VL + AVX2 + FMA: dnnd's own SGEMM and conv tiles
//   "avx2"      AVX2 + FMA: dnnd's conv tiles; GEMM calls OpenBLAS
//   "portable"  baseline only: OpenBLAS for GEMM and convolution
// A machine without AVX-512 therefore runs exactly what it ran before the
// AVX-512 GEMM existed.
//
// The initial set is the best the CPU has, unless the environment variable
// DNND_KERNELS names another ("auto" = best). DNND_CONV_ISA is its deprecated
// alias. An unknown or unavailable name is reported once on stderr and the
// best set is used instead (there is no caller to return an error to).
//
// Threading: everything here is thread-safe. Select() takes effect for calls
// that start after it; it is meant for tests and benchmarks that run every
// variant, not for switching in the middle of a product.
#pragma once

#include <string>
#include <vector>

namespace dnnd::isa {

// The CPU features dnnd looks at (detected once; the OS must also save the
// wider registers, which __builtin_cpu_supports checks).
struct CpuFeatures {
  bool avx2 = false, fma = false;
  bool avx512f = false, avx512dq = false, avx512bw = false, avx512vl = false;
  bool avx512_vnni = false, avx512_bf16 = false;  // reported only; no kernel uses them yet
};
const CpuFeatures& Cpu();
// The detected features as words ("avx2 fma avx512f ..."), for `dnnd version`.
std::string CpuFeatureList();

enum class KernelSet { kPortable, kAvx2, kAvx512 };
const char* Name(KernelSet set);

// The sets this CPU can run, best first (always ends with kPortable).
const std::vector<KernelSet>& AvailableSets();
std::vector<std::string> Available();  // their names

// The set in use: an atomic load, cheap enough to call once per product.
KernelSet Current();
std::string CurrentName();

// Switches to `name` ("avx512", "avx2", "portable", or "auto" for the best).
// Returns false, changing nothing, for a name that is unknown or that this
// CPU cannot run.
bool Select(const std::string& name);

}  // namespace dnnd::isa
