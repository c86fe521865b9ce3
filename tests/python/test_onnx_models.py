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
initializers (a seeded start would differ by O(0.1)). And as a controller
job (the standalone role with its controller uploads the file): PyTorch
reproduces the job's test accuracy from its checkpoint to 0.01 points.
"""
import json
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


def controller_config(onnx_file, d):
    """The controller and one pool worker in one process, ending with the job."""
    sa = cfgs.standalone("onnx-ctl", servers=1, workers=1).replace(
        "controller = false", "controller = true\nexit_when_done = true")
    return (sa + f'[controller]\ndata_dir = "{d}/ctl"\n' +
            cfgs.fashion_mnist("limit_train = 6400") +
            train(os.path.join(d, "ctl-ckpt"), onnx_file, 64, 0.05, "momentum = 0.9"))


def accuracy(module, x, y):
    """Test accuracy (%) of `module` in eval mode."""
    module.eval()
    with torch.no_grad():
        pred = torch.cat([module(x[i:i + 1000]).argmax(1) for i in range(0, len(x), 1000)])
    return 100.0 * (pred.numpy() == y).mean()


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
        xte = read_idx(f"{FM}/t10k-images-idx3-ubyte.gz")
        yte = read_idx(f"{FM}/t10k-labels-idx1-ubyte.gz").astype(np.int64)
        x = (torch.from_numpy(xte.astype(np.float32) / 255.0).unsqueeze(1) - MEAN) / STD
        torch_acc = accuracy(fresh, x, yte)
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

        # A controller job (the standalone role with its controller): the
        # ONNX file is uploaded, the job trains from its weights with the
        # config's recipe, and PyTorch reproduces the job's accuracy from its
        # checkpoint, normalised with the statistics the job recorded there.
        ctl = os.path.join(d, "controller.toml")
        with open(ctl, "w") as f:
            f.write(controller_config("custom.onnx", d))
        run = subprocess.run([DNND, "--config", ctl], capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
        m = re.search(r"job 1 succeeded with test accuracy ([0-9.]+) %", run.stderr)
        assert m and "registering model custom-" in run.stderr, run.stderr[-3000:]
        job_acc = float(m.group(1))
        tensors, meta = st.load(os.path.join(d, "ctl", "jobs", "1", "model", "model.safetensors"))
        mean = float(json.loads(meta["dnnd.normalize_mean"])[0])
        std = float(json.loads(meta["dnnd.normalize_std"])[0])
        fresh = ref.Custom()
        fresh.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()}, strict=True)
        torch_acc = accuracy(fresh, (torch.from_numpy(xte.astype(np.float32) / 255.0).unsqueeze(1) - mean) / std, yte)
        print(f"controller job {job_acc:.2f} %, PyTorch on its checkpoint {torch_acc:.2f} %")
        assert abs(torch_acc - job_acc) <= 0.01 + 1e-9, (job_acc, torch_acc)
        assert job_acc > 60, job_acc

        # A damaged file: config check names it.
        with open(onnx_path, "r+b") as f:
            f.truncate(os.path.getsize(onnx_path) // 2)
        bad = subprocess.run([DNND, "config", "check", cfg], capture_output=True, text=True)
        assert bad.returncode != 0
        assert "custom.onnx" in bad.stdout + bad.stderr, bad.stdout + bad.stderr
    print("ok")


if __name__ == "__main__":
    main()
