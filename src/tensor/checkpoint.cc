#include "tensor/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <string_view>
#include <vector>

#include "core/files.h"
#include "core/log.h"
#include "core/sha256.h"
#include "tensor/safetensors.h"

namespace dnnd {
namespace {

namespace fs = std::filesystem;

constexpr const char* kModelFile = "model.safetensors";
constexpr const char* kOptimizerFile = "optimizer.safetensors";
constexpr std::string_view kGenerationPrefix = "gen-";
constexpr std::string_view kSafetensorsSuffix = ".safetensors";

std::string GenerationDir(const std::string& dir, int64_t n) {
  return dir + "/" + std::string(kGenerationPrefix) + std::to_string(n);
}

// The generation numbers in `dir` (directories named exactly gen-<n>), newest first.
std::vector<int64_t> Generations(const std::string& dir) {
  std::vector<int64_t> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.rfind(kGenerationPrefix, 0) != 0) continue;
    const std::string digits = name.substr(kGenerationPrefix.size());
    if (digits.empty() || digits.size() > 18 ||
        digits.find_first_not_of("0123456789") != std::string::npos)
      continue;
    std::error_code dir_ec;
    if (it->is_directory(dir_ec)) out.push_back(std::stoll(digits));
  }
  std::sort(out.rbegin(), out.rend());
  return out;
}

bool IsExtraFileName(const std::string& name) {
  return name.size() > kSafetensorsSuffix.size() &&
         name.compare(name.size() - kSafetensorsSuffix.size(), std::string::npos,
                      kSafetensorsSuffix) == 0 &&
         name.find('/') == std::string::npos && name[0] != '.' && name != kModelFile &&
         name != kOptimizerFile;
}

Result<int64_t> IntMeta(const SafetensorsFile& f, const std::string& key, const std::string& what) {
  auto it = f.metadata.find(key);
  if (it == f.metadata.end()) return Corruption(what + ": metadata has no " + key);
  try {
    return static_cast<int64_t>(std::stoll(it->second));
  } catch (const std::exception&) {
    return Corruption(what + ": metadata " + key + " is not an integer: " + it->second);
  }
}

}  // namespace

std::string StateDigest(const nn::NamedTensors& tensors) {
  std::vector<const std::pair<std::string, Tensor>*> sorted;
  for (const auto& named : tensors) sorted.push_back(&named);
  std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->first < b->first; });
  std::string bytes;
  for (const auto* named : sorted) {
    const auto& [name, t] = *named;
    bytes += name + ShapeToString(t.shape()) + '\0';
    bytes.append(reinterpret_cast<const char*>(t.data()), static_cast<size_t>(t.numel()) * 4);
  }
  return Sha256Hex(bytes);
}

Status LoadParameters(nn::Module& model, const nn::NamedTensors& tensors) {
  std::map<std::string, Tensor> given(tensors.begin(), tensors.end());
  std::string missing, mismatched;
  nn::NamedTensors params = model.NamedState();
  for (const auto& [name, p] : params) {
    auto it = given.find(name);
    if (it == given.end()) {
      missing += (missing.empty() ? "" : ", ") + name;
      continue;
    }
    if (it->second.shape() != p.shape())
      mismatched += (mismatched.empty() ? "" : "; ") + name + " has " + ShapeToString(p.shape()) +
                    " in the model but " + ShapeToString(it->second.shape()) + " in the checkpoint";
    given.erase(it);
  }
  std::string unexpected;
  for (const auto& [name, t] : given) unexpected += (unexpected.empty() ? "" : ", ") + name;
  if (!missing.empty() || !mismatched.empty() || !unexpected.empty()) {
    std::string msg = "checkpoint does not match the model:";
    if (!missing.empty()) msg += " missing: " + missing + ";";
    if (!unexpected.empty()) msg += " unexpected: " + unexpected + ";";
    if (!mismatched.empty()) msg += " shape mismatch: " + mismatched + ";";
    return InvalidArgument(msg);
  }
  std::map<std::string, Tensor> by_name(tensors.begin(), tensors.end());
  for (auto& [name, p] : params) p.CopyFrom(by_name.at(name));
  return Status::Ok();
}

namespace {

// Makes <dir>/model.safetensors the model of generation `gen` (a hard link
// where possible): readers that know only the one file keep finding a plain
// safetensors file.
Status PublishModel(const std::string& dir, const std::string& gen) {
  return LinkFileAtomic(gen + "/" + kModelFile, dir + "/" + kModelFile);
}

// Removes generations older than the newest kCheckpointGenerations; each is
// renamed to a temp name first, so a crash mid-removal leaves a leftover for
// SweepTempFiles, never a half-deleted gen-<n>.
void PruneGenerations(const std::string& dir) {
  std::vector<int64_t> gens = Generations(dir);
  for (size_t i = kCheckpointGenerations; i < gens.size(); ++i) {
    const std::string gen = GenerationDir(dir, gens[i]), doomed = TempPathFor(gen);
    std::error_code ec;
    fs::rename(gen, doomed, ec);
    if (!ec) fs::remove_all(doomed, ec);
    if (ec)
      Log(LogLevel::kWarn, "checkpoint", "cannot remove an old generation",
          {{"dir", gen}, {"error", ec.message()}});
  }
}

// Writes the files of one generation into the (new, empty) directory `at`.
// Plain synced writes: the rename of `at` itself is what makes them appear.
Status WriteGeneration(const std::string& at, const nn::Module& model,
                       const optim::Optimizer* optimizer,
                       const std::map<std::string, std::string>& meta,
                       const CheckpointFiles& files) {
  const std::map<std::string, std::string> step_only{{"dnnd.step", meta.at("dnnd.step")}};
  if (optimizer)
    DNND_RETURN_IF_ERROR(WriteFileSynced(at + "/" + kOptimizerFile,
                                         EncodeSafetensors(optimizer->State(), step_only)));
  for (const auto& [name, tensors] : files) {
    if (!IsExtraFileName(name))
      return InvalidArgument("checkpoint file name '" + name + "' is not <name>.safetensors");
    DNND_RETURN_IF_ERROR(WriteFileSynced(at + "/" + name, EncodeSafetensors(tensors, step_only)));
  }
  DNND_RETURN_IF_ERROR(
      WriteFileSynced(at + "/" + kModelFile,
                      EncodeSafetensors(model.NamedState(), meta, model.IntegerBufferNames())));
  return SyncDirectory(at);
}

// Loads one generation directory (or a directory of the older layout).
Result<TrainingState> LoadGeneration(const std::string& dir, nn::Module& model,
                                     optim::Optimizer* optimizer) {
  const std::string model_path = dir + "/" + kModelFile;
  DNND_ASSIGN_OR_RETURN(SafetensorsFile mf, LoadSafetensors(model_path));
  DNND_RETURN_IF_ERROR(LoadParameters(model, mf.tensors).WithContext(model_path));
  TrainingState state;
  DNND_ASSIGN_OR_RETURN(state.step, IntMeta(mf, "dnnd.step", model_path));
  DNND_ASSIGN_OR_RETURN(state.epoch, IntMeta(mf, "dnnd.epoch", model_path));
  DNND_ASSIGN_OR_RETURN(state.samples, IntMeta(mf, "dnnd.samples", model_path));
  if (mf.metadata.count("dnnd.train_samples")) {  // absent from checkpoints of older versions
    DNND_ASSIGN_OR_RETURN(state.train_samples, IntMeta(mf, "dnnd.train_samples", model_path));
  }
  for (const auto& [k, v] : mf.metadata)
    if (k.rfind("dnnd.", 0) != 0 && k != "format") state.extra[k] = v;
  if (optimizer) {
    const std::string opt_path = dir + "/" + kOptimizerFile;
    DNND_ASSIGN_OR_RETURN(SafetensorsFile of, LoadSafetensors(opt_path));
    DNND_ASSIGN_OR_RETURN(int64_t ostep, IntMeta(of, "dnnd.step", opt_path));
    if (ostep != state.step)
      return Corruption(dir + ": optimizer state is from step " + std::to_string(ostep) +
                        " but the model from step " + std::to_string(state.step) +
                        " (interrupted save?)");
    DNND_RETURN_IF_ERROR(optimizer->LoadState(of.tensors).WithContext(opt_path));
  }
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!IsExtraFileName(name)) continue;
    DNND_ASSIGN_OR_RETURN(SafetensorsFile f, LoadSafetensors(it->path().string()));
    state.files[name] = std::move(f.tensors);
  }
  if (ec) return IoError(dir + ": cannot list: " + ec.message());
  state.loaded_from = dir;
  return state;
}

}  // namespace

Status SaveCheckpoint(const std::string& dir, const nn::Module& model,
                      const optim::Optimizer* optimizer, const TrainingState& state,
                      const std::string& model_spec_text) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return IoError(dir + ": cannot create directory: " + ec.message());
  std::map<std::string, std::string> meta = state.extra;
  meta["format"] = "pt";
  meta["dnnd.epoch"] = std::to_string(state.epoch);
  meta["dnnd.step"] = std::to_string(state.step);
  meta["dnnd.samples"] = std::to_string(state.samples);
  if (state.train_samples > 0) meta["dnnd.train_samples"] = std::to_string(state.train_samples);
  if (!model_spec_text.empty()) meta["dnnd.model_spec"] = model_spec_text;
  // One file is already one atomic generation.
  if (!optimizer && state.files.empty())
    return SaveSafetensors(dir + "/" + kModelFile, model.NamedState(), meta,
                           model.IntegerBufferNames());

  const std::vector<int64_t> gens = Generations(dir);
  const std::string gen = GenerationDir(dir, gens.empty() ? 1 : gens.front() + 1),
                    tmp = TempPathFor(gen);
  fs::remove_all(tmp, ec);
  fs::create_directory(tmp, ec);
  if (ec) return IoError(tmp + ": cannot create directory: " + ec.message());
  Status written = WriteGeneration(tmp, model, optimizer, meta, state.files);
  if (written.ok()) {
    fs::rename(tmp, gen, ec);  // the commit point
    if (ec) written = IoError("rename " + tmp + " -> " + gen + ": " + ec.message());
  }
  if (!written.ok()) {
    fs::remove_all(tmp, ec);
    return written;
  }
  DNND_RETURN_IF_ERROR(SyncDirectory(dir));
  DNND_RETURN_IF_ERROR(PublishModel(dir, gen));
  fs::remove(dir + "/" + kOptimizerFile, ec);  // of the older layout: no longer this model's
  PruneGenerations(dir);
  return Status::Ok();
}

Result<TrainingState> LoadCheckpoint(const std::string& dir, nn::Module& model,
                                     optim::Optimizer* optimizer) {
  const std::vector<int64_t> gens = Generations(dir);
  if (gens.empty()) return LoadGeneration(dir, model, optimizer);
  std::string failures;
  for (size_t i = 0; i < gens.size(); ++i) {
    const std::string gen = GenerationDir(dir, gens[i]);
    Result<TrainingState> state = LoadGeneration(gen, model, optimizer);
    if (!state.ok()) {
      Log(LogLevel::kWarn, "checkpoint",
          "checkpoint generation does not load; trying the previous one",
          {{"generation", gen}, {"error", state.status().ToString()}});
      failures += (failures.empty() ? "" : "; ") + state.status().ToString();
      continue;
    }
    if (i > 0) {
      // Set the bad ones aside (kept for inspection), out of the way of the
      // next generations and of pruning, and show this one as the model.
      for (size_t j = 0; j < i; ++j) {
        const std::string bad = GenerationDir(dir, gens[j]);
        std::error_code ec;
        fs::remove_all(bad + ".bad", ec);
        fs::rename(bad, bad + ".bad", ec);
        Log(LogLevel::kWarn, "checkpoint",
            "resuming from an older generation; the newer one is set aside",
            {{"bad", bad}, {"renamed_to", bad + ".bad"}, {"using", gen}, {"step", state->step}});
      }
      DNND_RETURN_IF_ERROR(PublishModel(dir, gen));
    }
    return state;
  }
  return Corruption(dir + ": no checkpoint generation loads: " + failures);
}

bool HasCheckpoint(const std::string& dir) {
  std::error_code ec;
  return !Generations(dir).empty() || fs::exists(dir + "/" + kModelFile, ec);
}

}  // namespace dnnd
