#include "tensor/model_spec.h"

#include <toml++/toml.h>

#include <set>
#include <sstream>

#include "core/json_text.h"
#include "core/toml_guard.h"

namespace dnnd {
namespace {

std::string Where(const toml::node& n) {
  const auto& src = n.source();
  std::string file = src.path ? *src.path : std::string("<model>");
  return file + ":" + std::to_string(src.begin.line) + ":" + std::to_string(src.begin.column);
}

Status ErrorAt(const toml::node& n, const std::string& what) {
  return InvalidArgument(Where(n) + ": " + what);
}

// Reads an integer key with a lower bound; absent keys keep `*out`.
Status ReadInt(const toml::table& t, const char* key, int64_t min, bool required,
               const std::string& ctx, int64_t* out) {
  const toml::node* n = t.get(key);
  if (!n) {
    if (required) return ErrorAt(t, ctx + ": missing required key '" + key + "'");
    return Status::Ok();
  }
  auto v = n->value<int64_t>();
  if (!n->is_integer() || !v) return ErrorAt(*n, ctx + "." + key + ": expected an integer");
  if (*v < min)
    return ErrorAt(*n, ctx + "." + key + ": " + std::to_string(*v) + " is below the minimum " +
                           std::to_string(min));
  *out = *v;
  return Status::Ok();
}

Status ReadFloat(const toml::table& t, const char* key, double lo, double hi,
                 const std::string& ctx, float* out) {
  const toml::node* n = t.get(key);
  if (!n) return Status::Ok();
  if (!n->is_number()) return ErrorAt(*n, ctx + "." + key + ": expected a number");
  double v = *n->value<double>();
  if (!(v >= lo && v <= hi)) {
    std::ostringstream msg;
    msg << ctx << "." << key << ": " << v << " is outside [" << lo << ", " << hi << "]";
    return ErrorAt(*n, msg.str());
  }
  *out = static_cast<float>(v);
  return Status::Ok();
}

Status ReadString(const toml::table& t, const char* key, const std::string& ctx, std::string* out,
                  bool required = false) {
  const toml::node* n = t.get(key);
  if (!n) {
    if (required) return ErrorAt(t, ctx + ": missing required key '" + key + "'");
    return Status::Ok();
  }
  if (!n->is_string()) return ErrorAt(*n, ctx + "." + key + ": expected a string");
  *out = *n->value<std::string>();
  return Status::Ok();
}

Status ReadBool(const toml::table& t, const char* key, const std::string& ctx, bool* out) {
  const toml::node* n = t.get(key);
  if (!n) return Status::Ok();
  if (!n->is_boolean()) return ErrorAt(*n, ctx + "." + key + ": expected true or false");
  *out = *n->value<bool>();
  return Status::Ok();
}

Status CheckKeys(const toml::table& t, const std::set<std::string>& allowed,
                 const std::string& ctx) {
  for (const auto& [k, v] : t) {
    if (!allowed.count(std::string(k.str()))) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      return ErrorAt(v,
                     ctx + ": unknown key '" + std::string(k.str()) + "' (allowed: " + list + ")");
    }
  }
  return Status::Ok();
}

Result<LayerSpec> ParseLayer(const toml::table& t, size_t index) {
  const std::string ctx = "model.layers[" + std::to_string(index) + "]";
  LayerSpec l;
  l.where = Where(t);
  DNND_RETURN_IF_ERROR(ReadString(t, "type", ctx, &l.type, true));
  static const std::set<std::string> kShapeless = {"flatten", "relu", "sigmoid", "tanh", "softmax"};
  if (l.type == "linear") {
    DNND_RETURN_IF_ERROR(CheckKeys(t, {"type", "in", "out", "bias"}, ctx));
    DNND_RETURN_IF_ERROR(ReadInt(t, "in", 1, false, ctx, &l.in));
    DNND_RETURN_IF_ERROR(ReadInt(t, "out", 1, true, ctx, &l.out));
    DNND_RETURN_IF_ERROR(ReadBool(t, "bias", ctx, &l.bias));
  } else if (l.type == "conv2d") {
    DNND_RETURN_IF_ERROR(
        CheckKeys(t, {"type", "in", "out", "kernel", "stride", "padding", "bias"}, ctx));
    l.stride = 1;
    DNND_RETURN_IF_ERROR(ReadInt(t, "in", 1, false, ctx, &l.in));
    DNND_RETURN_IF_ERROR(ReadInt(t, "out", 1, true, ctx, &l.out));
    DNND_RETURN_IF_ERROR(ReadInt(t, "kernel", 1, true, ctx, &l.kernel));
    DNND_RETURN_IF_ERROR(ReadInt(t, "stride", 1, false, ctx, &l.stride));
    DNND_RETURN_IF_ERROR(ReadInt(t, "padding", 0, false, ctx, &l.padding));
    DNND_RETURN_IF_ERROR(ReadBool(t, "bias", ctx, &l.bias));
  } else if (l.type == "maxpool2d") {
    DNND_RETURN_IF_ERROR(CheckKeys(t, {"type", "kernel", "stride"}, ctx));
    DNND_RETURN_IF_ERROR(ReadInt(t, "kernel", 1, true, ctx, &l.kernel));
    DNND_RETURN_IF_ERROR(ReadInt(t, "stride", 1, false, ctx, &l.stride));
  } else if (l.type == "dropout") {
    DNND_RETURN_IF_ERROR(CheckKeys(t, {"type", "p"}, ctx));
    l.p = -1.0f;
    DNND_RETURN_IF_ERROR(ReadFloat(t, "p", 0.0, 0.999999, ctx, &l.p));
    if (l.p < 0.0f) return ErrorAt(t, ctx + ": missing required key 'p'");
  } else if (kShapeless.count(l.type)) {
    DNND_RETURN_IF_ERROR(CheckKeys(t, {"type"}, ctx));
  } else {
    return ErrorAt(*t.get("type"), ctx + ".type: unknown layer type '" + l.type +
                                       "' (expected linear, conv2d, maxpool2d, flatten, relu, "
                                       "sigmoid, tanh, softmax, dropout)");
  }
  return l;
}

Status ParseOptimizer(const toml::table& t, optim::OptimizerOptions* o) {
  const std::string ctx = "model.optimizer";
  DNND_RETURN_IF_ERROR(CheckKeys(
      t,
      {"type", "lr", "momentum", "dampening", "nesterov", "weight_decay", "beta1", "beta2", "eps"},
      ctx));
  DNND_RETURN_IF_ERROR(ReadString(t, "type", ctx, &o->type));
  if (o->type != "sgd" && o->type != "adam" && o->type != "adamw")
    return ErrorAt(*t.get("type"),
                   ctx + ".type: unknown optimizer '" + o->type + "' (expected sgd, adam, adamw)");
  DNND_RETURN_IF_ERROR(ReadFloat(t, "lr", 1e-12, 1e3, ctx, &o->lr));
  DNND_RETURN_IF_ERROR(ReadFloat(t, "momentum", 0.0, 1.0, ctx, &o->momentum));
  DNND_RETURN_IF_ERROR(ReadFloat(t, "dampening", 0.0, 1.0, ctx, &o->dampening));
  DNND_RETURN_IF_ERROR(ReadBool(t, "nesterov", ctx, &o->nesterov));
  DNND_RETURN_IF_ERROR(ReadFloat(t, "weight_decay", 0.0, 1e3, ctx, &o->weight_decay));
  DNND_RETURN_IF_ERROR(ReadFloat(t, "beta1", 0.0, 0.999999, ctx, &o->beta1));
  DNND_RETURN_IF_ERROR(ReadFloat(t, "beta2", 0.0, 0.999999, ctx, &o->beta2));
  DNND_RETURN_IF_ERROR(ReadFloat(t, "eps", 1e-20, 1.0, ctx, &o->eps));
  Status s = optim::ValidateOptimizerOptions(*o);
  if (!s.ok()) return ErrorAt(t, ctx + ": " + s.message());
  return Status::Ok();
}

}  // namespace

Result<ModelSpec> ParseModelSpec(const toml::table& m) {
  ModelSpec spec;
  DNND_RETURN_IF_ERROR(CheckKeys(m, {"input", "loss", "init", "layers", "optimizer"}, "model"));
  const toml::node* input = m.get("input");
  if (!input)
    return ErrorAt(m, "model: missing required key 'input' (per-sample shape, e.g. [1, 28, 28])");
  const toml::array* arr = input->as_array();
  if (!arr || arr->empty())
    return ErrorAt(*input, "model.input: expected a non-empty array of positive integers");
  for (const auto& d : *arr) {
    auto v = d.value<int64_t>();
    if (!d.is_integer() || !v || *v < 1 || *v > (int64_t{1} << 31))
      return ErrorAt(d, "model.input: dimensions must be integers in [1, 2^31]");
    spec.input.push_back(*v);
  }
  std::string loss = "cross_entropy", init = "default";
  DNND_RETURN_IF_ERROR(ReadString(m, "loss", "model", &loss));
  auto lk = nn::ParseLoss(loss);
  if (!lk) return ErrorAt(*m.get("loss"), "model.loss: " + lk.status().message());
  spec.loss = *lk;
  DNND_RETURN_IF_ERROR(ReadString(m, "init", "model", &init));
  auto ik = nn::ParseInit(init);
  if (!ik) return ErrorAt(*m.get("init"), "model.init: " + ik.status().message());
  spec.init = *ik;

  const toml::node* layers = m.get("layers");
  if (!layers) return ErrorAt(m, "model: missing required [[model.layers]]");
  const toml::array* la = layers->as_array();
  if (!la || la->empty())
    return ErrorAt(*layers, "model.layers: expected a non-empty array of tables");
  if (la->size() > kMaxModelLayers)
    return ErrorAt(*layers, "model.layers: " + std::to_string(la->size()) +
                                " layers; the limit is " + std::to_string(kMaxModelLayers));
  for (size_t i = 0; i < la->size(); ++i) {
    const toml::table* lt = (*la)[i].as_table();
    if (!lt) return ErrorAt((*la)[i], "model.layers[" + std::to_string(i) + "]: expected a table");
    DNND_ASSIGN_OR_RETURN(LayerSpec l, ParseLayer(*lt, i));
    spec.layers.push_back(std::move(l));
  }
  if (const toml::node* o = m.get("optimizer")) {
    if (!o->is_table()) return ErrorAt(*o, "model.optimizer: expected a table");
    DNND_RETURN_IF_ERROR(ParseOptimizer(*o->as_table(), &spec.optimizer));
  }
  return spec;
}

Result<ModelSpec> ParseModelSpecText(const std::string& text, const std::string& source_name) {
  // Spec text arrives from files and, later, from peers: guard toml++ first.
  DNND_RETURN_IF_ERROR(GuardToml(text, source_name));
  toml::table root;
  try {
    root = toml::parse(text, source_name);
  } catch (const toml::parse_error& e) {
    const auto& b = e.source().begin;
    return InvalidArgument(source_name + ":" + std::to_string(b.line) + ":" +
                           std::to_string(b.column) + ": " + std::string(e.description()));
  }
  const toml::table* m = root["model"].as_table();
  if (!m) return InvalidArgument(source_name + ": no [model] table");
  return ParseModelSpec(*m);
}

std::string ModelSpecToToml(const ModelSpec& spec) {
  std::ostringstream o;
  o << "[model]\ninput = [";
  for (size_t i = 0; i < spec.input.size(); ++i) o << (i ? ", " : "") << spec.input[i];
  o << "]\nloss = \"" << nn::LossName(spec.loss) << "\"\n";
  static const char* kInit[] = {"default", "xavier_uniform", "xavier_normal", "kaiming_uniform",
                                "kaiming_normal"};
  o << "init = \"" << kInit[static_cast<int>(spec.init)] << "\"\n";
  for (const auto& l : spec.layers) {
    o << "\n[[model.layers]]\ntype = \"" << l.type << "\"\n";
    if (l.type == "linear" || l.type == "conv2d") {
      if (l.in) o << "in = " << l.in << "\n";
      o << "out = " << l.out << "\n";
      if (!l.bias) o << "bias = false\n";
    }
    if (l.type == "conv2d" || l.type == "maxpool2d") {
      o << "kernel = " << l.kernel << "\n";
      if (l.stride) o << "stride = " << l.stride << "\n";
    }
    if (l.type == "conv2d") o << "padding = " << l.padding << "\n";
    if (l.type == "dropout") o << "p = " << ShortestText(l.p) << "\n";
  }
  const auto& op = spec.optimizer;
  // Each float in its shortest form (lr = 0.001, not 0.00100000005).
  auto f = [](float v) { return ShortestText(v); };
  o << "\n[model.optimizer]\ntype = \"" << op.type << "\"\nlr = " << f(op.lr)
    << "\nmomentum = " << f(op.momentum) << "\ndampening = " << f(op.dampening)
    << "\nnesterov = " << (op.nesterov ? "true" : "false")
    << "\nweight_decay = " << f(op.weight_decay) << "\nbeta1 = " << f(op.beta1)
    << "\nbeta2 = " << f(op.beta2) << "\neps = " << f(op.eps) << "\n";
  return o.str();
}

std::string ArchitectureDifference(const ModelSpec& a, const ModelSpec& b) {
  if (a.input != b.input)
    return "input " + ShapeToString(a.input) + " vs " + ShapeToString(b.input);
  if (a.loss != b.loss)
    return std::string("loss ") + nn::LossName(a.loss) + " vs " + nn::LossName(b.loss);
  if (a.layers.size() != b.layers.size())
    return std::to_string(a.layers.size()) + " layers vs " + std::to_string(b.layers.size());
  for (size_t i = 0; i < a.layers.size(); ++i) {
    const LayerSpec &x = a.layers[i], &y = b.layers[i];
    const std::string at = "layer " + std::to_string(i) + ": ";
    if (x.type != y.type) return at + x.type + " vs " + y.type;
    if (x.kernel != y.kernel || x.stride != y.stride || x.padding != y.padding)
      return at + "kernel/stride/padding " + std::to_string(x.kernel) + "/" +
             std::to_string(x.stride) + "/" + std::to_string(x.padding) + " vs " +
             std::to_string(y.kernel) + "/" + std::to_string(y.stride) + "/" +
             std::to_string(y.padding);
    if (x.p != y.p) return at + "dropout p " + std::to_string(x.p) + " vs " + std::to_string(y.p);
  }
  return "";
}

Result<std::shared_ptr<nn::Sequential>> BuildModel(const ModelSpec& spec, uint64_t seed,
                                                   const ModelLimits& limits) {
  Rng rng(seed);
  auto model = std::make_shared<nn::Sequential>();
  Shape shape = spec.input;
  std::string prev = "the input";
  int64_t parameters = 0;
  // Counted before a layer is allocated, in double: the sizes are the
  // user's, and their product may not fit in 64 bits.
  auto add = [&](const std::string& ctx, double n) -> Status {
    if (n + static_cast<double>(parameters) > static_cast<double>(limits.max_parameters))
      return ResourceExhausted(ctx + " takes the model past " +
                               std::to_string(limits.max_parameters) + " parameters (" +
                               limits.setting + ")");
    parameters += static_cast<int64_t>(n);
    return Status::Ok();
  };
  for (size_t i = 0; i < spec.layers.size(); ++i) {
    const LayerSpec& l = spec.layers[i];
    const std::string ctx = l.where + ": layer " + std::to_string(i) + " (" + l.type + ")";
    std::shared_ptr<nn::Module> m;
    if (l.type == "linear") {
      int64_t in = l.in ? l.in : (shape.size() == 1 ? shape[0] : 0);
      if (in == 0 || shape.size() != 1 || shape[0] != in)
        return InvalidArgument(ctx + " expects input [" + (in ? std::to_string(in) : "features") +
                               "] but " + prev + " gives " + ShapeToString(shape) +
                               (shape.size() != 1 ? " (add a flatten layer before it)" : ""));
      DNND_RETURN_IF_ERROR(add(ctx, (static_cast<double>(in) + 1) * static_cast<double>(l.out)));
      m = std::make_shared<nn::Linear>(in, l.out, rng, l.bias, spec.init);
    } else if (l.type == "conv2d") {
      int64_t in = l.in ? l.in : (shape.size() == 3 ? shape[0] : 0);
      if (in == 0)
        return InvalidArgument(ctx + " expects input [channels, h, w] but " + prev + " gives " +
                               ShapeToString(shape));
      DNND_RETURN_IF_ERROR(add(ctx, (static_cast<double>(in) * static_cast<double>(l.kernel) *
                                         static_cast<double>(l.kernel) +
                                     1) *
                                        static_cast<double>(l.out)));
      m = std::make_shared<nn::Conv2d>(in, l.out, l.kernel, l.stride ? l.stride : 1, l.padding, rng,
                                       l.bias, spec.init);
    } else if (l.type == "maxpool2d") {
      m = std::make_shared<nn::MaxPool2d>(l.kernel, l.stride);
    } else if (l.type == "flatten") {
      m = std::make_shared<nn::Flatten>();
    } else if (l.type == "relu") {
      m = nn::ReLU();
    } else if (l.type == "sigmoid") {
      m = nn::Sigmoid();
    } else if (l.type == "tanh") {
      m = nn::Tanh();
    } else if (l.type == "softmax") {
      m = nn::Softmax();
    } else if (l.type == "dropout") {
      m = std::make_shared<nn::Dropout>(l.p, seed ^ (0x9e3779b97f4a7c15ULL * (i + 1)));
    } else {
      return InvalidArgument(ctx + ": unknown layer type");
    }
    auto out = m->OutputShape(shape);
    if (!out) return InvalidArgument(ctx + ": " + out.status().message() + " (from " + prev + ")");
    shape = *out;
    prev = "layer " + std::to_string(i) + " (" + l.type + ")";
    model->Add(std::move(m));
  }
  return model;
}

}  // namespace dnnd
