// Neural-network modules, PyTorch-style.
//
//   auto model = std::make_shared<nn::Graph>();
//   model->Add(std::make_shared<nn::Flatten>());            // node "0"
//   model->Add(std::make_shared<nn::Linear>(784, 10, rng));  // node "1"
//   Tensor logits = model->Forward(x);          // x: [batch, 1, 28, 28]
//   model->NamedParameters();                   // {"1.weight", ...}, {"1.bias", ...}
//
// A Graph is a list of named nodes in topological order; each node reads the
// graph input or earlier nodes' outputs (a residual block's `add` reads two),
// and the last node is the output. Added without names and inputs, nodes form
// a chain named "0", "1", ... like PyTorch's nn.Sequential.
//
// Parameter and buffer names are "<node name>.<tensor>" ("layer1.0.bn1.weight",
// "layer1.0.bn1.running_mean"), PyTorch's state_dict names for the equivalent
// torch model, so a dnnd checkpoint loads into it and back.
//
// Threading: a module is used by one thread at a time (its forward may fan out
// internally through ParallelFor).
#pragma once

#include <map>
#include <memory>
#include <set>
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
  // Modules reading several inputs (add, concat) override this and
  // OutputShapeOf; the default takes exactly one input.
  virtual Tensor ForwardInputs(const std::vector<Tensor>& xs);
  // Inputs a graph node of this module may have.
  virtual size_t MinInputs() const { return 1; }
  virtual size_t MaxInputs() const { return 1; }

  // Output shape for a per-sample input shape (no batch dimension), or an
  // error naming what does not fit. Used to validate model specs up front.
  virtual Result<Shape> OutputShape(const Shape& input) const = 0;
  virtual Result<Shape> OutputShapeOf(const std::vector<Shape>& inputs) const;
  // "Linear(784, 512)".
  virtual std::string Describe() const = 0;

  // Parameters in registration order, recursively, with dotted names.
  NamedTensors NamedParameters() const;
  std::vector<Tensor> Parameters() const;
  int64_t ParameterCount() const;
  // Non-trainable state (BatchNorm's running statistics), recursively, with
  // dotted names. Forward in training mode updates buffers in place.
  NamedTensors NamedBuffers() const;
  // Parameters then buffers: what a checkpoint holds (PyTorch's state_dict).
  NamedTensors NamedState() const;
  // Buffers PyTorch keeps as int64 (num_batches_tracked): stored here as
  // float (exact below 2^24) and written to checkpoints as int64.
  std::set<std::string> IntegerBufferNames() const;

  // Training mode (dropout active) vs evaluation mode. Recursive.
  void Train(bool on = true);
  void Eval() { Train(false); }
  bool training() const { return training_; }

  void ZeroGrad();

 protected:
  void RegisterParameter(std::string name, Tensor t);
  void RegisterBuffer(std::string name, Tensor t, bool integer = false);
  void RegisterModule(std::string name, std::shared_ptr<Module> m);

 private:
  void CollectParameters(const std::string& prefix, NamedTensors& out) const;
  void CollectBuffers(const std::string& prefix, NamedTensors& out,
                      std::set<std::string>* integer) const;

  bool training_ = true;
  NamedTensors params_;
  NamedTensors buffers_;
  std::set<std::string> integer_buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

class BatchNorm;

class Graph : public Module {
 public:
  // A node's input that is the graph's own input.
  static constexpr int kInput = -1;

  // Appends a node named by its index reading the previous node (or the
  // graph input): the nn.Sequential form.
  void Add(std::shared_ptr<Module> m);
  // Appends a named node reading `inputs` (earlier node indices or kInput).
  // Throws std::invalid_argument on a duplicate name, a later input or an
  // input count the module does not take.
  void AddNode(std::string name, std::shared_ptr<Module> m, std::vector<int> inputs);

  size_t size() const { return nodes_.size(); }
  const std::shared_ptr<Module>& at(size_t i) const { return nodes_.at(i).module; }
  const std::string& name(size_t i) const { return nodes_.at(i).name; }
  const std::vector<int>& inputs(size_t i) const { return nodes_.at(i).inputs; }
  // Index of the node named `name`, or -1.
  int Find(const std::string& name) const;
  // Whether the graph can be cut before node `i` (0 < i < size()): one tensor,
  // node i-1's output, is all that flows across (no later node reads an
  // earlier one, as a residual block's skip connection would). Ranges placed
  // on layer servers and ForwardRange start and end at cuts.
  bool IsCut(size_t i) const;

  // Forward through nodes [begin, end) only, `x` being node begin-1's output
  // (the graph input when begin == 0); begin and end must be cuts.
  Tensor ForwardRange(const Tensor& x, size_t begin, size_t end);
  // Runs nodes [begin, end) through `runner` instead (a range placed on
  // layer servers; begin and end are cuts). The local nodes keep their
  // parameters and names: they become the placed nodes' local copies, kept
  // current by whoever placed them (before a checkpoint, say), so checkpoints
  // still hold the whole model.
  void Place(size_t begin, size_t end, std::shared_ptr<Module> runner);

  Tensor Forward(const Tensor& x) override { return ForwardRange(x, 0, nodes_.size()); }
  Result<Shape> OutputShape(const Shape& input) const override;
  std::string Describe() const override;

 private:
  struct Node {
    std::string name;
    std::shared_ptr<Module> module;
    std::vector<int> inputs;
    size_t last_use = 0;  // the last node reading this one's output
  };
  // Whether node i's output is read only by a ReLU at i + 1 (< end) that
  // reads nothing else: ForwardRange then runs a BatchNorm or an Add at i
  // and that ReLU as one op (BatchNorm::ForwardRelu, AddLayer::ForwardRelu).
  bool OnlyReluReads(size_t i, size_t end) const;
  std::vector<Node> nodes_;
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
         Rng& rng, bool bias = true, Init init = Init::kDefault, int64_t groups = 1);
  Tensor Forward(const Tensor& x) override;
  Result<Shape> OutputShape(const Shape& input) const override;
  std::string Describe() const override;
  Tensor weight, bias;  // [oc, ic / groups, k, k], [oc]

 private:
  int64_t in_, out_, kernel_, stride_, padding_, groups_;
};

// Max or average pooling over k x k windows (stride 0 = kernel); average
// counts padded zeros (PyTorch's count_include_pad=True).
enum class PoolKind { kMax, kAvg };
class Pool2d : public Module {
 public:
  Pool2d(PoolKind kind, int64_t kernel, int64_t stride = 0, int64_t padding = 0);
  Tensor Forward(const Tensor& x) override;
  Result<Shape> OutputShape(const Shape& input) const override;
  std::string Describe() const override;

 private:
  PoolKind kind_;
  int64_t kernel_, stride_, padding_;
};
class MaxPool2d : public Pool2d {
 public:
  explicit MaxPool2d(int64_t kernel, int64_t stride = 0, int64_t padding = 0)
      : Pool2d(PoolKind::kMax, kernel, stride, padding) {}
};
class AvgPool2d : public Pool2d {
 public:
  explicit AvgPool2d(int64_t kernel, int64_t stride = 0, int64_t padding = 0)
      : Pool2d(PoolKind::kAvg, kernel, stride, padding) {}
};

// [c, h, w] -> [c]: the mean of each plane (ResNet's head).
class GlobalAvgPool2d : public Module {
 public:
  Tensor Forward(const Tensor& x) override;
  Result<Shape> OutputShape(const Shape& input) const override;
  std::string Describe() const override { return "AdaptiveAvgPool2d(1) + Flatten()"; }
};

// BatchNorm1d ([c] or [c, l] per sample) and BatchNorm2d ([c, h, w]).
// Parameters weight (ones) and bias (zeros) when affine; buffers
// running_mean, running_var and num_batches_tracked. Training mode
// normalises with batch statistics and updates the buffers; eval mode uses
// the running statistics.
class BatchNorm : public Module {
 public:
  BatchNorm(int64_t features, int dims, float eps = 1e-5f, float momentum = 0.1f,
            bool affine = true);
  Tensor Forward(const Tensor& x) override;
  // ReLU(Forward(x)) as one op (ops::BatchNormRelu): Graph calls it for a
  // batch norm whose only reader is a ReLU.
  Tensor ForwardRelu(const Tensor& x);
  Result<Shape> OutputShape(const Shape& input) const override;
  std::string Describe() const override;
  Tensor weight, bias, running_mean, running_var, num_batches_tracked;

 private:
  Tensor Apply(const Tensor& x, bool relu);
  int64_t features_;
  int dims_;  // 1 or 2
  float eps_, momentum_;
};

// Normalises each sample over its trailing dimensions `shape` (PyTorch's
// normalized_shape), with weight/bias of that shape.
class LayerNorm : public Module {
 public:
  explicit LayerNorm(Shape shape, float eps = 1e-5f, bool affine = true);
  Tensor Forward(const Tensor& x) override;
  Result<Shape> OutputShape(const Shape& input) const override;
  std::string Describe() const override;
  Tensor weight, bias;

 private:
  Shape shape_;
  float eps_;
};

// Element-wise sum of its inputs (same shapes): a residual connection.
class AddLayer : public Module {
 public:
  Tensor Forward(const Tensor& x) override { return x; }
  Tensor ForwardInputs(const std::vector<Tensor>& xs) override;
  // ReLU(ForwardInputs(xs)), its last addition fused with the ReLU
  // (ops::AddRelu): Graph calls it for an add whose only reader is a ReLU.
  Tensor ForwardRelu(const std::vector<Tensor>& xs);
  size_t MinInputs() const override { return 2; }
  size_t MaxInputs() const override { return 64; }
  Result<Shape> OutputShape(const Shape& input) const override { return input; }
  Result<Shape> OutputShapeOf(const std::vector<Shape>& inputs) const override;
  std::string Describe() const override { return "Add()"; }
};

// Joins its inputs along `dim` (PyTorch's torch.cat dim, >= 1: dimension 0
// is the batch).
class ConcatLayer : public Module {
 public:
  explicit ConcatLayer(int dim) : dim_(dim) {}
  Tensor Forward(const Tensor& x) override { return x; }
  Tensor ForwardInputs(const std::vector<Tensor>& xs) override;
  size_t MinInputs() const override { return 1; }
  size_t MaxInputs() const override { return 64; }
  Result<Shape> OutputShape(const Shape& input) const override { return input; }
  Result<Shape> OutputShapeOf(const std::vector<Shape>& inputs) const override;
  std::string Describe() const override;

 private:
  int dim_;
};

class Flatten : public Module {
 public:
  Tensor Forward(const Tensor& x) override;
  Result<Shape> OutputShape(const Shape& input) const override;
  std::string Describe() const override { return "Flatten()"; }
};

// Element-wise activations: shape-preserving, no parameters.
enum class Activation { kRelu, kSigmoid, kTanh, kSoftmax, kLeakyRelu, kGelu };
class ActivationLayer : public Module {
 public:
  // `slope`: kLeakyRelu's negative slope.
  explicit ActivationLayer(Activation kind, float slope = 0.01f) : kind_(kind), slope_(slope) {}
  Activation kind() const { return kind_; }
  Tensor Forward(const Tensor& x) override;
  Result<Shape> OutputShape(const Shape& input) const override { return input; }
  std::string Describe() const override;

 private:
  Activation kind_;
  float slope_;
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
// label_smoothing applies to cross-entropy only.
Tensor ComputeLoss(LossKind kind, const Tensor& output, const Target& target,
                   float label_smoothing = 0.0f);

}  // namespace dnnd::nn
