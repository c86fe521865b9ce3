#include "tensor/nn.h"

#include <cmath>
#include <stdexcept>

#include "tensor/ops.h"

namespace dnnd::nn {

// --- Module ------------------------------------------------------------------

void Module::RegisterParameter(std::string name, Tensor t) {
  t.set_requires_grad(true);
  params_.emplace_back(std::move(name), std::move(t));
}

void Module::RegisterModule(std::string name, std::shared_ptr<Module> m) {
  children_.emplace_back(std::move(name), std::move(m));
}

void Module::CollectParameters(const std::string& prefix, NamedTensors& out) const {
  for (const auto& [name, t] : params_) out.emplace_back(prefix + name, t);
  for (const auto& [name, child] : children_) child->CollectParameters(prefix + name + ".", out);
}

NamedTensors Module::NamedParameters() const {
  NamedTensors out;
  CollectParameters("", out);
  return out;
}

std::vector<Tensor> Module::Parameters() const {
  std::vector<Tensor> out;
  for (auto& [name, t] : NamedParameters()) out.push_back(t);
  return out;
}

int64_t Module::ParameterCount() const {
  int64_t n = 0;
  for (auto& [name, t] : NamedParameters()) n += t.numel();
  return n;
}

void Module::Train(bool on) {
  training_ = on;
  for (auto& [name, child] : children_) child->Train(on);
}

void Module::ZeroGrad() {
  for (auto& [name, t] : NamedParameters()) t.zero_grad();
}

// --- Sequential ----------------------------------------------------------------

void Sequential::Add(std::shared_ptr<Module> m) {
  RegisterModule(std::to_string(layers_.size()), m);
  layers_.push_back(std::move(m));
}

Tensor Sequential::ForwardRange(const Tensor& x, size_t begin, size_t end) {
  Tensor h = x;
  for (size_t i = begin; i < end && i < layers_.size();) {
    auto p = placed_.find(i);
    if (p != placed_.end() && p->second.first <= end) {
      h = p->second.second->Forward(h);
      i = p->second.first;
    } else {
      h = layers_[i++]->Forward(h);
    }
  }
  return h;
}

void Sequential::Place(size_t begin, size_t end, std::shared_ptr<Module> runner) {
  placed_[begin] = {end, std::move(runner)};
}

Result<Shape> Sequential::OutputShape(const Shape& input) const {
  Shape s = input;
  for (size_t i = 0; i < layers_.size(); ++i) {
    auto r = layers_[i]->OutputShape(s);
    if (!r)
      return r.status().WithContext("layer " + std::to_string(i) + " (" + layers_[i]->Describe() +
                                    ")");
    s = *r;
  }
  return s;
}

std::string Sequential::Describe() const {
  std::string s = "Sequential(\n";
  for (size_t i = 0; i < layers_.size(); ++i)
    s += "  (" + std::to_string(i) + "): " + layers_[i]->Describe() + "\n";
  return s + ")";
}

// --- initialisation ------------------------------------------------------------

Result<Init> ParseInit(const std::string& name) {
  if (name == "default") return Init::kDefault;
  if (name == "xavier_uniform") return Init::kXavierUniform;
  if (name == "xavier_normal") return Init::kXavierNormal;
  if (name == "kaiming_uniform") return Init::kKaimingUniform;
  if (name == "kaiming_normal") return Init::kKaimingNormal;
  return InvalidArgument("unknown init '" + name +
                         "' (expected default, xavier_uniform, xavier_normal, kaiming_uniform, "
                         "kaiming_normal)");
}

namespace {

// Weight of shape [fan_out, fan_in...] drawn per scheme; gain sqrt(2) (ReLU)
// for Kaiming, 1 for Xavier.
Tensor InitWeight(const Shape& shape, int64_t fan_in, int64_t fan_out, Init init, Rng& rng) {
  const float fi = static_cast<float>(fan_in), fo = static_cast<float>(fan_out);
  switch (init) {
    case Init::kDefault: {
      float b = 1.0f / std::sqrt(fi);
      return Tensor::Uniform(shape, -b, b, rng);
    }
    case Init::kXavierUniform: {
      float b = std::sqrt(6.0f / (fi + fo));
      return Tensor::Uniform(shape, -b, b, rng);
    }
    case Init::kXavierNormal:
      return Tensor::Normal(shape, 0.0f, std::sqrt(2.0f / (fi + fo)), rng);
    case Init::kKaimingUniform: {
      float b = std::sqrt(6.0f / fi);
      return Tensor::Uniform(shape, -b, b, rng);
    }
    case Init::kKaimingNormal:
      return Tensor::Normal(shape, 0.0f, std::sqrt(2.0f / fi), rng);
  }
  throw std::logic_error("unhandled init");
}

Tensor InitBias(int64_t n, int64_t fan_in, Init init, Rng& rng) {
  if (init != Init::kDefault) return Tensor::Zeros({n});
  float b = 1.0f / std::sqrt(static_cast<float>(fan_in));
  return Tensor::Uniform({n}, -b, b, rng);
}

}  // namespace

// --- Linear ----------------------------------------------------------------------

Linear::Linear(int64_t in, int64_t out, Rng& rng, bool has_bias, Init init) : in_(in), out_(out) {
  if (in < 1 || out < 1) throw std::invalid_argument("Linear needs in >= 1 and out >= 1");
  weight = InitWeight({out, in}, in, out, init, rng);
  RegisterParameter("weight", weight);
  if (has_bias) {
    bias = InitBias(out, in, init, rng);
    RegisterParameter("bias", bias);
  }
}

Tensor Linear::Forward(const Tensor& x) {
  if (x.ndim() == 2) return ops::Linear(x, weight, bias);
  // [n, ..., in]: apply to the last dimension.
  Shape s = x.shape();
  Tensor y = ops::Linear(x.Reshape({-1, in_}), weight, bias);
  s.back() = out_;
  return y.Reshape(s);
}

Result<Shape> Linear::OutputShape(const Shape& input) const {
  if (input.empty() || input.back() != in_)
    return InvalidArgument("linear expects input [..., " + std::to_string(in_) + "] but gets " +
                           ShapeToString(input));
  Shape s = input;
  s.back() = out_;
  return s;
}

std::string Linear::Describe() const {
  return "Linear(" + std::to_string(in_) + ", " + std::to_string(out_) +
         (bias.defined() ? ")" : ", bias=False)");
}

// --- Conv2d ----------------------------------------------------------------------

Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride,
               int64_t padding, Rng& rng, bool has_bias, Init init)
    : in_(in_channels), out_(out_channels), kernel_(kernel), stride_(stride), padding_(padding) {
  if (in_ < 1 || out_ < 1 || kernel_ < 1 || stride_ < 1 || padding_ < 0)
    throw std::invalid_argument("Conv2d needs channels, kernel, stride >= 1 and padding >= 0");
  const int64_t fan_in = in_ * kernel_ * kernel_, fan_out = out_ * kernel_ * kernel_;
  weight = InitWeight({out_, in_, kernel_, kernel_}, fan_in, fan_out, init, rng);
  RegisterParameter("weight", weight);
  if (has_bias) {
    bias = InitBias(out_, fan_in, init, rng);
    RegisterParameter("bias", bias);
  }
}

Tensor Conv2d::Forward(const Tensor& x) { return ops::Conv2d(x, weight, bias, stride_, padding_); }

Result<Shape> Conv2d::OutputShape(const Shape& input) const {
  if (input.size() != 3 || input[0] != in_)
    return InvalidArgument("conv2d expects input [" + std::to_string(in_) + ", h, w] but gets " +
                           ShapeToString(input));
  const int64_t oh = (input[1] + 2 * padding_ - kernel_) / stride_ + 1;
  const int64_t ow = (input[2] + 2 * padding_ - kernel_) / stride_ + 1;
  if (input[1] + 2 * padding_ < kernel_ || input[2] + 2 * padding_ < kernel_)
    return InvalidArgument("conv2d kernel " + std::to_string(kernel_) + " is larger than input " +
                           ShapeToString(input) + " with padding " + std::to_string(padding_));
  return Shape{out_, oh, ow};
}

std::string Conv2d::Describe() const {
  return "Conv2d(" + std::to_string(in_) + ", " + std::to_string(out_) +
         ", kernel_size=" + std::to_string(kernel_) + ", stride=" + std::to_string(stride_) +
         ", padding=" + std::to_string(padding_) + ")";
}

// --- MaxPool2d, Flatten ------------------------------------------------------------

MaxPool2d::MaxPool2d(int64_t kernel, int64_t stride)
    : kernel_(kernel), stride_(stride == 0 ? kernel : stride) {
  if (kernel_ < 1 || stride_ < 1) throw std::invalid_argument("MaxPool2d needs kernel >= 1");
}

Tensor MaxPool2d::Forward(const Tensor& x) { return ops::MaxPool2d(x, kernel_, stride_); }

Result<Shape> MaxPool2d::OutputShape(const Shape& input) const {
  if (input.size() != 3 || input[1] < kernel_ || input[2] < kernel_)
    return InvalidArgument("maxpool2d with kernel " + std::to_string(kernel_) +
                           " expects input [c, h, w] with h, w >= kernel but gets " +
                           ShapeToString(input));
  return Shape{input[0], (input[1] - kernel_) / stride_ + 1, (input[2] - kernel_) / stride_ + 1};
}

std::string MaxPool2d::Describe() const {
  return "MaxPool2d(kernel_size=" + std::to_string(kernel_) +
         ", stride=" + std::to_string(stride_) + ")";
}

Tensor Flatten::Forward(const Tensor& x) { return ops::Flatten(x); }

Result<Shape> Flatten::OutputShape(const Shape& input) const { return Shape{ShapeNumel(input)}; }

// --- activations, dropout ------------------------------------------------------------

Tensor ActivationLayer::Forward(const Tensor& x) {
  switch (kind_) {
    case Activation::kRelu:
      return ops::Relu(x);
    case Activation::kSigmoid:
      return ops::Sigmoid(x);
    case Activation::kTanh:
      return ops::Tanh(x);
    case Activation::kSoftmax:
      return ops::Softmax(x);
  }
  throw std::logic_error("unhandled activation");
}

std::string ActivationLayer::Describe() const {
  switch (kind_) {
    case Activation::kRelu:
      return "ReLU()";
    case Activation::kSigmoid:
      return "Sigmoid()";
    case Activation::kTanh:
      return "Tanh()";
    case Activation::kSoftmax:
      return "Softmax(dim=-1)";
  }
  return "?";
}

Tensor Dropout::Forward(const Tensor& x) {
  if (!training() || p_ == 0.0f) return x;
  return ops::Dropout(x, p_, rng_);
}

std::string Dropout::Describe() const { return "Dropout(p=" + std::to_string(p_) + ")"; }

// --- losses ------------------------------------------------------------------------------

Result<LossKind> ParseLoss(const std::string& name) {
  if (name == "cross_entropy") return LossKind::kCrossEntropy;
  if (name == "mse") return LossKind::kMse;
  if (name == "bce") return LossKind::kBce;
  return InvalidArgument("unknown loss '" + name + "' (expected cross_entropy, mse, bce)");
}

const char* LossName(LossKind kind) {
  switch (kind) {
    case LossKind::kCrossEntropy:
      return "cross_entropy";
    case LossKind::kMse:
      return "mse";
    case LossKind::kBce:
      return "bce";
  }
  return "?";
}

Tensor ComputeLoss(LossKind kind, const Tensor& output, const Target& target) {
  switch (kind) {
    case LossKind::kCrossEntropy:
      return ops::CrossEntropy(output, target.labels);
    case LossKind::kMse:
      return ops::MseLoss(output, target.values);
    case LossKind::kBce:
      return ops::BceLoss(output, target.values);
  }
  throw std::logic_error("unhandled loss");
}

}  // namespace dnnd::nn
