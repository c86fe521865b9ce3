// PyTorch as a reference for dnnd's ops, run as a real subprocess.
//
// The inputs go to a temp safetensors file; Debian's /usr/bin/python3 (the
// only interpreter with torch, 1.13) runs
//   tests/tensor/torch_reference.py <op> <in.safetensors> <out.safetensors> <json attrs>
// which computes y = op(inputs) in float64 from the same float32 values,
// back-propagates sum(y * r) (`r`, the output's cotangent, is one of the
// inputs) and writes "y", "grad.<input>" for every input that takes a
// gradient (all but r, labels and running statistics) and, for batch_norm,
// the updated "running_mean"/"running_var". Op names and attributes: the
// script's docstring.
//
// Importing torch costs ~1 s, so RunTorchReferenceBatch sends many cases to
// one process (op "batch"): tensor names are "<case>/<name>" both ways.
//
// When /usr/bin/python3 is missing or cannot import torch (the script exits
// with 77), the result says so and callers GTEST_SKIP.
#pragma once

#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "tensor/nn.h"
#include "tensor/safetensors.h"

extern char** environ;

namespace dnnd::testing {

inline constexpr const char* kTorchPython = "/usr/bin/python3";

struct TorchCase {
  std::string name;         // unique within a batch
  std::string op;           // see torch_reference.py
  std::string attrs;        // a JSON object, e.g. {"slope": 0.2}
  nn::NamedTensors inputs;  // must include "r", shaped like the output
};

struct TorchResult {
  bool skipped = false;
  std::string skip_reason;
  // Case name ("" for a single op) -> output name -> tensor.
  std::map<std::string, std::map<std::string, Tensor>> outputs;
};

// Runs /usr/bin/python3 with `args` (a script and its arguments), stderr
// passed through; returns its exit status (77: it cannot import torch, by
// convention of our scripts), or 77 when the interpreter is missing.
inline int RunTorchScript(std::vector<std::string> args) {
  if (access(kTorchPython, X_OK) != 0) return 77;
  args.insert(args.begin(), kTorchPython);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid;
  if (int err = posix_spawn(&pid, kTorchPython, nullptr, nullptr, argv.data(), environ); err != 0)
    throw std::runtime_error("cannot start " + std::string(kTorchPython));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) throw std::runtime_error("waitpid failed");
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Expects got ~ ref elementwise: |got - ref| <= rtol * (|ref| + max|ref|),
// reporting the first 5 failures; returns the worst |got - ref| / (|ref| +
// max|ref|). `floor`: a lower bound for max|ref| (for tensors that should be
// 0 and are rounding).
inline double ExpectClose(const std::string& what, const Tensor& got, const Tensor& ref,
                          double rtol, double floor = 0) {
  EXPECT_TRUE(got.defined()) << what << ": dnnd has no value";
  if (!got.defined()) return 0;
  EXPECT_EQ(got.numel(), ref.numel()) << what << ": shapes " << ShapeToString(got.shape())
                                      << " and torch's " << ShapeToString(ref.shape());
  if (got.numel() != ref.numel()) return 0;
  double scale = 0, worst = 0;
  for (int64_t i = 0; i < ref.numel(); ++i)
    scale = std::max(scale, std::abs(double(ref.data()[i])));
  scale = std::max(scale, floor);
  int reported = 0;
  for (int64_t i = 0; i < ref.numel(); ++i) {
    const double g = got.data()[i], r = ref.data()[i];
    const double denom = std::abs(r) + scale;
    if (denom > 0) worst = std::max(worst, std::abs(g - r) / denom);
    if (!(std::abs(g - r) <= rtol * denom) && reported++ < 5)
      ADD_FAILURE() << what << "[" << i << "]: dnnd " << g << ", torch " << r;
  }
  return worst;
}

namespace torch_reference_detail {

inline std::string Quote(const std::string& s) {
  std::string out = "\"";
  for (char ch : s) {
    if (ch == '"' || ch == '\\') out += '\\';
    out += ch;
  }
  return out + "\"";
}

// Runs the script with `op` and `attrs` on `inputs`; splits output names on
// the first '/' when `batched`.
inline TorchResult Run(const std::string& op, const nn::NamedTensors& inputs,
                       const std::string& attrs, bool batched) {
  TorchResult result;
  if (access(kTorchPython, X_OK) != 0) {
    result.skipped = true;
    result.skip_reason = std::string(kTorchPython) + " is not there";
    return result;
  }
  static std::atomic<int> counter{0};
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("dnnd_torch_ref_" + std::to_string(getpid()) +
                                                    "_" + std::to_string(counter++));
  fs::create_directories(dir);
  struct Cleanup {
    fs::path dir;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } cleanup{dir};
  const std::string in = (dir / "in.safetensors").string();
  const std::string out = (dir / "out.safetensors").string();
  Status saved = SaveSafetensors(in, inputs);
  if (!saved.ok()) throw std::runtime_error("torch_reference: " + saved.ToString());

  const std::string script = std::string(DNND_SOURCE_DIR) + "/tests/tensor/torch_reference.py";
  const int status = RunTorchScript({script, op, in, out, attrs});
  if (status == 77) {
    result.skipped = true;
    result.skip_reason = std::string(kTorchPython) + " cannot import torch";
    return result;
  }
  if (status != 0)
    throw std::runtime_error("torch_reference: " + script + " " + op + " failed (status " +
                             std::to_string(status) + "; see stderr)");
  auto loaded = LoadSafetensors(out);
  if (!loaded.ok()) throw std::runtime_error("torch_reference: " + loaded.status().ToString());
  for (auto& [name, t] : loaded->tensors) {
    std::string case_name, key = name;
    if (batched) {
      const size_t slash = name.find('/');
      if (slash == std::string::npos)
        throw std::runtime_error("torch_reference: unprefixed output " + name);
      case_name = name.substr(0, slash);
      key = name.substr(slash + 1);
    }
    // Detach from the file's buffer: results outlive nothing else.
    result.outputs[case_name][key] = t.clone();
  }
  return result;
}

}  // namespace torch_reference_detail

// One op: outputs under result.outputs[""].
inline TorchResult RunTorchReference(const std::string& op, const nn::NamedTensors& inputs,
                                     const std::string& attrs = "{}") {
  return torch_reference_detail::Run(op, inputs, attrs, false);
}

// Many cases in one python process (one torch import).
inline TorchResult RunTorchReferenceBatch(const std::vector<TorchCase>& cases) {
  nn::NamedTensors inputs;
  std::string spec = "[";
  for (const TorchCase& c : cases) {
    if (c.name.empty() || c.name.find('/') != std::string::npos)
      throw std::invalid_argument("torch_reference: bad case name '" + c.name + "'");
    for (const auto& [name, t] : c.inputs) inputs.emplace_back(c.name + "/" + name, t);
    if (spec.size() > 1) spec += ",";
    spec += "{\"name\":" + torch_reference_detail::Quote(c.name) +
            ",\"op\":" + torch_reference_detail::Quote(c.op) +
            ",\"attrs\":" + (c.attrs.empty() ? "{}" : c.attrs) + "}";
  }
  spec += "]";
  return torch_reference_detail::Run("batch", inputs, spec, true);
}

}  // namespace dnnd::testing
