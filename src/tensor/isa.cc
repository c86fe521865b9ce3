#include "tensor/isa.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <utility>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

namespace dnnd::isa {
namespace {

CpuFeatures Detect() {
  CpuFeatures f;
#if defined(__x86_64__)
  __builtin_cpu_init();
  f.avx2 = __builtin_cpu_supports("avx2");
  f.fma = __builtin_cpu_supports("fma");
  f.avx512f = __builtin_cpu_supports("avx512f");
  f.avx512dq = __builtin_cpu_supports("avx512dq");
  f.avx512bw = __builtin_cpu_supports("avx512bw");
  f.avx512vl = __builtin_cpu_supports("avx512vl");
  // Not every compiler's __builtin_cpu_supports knows these two; read CPUID
  // leaf 7 directly. Only meaningful when the OS saves the AVX-512 state,
  // which avx512f (checked by the builtin) implies.
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (f.avx512f && __get_cpuid_count(7, 0, &a, &b, &c, &d)) {
    f.avx512_vnni = (c >> 11) & 1;
    if (__get_cpuid_count(7, 1, &a, &b, &c, &d)) f.avx512_bf16 = (a >> 5) & 1;
  }
#endif
  return f;
}

std::vector<KernelSet> DetectSets() {
  const CpuFeatures& f = Cpu();
  std::vector<KernelSet> sets;
  const bool avx2 = f.avx2 && f.fma;
  // gemm_avx512.cc is compiled for F, DQ, BW and VL together (every AVX-512
  // CPU since Skylake-SP has all four), so all four gate the set.
  if (avx2 && f.avx512f && f.avx512dq && f.avx512bw && f.avx512vl)
    sets.push_back(KernelSet::kAvx512);
  if (avx2) sets.push_back(KernelSet::kAvx2);
  sets.push_back(KernelSet::kPortable);
  return sets;
}

// Parses a set name; "auto" is the best available. False for anything else
// or for a set this CPU cannot run.
bool Resolve(const std::string& name, KernelSet* out) {
  const std::vector<KernelSet>& sets = AvailableSets();
  if (name == "auto") {
    *out = sets.front();
    return true;
  }
  for (KernelSet s : sets)
    if (name == Name(s)) {
      *out = s;
      return true;
    }
  return false;
}

// The initial set, from the environment. Runs once, possibly during static
// initialisation of some other file, so it reports on stderr directly rather
// than through the (not yet configured) logger.
KernelSet Initial() {
  const char* var = "DNND_KERNELS";
  const char* value = std::getenv(var);
  if (!value) {
    if ((value = std::getenv("DNND_CONV_ISA"))) {
      var = "DNND_CONV_ISA";
      std::fprintf(stderr,
                   "dnnd: DNND_CONV_ISA is deprecated, use DNND_KERNELS (it now sets the "
                   "kernels of GEMM as well as convolution)\n");
    }
  }
  KernelSet set = AvailableSets().front();
  if (value && !Resolve(value, &set)) {
    std::string names;
    for (const std::string& n : Available()) names += " " + n;
    std::fprintf(stderr,
                 "dnnd: %s=%s is not a kernel set this CPU can run (available: auto%s); "
                 "using %s\n",
                 var, value, names.c_str(), Name(set));
  }
  return set;
}

std::atomic<KernelSet>& CurrentSlot() {
  static std::atomic<KernelSet> current{Initial()};
  return current;
}

Precision InitialPrecision() {
  const char* value = std::getenv("DNND_PRECISION");
  if (!value || std::string(value) == "fp32") return Precision::kFloat32;
  if (std::string(value) == "bf16" && Cpu().avx512_bf16) return Precision::kBf16;
  std::fprintf(stderr,
               "dnnd: DNND_PRECISION=%s is not a precision this CPU can run (fp32%s); using "
               "fp32\n",
               value, Cpu().avx512_bf16 ? ", bf16" : "");
  return Precision::kFloat32;
}

std::atomic<Precision>& PrecisionSlot() {
  static std::atomic<Precision> current{InitialPrecision()};
  return current;
}

}  // namespace

const CpuFeatures& Cpu() {
  static const CpuFeatures features = Detect();
  return features;
}

std::string CpuFeatureList() {
  const CpuFeatures& f = Cpu();
  const std::pair<bool, const char*> named[] = {{f.avx2, "avx2"},
                                                {f.fma, "fma"},
                                                {f.avx512f, "avx512f"},
                                                {f.avx512dq, "avx512dq"},
                                                {f.avx512bw, "avx512bw"},
                                                {f.avx512vl, "avx512vl"},
                                                {f.avx512_vnni, "avx512_vnni"},
                                                {f.avx512_bf16, "avx512_bf16"}};
  std::string out;
  for (const auto& [has, name] : named) {
    if (!has) continue;
    if (!out.empty()) out += ' ';
    out += name;
  }
  return out.empty() ? "baseline" : out;
}

const char* Name(KernelSet set) {
  switch (set) {
    case KernelSet::kAvx512:
      return "avx512";
    case KernelSet::kAvx2:
      return "avx2";
    case KernelSet::kPortable:
      break;
  }
  return "portable";
}

const std::vector<KernelSet>& AvailableSets() {
  static const std::vector<KernelSet> sets = DetectSets();
  return sets;
}

std::vector<std::string> Available() {
  std::vector<std::string> names;
  for (KernelSet s : AvailableSets()) names.push_back(Name(s));
  return names;
}

KernelSet Current() { return CurrentSlot().load(std::memory_order_relaxed); }
std::string CurrentName() { return Name(Current()); }

bool Select(const std::string& name) {
  KernelSet set;
  if (!Resolve(name, &set)) return false;
  CurrentSlot().store(set, std::memory_order_relaxed);
  return true;
}

const char* Name(Precision precision) { return precision == Precision::kBf16 ? "bf16" : "fp32"; }

Precision CurrentPrecision() { return PrecisionSlot().load(std::memory_order_relaxed); }

bool SelectPrecision(const std::string& name) {
  if (name == "fp32") {
    PrecisionSlot().store(Precision::kFloat32, std::memory_order_relaxed);
    return true;
  }
  if (name != "bf16" || !Cpu().avx512_bf16) return false;
  PrecisionSlot().store(Precision::kBf16, std::memory_order_relaxed);
  return true;
}

bool Bf16Active() {
  return CurrentPrecision() == Precision::kBf16 && Current() == KernelSet::kAvx512;
}

}  // namespace dnnd::isa
