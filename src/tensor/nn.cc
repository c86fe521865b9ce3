#include "tensor/nn.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "tensor/ops.h"

namespace dnnd::nn {

// --- Module ------------------------------------------------------------------

void Module::RegisterParameter(std::string name, Tensor t) {
  t.set_requires_grad(true);
  params_.emplace_back(std::move(name), std::move(t));
}

void Module::RegisterBuffer(std::string name, Tensor t, bool integer) {
  if (integer) integer_buffers_.insert(name);
  buffers_.emplace_back(std::move(name), std::move(t));
}

void Module::RegisterModule(std::string name, std::shared_ptr<Module> m) {
  children_.emplace_back(std::move(name), std::move(m));
}

void Module::CollectParameters(const std::string& prefix, NamedTensors& out) const {
  for (const auto& [name, t] : params_) out.emplace_back(prefix + name, t);
  for (const auto& [name, child] : children_) child->CollectParameters(prefix + name + ".", out);
}

void Module::CollectBuffers(const std::string& prefix, NamedTensors& out,
                            std::set<std::string>* integer) const {
  for (const auto& [name, t] : buffers_) {
    out.emplace_back(prefix + name, t);
    if (integer && integer_buffers_.count(name)) integer->insert(prefix + name);
  }
  for (const auto& [name, child] : children_)
    child->CollectBuffers(prefix + name + ".", out, integer);
}

NamedTensors Module::NamedParameters() const {
  NamedTensors out;
  CollectParameters("", out);
  return out;
}

NamedTensors Module::NamedBuffers() const {
  NamedTensors out;
  CollectBuffers("", out, nullptr);
  return out;
}

NamedTensors Module::NamedState() const {
  NamedTensors out = NamedParameters();
  CollectBuffers("", out, nullptr);
  return out;
}

std::set<std::string> Module::IntegerBufferNames() const {
  NamedTensors unused;
  std::set<std::string> out;
  CollectBuffers("", unused, &out);
  return out;
}

Tensor Module::ForwardInputs(const std::vector<Tensor>& xs) {
  if (xs.size() != 1)
    throw std::invalid_argument(Describe() + " takes one input, got " + std::to_string(xs.size()));
  return Forward(xs[0]);
}

Result<Shape> Module::OutputShapeOf(const std::vector<Shape>& inputs) const {
  if (inputs.size() != 1)
    return InvalidArgument(Describe() + " takes one input, got " + std::to_string(inputs.size()));
  return OutputShape(inputs[0]);
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

// --- Graph -------------------------------------------------------------------

void Graph::Add(std::shared_ptr<Module> m) {
  const int prev = nodes_.empty() ? kInput : static_cast<int>(nodes_.size()) - 1;
  AddNode(std::to_string(nodes_.size()), std::move(m), {prev});
}

void Graph::AddNode(std::string name, std::shared_ptr<Module> m, std::vector<int> inputs) {
  if (Find(name) >= 0) throw std::invalid_argument("graph: duplicate node name '" + name + "'");
  if (inputs.size() < m->MinInputs() || inputs.size() > m->MaxInputs())
    throw std::invalid_argument("graph: node '" + name + "' (" + m->Describe() + ") given " +
                                std::to_string(inputs.size()) + " inputs");
  const size_t index = nodes_.size();
  for (int in : inputs) {
    if (in < kInput || in >= static_cast<int>(index))
      throw std::invalid_argument("graph: node '" + name + "' reads node " + std::to_string(in) +
                                  ", which is not before it");
    if (in != kInput) nodes_[in].last_use = index;
  }
  RegisterModule(name, m);
  nodes_.push_back({std::move(name), std::move(m), std::move(inputs), index});
}

int Graph::Find(const std::string& name) const {
  for (size_t i = 0; i < nodes_.size(); ++i)
    if (nodes_[i].name == name) return static_cast<int>(i);
  return -1;
}

bool Graph::IsCut(size_t i) const {
  if (i == 0 || i >= nodes_.size()) return true;
  for (size_t j = i; j < nodes_.size(); ++j)
    for (int in : nodes_[j].inputs)
      if (in != static_cast<int>(i) - 1 && in < static_cast<int>(i)) return false;
  return true;
}

Tensor Graph::ForwardRange(const Tensor& x, size_t begin, size_t end) {
  end = std::min(end, nodes_.size());
  if (begin >= end) return x;
  // Outputs of the nodes in the range, released after their last reader so
  // evaluation without a graph does not hold every activation.
  std::vector<Tensor> values(end - begin);
  auto value_of = [&](int in) -> const Tensor& {
    if (in == static_cast<int>(begin) - 1 || in == kInput) return x;
    return values[in - begin];
  };
  std::vector<Tensor> args;
  for (size_t i = begin; i < end;) {
    auto p = placed_.find(i);
    if (p != placed_.end() && p->second.first <= end) {
      const size_t last = p->second.first;
      values[last - 1 - begin] = p->second.second->Forward(i == begin ? x : values[i - 1 - begin]);
      i = last;
      continue;
    }
    const Node& n = nodes_[i];
    args.clear();
    for (int in : n.inputs) args.push_back(value_of(in));
    if (OnlyReluReads(i, end)) {  // this node and the ReLU after it, as one op
      auto* bn = dynamic_cast<BatchNorm*>(n.module.get());
      auto* add = dynamic_cast<AddLayer*>(n.module.get());
      Tensor y;
      if (bn && args.size() == 1) y = bn->ForwardRelu(args[0]);
      if (add && args.size() >= 2) y = add->ForwardRelu(args);
      if (y.defined()) {
        values[i + 1 - begin] = std::move(y);
        for (int in : n.inputs)
          if (in >= static_cast<int>(begin) && nodes_[in].last_use == i)
            values[in - begin] = Tensor();
        i += 2;
        continue;
      }
    }
    values[i - begin] =
        args.size() == 1 ? n.module->Forward(args[0]) : n.module->ForwardInputs(args);
    for (int in : n.inputs)
      if (in >= static_cast<int>(begin) && nodes_[in].last_use == i) values[in - begin] = Tensor();
    ++i;
  }
  return values[end - 1 - begin];
}

bool Graph::OnlyReluReads(size_t i, size_t end) const {
  if (i + 1 >= end || nodes_[i].last_use != i + 1 || placed_.count(i + 1)) return false;
  auto* act = dynamic_cast<const ActivationLayer*>(nodes_[i + 1].module.get());
  const std::vector<int>& next_in = nodes_[i + 1].inputs;
  return act && act->kind() == Activation::kRelu && next_in.size() == 1 &&
         next_in[0] == static_cast<int>(i);
}

void Graph::Place(size_t begin, size_t end, std::shared_ptr<Module> runner) {
  if (!IsCut(begin) || !IsCut(end))
    throw std::invalid_argument("graph: nodes " + std::to_string(begin) + "-" +
                                std::to_string(end - 1) + " are not a range cut at both ends");
  placed_[begin] = {end, std::move(runner)};
}

Result<Shape> Graph::OutputShape(const Shape& input) const {
  std::vector<Shape> shapes(nodes_.size());
  std::vector<Shape> args;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    args.clear();
    for (int in : nodes_[i].inputs) args.push_back(in == kInput ? input : shapes[in]);
    auto r = nodes_[i].module->OutputShapeOf(args);
    if (!r)
      return r.status().WithContext("node " + nodes_[i].name + " (" + nodes_[i].module->Describe() +
                                    ")");
    shapes[i] = *r;
  }
  return nodes_.empty() ? input : shapes.back();
}

std::string Graph::Describe() const {
  std::string s = "Graph(\n";
  for (size_t i = 0; i < nodes_.size(); ++i) {
    s += "  (" + nodes_[i].name + "): " + nodes_[i].module->Describe();
    const bool chain =
        nodes_[i].inputs.size() == 1 && nodes_[i].inputs[0] == static_cast<int>(i) - 1;
    if (!chain && !(i == 0 && nodes_[i].inputs == std::vector<int>{kInput})) {
      s += " <- ";
      for (size_t k = 0; k < nodes_[i].inputs.size(); ++k) {
        const int in = nodes_[i].inputs[k];
        s += (k ? ", " : "") + (in == kInput ? std::string("input") : nodes_[in].name);
      }
    }
    s += "\n";
  }
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
               int64_t padding, Rng& rng, bool has_bias, Init init, int64_t groups)
    : in_(in_channels),
      out_(out_channels),
      kernel_(kernel),
      stride_(stride),
      padding_(padding),
      groups_(groups) {
  if (in_ < 1 || out_ < 1 || kernel_ < 1 || stride_ < 1 || padding_ < 0 || groups_ < 1 ||
      in_ % groups_ != 0 || out_ % groups_ != 0)
    throw std::invalid_argument(
        "Conv2d needs channels, kernel, stride >= 1, padding >= 0 and groups dividing both "
        "channel counts");
  // PyTorch's fans: per group's input channels.
  const int64_t fan_in = in_ / groups_ * kernel_ * kernel_,
                fan_out = out_ / groups_ * kernel_ * kernel_;
  weight = InitWeight({out_, in_ / groups_, kernel_, kernel_}, fan_in, fan_out, init, rng);
  RegisterParameter("weight", weight);
  if (has_bias) {
    bias = InitBias(out_, fan_in, init, rng);
    RegisterParameter("bias", bias);
  }
}

Tensor Conv2d::Forward(const Tensor& x) {
  return ops::Conv2d(x, weight, bias, stride_, padding_, groups_);
}

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
         ", padding=" + std::to_string(padding_) +
         (groups_ > 1 ? ", groups=" + std::to_string(groups_) : "") +
         (bias.defined() ? ")" : ", bias=False)");
}

// --- pooling, Flatten ------------------------------------------------------------

Pool2d::Pool2d(PoolKind kind, int64_t kernel, int64_t stride, int64_t padding)
    : kind_(kind), kernel_(kernel), stride_(stride == 0 ? kernel : stride), padding_(padding) {
  if (kernel_ < 1 || stride_ < 1 || padding_ < 0 || 2 * padding_ > kernel_)
    throw std::invalid_argument("pooling needs kernel, stride >= 1 and padding in [0, kernel / 2]");
}

Tensor Pool2d::Forward(const Tensor& x) {
  return kind_ == PoolKind::kMax ? ops::MaxPool2d(x, kernel_, stride_, padding_)
                                 : ops::AvgPool2d(x, kernel_, stride_, padding_);
}

Result<Shape> Pool2d::OutputShape(const Shape& input) const {
  const char* op = kind_ == PoolKind::kMax ? "maxpool2d" : "avgpool2d";
  if (input.size() != 3 || input[1] + 2 * padding_ < kernel_ || input[2] + 2 * padding_ < kernel_)
    return InvalidArgument(std::string(op) + " with kernel " + std::to_string(kernel_) +
                           " and padding " + std::to_string(padding_) +
                           " expects input [c, h, w] with h, w >= kernel - 2 * padding but gets " +
                           ShapeToString(input));
  return Shape{input[0], (input[1] + 2 * padding_ - kernel_) / stride_ + 1,
               (input[2] + 2 * padding_ - kernel_) / stride_ + 1};
}

std::string Pool2d::Describe() const {
  return std::string(kind_ == PoolKind::kMax ? "MaxPool2d" : "AvgPool2d") +
         "(kernel_size=" + std::to_string(kernel_) + ", stride=" + std::to_string(stride_) +
         (padding_ ? ", padding=" + std::to_string(padding_) : "") + ")";
}

Tensor GlobalAvgPool2d::Forward(const Tensor& x) { return ops::GlobalAvgPool2d(x); }

Result<Shape> GlobalAvgPool2d::OutputShape(const Shape& input) const {
  if (input.size() != 3)
    return InvalidArgument("global_avgpool2d expects input [c, h, w] but gets " +
                           ShapeToString(input));
  return Shape{input[0]};
}

// --- normalisation -----------------------------------------------------------------

BatchNorm::BatchNorm(int64_t features, int dims, float eps, float momentum, bool affine)
    : features_(features), dims_(dims), eps_(eps), momentum_(momentum) {
  if (features < 1 || (dims != 1 && dims != 2) || !(eps > 0) || !(momentum >= 0 && momentum <= 1))
    throw std::invalid_argument("BatchNorm needs features >= 1, eps > 0, momentum in [0, 1]");
  if (affine) {
    weight = Tensor::Ones({features});
    bias = Tensor::Zeros({features});
    RegisterParameter("weight", weight);
    RegisterParameter("bias", bias);
  }
  running_mean = Tensor::Zeros({features});
  running_var = Tensor::Ones({features});
  num_batches_tracked = Tensor::Zeros({});
  RegisterBuffer("running_mean", running_mean);
  RegisterBuffer("running_var", running_var);
  RegisterBuffer("num_batches_tracked", num_batches_tracked, /*integer=*/true);
}

Tensor BatchNorm::Forward(const Tensor& x) { return Apply(x, false); }
Tensor BatchNorm::ForwardRelu(const Tensor& x) { return Apply(x, true); }

Tensor BatchNorm::Apply(const Tensor& x, bool relu) {
  if (training()) num_batches_tracked.data()[0] += 1.0f;
  const auto op = relu ? &ops::BatchNormRelu : &ops::BatchNorm;
  if (dims_ == 1 && x.ndim() == 3) {  // [n, c, l] is normalised per channel as [n, c, l, 1]
    Tensor y = op(x.Reshape({x.size(0), x.size(1), x.size(2), 1}), weight, bias, running_mean,
                  running_var, training(), momentum_, eps_);
    return y.Reshape(x.shape());
  }
  return op(x, weight, bias, running_mean, running_var, training(), momentum_, eps_);
}

Result<Shape> BatchNorm::OutputShape(const Shape& input) const {
  const bool fits = dims_ == 2 ? input.size() == 3 : (input.size() == 1 || input.size() == 2);
  if (!fits || input[0] != features_)
    return InvalidArgument(
        std::string(dims_ == 2 ? "batchnorm2d expects input [" : "batchnorm1d expects input [") +
        std::to_string(features_) +
        (dims_ == 2 ? ", h, w]" : "] or [" + std::to_string(features_) + ", l]") + " but gets " +
        ShapeToString(input));
  return input;
}

std::string BatchNorm::Describe() const {
  return std::string(dims_ == 2 ? "BatchNorm2d(" : "BatchNorm1d(") + std::to_string(features_) +
         ", eps=" + std::to_string(eps_) + ", momentum=" + std::to_string(momentum_) +
         (weight.defined() ? ")" : ", affine=False)");
}

LayerNorm::LayerNorm(Shape shape, float eps, bool affine) : shape_(std::move(shape)), eps_(eps) {
  if (shape_.empty() || ShapeNumel(shape_) < 1 || !(eps > 0))
    throw std::invalid_argument("LayerNorm needs a non-empty shape and eps > 0");
  if (affine) {
    weight = Tensor::Ones(shape_);
    bias = Tensor::Zeros(shape_);
    RegisterParameter("weight", weight);
    RegisterParameter("bias", bias);
  }
}

Tensor LayerNorm::Forward(const Tensor& x) {
  return ops::LayerNorm(x, weight, bias, ShapeNumel(shape_), eps_);
}

Result<Shape> LayerNorm::OutputShape(const Shape& input) const {
  if (input.size() < shape_.size() || !std::equal(shape_.rbegin(), shape_.rend(), input.rbegin()))
    return InvalidArgument("layernorm over " + ShapeToString(shape_) +
                           " expects input ending in those dimensions but gets " +
                           ShapeToString(input));
  return input;
}

std::string LayerNorm::Describe() const {
  return "LayerNorm(" + ShapeToString(shape_) + (weight.defined() ? ")" : ", affine=False)");
}

// --- merging inputs ----------------------------------------------------------------

Tensor AddLayer::ForwardInputs(const std::vector<Tensor>& xs) {
  Tensor y = xs.at(0);
  for (size_t i = 1; i < xs.size(); ++i) y = ops::Add(y, xs[i]);
  return y;
}

Tensor AddLayer::ForwardRelu(const std::vector<Tensor>& xs) {
  if (xs.size() < 2) return ops::Relu(ForwardInputs(xs));
  Tensor y = xs[0];
  for (size_t i = 1; i + 1 < xs.size(); ++i) y = ops::Add(y, xs[i]);
  return ops::AddRelu(y, xs.back());
}

Result<Shape> AddLayer::OutputShapeOf(const std::vector<Shape>& inputs) const {
  for (size_t i = 1; i < inputs.size(); ++i)
    if (inputs[i] != inputs[0]) {
      std::string all;
      for (const auto& s : inputs) all += (all.empty() ? "" : ", ") + ShapeToString(s);
      return InvalidArgument("add needs inputs of one shape but gets " + all);
    }
  return inputs.at(0);
}

Tensor ConcatLayer::ForwardInputs(const std::vector<Tensor>& xs) {
  return xs.size() == 1 ? xs[0] : ops::Concat(xs, dim_);
}

Result<Shape> ConcatLayer::OutputShapeOf(const std::vector<Shape>& inputs) const {
  const size_t d = static_cast<size_t>(dim_ - 1);  // per-sample dimension
  std::string all;
  for (const auto& s : inputs) all += (all.empty() ? "" : ", ") + ShapeToString(s);
  Shape out = inputs.at(0);
  if (dim_ < 1 || d >= out.size())
    return InvalidArgument("concat dim " + std::to_string(dim_) + " is outside inputs " + all);
  for (size_t i = 1; i < inputs.size(); ++i) {
    const Shape& s = inputs[i];
    bool ok = s.size() == out.size();
    for (size_t k = 0; ok && k < s.size(); ++k) ok = k == d || s[k] == out[k];
    if (!ok)
      return InvalidArgument("concat along dim " + std::to_string(dim_) +
                             " needs inputs equal in the other dimensions but gets " + all);
    out[d] += s[d];
  }
  return out;
}

std::string ConcatLayer::Describe() const { return "Concat(dim=" + std::to_string(dim_) + ")"; }

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
    case Activation::kLeakyRelu:
      return ops::LeakyRelu(x, slope_);
    case Activation::kGelu:
      return ops::Gelu(x);
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
    case Activation::kLeakyRelu:
      return "LeakyReLU(negative_slope=" + std::to_string(slope_) + ")";
    case Activation::kGelu:
      return "GELU()";
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

Tensor ComputeLoss(LossKind kind, const Tensor& output, const Target& target,
                   float label_smoothing) {
  switch (kind) {
    case LossKind::kCrossEntropy:
      return ops::CrossEntropy(output, target.labels, label_smoothing);
    case LossKind::kMse:
      return ops::MseLoss(output, target.values);
    case LossKind::kBce:
      return ops::BceLoss(output, target.values);
  }
  throw std::logic_error("unhandled loss");
}

}  // namespace dnnd::nn
