// Optimisers over named parameters, PyTorch semantics. Parameters are tensors
// whose .grad() a backward pass filled; Step() updates them in place.
//
//   optim::Adam opt(model->NamedParameters(), {.lr = 1e-3});
//   loss.backward();
//   opt.Step();
//   opt.ZeroGrad();
//
// State (step count, momentum buffers, moments) is exposed as named tensors so
// a checkpoint can store it and a resumed run continues exactly: names are
// "<param>.<slot>" (e.g. "0.weight.exp_avg") plus "step".
#pragma once

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/status.h"
#include "tensor/nn.h"

namespace dnnd::optim {

struct OptimizerOptions {
  std::string type = "adam";  // "sgd", "adam", "adamw"
  float lr = 1e-3f;
  float momentum = 0.0f;      // sgd
  float dampening = 0.0f;     // sgd
  bool nesterov = false;      // sgd
  float weight_decay = 0.0f;  // sgd/adam: L2 in the gradient; adamw: decoupled
  // false: no weight decay on one-dimensional parameters (biases, BatchNorm's
  // and LayerNorm's weight and bias), the usual recipe for normalised nets.
  bool decay_bias_and_norm = true;
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;  // adam/adamw
};
// Checks ranges and combinations (nesterov needs momentum > 0 and no dampening).
Status ValidateOptimizerOptions(const OptimizerOptions& o);

class Optimizer {
 public:
  explicit Optimizer(nn::NamedTensors params) : params_(std::move(params)) {}
  virtual ~Optimizer() = default;

  // Applies one update to every parameter that has a gradient.
  virtual void Step() = 0;
  void ZeroGrad();

  float lr() const { return lr_; }
  void set_lr(float lr) { lr_ = lr; }
  int64_t step_count() const { return step_; }
  const nn::NamedTensors& params() const { return params_; }
  // Exactly the parameters named in `names` skip weight decay. MakeOptimizer
  // sets it from decay_bias_and_norm (1-D tensors); holders of flattened
  // slices (parameter servers) set it from the tensors they came from.
  void SetNoDecay(const std::set<std::string>& names);

  // Named state tensors (shallow: they alias the live state).
  virtual nn::NamedTensors State() const = 0;
  // Restores State() output; errors list missing or mis-shaped entries.
  virtual Status LoadState(const nn::NamedTensors& state) = 0;

 protected:
  nn::NamedTensors params_;
  float lr_ = 1e-3f;
  int64_t step_ = 0;
  std::vector<bool> no_decay_;  // per parameter; empty: every one decays

  bool Decays(size_t i) const { return no_decay_.empty() || !no_decay_[i]; }
};

Result<std::unique_ptr<Optimizer>> MakeOptimizer(const OptimizerOptions& options,
                                                 nn::NamedTensors params);

}  // namespace dnnd::optim
