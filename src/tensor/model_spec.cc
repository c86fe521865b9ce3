#include "tensor/model_spec.h"

#include <toml++/toml.h>

#include <algorithm>
#include <map>
#include <set>
#include <sstream>

#include "core/did_you_mean.h"
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

// A block's integer parameters while its nodes are read (null outside blocks).
using BlockArgs = std::map<std::string, int64_t>;
thread_local const BlockArgs* tls_block_args = nullptr;

// Reads an integer key with a lower bound; absent keys keep `*out`. Inside a
// block, the value may be a string naming one of the block's params.
Status ReadInt(const toml::table& t, const char* key, int64_t min, bool required,
               const std::string& ctx, int64_t* out) {
  const toml::node* n = t.get(key);
  if (!n) {
    if (required) return ErrorAt(t, ctx + ": missing required key '" + key + "'");
    return Status::Ok();
  }
  std::optional<int64_t> v = n->value<int64_t>();
  if (n->is_string() && tls_block_args) {
    const std::string name = *n->value<std::string>();
    auto it = tls_block_args->find(name);
    if (it == tls_block_args->end()) {
      std::string list;
      for (const auto& [k, unused] : *tls_block_args) list += (list.empty() ? "" : ", ") + k;
      return ErrorAt(*n, ctx + "." + key + ": '" + name + "' is not a parameter of the block (" +
                             (list.empty() ? "it has none" : "params: " + list) + ")");
    }
    v = it->second;
  } else if (!n->is_integer() || !v) {
    return ErrorAt(*n, ctx + "." + key + ": expected an integer");
  }
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

const std::set<std::string>& KnownTypes() {
  static const std::set<std::string> k = {
      "linear",      "conv2d",      "maxpool2d", "avgpool2d", "global_avgpool2d",
      "batchnorm1d", "batchnorm2d", "layernorm", "add",       "concat",
      "leaky_relu",  "flatten",     "relu",      "gelu",      "sigmoid",
      "tanh",        "softmax",     "dropout",   "block"};
  return k;
}

std::string TypeList() {
  std::string list;
  for (const auto& t : KnownTypes()) list += (list.empty() ? "" : ", ") + t;
  return list;
}

// Reads one node's type-specific keys (`common` are the keys every node of
// this form may have: type, plus name and inputs in the graph form).
Result<LayerSpec> ParseLayer(const toml::table& t, const std::string& ctx,
                             std::set<std::string> common) {
  LayerSpec l;
  l.where = Where(t);
  DNND_RETURN_IF_ERROR(ReadString(t, "type", ctx, &l.type, true));
  auto keys = [&](std::initializer_list<const char*> more) {
    std::set<std::string> allowed = common;
    for (const char* k : more) allowed.insert(k);
    return CheckKeys(t, allowed, ctx);
  };
  static const std::set<std::string> kShapeless = {
      "flatten", "relu", "gelu", "sigmoid", "tanh", "softmax", "add", "global_avgpool2d"};
  if (l.type == "linear") {
    DNND_RETURN_IF_ERROR(keys({"in", "out", "bias"}));
    DNND_RETURN_IF_ERROR(ReadInt(t, "in", 1, false, ctx, &l.in));
    DNND_RETURN_IF_ERROR(ReadInt(t, "out", 1, true, ctx, &l.out));
    DNND_RETURN_IF_ERROR(ReadBool(t, "bias", ctx, &l.bias));
  } else if (l.type == "conv2d") {
    DNND_RETURN_IF_ERROR(keys({"in", "out", "kernel", "stride", "padding", "groups", "bias"}));
    l.stride = 1;
    DNND_RETURN_IF_ERROR(ReadInt(t, "in", 1, false, ctx, &l.in));
    DNND_RETURN_IF_ERROR(ReadInt(t, "out", 1, true, ctx, &l.out));
    DNND_RETURN_IF_ERROR(ReadInt(t, "kernel", 1, true, ctx, &l.kernel));
    DNND_RETURN_IF_ERROR(ReadInt(t, "stride", 1, false, ctx, &l.stride));
    DNND_RETURN_IF_ERROR(ReadInt(t, "padding", 0, false, ctx, &l.padding));
    DNND_RETURN_IF_ERROR(ReadInt(t, "groups", 1, false, ctx, &l.groups));
    DNND_RETURN_IF_ERROR(ReadBool(t, "bias", ctx, &l.bias));
    if (l.out % l.groups != 0)
      return ErrorAt(t, ctx + ": out = " + std::to_string(l.out) +
                            " is not a multiple of groups = " + std::to_string(l.groups));
  } else if (l.type == "maxpool2d" || l.type == "avgpool2d") {
    DNND_RETURN_IF_ERROR(keys({"kernel", "stride", "padding"}));
    DNND_RETURN_IF_ERROR(ReadInt(t, "kernel", 1, true, ctx, &l.kernel));
    DNND_RETURN_IF_ERROR(ReadInt(t, "stride", 1, false, ctx, &l.stride));
    DNND_RETURN_IF_ERROR(ReadInt(t, "padding", 0, false, ctx, &l.padding));
    if (2 * l.padding > l.kernel)
      return ErrorAt(t, ctx + ": padding = " + std::to_string(l.padding) +
                            " is more than half the kernel (" + std::to_string(l.kernel) + ")");
  } else if (l.type == "batchnorm1d" || l.type == "batchnorm2d") {
    DNND_RETURN_IF_ERROR(keys({"eps", "momentum", "affine"}));
    DNND_RETURN_IF_ERROR(ReadFloat(t, "eps", 1e-12, 1.0, ctx, &l.eps));
    DNND_RETURN_IF_ERROR(ReadFloat(t, "momentum", 0.0, 1.0, ctx, &l.momentum));
    DNND_RETURN_IF_ERROR(ReadBool(t, "affine", ctx, &l.affine));
  } else if (l.type == "layernorm") {
    DNND_RETURN_IF_ERROR(keys({"dims", "eps", "affine"}));
    DNND_RETURN_IF_ERROR(ReadInt(t, "dims", 1, false, ctx, &l.dims));
    DNND_RETURN_IF_ERROR(ReadFloat(t, "eps", 1e-12, 1.0, ctx, &l.eps));
    DNND_RETURN_IF_ERROR(ReadBool(t, "affine", ctx, &l.affine));
  } else if (l.type == "concat") {
    DNND_RETURN_IF_ERROR(keys({"dim"}));
    DNND_RETURN_IF_ERROR(ReadInt(t, "dim", 1, false, ctx, &l.dim));
  } else if (l.type == "leaky_relu") {
    DNND_RETURN_IF_ERROR(keys({"slope"}));
    DNND_RETURN_IF_ERROR(ReadFloat(t, "slope", -1e3, 1e3, ctx, &l.slope));
  } else if (l.type == "dropout") {
    DNND_RETURN_IF_ERROR(keys({"p"}));
    l.p = -1.0f;
    DNND_RETURN_IF_ERROR(ReadFloat(t, "p", 0.0, 0.999999, ctx, &l.p));
    if (l.p < 0.0f) return ErrorAt(t, ctx + ": missing required key 'p'");
  } else if (kShapeless.count(l.type)) {
    DNND_RETURN_IF_ERROR(keys({}));
  } else {
    std::string hint;
    if (auto m = DidYouMean(l.type, {KnownTypes().begin(), KnownTypes().end()}))
      hint = "; did you mean '" + *m + "'?";
    return ErrorAt(*t.get("type"), ctx + ".type: unknown layer type '" + l.type + "' (expected " +
                                       TypeList() + ")" + hint);
  }
  return l;
}

// Collects every error of a spec (one per line) instead of stopping at the
// first, so `dnnd config check` shows them all.
struct Errors {
  std::vector<std::string> lines;
  void Add(const Status& s) {
    if (!s.ok()) lines.push_back(s.message());
  }
  bool empty() const { return lines.empty(); }
  Status ToStatus() const {
    std::string all;
    for (const auto& l : lines) all += (all.empty() ? "" : "\n") + l;
    return InvalidArgument(all);
  }
};

void ParseOptimizer(const toml::table& t, optim::OptimizerOptions* o, Errors& errors) {
  const std::string ctx = "model.optimizer";
  const size_t before = errors.lines.size();
  errors.Add(CheckKeys(t,
                       {"type", "lr", "momentum", "dampening", "nesterov", "weight_decay",
                        "decay_bias_and_norm", "beta1", "beta2", "eps"},
                       ctx));
  errors.Add(ReadString(t, "type", ctx, &o->type));
  if (o->type != "sgd" && o->type != "adam" && o->type != "adamw") {
    std::string hint;
    if (auto m = DidYouMean(o->type, {"sgd", "adam", "adamw"}))
      hint = "; did you mean '" + *m + "'?";
    errors.Add(ErrorAt(*t.get("type"), ctx + ".type: unknown optimizer '" + o->type +
                                           "' (expected sgd, adam, adamw)" + hint));
  }
  errors.Add(ReadFloat(t, "lr", 1e-12, 1e3, ctx, &o->lr));
  errors.Add(ReadFloat(t, "momentum", 0.0, 1.0, ctx, &o->momentum));
  errors.Add(ReadFloat(t, "dampening", 0.0, 1.0, ctx, &o->dampening));
  errors.Add(ReadBool(t, "nesterov", ctx, &o->nesterov));
  errors.Add(ReadFloat(t, "weight_decay", 0.0, 1e3, ctx, &o->weight_decay));
  errors.Add(ReadBool(t, "decay_bias_and_norm", ctx, &o->decay_bias_and_norm));
  errors.Add(ReadFloat(t, "beta1", 0.0, 0.999999, ctx, &o->beta1));
  errors.Add(ReadFloat(t, "beta2", 0.0, 0.999999, ctx, &o->beta2));
  errors.Add(ReadFloat(t, "eps", 1e-20, 1.0, ctx, &o->eps));
  if (errors.lines.size() != before) return;  // the combination check needs valid values
  Status s = optim::ValidateOptimizerOptions(*o);
  if (!s.ok()) errors.Add(ErrorAt(t, ctx + ": " + s.message()));
}

// Reads `inputs = [...]` (strings) into `out`.
Status ReadInputs(const toml::table& t, const std::string& ctx, std::vector<std::string>* out) {
  const toml::node* n = t.get("inputs");
  if (!n) return Status::Ok();
  const toml::array* a = n->as_array();
  if (!a || a->empty())
    return ErrorAt(*n, ctx + ".inputs: expected a non-empty array of node names");
  for (const auto& e : *a) {
    if (!e.is_string()) return ErrorAt(e, ctx + ".inputs: expected node names (strings)");
    out->push_back(*e.value<std::string>());
  }
  return Status::Ok();
}

bool ValidName(const std::string& n) {
  if (n.empty() || n.size() > 128 || n == "input" || n == "in") return false;
  for (char c : n)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-'))
      return false;
  return n.front() != '.' && n.back() != '.';
}

// Reads the graph form's nodes, expanding blocks, into `out`; every error
// goes to `errors`. `prefix` qualifies names inside a block instance and
// `block_input` is what its "in" (and its first node) reads.
class GraphReader {
 public:
  GraphReader(const toml::table& model, Errors& errors) : model_(model), errors_(errors) {}

  void ReadNodes(const toml::array& nodes, const std::string& ctx, const std::string& prefix,
                 const std::string& block_input, std::vector<LayerSpec>& out, int depth) {
    std::string prev = block_input;  // what a node without `inputs` reads
    for (size_t i = 0; i < nodes.size(); ++i) {
      const std::string nctx = ctx + "[" + std::to_string(i) + "]";
      const toml::table* t = nodes[i].as_table();
      if (!t) {
        errors_.Add(ErrorAt(nodes[i], nctx + ": expected a table"));
        continue;
      }
      std::string name, type;
      Status s = ReadString(*t, "name", nctx, &name, true);
      if (s.ok() && !ValidName(name))
        s = ErrorAt(*t->get("name"), nctx + ".name: '" + name +
                                         "' is not a node name (letters, digits, _ - ., not "
                                         "'input' or 'in')");
      if (s.ok()) s = ReadString(*t, "type", nctx, &type, true);
      std::vector<std::string> inputs;
      if (s.ok()) s = ReadInputs(*t, nctx, &inputs);
      if (!s.ok()) {
        errors_.Add(s);
        continue;
      }
      const std::string full = prefix.empty() ? name : prefix + "." + name;
      const std::string label = nctx + " (" + full + ")";
      // Inside a block, names are the block's: qualify them.
      for (auto& in : inputs) {
        if (!prefix.empty()) in = in == "in" ? block_input : prefix + "." + in;
      }
      if (inputs.empty()) inputs.push_back(prev);
      if (type == "block") {
        if (depth > 0) {
          errors_.Add(ErrorAt(*t, label + ": blocks cannot contain blocks"));
          continue;
        }
        prev = ReadBlockNode(*t, label, full, inputs, out);
        continue;
      }
      auto l = ParseLayer(*t, label, {"name", "type", "inputs"});
      if (!l) {
        errors_.Add(l.status());
        prev = full;
        continue;
      }
      l->name = full;
      l->inputs = std::move(inputs);
      out.push_back(std::move(*l));
      prev = full;
      if (out.size() > kMaxModelLayers) {
        errors_.Add(ErrorAt(
            *t, label + ": the model has more than " + std::to_string(kMaxModelLayers) + " nodes"));
        return;
      }
    }
  }

 private:
  // Expands one `type = "block"` node; returns the name of its output.
  std::string ReadBlockNode(const toml::table& t, const std::string& label, const std::string& full,
                            const std::vector<std::string>& inputs, std::vector<LayerSpec>& out) {
    Status s = CheckKeys(t, {"name", "type", "inputs", "block", "repeat", "start", "args"}, label);
    std::string block;
    int64_t repeat = 0, start = 0;
    if (s.ok()) s = ReadString(t, "block", label, &block, true);
    if (s.ok()) s = ReadInt(t, "repeat", 1, false, label, &repeat);
    if (s.ok()) s = ReadInt(t, "start", 0, false, label, &start);
    if (s.ok() && inputs.size() != 1) s = ErrorAt(t, label + ": a block takes one input");
    if (s.ok() && repeat > static_cast<int64_t>(kMaxModelLayers))
      s = ErrorAt(*t.get("repeat"),
                  label + ".repeat: more than " + std::to_string(kMaxModelLayers) + " copies");
    if (!s.ok()) {
      errors_.Add(s);
      return full;
    }
    const toml::table* blocks = model_["blocks"].as_table();
    const toml::table* def = blocks ? (*blocks)[block].as_table() : nullptr;
    if (!def) {
      std::vector<std::string> names;
      if (blocks)
        for (const auto& [k, v] : *blocks) names.emplace_back(k.str());
      std::string hint;
      if (auto m = DidYouMean(block, names)) hint = "; did you mean '" + *m + "'?";
      errors_.Add(
          ErrorAt(*t.get("block"), label + ".block: no [model.blocks." + block + "]" + hint));
      return full;
    }
    const std::string bctx = "model.blocks." + block;
    s = CheckKeys(*def, {"params", "nodes"}, bctx);
    BlockArgs args;
    auto read_args = [&](const toml::node* n, const std::string& ctx, bool declare) -> Status {
      if (!n) return Status::Ok();
      const toml::table* a = n->as_table();
      if (!a) return ErrorAt(*n, ctx + ": expected a table of integers");
      for (const auto& [k, v] : *a) {
        const std::string key(k.str());
        if (!declare && !args.count(key)) {
          std::string list;
          for (const auto& [p, unused] : args) list += (list.empty() ? "" : ", ") + p;
          return ErrorAt(v, ctx + "." + key + ": block '" + block + "' has no param '" + key +
                                "' (params: " + (list.empty() ? "none" : list) + ")");
        }
        auto iv = v.value<int64_t>();
        if (!v.is_integer() || !iv) return ErrorAt(v, ctx + "." + key + ": expected an integer");
        args[key] = *iv;
      }
      return Status::Ok();
    };
    if (s.ok()) s = read_args(def->get("params"), bctx + ".params", true);
    if (s.ok()) s = read_args(t.get("args"), label + ".args", false);
    const toml::array* nodes = (*def)["nodes"].as_array();
    if (s.ok() && (!nodes || nodes->empty()))
      s = ErrorAt(*def, bctx + ": missing [[" + bctx + ".nodes]]");
    if (!s.ok()) {
      errors_.Add(s);
      return full;
    }
    std::string input = inputs[0];
    const int64_t copies = repeat ? repeat : 1;
    for (int64_t c = 0; c < copies; ++c) {
      const std::string prefix = repeat ? full + "." + std::to_string(start + c) : full;
      const size_t first = out.size();
      tls_block_args = &args;
      ReadNodes(*nodes, bctx + ".nodes", prefix, input, out, 1);
      tls_block_args = nullptr;
      if (out.size() == first || out.size() > kMaxModelLayers) return full;
      input = out.back().name;
    }
    return input;
  }

  const toml::table& model_;
  Errors& errors_;
};

// Checks names and inputs, and sorts the nodes topologically (keeping the
// file's order where it is one). The output is the last node in the file.
void CheckGraph(std::vector<LayerSpec>& nodes, Errors& errors) {
  std::map<std::string, size_t> index;
  std::vector<std::string> names;
  for (size_t i = 0; i < nodes.size(); ++i) {
    auto [it, fresh] = index.emplace(nodes[i].name, i);
    if (!fresh)
      errors.Add(InvalidArgument(nodes[i].where + ": node '" + nodes[i].name +
                                 "' is defined twice (first at " + nodes[it->second].where + ")"));
    names.push_back(nodes[i].name);
  }
  if (!errors.empty()) return;
  const size_t n = nodes.size();
  std::vector<std::vector<size_t>> readers(n);
  std::vector<size_t> pending(n, 0);
  std::vector<bool> used(n, false);
  for (size_t i = 0; i < n; ++i) {
    for (const auto& in : nodes[i].inputs) {
      if (in == "input") continue;
      auto it = index.find(in);
      if (it == index.end()) {
        std::string hint;
        if (auto m = DidYouMean(in, names)) hint = "; did you mean '" + *m + "'?";
        errors.Add(InvalidArgument(nodes[i].where + ": node '" + nodes[i].name + "' reads '" + in +
                                   "', which no node is named" + hint));
        continue;
      }
      if (it->second == i) {
        errors.Add(InvalidArgument(nodes[i].where + ": node '" + nodes[i].name +
                                   "' reads itself (a cycle)"));
        continue;
      }
      readers[it->second].push_back(i);
      used[it->second] = true;
      ++pending[i];
    }
  }
  for (size_t i = 0; i + 1 < n; ++i)
    if (!used[i])
      errors.Add(InvalidArgument(nodes[i].where + ": node '" + nodes[i].name +
                                 "' is never used (no node reads it and it is not the last, the "
                                 "output)"));
  if (!errors.empty()) return;
  // Kahn's algorithm, smallest file index first.
  std::set<size_t> ready;
  for (size_t i = 0; i < n; ++i)
    if (pending[i] == 0) ready.insert(i);
  std::vector<size_t> order;
  while (!ready.empty()) {
    const size_t i = *ready.begin();
    ready.erase(ready.begin());
    order.push_back(i);
    for (size_t r : readers[i])
      if (--pending[r] == 0) ready.insert(r);
  }
  if (order.size() != n) {
    // What is left reads a cycle or is on one; drop, repeatedly, the nodes no
    // remaining node reads (downstream of a cycle), leaving the cycle itself.
    std::vector<bool> left(n);
    for (size_t i = 0; i < n; ++i) left[i] = pending[i] > 0;
    for (bool changed = true; changed;) {
      changed = false;
      for (size_t i = 0; i < n; ++i) {
        if (!left[i]) continue;
        bool read = false;
        for (size_t r : readers[i]) read = read || left[r];
        if (!read) left[i] = false, changed = true;
      }
    }
    std::string cycle;
    size_t first = n;
    for (size_t i = 0; i < n; ++i)
      if (left[i]) {
        cycle += (cycle.empty() ? "" : ", ") + nodes[i].name;
        first = std::min(first, i);
      }
    errors.Add(InvalidArgument(nodes[first == n ? 0 : first].where + ": the nodes " + cycle +
                               " read each other in a cycle"));
    return;
  }
  if (order.back() != n - 1) {
    errors.Add(InvalidArgument(nodes[n - 1].where + ": the last node, '" + nodes[n - 1].name +
                               "', is the output but other nodes read it"));
    return;
  }
  std::vector<LayerSpec> sorted;
  sorted.reserve(n);
  for (size_t i : order) sorted.push_back(std::move(nodes[i]));
  nodes = std::move(sorted);
}

}  // namespace

Result<ModelSpec> ParseModelSpec(const toml::table& m) {
  ModelSpec spec;
  Errors errors;
  errors.Add(CheckKeys(
      m, {"input", "loss", "label_smoothing", "init", "layers", "nodes", "blocks", "optimizer"},
      "model"));
  const toml::node* input = m.get("input");
  if (!input) {
    errors.Add(
        ErrorAt(m, "model: missing required key 'input' (per-sample shape, e.g. [1, 28, 28])"));
  } else if (const toml::array* arr = input->as_array(); !arr || arr->empty()) {
    errors.Add(ErrorAt(*input, "model.input: expected a non-empty array of positive integers"));
  } else {
    for (const auto& d : *arr) {
      auto v = d.value<int64_t>();
      if (!d.is_integer() || !v || *v < 1 || *v > (int64_t{1} << 31)) {
        errors.Add(ErrorAt(d, "model.input: dimensions must be integers in [1, 2^31]"));
        break;
      }
      spec.input.push_back(*v);
    }
  }
  std::string loss = "cross_entropy", init = "default";
  if (Status s = ReadString(m, "loss", "model", &loss); !s.ok()) {
    errors.Add(s);
  } else if (auto lk = nn::ParseLoss(loss); !lk) {
    errors.Add(ErrorAt(*m.get("loss"), "model.loss: " + lk.status().message()));
  } else {
    spec.loss = *lk;
  }
  errors.Add(ReadFloat(m, "label_smoothing", 0.0, 1.0, "model", &spec.label_smoothing));
  if (spec.label_smoothing > 0 && spec.loss != nn::LossKind::kCrossEntropy)
    errors.Add(ErrorAt(*m.get("label_smoothing"),
                       "model.label_smoothing: applies to the cross_entropy loss only"));
  if (Status s = ReadString(m, "init", "model", &init); !s.ok()) {
    errors.Add(s);
  } else if (auto ik = nn::ParseInit(init); !ik) {
    errors.Add(ErrorAt(*m.get("init"), "model.init: " + ik.status().message()));
  } else {
    spec.init = *ik;
  }

  const toml::node* layers = m.get("layers");
  const toml::node* nodes = m.get("nodes");
  if (layers && nodes) {
    errors.Add(ErrorAt(*nodes,
                       "model: [[model.layers]] (a chain) and [[model.nodes]] (a graph) "
                       "are two forms of one thing; use one"));
  } else if (layers) {
    const toml::array* la = layers->as_array();
    if (m.get("blocks"))
      errors.Add(ErrorAt(*m.get("blocks"),
                         "model.blocks: blocks need the graph form, "
                         "[[model.nodes]]"));
    if (!la || la->empty()) {
      errors.Add(ErrorAt(*layers, "model.layers: expected a non-empty array of tables"));
    } else if (la->size() > kMaxModelLayers) {
      errors.Add(ErrorAt(*layers, "model.layers: " + std::to_string(la->size()) +
                                      " layers; the limit is " + std::to_string(kMaxModelLayers)));
    } else {
      for (size_t i = 0; i < la->size(); ++i) {
        const std::string ctx = "model.layers[" + std::to_string(i) + "]";
        const toml::table* lt = (*la)[i].as_table();
        if (!lt) {
          errors.Add(ErrorAt((*la)[i], ctx + ": expected a table"));
          continue;
        }
        auto l = ParseLayer(*lt, ctx, {"type"});
        if (!l) {
          errors.Add(l.status());
          continue;
        }
        if (l->type == "add" || l->type == "concat") {
          errors.Add(ErrorAt(*lt, ctx + ": '" + l->type +
                                      "' merges several inputs; it needs the graph form, "
                                      "[[model.nodes]] with inputs"));
          continue;
        }
        l->name = std::to_string(i);
        l->inputs = {i == 0 ? "input" : std::to_string(i - 1)};
        spec.layers.push_back(std::move(*l));
      }
    }
  } else if (nodes) {
    const toml::array* na = nodes->as_array();
    if (!na || na->empty()) {
      errors.Add(ErrorAt(*nodes, "model.nodes: expected a non-empty array of tables"));
    } else {
      GraphReader reader(m, errors);
      reader.ReadNodes(*na, "model.nodes", "", "input", spec.layers, 0);
      if (errors.empty()) CheckGraph(spec.layers, errors);
    }
  } else {
    errors.Add(ErrorAt(m, "model: missing required [[model.layers]] (or [[model.nodes]])"));
  }
  if (const toml::node* o = m.get("optimizer")) {
    if (!o->is_table())
      errors.Add(ErrorAt(*o, "model.optimizer: expected a table"));
    else
      ParseOptimizer(*o->as_table(), &spec.optimizer, errors);
  }
  if (!errors.empty()) return errors.ToStatus();
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

namespace {

// Whether the nodes are the list form's chain "0", "1", ... (written back as
// [[model.layers]], the text older checkpoints hold).
bool IsChain(const ModelSpec& spec) {
  for (size_t i = 0; i < spec.layers.size(); ++i) {
    const LayerSpec& l = spec.layers[i];
    if (l.name != std::to_string(i) || l.inputs.size() != 1 ||
        l.inputs[0] != (i == 0 ? "input" : std::to_string(i - 1)))
      return false;
  }
  return true;
}

std::string Quoted(const std::string& s) { return "\"" + s + "\""; }  // names are [A-Za-z0-9_.-]

}  // namespace

std::string ModelSpecToToml(const ModelSpec& spec) {
  std::ostringstream o;
  auto f = [](float v) { return ShortestText(v); };  // lr = 0.001, not 0.00100000005
  o << "[model]\ninput = [";
  for (size_t i = 0; i < spec.input.size(); ++i) o << (i ? ", " : "") << spec.input[i];
  o << "]\nloss = \"" << nn::LossName(spec.loss) << "\"\n";
  if (spec.label_smoothing > 0) o << "label_smoothing = " << f(spec.label_smoothing) << "\n";
  static const char* kInit[] = {"default", "xavier_uniform", "xavier_normal", "kaiming_uniform",
                                "kaiming_normal"};
  o << "init = \"" << kInit[static_cast<int>(spec.init)] << "\"\n";
  const bool chain = IsChain(spec);
  for (size_t i = 0; i < spec.layers.size(); ++i) {
    const LayerSpec& l = spec.layers[i];
    o << (chain ? "\n[[model.layers]]\n" : "\n[[model.nodes]]\nname = " + Quoted(l.name) + "\n");
    o << "type = \"" << l.type << "\"\n";
    const std::string prev = i == 0 ? "input" : spec.layers[i - 1].name;
    if (!chain && (l.inputs.size() != 1 || l.inputs[0] != prev)) {
      o << "inputs = [";
      for (size_t k = 0; k < l.inputs.size(); ++k) o << (k ? ", " : "") << Quoted(l.inputs[k]);
      o << "]\n";
    }
    if (l.type == "linear" || l.type == "conv2d") {
      if (l.in) o << "in = " << l.in << "\n";
      o << "out = " << l.out << "\n";
      if (!l.bias) o << "bias = false\n";
    }
    if (l.type == "conv2d" || l.type == "maxpool2d" || l.type == "avgpool2d") {
      o << "kernel = " << l.kernel << "\n";
      if (l.stride) o << "stride = " << l.stride << "\n";
    }
    if (l.type == "conv2d") {
      o << "padding = " << l.padding << "\n";
      if (l.groups != 1) o << "groups = " << l.groups << "\n";
    }
    if ((l.type == "maxpool2d" || l.type == "avgpool2d") && l.padding)
      o << "padding = " << l.padding << "\n";
    if (l.type == "batchnorm1d" || l.type == "batchnorm2d")
      o << "eps = " << f(l.eps) << "\nmomentum = " << f(l.momentum) << "\n";
    if (l.type == "layernorm") o << "dims = " << l.dims << "\neps = " << f(l.eps) << "\n";
    if ((l.type == "batchnorm1d" || l.type == "batchnorm2d" || l.type == "layernorm") && !l.affine)
      o << "affine = false\n";
    if (l.type == "concat") o << "dim = " << l.dim << "\n";
    if (l.type == "leaky_relu") o << "slope = " << f(l.slope) << "\n";
    if (l.type == "dropout") o << "p = " << f(l.p) << "\n";
  }
  const auto& op = spec.optimizer;
  o << "\n[model.optimizer]\ntype = \"" << op.type << "\"\nlr = " << f(op.lr)
    << "\nmomentum = " << f(op.momentum) << "\ndampening = " << f(op.dampening)
    << "\nnesterov = " << (op.nesterov ? "true" : "false")
    << "\nweight_decay = " << f(op.weight_decay);
  if (!op.decay_bias_and_norm) o << "\ndecay_bias_and_norm = false";
  o << "\nbeta1 = " << f(op.beta1) << "\nbeta2 = " << f(op.beta2) << "\neps = " << f(op.eps)
    << "\n";
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
    const std::string at = x.name == std::to_string(i) ? "layer " + std::to_string(i) + ": "
                                                       : "node '" + x.name + "': ";
    if (x.name != y.name) return at + "name " + x.name + " vs " + y.name;
    if (x.type != y.type) return at + x.type + " vs " + y.type;
    if (x.inputs != y.inputs) return at + "different inputs";
    if (x.kernel != y.kernel || x.stride != y.stride || x.padding != y.padding)
      return at + "kernel/stride/padding " + std::to_string(x.kernel) + "/" +
             std::to_string(x.stride) + "/" + std::to_string(x.padding) + " vs " +
             std::to_string(y.kernel) + "/" + std::to_string(y.stride) + "/" +
             std::to_string(y.padding);
    if (x.groups != y.groups) return at + "groups differ";
    if (x.p != y.p) return at + "dropout p " + std::to_string(x.p) + " vs " + std::to_string(y.p);
    if (x.eps != y.eps || x.momentum != y.momentum || x.affine != y.affine || x.dims != y.dims ||
        x.dim != y.dim || x.slope != y.slope)
      return at + "settings differ";
  }
  return "";
}

Result<std::shared_ptr<nn::Graph>> BuildModel(const ModelSpec& spec, uint64_t seed,
                                              const ModelLimits& limits) {
  Rng rng(seed);
  auto model = std::make_shared<nn::Graph>();
  const bool chain = IsChain(spec);
  std::map<std::string, int> index;  // node name -> graph index
  std::vector<Shape> shapes;
  int64_t parameters = 0;
  // Counted before a node is allocated, in double: the sizes are the
  // user's, and their product may not fit in 64 bits.
  auto add = [&](const std::string& ctx, double n) -> Status {
    if (n + static_cast<double>(parameters) > static_cast<double>(limits.max_parameters))
      return ResourceExhausted(ctx + " takes the model past " +
                               std::to_string(limits.max_parameters) + " parameters (" +
                               limits.setting + ")");
    parameters += static_cast<int64_t>(n);
    return Status::Ok();
  };
  auto label = [&](size_t i) {
    const LayerSpec& l = spec.layers[i];
    return chain ? "layer " + std::to_string(i) + " (" + l.type + ")"
                 : "node '" + l.name + "' (" + l.type + ")";
  };
  for (size_t i = 0; i < spec.layers.size(); ++i) {
    const LayerSpec& l = spec.layers[i];
    const std::string ctx = l.where + ": " + label(i);
    std::vector<int> inputs;
    std::vector<Shape> in_shapes;
    std::string prev;
    for (const auto& in : l.inputs) {
      if (in == "input") {
        inputs.push_back(nn::Graph::kInput);
        in_shapes.push_back(spec.input);
      } else {
        auto it = index.find(in);
        if (it == index.end())
          return InvalidArgument(ctx + " reads '" + in + "', not built before it");
        inputs.push_back(it->second);
        in_shapes.push_back(shapes[it->second]);
      }
      prev += (prev.empty() ? "" : " and ") +
              (in == "input"
                   ? std::string("the input")
                   : (chain ? label(static_cast<size_t>(inputs.back())) : "node '" + in + "'"));
    }
    if (in_shapes.empty()) return InvalidArgument(ctx + " has no inputs");
    const Shape& shape = in_shapes[0];
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
      if (in % l.groups != 0)
        return InvalidArgument(
            ctx + ": its " + std::to_string(in) +
            " input channels are not a multiple of groups = " + std::to_string(l.groups));
      DNND_RETURN_IF_ERROR(
          add(ctx, (static_cast<double>(in / l.groups) * static_cast<double>(l.kernel) *
                        static_cast<double>(l.kernel) +
                    1) *
                       static_cast<double>(l.out)));
      m = std::make_shared<nn::Conv2d>(in, l.out, l.kernel, l.stride ? l.stride : 1, l.padding, rng,
                                       l.bias, spec.init, l.groups);
    } else if (l.type == "maxpool2d") {
      m = std::make_shared<nn::MaxPool2d>(l.kernel, l.stride, l.padding);
    } else if (l.type == "avgpool2d") {
      m = std::make_shared<nn::AvgPool2d>(l.kernel, l.stride, l.padding);
    } else if (l.type == "global_avgpool2d") {
      m = std::make_shared<nn::GlobalAvgPool2d>();
    } else if (l.type == "batchnorm1d" || l.type == "batchnorm2d") {
      const bool two = l.type == "batchnorm2d";
      if (shape.empty() || (two && shape.size() != 3) || (!two && shape.size() > 2))
        return InvalidArgument(ctx + " expects input " + (two ? "[c, h, w]" : "[c] or [c, l]") +
                               " but " + prev + " gives " + ShapeToString(shape));
      DNND_RETURN_IF_ERROR(add(ctx, 2.0 * static_cast<double>(shape[0])));
      m = std::make_shared<nn::BatchNorm>(shape[0], two ? 2 : 1, l.eps, l.momentum, l.affine);
    } else if (l.type == "layernorm") {
      if (static_cast<size_t>(l.dims) > shape.size())
        return InvalidArgument(ctx + " normalises the last " + std::to_string(l.dims) +
                               " dimensions but " + prev + " gives " + ShapeToString(shape));
      Shape tail(shape.end() - l.dims, shape.end());
      DNND_RETURN_IF_ERROR(add(ctx, 2.0 * static_cast<double>(ShapeNumel(tail))));
      m = std::make_shared<nn::LayerNorm>(tail, l.eps, l.affine);
    } else if (l.type == "add") {
      m = std::make_shared<nn::AddLayer>();
    } else if (l.type == "concat") {
      m = std::make_shared<nn::ConcatLayer>(static_cast<int>(l.dim));
    } else if (l.type == "flatten") {
      m = std::make_shared<nn::Flatten>();
    } else if (l.type == "relu") {
      m = nn::ReLU();
    } else if (l.type == "leaky_relu") {
      m = std::make_shared<nn::ActivationLayer>(nn::Activation::kLeakyRelu, l.slope);
    } else if (l.type == "gelu") {
      m = std::make_shared<nn::ActivationLayer>(nn::Activation::kGelu);
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
    if (inputs.size() < m->MinInputs() || inputs.size() > m->MaxInputs())
      return InvalidArgument(ctx + " takes " +
                             (m->MinInputs() == m->MaxInputs()
                                  ? std::to_string(m->MinInputs())
                                  : "at least " + std::to_string(m->MinInputs())) +
                             " input(s) but lists " + std::to_string(inputs.size()));
    auto out = m->OutputShapeOf(in_shapes);
    if (!out) return InvalidArgument(ctx + ": " + out.status().message() + " (from " + prev + ")");
    shapes.push_back(*out);
    index[l.name] = static_cast<int>(i);
    model->AddNode(l.name, std::move(m), std::move(inputs));
  }
  return model;
}

}  // namespace dnnd
