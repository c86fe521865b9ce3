#include "tensor/checkpoint.h"

#include <filesystem>

#include "tensor/safetensors.h"

namespace dnnd {
namespace {

constexpr const char* kModelFile = "model.safetensors";
constexpr const char* kOptimizerFile = "optimizer.safetensors";

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

Status LoadParameters(nn::Module& model, const nn::NamedTensors& tensors) {
  std::map<std::string, Tensor> given(tensors.begin(), tensors.end());
  std::string missing, mismatched;
  nn::NamedTensors params = model.NamedParameters();
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

Status SaveCheckpoint(const std::string& dir, const nn::Module& model,
                      const optim::Optimizer* optimizer, const TrainingState& state,
                      const std::string& model_spec_text) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return IoError(dir + ": cannot create directory: " + ec.message());
  std::map<std::string, std::string> meta = state.extra;
  meta["format"] = "pt";
  meta["dnnd.epoch"] = std::to_string(state.epoch);
  meta["dnnd.step"] = std::to_string(state.step);
  meta["dnnd.samples"] = std::to_string(state.samples);
  if (state.train_samples > 0) meta["dnnd.train_samples"] = std::to_string(state.train_samples);
  if (optimizer) {
    std::map<std::string, std::string> ometa{{"dnnd.step", meta["dnnd.step"]}};
    DNND_RETURN_IF_ERROR(SaveSafetensors(dir + "/" + kOptimizerFile, optimizer->State(), ometa));
  }
  if (!model_spec_text.empty()) meta["dnnd.model_spec"] = model_spec_text;
  return SaveSafetensors(dir + "/" + kModelFile, model.NamedParameters(), meta);
}

Result<TrainingState> LoadCheckpoint(const std::string& dir, nn::Module& model,
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
  return state;
}

}  // namespace dnnd
