// Neural-network modules, PyTorch-style.
//
//   auto model = std::make_shared<nn::Sequential>();
//   model->Add(std::make_shared<nn::Flatten>());
//   model->Add(std::make_shared<nn::Linear>(784, 10, rng));
//   Tensor logits = model->Forward(x);          // x: [batch, 1, 28, 28]
//   model->NamedParameters();                   // {"1.weight", ...}, {"1.bias", ...}
//
// Parameter names are stable and match PyTorch's nn.Sequential naming
// ("<index>.weight", "<index>.bias"), so a dnnd checkpoint loads into the
// equivalent torch model and back.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/status.h"
#include "tensor/tensor.h"

namespace dnnd::nn {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

class Module {
 public:
  virtual ~Module() = default;

  virtual Tensor Forward(const Tensor& x) = 0;
  Tensor operator()(const Tensor& x) { return Forward(x); }

  // Output shape for a per-sample input shape (no batch dimension), or an
  // error naming what does not fit. Used to validate model specs up front.
  virtual Result<Shape> OutputShape(const Shape& input) const = 0;
  // "Linear(784, 512)".
  virtual std::string Describe() const = 0;

  // Parameters in registration order, recursively, with dotted names.
  NamedTensors NamedParameters() const;
  std::vector<Tensor> Parameters() const;
  int64_t ParameterCount() const;

  // Training mode (dropout active) vs evaluation mode. Recursive.
  void Train(bool on = true);
  void Eval() { Train(false); }
  bool training() const { return training_; }

  void ZeroGrad();

 protected:
  void RegisterParameter(std::string name, Tensor t);
  void RegisterModule(std::string name, std::shared_ptr<Module> m);

 private:
  void CollectParameters(const std::string& prefix, NamedTensors& out) const;

  bool training_ = true;
  NamedTensors params_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

class Sequential : public Module {
 public:
  void Add(std::shared_ptr<Module> m);
  size_t size() const { return layers_.size(); }
  const std::shared_ptr<Module>& at(size_t i) const { return layers_.at(i); }
  // Forward through layers [begin, end) only (for placing layer ranges).
  Tensor ForwardRange(const Tensor& x, size_t begin, size_t end);
  // Runs layers [begin, end) through `runner` instead (a range placed on
  // layer servers). The local layers keep their parameters and names: they
  // become the placed layers' local copies, kept current by whoever placed
  // them (before a checkpoint, say), so checkpoints still hold the whole model.
  void Place(size_t begin, size_t end, std::shared_ptr<Module> runner);

  Tensor Forward(const Tensor& x) override { return ForwardRange(x, 0, layers_.size()); }
  Result<Shape> OutputShape(const Shape& input) const override;
  std::string Describe() const override;

 private:
  std::vector<std::shared_ptr<Module>> layers_;
  std::map<size_t, std::pair<size_t, std::shared_ptr<Module>>> placed_;  // begin -> (end, runner)
};

// Weight initialisation schemes. kDefault is PyTorch's (Kaiming-uniform with
// a = sqrt(5), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and bias).
enum class Init { kDefault, kXavierUniform, kXavierNormal, kKaimingUniform, kKaimingNormal };
Result<Init> ParseInit(const std::string& name);

class Linear : public Module {
 public:
  Linear(int64_t in, int64_t out, Rng& rng, bool bias = true, Init init = Init::kDefault);
  Tensor Forward(const Tensor& x) override;
  Result<Shape> OutputShape(const Shape& input) const override;
  std::string Describe() const override;
  Tensor weight, bias;  // [out, in], [out]

 private:
  int64_t in_, out_;
};

class Conv2d : public Module {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride, int64_t padding,
         Rng& rng, bool bias = true, Init init = Init::kDefault);
  Tensor Forward(const Tensor& x) override;
  Result<Shape> OutputShape(const Shape& input) const override;
  std::string Describe() const override;
  Tensor weight, bias;  // [oc, ic, k, k], [oc]

 private:
  int64_t in_, out_, kernel_, stride_, padding_;
};

class MaxPool2d : public Module {
 public:
  explicit MaxPool2d(int64_t kernel, int64_t stride = 0);  // stride 0 = kernel
  Tensor Forward(const Tensor& x) override;
  Result<Shape> OutputShape(const Shape& input) const override;
  std::string Describe() const override;

 private:
  int64_t kernel_, stride_;
};

class Flatten : public Module {
 public:
  Tensor Forward(const Tensor& x) override;
  Result<Shape> OutputShape(const Shape& input) const override;
  std::string Describe() const override { return "Flatten()"; }
};

// Element-wise activations: shape-preserving, no parameters.
enum class Activation { kRelu, kSigmoid, kTanh, kSoftmax };
class ActivationLayer : public Module {
 public:
  explicit ActivationLayer(Activation kind) : kind_(kind) {}
  Tensor Forward(const Tensor& x) override;
  Result<Shape> OutputShape(const Shape& input) const override { return input; }
  std::string Describe() const override;

 private:
  Activation kind_;
};
inline std::shared_ptr<Module> ReLU() {
  return std::make_shared<ActivationLayer>(Activation::kRelu);
}
inline std::shared_ptr<Module> Sigmoid() {
  return std::make_shared<ActivationLayer>(Activation::kSigmoid);
}
inline std::shared_ptr<Module> Tanh() {
  return std::make_shared<ActivationLayer>(Activation::kTanh);
}
inline std::shared_ptr<Module> Softmax() {
  return std::make_shared<ActivationLayer>(Activation::kSoftmax);
}

class Dropout : public Module {
 public:
  Dropout(float p, uint64_t seed) : p_(p), rng_(seed) {}
  Tensor Forward(const Tensor& x) override;
  Result<Shape> OutputShape(const Shape& input) const override { return input; }
  std::string Describe() const override;

 private:
  float p_;
  Rng rng_;
};

// Loss functions a model spec can name. Targets: class indices for
// cross-entropy, float tensors shaped like the output for MSE and BCE.
enum class LossKind { kCrossEntropy, kMse, kBce };
Result<LossKind> ParseLoss(const std::string& name);
const char* LossName(LossKind kind);

struct Target {
  std::vector<int32_t> labels;  // cross-entropy
  Tensor values;                // MSE / BCE, shaped like the model output
};
Tensor ComputeLoss(LossKind kind, const Tensor& output, const Target& target);

}  // namespace dnnd::nn
