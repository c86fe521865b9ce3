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
  bool avx512_vnni = false;  // reported only; no kernel uses it yet
  bool avx512_bf16 = false;  // the opt-in bf16 convolution (Precision below)
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

// The precision of the convolutions' and linear layers' products, a second
// setting beside the kernel set. kFloat32 is the default and what every
// other kernel runs. kBf16 is opt-in (DNND_PRECISION=bf16, or
// node.precision = "bf16"): a stride-1 convolution on the avx512 set that
// takes the padded grid (3x3 "same" convolutions with at least 4 input
// channels, most of a ResNet's multiply-adds), and the GEMMs of ops::Linear
// and ops::MatMul (kernels::LayerGemm), round their operands (activations,
// weights, output gradients) to bfloat16 and multiply them with
// AVX512-BF16's vdpbf16ps, accumulating in float32: twice the multiply-adds
// per instruction, about 3 significant digits per operand. Outputs,
// gradients, BatchNorm and the optimiser stay float32. It needs a CPU with
// avx512_bf16; it is inert (float32 runs) while the kernel set is not avx512.
enum class Precision { kFloat32, kBf16 };
const char* Name(Precision precision);  // "fp32", "bf16"

// The precision selected (initially from DNND_PRECISION; an unknown value or
// bf16 on a CPU without it is reported once on stderr and fp32 used).
Precision CurrentPrecision();
// Switches to "fp32" or "bf16"; false, changing nothing, for another name or
// for bf16 on a CPU without avx512_bf16.
bool SelectPrecision(const std::string& name);
// Whether convolutions run bf16 products now: kBf16 selected and the kernel
// set is avx512.
bool Bf16Active();

}  // namespace dnnd::isa
