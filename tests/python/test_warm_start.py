#!/usr/bin/python3
"""Warm starts: a PyTorch-trained MLP's state_dict, fine-tuned by dnnd.

An MLP written in torch.nn (nn.Sequential, the names of
configs/models/mlp.toml: "1.weight", "3.weight", "5.weight") is trained
briefly in PyTorch on part of Fashion-MNIST and saved as a plain safetensors
state_dict (no dnnd metadata). dnnd then fine-tunes it with
`train.init_from` and `train.freeze = ["1.*"]`, locally, data-parallel
(2 parameter servers x 2 workers, sync) and as a controller job (the
standalone role with standalone.controller: the model is registered with the
state_dict as its initial weights, the job carries the freeze):
  - the frozen first layer is bit-identical afterwards, the rest changed;
  - the test accuracy improves on PyTorch's starting point;
  - a state_dict with a missing, an unexpected and a mis-shaped tensor is
    refused listing all three, and a freeze pattern matching nothing is
    refused naming it.
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
import safetensors_io as st  # noqa: E402
from bench_reference import read_idx  # noqa: E402
import dnnd_configs as cfgs  # noqa: E402

try:
    import torch
    import torch.nn as nn
except ImportError as e:
    print(f"SKIP: /usr/bin/python3 cannot import torch ({e})")
    sys.exit(0)

DNND = os.environ["DNND_BINARY"]
SRC = os.path.join(HERE, "..", "..")
FM, MEAN, STD = cfgs.FM, cfgs.MEAN, cfgs.STD


def data():
    norm = lambda a: (torch.from_numpy(a.astype(np.float32) / 255.0).unsqueeze(1) - MEAN) / STD
    xtr = norm(read_idx(f"{FM}/train-images-idx3-ubyte.gz")[:4096])
    ytr = torch.from_numpy(read_idx(f"{FM}/train-labels-idx1-ubyte.gz")[:4096].astype(np.int64))
    xte = norm(read_idx(f"{FM}/t10k-images-idx3-ubyte.gz"))
    yte = torch.from_numpy(read_idx(f"{FM}/t10k-labels-idx1-ubyte.gz").astype(np.int64))
    return xtr, ytr, xte, yte


def config(role_lines, d, extra=""):
    return role_lines + cfgs.fashion_mnist("limit_train = 12800") + f"""
[train]
epochs = 1
batch_size = 64
resume = false
progress = "none"
init_from = "torch.safetensors"
freeze = ["1.*"]
checkpoint_dir = "{d}/ckpt"
{extra}
[model]
file = "{os.path.abspath(SRC)}/configs/models/mlp.toml"
"""


LOCAL = cfgs.local_worker("warm")
STANDALONE = cfgs.standalone("warm-dp")


def controller_job(d):
    """The controller with 2 pool workers in one process; it ends with the job."""
    return cfgs.standalone("warm-ctl").replace("controller = false", "controller = true\nexit_when_done = true") + f"""
[controller]
data_dir = "{d}/ctl"
"""


def torch_accuracy(model, state, xte, yte):
    """Test accuracy (%) of `model` with `state`, on the test set `xte` normalised as it is."""
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    with torch.no_grad():
        return 100.0 * (model(xte).argmax(1) == yte).float().mean().item()


def run(cfg_text, d, name, ok=True):
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write(cfg_text)
    r = subprocess.run([DNND, "--config", path], capture_output=True, text=True, timeout=600)
    if ok:
        assert r.returncode == 0, r.stderr[-3000:]
    return r


def main():
    torch.manual_seed(0)
    xtr, ytr, xte, yte = data()
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256),
                          nn.ReLU(), nn.Linear(256, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for i in range(0, 1024, 64):  # a short start: plenty left for the head to learn
        opt.zero_grad()
        nn.functional.cross_entropy(model(xtr[i:i + 64]), ytr[i:i + 64]).backward()
        opt.step()
    with torch.no_grad():
        start_acc = 100.0 * (model(xte).argmax(1) == yte).float().mean().item()
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}

    with tempfile.TemporaryDirectory() as d:
        st.save(os.path.join(d, "torch.safetensors"), state)
        for label, role in (("local", LOCAL), ("data-parallel", STANDALONE)):
            r = run(config(role, d), d, label + ".toml")
            acc = float(re.search(r"final test accuracy ([0-9.]+)%", r.stderr).group(1))
            tuned, _ = st.load(os.path.join(d, "ckpt", "model.safetensors"))
            for k in ("1.weight", "1.bias"):
                assert np.array_equal(tuned[k], state[k]), f"{label}: frozen {k} changed"
            for k in ("3.weight", "5.weight", "5.bias"):
                assert not np.array_equal(tuned[k], state[k]), f"{label}: {k} did not train"
            print(f"{label}: PyTorch start {start_acc:.2f} %, fine-tuned with 1.* frozen {acc:.2f} %")
            assert acc > start_acc + 1.0, (label, start_acc, acc)

        # A controller job. It standardises inputs with the training set's own
        # statistics (recorded in the model file), so both accuracies are
        # PyTorch's on the test set standardised that way.
        r = run(config(controller_job(d), d), d, "controller.toml")
        assert "registering model torch-" in r.stderr and "job 1 succeeded" in r.stderr, r.stderr[-3000:]
        tuned, meta = st.load(os.path.join(d, "ctl", "jobs", "1", "model", "model.safetensors"))
        for k in ("1.weight", "1.bias"):
            assert np.array_equal(tuned[k], state[k]), f"controller job: frozen {k} changed"
        for k in ("3.weight", "5.weight", "5.bias"):
            assert not np.array_equal(tuned[k], state[k]), f"controller job: {k} did not train"
        mean = float(json.loads(meta["dnnd.normalize_mean"])[0])
        std = float(json.loads(meta["dnnd.normalize_std"])[0])
        xjob = (xte * STD + MEAN - mean) / std
        job_start = torch_accuracy(model, state, xjob, yte)
        job_acc = torch_accuracy(model, tuned, xjob, yte)
        print(f"controller job: start {job_start:.2f} %, fine-tuned with 1.* frozen {job_acc:.2f} %")
        assert job_acc > job_start + 1.0, (job_start, job_acc)
        model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})

        bad = dict(state)
        del bad["3.bias"]
        bad["extra.weight"] = np.zeros((2, 2), np.float32)
        bad["5.weight"] = np.zeros((10, 255), np.float32)
        st.save(os.path.join(d, "torch.safetensors"), bad)
        r = run(config(LOCAL, d), d, "bad.toml", ok=False)
        assert r.returncode != 0
        check = subprocess.run([DNND, "config", "check", os.path.join(d, "bad.toml")],
                               capture_output=True, text=True)
        assert check.returncode != 0
        for want in ("missing: 3.bias", "unexpected: extra.weight", "5.weight has [10, 256]",
                     "torch.safetensors"):
            assert want in r.stderr, (want, r.stderr[-2000:])
            assert want in check.stderr, ("config check", want, check.stderr[-2000:])

        st.save(os.path.join(d, "torch.safetensors"), state)
        r = run(config(LOCAL, d).replace('freeze = ["1.*"]', 'freeze = ["stem.*"]'), d,
                "nofreeze.toml", ok=False)
        assert r.returncode != 0 and "'stem.*' matches no parameter" in r.stderr, r.stderr[-2000:]
    print("ok")


if __name__ == "__main__":
    main()
