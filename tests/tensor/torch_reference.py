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
  batch              every tensor named "<case>/<name>"; attrs is a list of
                     {"name", "op", "attrs"}; outputs "<case>/<output>"

Exit status 77: torch cannot be imported (the C++ test skips).
"""
import json
import struct
import sys

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError as e:  # pragma: no cover - depends on the interpreter
    print(f"torch_reference: cannot import torch: {e}", file=sys.stderr)
    sys.exit(77)

NO_GRAD = {"r", "labels", "running_mean", "running_var"}


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
