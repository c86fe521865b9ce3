#!/usr/bin/python3
"""PyTorch reference for dnnd's ops (tests/tensor/torch_reference.h).

    torch_reference.py <op> <in.safetensors> <out.safetensors> <json attrs>

Reads the inputs, computes y = op(inputs) in float64 (from the same float32
values dnnd sees), back-propagates sum(y * r) and writes "y", "grad.<name>"
for every input that takes a gradient, and for batch_norm the updated
"running_mean" and "running_var". Inputs that never take a gradient: r,
labels (class indices stored as floats), running_mean, running_var.

Ops (inputs; attrs):
  leaky_relu         x; slope
  gelu               x
  concat             x0 .. x<n-1>; n, dim
  batch_norm         x, [weight], [bias], [running_mean, running_var];
                     training, momentum, eps
  layer_norm         x, [weight], [bias]; normalized (element count of the
                     trailing dims), eps
  max_pool2d         x; kernel, stride, padding
  avg_pool2d         x; kernel, stride, padding (count_include_pad=True)
  global_avg_pool2d  x                              -> [n, c]
  cross_entropy      x (logits), labels; label_smoothing
  model              x, r, "state.<name>" for every parameter and buffer of
                     a dnnd model (nn::Module::NamedState; num_batches_tracked
                     as float); toml (ModelSpecToToml's text), training,
                     eval_after. Builds the model in torch.nn (GraphModel:
                     one module per node, registered under the node's dotted
                     name, so state_dict() names are dnnd's), loads the state
                     strictly and runs one forward in `training` mode.
                     Outputs y, grad.x, grad.<parameter>, "state.<buffer>"
                     after the forward and, with eval_after, "y_eval": an
                     eval-mode forward of x with the updated buffers.
  batch              every tensor named "<case>/<name>"; attrs is a list of
                     {"name", "op", "attrs"}; outputs "<case>/<output>"

Exit status 77: torch cannot be imported (the C++ test skips).
"""
import json
import struct
import sys
import tomllib

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError as e:  # pragma: no cover - depends on the interpreter
    print(f"torch_reference: cannot import torch: {e}", file=sys.stderr)
    sys.exit(77)

NO_GRAD = {"r", "labels", "running_mean", "running_var"}


class Fn(torch.nn.Module):
    """A stateless node (add, concat, global_avgpool2d)."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *xs):
        return self.fn(*xs)


def spec_nodes(model):
    """[(name, node table, inputs)] of a [model] table, list or graph form."""
    if "layers" in model:
        return [(str(i), l, ["input" if i == 0 else str(i - 1)]) for i, l in enumerate(model["layers"])]
    out = []
    for i, n in enumerate(model["nodes"]):
        prev = "input" if i == 0 else model["nodes"][i - 1]["name"]
        out.append((n["name"], n, list(n.get("inputs", [prev]))))
    return out


def make_module(node, xs):
    """The torch.nn module of a dnnd node, sized from its inputs `xs`."""
    t, x = node["type"], xs[0]
    nn = torch.nn
    if t == "linear":
        if node.get("in", x.shape[-1]) != x.shape[-1]:
            raise ValueError(f"{node['name']}: in {node['in']} but input {tuple(x.shape)}")
        return nn.Linear(x.shape[-1], node["out"], bias=node.get("bias", True))
    if t == "conv2d":
        if node.get("in", x.shape[1]) != x.shape[1]:
            raise ValueError(f"{node['name']}: in {node['in']} but input {tuple(x.shape)}")
        return nn.Conv2d(x.shape[1], node["out"], node["kernel"], stride=node.get("stride", 1),
                         padding=node.get("padding", 0), groups=node.get("groups", 1),
                         bias=node.get("bias", True))
    if t in ("maxpool2d", "avgpool2d"):
        k = node["kernel"]
        s = node.get("stride", 0) or k
        p = node.get("padding", 0)
        if t == "maxpool2d":
            return nn.MaxPool2d(k, s, p)
        return nn.AvgPool2d(k, s, p, count_include_pad=True)
    if t == "global_avgpool2d":
        return Fn(lambda v: v.mean(dim=(2, 3)))
    if t in ("batchnorm1d", "batchnorm2d"):
        cls = nn.BatchNorm1d if t == "batchnorm1d" else nn.BatchNorm2d
        return cls(x.shape[1], eps=node.get("eps", 1e-5), momentum=node.get("momentum", 0.1),
                   affine=node.get("affine", True))
    if t == "layernorm":
        return nn.LayerNorm(tuple(x.shape[x.dim() - node.get("dims", 1):]), eps=node.get("eps", 1e-5),
                            elementwise_affine=node.get("affine", True))
    if t == "add":
        return Fn(lambda *v: sum(v[1:], v[0]))
    if t == "concat":
        dim = node.get("dim", 1)
        return Fn(lambda *v: torch.cat(v, dim))
    if t == "leaky_relu":
        return nn.LeakyReLU(node.get("slope", 0.01))
    if t == "dropout":
        return nn.Dropout(node["p"])
    simple = {"flatten": nn.Flatten, "relu": nn.ReLU, "gelu": nn.GELU, "sigmoid": nn.Sigmoid,
              "tanh": nn.Tanh, "softmax": lambda: nn.Softmax(dim=-1)}
    if t in simple:
        return simple[t]()
    raise ValueError(f"unknown node type {t!r}")


class GraphModel(torch.nn.Module):
    """A dnnd model spec in torch.nn: node "layer1.0.conv1" is the module
    self.layer1[0].conv1-alike (nested containers), so state_dict() names
    are the node names + ".weight" etc., as dnnd names its tensors. Modules
    are sized by a forward of zeros at build time (`in` is optional in
    specs)."""

    def __init__(self, toml_text):
        super().__init__()
        model = tomllib.loads(toml_text)["model"]
        self.nodes = spec_nodes(model)
        self.mods = {}
        values = {"input": torch.zeros([2] + list(model["input"]))}
        with torch.no_grad():
            for name, node, inputs in self.nodes:
                xs = [values[i] for i in inputs]
                m = make_module(node, xs)
                m.eval()  # sizing must not touch running statistics
                self._register(name, m)
                self.mods[name] = m
                values[name] = m(*xs)

    def _register(self, name, module):
        parts = name.split(".")
        parent = self
        for p in parts[:-1]:
            if p not in parent._modules:
                parent.add_module(p, torch.nn.Module())
            parent = parent._modules[p]
        if parts[-1] in parent._modules:
            raise ValueError(f"node {name!r} registered twice")
        parent.add_module(parts[-1], module)

    def forward(self, x):
        values = {"input": x}
        last = x
        # The smallest |input| of a ReLU: float32 rounds values within ~1e-6
        # of a kink either way, so a case with inputs that close compares
        # rounding, not formulas (see run_model).
        self.min_relu_input = float("inf")
        for name, node, inputs in self.nodes:
            xs = [values[i] for i in inputs]
            if node["type"] == "relu":
                self.min_relu_input = min(self.min_relu_input, float(xs[0].detach().abs().min()))
            last = values[name] = self.mods[name](*xs)
        return last


def run_model(arrays, a):
    model = GraphModel(a["toml"])
    state = {}
    for k, v in arrays.items():
        if k.startswith("state."):
            t = torch.from_numpy(v)
            state[k[len("state."):]] = t.long() if k.endswith("num_batches_tracked") else t.double()
    model.double()
    model.load_state_dict(state, strict=True)
    model.train(a["training"])
    x = torch.from_numpy(arrays["x"]).double().requires_grad_(True)
    r = torch.from_numpy(arrays["r"]).double()
    y = model(x)
    (y * r).sum().backward()
    out = {"y": y.detach().numpy(), "grad.x": x.grad.numpy(),
           "min_relu_input": np.array([model.min_relu_input])}
    for k, p in model.named_parameters():
        out["grad." + k] = p.grad.numpy()
    for k, b in model.named_buffers():
        out["state." + k] = b.detach().double().numpy()
    if a.get("eval_after"):
        model.eval()
        with torch.no_grad():
            out["y_eval"] = model(x.detach()).numpy()
    return out


def load(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    body = data[8 + n:]
    out = {}
    for name, e in header.items():
        if e["dtype"] != "F32":
            raise ValueError(f"{name}: dtype {e['dtype']}, expected F32")
        b, en = e["data_offsets"]
        out[name] = np.frombuffer(body[b:en], dtype=np.float32).reshape(e["shape"]).copy()
    return out


def save(path, tensors):
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        a = np.array(tensors[name], dtype=np.float32, order="C")  # keeps 0-d shapes
        header[name] = {"dtype": "F32", "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        blobs.append(a.tobytes())
        offset += a.nbytes
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def trailing_shape(shape, count):
    """The trailing dims of `shape` whose product is `count`."""
    prod = 1
    for k in range(len(shape) - 1, -1, -1):
        prod *= shape[k]
        if prod == count:
            return tuple(shape[k:])
    raise ValueError(f"{count} is not the size of trailing dims of {tuple(shape)}")


def run_case(op, arrays, a):
    if op == "model":
        return run_model(arrays, a)
    t = {k: torch.from_numpy(v).to(torch.float64) for k, v in arrays.items()}
    for k, v in t.items():
        if k not in NO_GRAD:
            v.requires_grad_(True)
    x = t.get("x")
    extra = {}
    if op == "leaky_relu":
        y = F.leaky_relu(x, a["slope"])
    elif op == "gelu":
        y = F.gelu(x)
    elif op == "concat":
        y = torch.cat([t[f"x{i}"] for i in range(a["n"])], a["dim"])
    elif op == "batch_norm":
        rm, rv = t.get("running_mean"), t.get("running_var")
        y = F.batch_norm(x, rm, rv, t.get("weight"), t.get("bias"), a["training"],
                         a["momentum"], a["eps"])
        if rm is not None:
            extra = {"running_mean": rm, "running_var": rv}
    elif op == "layer_norm":
        shape = trailing_shape(x.shape, a["normalized"])
        w, b = t.get("weight"), t.get("bias")
        y = F.layer_norm(x, shape, None if w is None else w.reshape(shape),
                         None if b is None else b.reshape(shape), a["eps"])
    elif op == "max_pool2d":
        y = F.max_pool2d(x, a["kernel"], a["stride"], a["padding"])
    elif op == "avg_pool2d":
        y = F.avg_pool2d(x, a["kernel"], a["stride"], a["padding"], count_include_pad=True)
    elif op == "global_avg_pool2d":
        y = x.mean(dim=(2, 3))
    elif op == "cross_entropy":
        y = F.cross_entropy(x, t["labels"].long(), label_smoothing=a.get("label_smoothing", 0.0))
    else:
        raise ValueError(f"unknown op {op!r}")
    (y * t["r"]).sum().backward()
    out = {"y": y.detach().numpy()}
    for k, v in t.items():
        if v.requires_grad:
            out["grad." + k] = v.grad.numpy()
    for k, v in extra.items():
        out[k] = v.detach().numpy()
    return out


def main(argv):
    if len(argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    op, in_path, out_path, attrs = argv[1], argv[2], argv[3], json.loads(argv[4])
    arrays = load(in_path)
    if op != "batch":
        save(out_path, run_case(op, arrays, attrs))
        return 0
    out = {}
    for case in attrs:
        prefix = case["name"] + "/"
        mine = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
        for k, v in run_case(case["op"], mine, case.get("attrs", {})).items():
            out[prefix + k] = v
    save(out_path, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
