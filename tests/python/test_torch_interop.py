#!/usr/bin/python3
"""dnnd <-> PyTorch checkpoint interop, through real files and the dnnd binary.

1. dnnd -> torch: dnnd trains the CNN and the MLP for a few steps and writes a
   checkpoint; torch builds the same nn.Sequential from the model spec stored
   in the checkpoint, load_state_dict(strict=True), and its outputs on random
   inputs match `dnnd infer` to 1e-5.
2. torch -> dnnd: torch initialises the models (its own init, its own seed),
   saves state_dict as safetensors with the spec; `dnnd infer` on that
   checkpoint matches torch's outputs to 1e-5.
"""
import os
import subprocess
import sys
import tempfile
import tomllib

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import safetensors_io as st  # noqa: E402

try:
    import torch
except ImportError:
    print("SKIP: /usr/bin/python3 cannot import torch")
    sys.exit(0)

DNND = os.environ["DNND_BINARY"]
SRC = os.environ["DNND_SOURCE_DIR"]
TOL = 1e-5


def torch_model(spec):
    """nn.Sequential equivalent to a dnnd [model] spec (same layer indices)."""
    m = spec["model"]
    shape = list(m["input"])
    layers = []
    for l in m["layers"]:
        t = l["type"]
        if t == "linear":
            layers.append(torch.nn.Linear(shape[-1], l["out"], bias=l.get("bias", True)))
            shape = [l["out"]]
        elif t == "conv2d":
            k, s, p = l["kernel"], l.get("stride", 1), l.get("padding", 0)
            layers.append(torch.nn.Conv2d(shape[0], l["out"], k, stride=s, padding=p, bias=l.get("bias", True)))
            shape = [l["out"], (shape[1] + 2 * p - k) // s + 1, (shape[2] + 2 * p - k) // s + 1]
        elif t == "maxpool2d":
            k, s = l["kernel"], l.get("stride", l["kernel"])
            layers.append(torch.nn.MaxPool2d(k, s))
            shape = [shape[0], (shape[1] - k) // s + 1, (shape[2] - k) // s + 1]
        elif t == "flatten":
            layers.append(torch.nn.Flatten())
            shape = [int(np.prod(shape))]
        else:
            layers.append({"relu": torch.nn.ReLU, "sigmoid": torch.nn.Sigmoid, "tanh": torch.nn.Tanh,
                           "softmax": lambda: torch.nn.Softmax(dim=-1)}[t]())
    return torch.nn.Sequential(*layers)


def dnnd(*args):
    r = subprocess.run([DNND, *args], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("dnnd %s failed (%d):\n%s%s" % (" ".join(args), r.returncode, r.stdout, r.stderr))
    return r


def infer(model_dir, x, tmp):
    st.save(os.path.join(tmp, "x.safetensors"), {"x": x})
    dnnd("infer", "--model", model_dir, "--input", os.path.join(tmp, "x.safetensors"),
         "--output", os.path.join(tmp, "y.safetensors"))
    return st.load(os.path.join(tmp, "y.safetensors"))[0]["y"]


def check(name, got, want):
    err = float(np.max(np.abs(got - want)))
    print("%-28s max |dnnd - torch| = %.2e" % (name, err))
    if not err <= TOL:
        sys.exit("FAIL: %s differs by %g (> %g)" % (name, err, TOL))


def main():
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    failures = 0
    for config in ("worker-cnn.toml", "worker-mlp.toml"):
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = os.path.join(tmp, "ckpt")
            # 1. dnnd -> torch
            dnnd("--role=worker", "--config", os.path.join(SRC, "configs", config),
                 "--set", "train.max_steps=5", "--set", "data.limit_train=1000", "--set", "data.limit_test=100",
                 "--set", "train.progress=none", "--set", "train.checkpoint_dir=" + ckpt)
            tensors, meta = st.load(os.path.join(ckpt, "model.safetensors"))
            spec = tomllib.loads(meta["dnnd.model_spec"])
            model = torch_model(spec).eval()
            model.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()}, strict=True)
            x = rng.standard_normal((7, *spec["model"]["input"])).astype(np.float32)
            with torch.no_grad():
                want = model(torch.from_numpy(x)).numpy()
            check(config + " dnnd->torch", infer(ckpt, x, tmp), want)
            # 2. torch -> dnnd
            torch.manual_seed(123)
            model2 = torch_model(spec).eval()
            state = {k: v.detach().numpy() for k, v in model2.state_dict().items()}
            os.makedirs(os.path.join(tmp, "from_torch"))
            st.save(os.path.join(tmp, "from_torch", "model.safetensors"), state,
                    {"format": "pt", "dnnd.model_spec": meta["dnnd.model_spec"],
                     "dnnd.step": "0", "dnnd.epoch": "0", "dnnd.samples": "0"})
            with torch.no_grad():
                want2 = model2(torch.from_numpy(x)).numpy()
            check(config + " torch->dnnd", infer(os.path.join(tmp, "from_torch"), x, tmp), want2)
            # A checkpoint whose names differ is refused with the differences listed.
            bad = dict(state)
            bad["99.weight"] = bad.pop(sorted(bad)[0])
            os.makedirs(os.path.join(tmp, "bad"))
            st.save(os.path.join(tmp, "bad", "model.safetensors"), bad, {"dnnd.model_spec": meta["dnnd.model_spec"]})
            st.save(os.path.join(tmp, "x.safetensors"), {"x": x})
            r = subprocess.run([DNND, "infer", "--model", os.path.join(tmp, "bad"), "--input",
                                os.path.join(tmp, "x.safetensors"), "--output", os.path.join(tmp, "z.safetensors")],
                               capture_output=True, text=True)
            if r.returncode == 0 or "unexpected: 99.weight" not in r.stderr or "missing:" not in r.stderr:
                print("FAIL: mismatched checkpoint not refused clearly:", r.returncode, r.stderr)
                failures += 1
    if failures:
        sys.exit(1)
    print("OK")


if __name__ == "__main__":
    main()
