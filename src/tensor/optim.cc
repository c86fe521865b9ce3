#include "tensor/optim.h"

#include <cmath>
#include <map>
#include <set>

#include "tensor/kernels.h"

namespace dnnd::optim {
namespace {

// Per-parameter state slots ("momentum_buffer", or "exp_avg"/"exp_avg_sq"),
// allocated lazily on the first step that sees a gradient, as PyTorch does.
class SlottedOptimizer : public Optimizer {
 public:
  SlottedOptimizer(nn::NamedTensors params, const OptimizerOptions& o,
                   std::vector<std::string> slot_names)
      : Optimizer(std::move(params)), options_(o), slot_names_(std::move(slot_names)) {
    lr_ = o.lr;
    slots_.resize(params_.size());
  }

  void Step() override {
    ++step_;
    for (size_t i = 0; i < params_.size(); ++i) {
      Tensor& w = params_[i].second;
      Tensor g = w.grad();
      if (!g.defined()) continue;
      bool first = slots_[i].empty();
      if (first)
        for (size_t s = 0; s < slot_names_.size(); ++s)
          slots_[i].push_back(Tensor::Zeros(w.shape()));
      Update(w, g, slots_[i], first, Decays(i) ? options_.weight_decay : 0.0f);
    }
  }

  nn::NamedTensors State() const override {
    nn::NamedTensors out;
    out.emplace_back("step", Tensor::Scalar(static_cast<float>(step_)));
    for (size_t i = 0; i < params_.size(); ++i)
      for (size_t s = 0; s < slots_[i].size(); ++s)
        out.emplace_back(params_[i].first + "." + slot_names_[s], slots_[i][s]);
    return out;
  }

  Status LoadState(const nn::NamedTensors& state) override {
    std::map<std::string, Tensor> by_name(state.begin(), state.end());
    std::string problems;
    auto step = by_name.find("step");
    if (step == by_name.end() || step->second.numel() != 1) problems += " missing: step;";
    std::vector<std::vector<Tensor>> loaded(params_.size());
    for (size_t i = 0; i < params_.size(); ++i) {
      int found = 0;
      for (const auto& slot : slot_names_) {
        auto it = by_name.find(params_[i].first + "." + slot);
        if (it == by_name.end()) continue;
        ++found;
        if (it->second.shape() != params_[i].second.shape()) {
          problems += " shape mismatch: " + it->first + " is " + ShapeToString(it->second.shape()) +
                      " but the parameter is " + ShapeToString(params_[i].second.shape()) + ";";
          continue;
        }
        loaded[i].push_back(it->second.clone());
      }
      // A parameter that never had a gradient has no state: all or none.
      if (found != 0 && found != static_cast<int>(slot_names_.size()))
        problems += " incomplete state for " + params_[i].first + ";";
    }
    if (!problems.empty()) return InvalidArgument("optimizer state does not match:" + problems);
    step_ = static_cast<int64_t>(std::llround(step->second.item()));
    slots_ = std::move(loaded);
    return Status::Ok();
  }

 protected:
  virtual void Update(Tensor& w, const Tensor& g, std::vector<Tensor>& slots, bool first,
                      float weight_decay) = 0;
  OptimizerOptions options_;

 private:
  std::vector<std::string> slot_names_;
  std::vector<std::vector<Tensor>> slots_;
};

class Sgd final : public SlottedOptimizer {
 public:
  Sgd(nn::NamedTensors p, const OptimizerOptions& o)
      : SlottedOptimizer(std::move(p), o,
                         o.momentum != 0.0f ? std::vector<std::string>{"momentum_buffer"}
                                            : std::vector<std::string>{}) {}

 protected:
  void Update(Tensor& w, const Tensor& g, std::vector<Tensor>& slots, bool first,
              float weight_decay) override {
    kernels::SgdUpdate(w.numel(), w.data(), g.data(), slots.empty() ? nullptr : slots[0].data(),
                       lr_, options_.momentum, options_.dampening, weight_decay, options_.nesterov,
                       first);
  }
};

class Adam final : public SlottedOptimizer {
 public:
  Adam(nn::NamedTensors p, const OptimizerOptions& o, bool decoupled)
      : SlottedOptimizer(std::move(p), o, {"exp_avg", "exp_avg_sq"}), decoupled_(decoupled) {}

 protected:
  void Update(Tensor& w, const Tensor& g, std::vector<Tensor>& slots, bool,
              float weight_decay) override {
    kernels::AdamUpdate(w.numel(), w.data(), g.data(), slots[0].data(), slots[1].data(), lr_,
                        options_.beta1, options_.beta2, options_.eps, weight_decay, decoupled_,
                        step_);
  }

 private:
  bool decoupled_;
};

}  // namespace

void Optimizer::ZeroGrad() {
  for (auto& [name, t] : params_) t.zero_grad();
}

void Optimizer::SetNoDecay(const std::set<std::string>& names) {
  no_decay_.assign(params_.size(), false);
  for (size_t i = 0; i < params_.size(); ++i) no_decay_[i] = names.count(params_[i].first) > 0;
}

Status ValidateOptimizerOptions(const OptimizerOptions& o) {
  if (o.type != "sgd" && o.type != "adam" && o.type != "adamw")
    return InvalidArgument("unknown optimizer '" + o.type + "' (expected sgd, adam, adamw)");
  if (!(o.lr > 0.0f) || !std::isfinite(o.lr)) return InvalidArgument("lr must be > 0");
  if (o.momentum < 0.0f) return InvalidArgument("momentum must be >= 0");
  if (o.weight_decay < 0.0f) return InvalidArgument("weight_decay must be >= 0");
  if (o.nesterov && (o.momentum <= 0.0f || o.dampening != 0.0f))
    return InvalidArgument("nesterov needs momentum > 0 and dampening 0");
  if (!(o.beta1 >= 0.0f && o.beta1 < 1.0f) || !(o.beta2 >= 0.0f && o.beta2 < 1.0f))
    return InvalidArgument("betas must be in [0, 1)");
  if (!(o.eps > 0.0f)) return InvalidArgument("eps must be > 0");
  return Status::Ok();
}

Result<std::unique_ptr<Optimizer>> MakeOptimizer(const OptimizerOptions& options,
                                                 nn::NamedTensors params) {
  DNND_RETURN_IF_ERROR(ValidateOptimizerOptions(options));
  std::set<std::string> one_dimensional;
  if (!options.decay_bias_and_norm)
    for (const auto& [name, t] : params)
      if (t.ndim() <= 1) one_dimensional.insert(name);
  std::unique_ptr<Optimizer> out;
  if (options.type == "sgd")
    out.reset(new Sgd(std::move(params), options));
  else
    out.reset(new Adam(std::move(params), options, options.type == "adamw"));
  out->SetNoDecay(one_dimensional);
  return out;
}

}  // namespace dnnd::optim
