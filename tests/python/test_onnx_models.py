#!/usr/bin/python3
"""A PyTorch module, exported to ONNX, trained by dnnd and loaded back.

tests/tensor/onnx_reference.py's Custom module (a residual block, a concat
branch, padded average pooling, a view-flatten, GELU, BatchNorm1d and a
MatMul head) is exported in training mode; a local dnnd worker trains it for
one epoch on the real Fashion-MNIST from `[model] onnx = "custom.onnx"`; the
checkpoint then loads into a fresh Custom() with load_state_dict(strict=True)
and PyTorch, in eval mode on the same normalised test set, reproduces dnnd's
test accuracy to 0.01 points (one sample in 10,000). Also: `dnnd config
check` accepts the config and reports a broken ONNX file by name; and a
data-parallel job (2 parameter servers x 2 workers, sync) starts from the
ONNX weights: at a learning rate of 1e-12 its trained parameters are the
initializers (a seeded start would differ by O(0.1)).
"""
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tensor"))
import safetensors_io as st  # noqa: E402
from bench_reference import read_idx  # noqa: E402
import dnnd_configs as cfgs  # noqa: E402

try:
    import torch
    import onnx  # noqa: F401
    import onnx_reference as ref
except ImportError as e:
    print(f"SKIP: /usr/bin/python3 cannot import torch and onnx ({e})")
    sys.exit(0)

DNND = os.environ["DNND_BINARY"]
FM, MEAN, STD = cfgs.FM, cfgs.MEAN, cfgs.STD


def train(ckpt, onnx_file, batch, lr, extra_optimizer=""):
    return f"""[train]
epochs = 1
batch_size = {batch}
checkpoint_dir = "{ckpt}"
resume = false
progress = "none"
[model]
onnx = "{onnx_file}"
[model.optimizer]
type = "sgd"
lr = {lr}
{extra_optimizer}
"""


def config(onnx_file, ckpt):
    return (cfgs.local_worker("onnx-worker") + cfgs.fashion_mnist() +
            train(ckpt, onnx_file, 128, 0.05, "momentum = 0.9"))


def standalone_config(onnx_file, ckpt):
    return (cfgs.standalone("onnx-dp") + cfgs.fashion_mnist("limit_train = 1280\nlimit_test = 500") +
            train(ckpt, onnx_file, 64, 1e-12))


def main():
    torch.manual_seed(5)
    module = ref.Custom()
    with tempfile.TemporaryDirectory() as d:
        onnx_path = os.path.join(d, "custom.onnx")
        ref.export(module, (1, 28, 28), onnx_path)
        cfg = os.path.join(d, "worker.toml")
        with open(cfg, "w") as f:
            f.write(config("custom.onnx", os.path.join(d, "ckpt")))
        check = subprocess.run([DNND, "config", "check", cfg], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr

        run = subprocess.run([DNND, "--config", cfg], capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
        m = re.search(r"final test accuracy ([0-9.]+)%", run.stderr)
        assert m, run.stderr[-2000:]
        dnnd_acc = float(m.group(1))

        tensors, _ = st.load(os.path.join(d, "ckpt", "model.safetensors"))
        fresh = ref.Custom()
        fresh.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()}, strict=True)
        fresh.eval()
        xte = read_idx(f"{FM}/t10k-images-idx3-ubyte.gz")
        yte = read_idx(f"{FM}/t10k-labels-idx1-ubyte.gz").astype(np.int64)
        x = (torch.from_numpy(xte.astype(np.float32) / 255.0).unsqueeze(1) - MEAN) / STD
        with torch.no_grad():
            pred = torch.cat([fresh(x[i:i + 1000]).argmax(1) for i in range(0, len(x), 1000)])
        torch_acc = 100.0 * (pred.numpy() == yte).mean()
        print(f"dnnd {dnnd_acc:.2f} %, PyTorch on dnnd's checkpoint {torch_acc:.2f} %")
        assert abs(torch_acc - dnnd_acc) <= 0.01 + 1e-9, (dnnd_acc, torch_acc)
        assert dnnd_acc > 70, dnnd_acc  # one epoch trains it

        # Data-parallel: the servers are initialised from the ONNX weights.
        sa = os.path.join(d, "standalone.toml")
        with open(sa, "w") as f:
            f.write(standalone_config("custom.onnx", os.path.join(d, "dp")))
        run = subprocess.run([DNND, "--config", sa], capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
        trained, _ = st.load(os.path.join(d, "dp", "model.safetensors"))
        inits = {k: v.detach().numpy() for k, v in module.state_dict().items()}
        params = [k for k, _ in module.named_parameters()]
        for k in params:
            assert np.allclose(trained[k], inits[k], rtol=0, atol=1e-8), k
        print(f"data-parallel job kept the {len(params)} ONNX parameters")

        # A damaged file: config check names it.
        with open(onnx_path, "r+b") as f:
            f.truncate(os.path.getsize(onnx_path) // 2)
        bad = subprocess.run([DNND, "config", "check", cfg], capture_output=True, text=True)
        assert bad.returncode != 0
        assert "custom.onnx" in bad.stdout + bad.stderr, bad.stdout + bad.stderr
    print("ok")


if __name__ == "__main__":
    main()
