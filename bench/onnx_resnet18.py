#!/usr/bin/python3
"""torchvision's ResNet-18, exported from PyTorch, trained by dnnd, loaded back.

  /usr/bin/python3 bench/onnx_resnet18.py [--epochs 1] [--threads 2] [--controller]

torchvision.models.resnet18(num_classes=10) (architecture only, no weights;
conv1 takes 1 channel for Fashion-MNIST, torchvision's layout otherwise) is
exported to ONNX in training mode; a local dnnd worker trains it from
`[model] onnx = ...` on the real Fashion-MNIST (SGD 0.05, momentum 0.9,
cosine); the checkpoint is loaded into a fresh torchvision resnet18 with
load_state_dict(strict=True) and PyTorch evaluates it on the test set in
eval mode. Prints dnnd's and PyTorch's test accuracy on the same weights
(they must agree to 0.01 points), dnnd's training samples/s, and the same
module trained by PyTorch for the same epochs with the same recipe
(samples/s and accuracy) beside it.

--controller trains it as a controller job instead: the standalone role with
standalone.controller uploads the ONNX file to its controller (PUT
/api/v1/models/{name}/onnx) and submits the job with the same recipe; one
pool worker with --threads threads trains it. PyTorch then evaluates the
job's checkpoint with the normalisation the job recorded in it (the
controller standardises with the training set's own statistics).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "python"))
import torch_reference as ref  # noqa: E402
import safetensors_io as st  # noqa: E402
import dnnd_configs as cfgs  # noqa: E402

FM = "/usr/share/datasets/fashion-mnist"
MEAN, STD = 0.2860, 0.3530


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--controller", action="store_true", help="train as a controller job")
    ap.add_argument("--skip-torch-training", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(0)
    module = ref.build("resnet18_fm")
    xte = ref.read_idx(f"{FM}/t10k-images-idx3-ubyte.gz")
    yte = ref.read_idx(f"{FM}/t10k-labels-idx1-ubyte.gz").astype(np.int64)
    x = (torch.from_numpy(xte.astype(np.float32) / 255.0).unsqueeze(1) - MEAN) / STD
    with tempfile.TemporaryDirectory() as d:
        onnx_path = os.path.join(d, "resnet18.onnx")
        torch.onnx.export(module, torch.zeros(2, 1, 28, 28), onnx_path,
                          training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False,
                          opset_version=13, input_names=["x"], dynamic_axes={"x": {0: "batch"}})
        cfg = os.path.join(d, "worker.toml")
        with open(cfg, "w") as f:
            role = f"""[node]
role = "worker"
name = "resnet18-onnx"
threads = {args.threads}
"""
            if args.controller:
                role = cfgs.standalone("resnet18-onnx", servers=1, workers=1).replace(
                    "controller = false", "controller = true\nexit_when_done = true").replace(
                    "threads = 2", f"threads = {args.threads}") + f"""[controller]
data_dir = "{d}/ctl"
"""
            f.write(role + f"""[data]
format = "idx"
normalize_mean = {MEAN}
normalize_std = {STD}
[train]
epochs = {args.epochs}
batch_size = 128
lr_schedule = "cosine"
checkpoint_dir = "{d}/ckpt"
resume = false
progress = "none"
[model]
onnx = "resnet18.onnx"
[model.optimizer]
type = "sgd"
lr = 0.05
momentum = 0.9
""")
        t0 = time.perf_counter()
        r = subprocess.run([os.path.join(args.build, "dnnd"), "--config", cfg], capture_output=True,
                           text=True)
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            sys.exit(r.stderr[-3000:])
        dnnd_acc = float(re.findall(r"test accuracy ([0-9.]+) ?%", r.stderr)[-1])
        rates = [float(a) * (1000 if k else 1) for a, k in
                 re.findall(r"([0-9.]+)(k?) samples/s", r.stderr)]
        if args.controller:
            tensors, meta = st.load(os.path.join(d, "ctl", "jobs", "1", "model", "model.safetensors"))
            mean = float(json.loads(meta["dnnd.normalize_mean"])[0])
            std = float(json.loads(meta["dnnd.normalize_std"])[0])
            x = (torch.from_numpy(xte.astype(np.float32) / 255.0).unsqueeze(1) - mean) / std
            print(f"controller job: normalised with the training set's mean {mean:.4f}, std {std:.4f}")
        else:
            tensors, _ = st.load(os.path.join(d, "ckpt", "model.safetensors"))
        fresh = ref.build("resnet18_fm")
        fresh.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()}, strict=True)
        fresh.eval()
        with torch.no_grad():
            pred = torch.cat([fresh(x[i:i + 500]).argmax(1) for i in range(0, len(x), 500)])
        torch_acc = 100.0 * float((pred.numpy() == yte).mean())
    print(f"dnnd {r.stderr.count('epoch ')} epoch(s): {np.mean(rates) if rates else float('nan'):.0f} samples/s, "
          f"test accuracy {dnnd_acc:.2f} % ({wall:.0f} s end to end)")
    print(f"PyTorch on dnnd's checkpoint (load_state_dict strict): {torch_acc:.2f} % "
          f"(difference {torch_acc - dnnd_acc:+.2f} points)")
    if args.skip_torch_training:
        return
    # The same module and recipe in PyTorch, for scale.
    t = json.loads(subprocess.run(
        ["/usr/bin/python3", os.path.join(HERE, "torch_reference.py"), "accuracy", "--model",
         "resnet18_fm", "--threads", str(args.threads), "--epochs", str(args.epochs), "--schedule",
         "cosine", "--mean", str(MEAN), "--std", str(STD), "--optimizer", "sgd", "--lr", "0.05",
         "--momentum", "0.9"], capture_output=True, text=True, check=True).stdout)
    h = t["history"]
    print(f"PyTorch trained itself: {np.mean([e['samples_per_s'] for e in h]):.0f} samples/s, "
          f"test accuracy {100 * t['test_accuracy']:.2f} %")


if __name__ == "__main__":
    main()
