#!/usr/bin/python3
"""PyTorch reference for dnnd's training benchmarks (run with /usr/bin/python3).

  throughput: samples/s of one training step loop (batch 128, synthetic data),
              the same loop dnnd's bench/train_bench measures.
  accuracy:   trains on the real Fashion-MNIST with the same model, optimiser,
              schedule, batch and normalisation as a dnnd config, and prints
              test accuracy per epoch as JSON.

Refuses to run on the reference BLAS: Debian's python3-torch without
libopenblas0-pthread silently uses it and runs ~16x slower, which would make
any comparison a fake win.
"""
import argparse
import ctypes
import gzip
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn

DATA = "/usr/share/datasets/fashion-mnist"


def blas_in_use():
    """Name and core of the BLAS actually mapped into this process."""
    torch.mm(torch.ones(64, 64), torch.ones(64, 64))  # make sure BLAS is loaded
    libs = set()
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1]
            if "blas" in path or "lapack" in path:
                libs.add(os.path.realpath(path))
    core = None
    for lib in libs:
        if "openblas" in lib:
            try:
                h = ctypes.CDLL(lib)
                h.openblas_get_corename.restype = ctypes.c_char_p
                core = h.openblas_get_corename().decode()
            except OSError:
                pass
    return sorted(libs), core


def check_blas():
    libs, core = blas_in_use()
    if not any("openblas" in l for l in libs):
        sys.exit("refusing to compare: PyTorch is using the reference BLAS (%s); "
                 "install libopenblas0-pthread" % ", ".join(libs))
    return libs, core


def set_blas_threads(n):
    for lib in blas_in_use()[0]:
        if "openblas" in lib:
            ctypes.CDLL(lib).openblas_set_num_threads(int(n))


def build(name):
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256),
                             nn.ReLU(), nn.Linear(256, 10))
    if name == "lenet":
        return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                             nn.Linear(84, 10))
    if name in ("resnet20", "resnet20c"):
        return ResNet20(1 if name == "resnet20" else 3)
    if name == "resnet18_fm":  # torchvision's ResNet-18 with a 1-channel conv1 (bench/onnx_resnet18.py)
        import torchvision
        m = torchvision.models.resnet18(num_classes=10)
        m.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
        return m
    raise SystemExit("unknown model " + name)


class BasicBlock(nn.Module):
    """torchvision's BasicBlock (same names), as configs/models/resnet20.toml."""

    def __init__(self, c, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or c != planes:
            self.downsample = nn.Sequential(nn.Conv2d(c, planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x):
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(y + (self.downsample(x) if self.downsample is not None else x))


class ResNet20(nn.Module):
    """ResNet-20 for small images (He et al. 2016): 3x3 stem, 3 stages of 3
    basic blocks at 16/32/64 channels, global average pool, linear."""

    def __init__(self, channels):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        c = 16
        for stage, planes in enumerate((16, 32, 64)):
            blocks = []
            for b in range(3):
                blocks.append(BasicBlock(c, planes, 2 if stage > 0 and b == 0 else 1))
                c = planes
            setattr(self, "layer%d" % (stage + 1), nn.Sequential(*blocks))
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


INPUT = {"resnet20c": (3, 32, 32)}


def augment(x, padding, flip, g):
    """Random crop with zero padding and horizontal flip, per sample."""
    if padding:
        n, _, h, w = x.shape
        padded = nn.functional.pad(x, (padding,) * 4)
        dy = torch.randint(0, 2 * padding + 1, (n,), generator=g)
        dx = torch.randint(0, 2 * padding + 1, (n,), generator=g)
        x = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])
    if flip:
        mask = torch.rand(x.shape[0], generator=g) < 0.5
        x = torch.where(mask[:, None, None, None], x.flip(3), x)
    return x


def make_optimizer(args, params):
    params = list(params)
    if getattr(args, "no_decay_bias_norm", False):  # no weight decay on 1-D tensors
        params = [{"params": [p for p in params if p.ndim > 1]},
                  {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    if args.optimizer == "sgd":
        return torch.optim.SGD(params, lr=args.lr, momentum=args.momentum, nesterov=args.nesterov,
                               weight_decay=args.weight_decay)
    # foreach=True: PyTorch 1.13's default single-tensor Adam is ~5x slower per
    # step on this CPU; compare against its fastest implementation.
    if args.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay, foreach=True)
    return torch.optim.Adam(params, lr=args.lr, weight_decay=args.weight_decay, foreach=True)


def throughput(args):
    torch.manual_seed(1)
    model = build(args.model)
    opt = make_optimizer(args, model.parameters())
    x = torch.rand(args.batch, *INPUT.get(args.model, (1, 28, 28)))
    y = torch.arange(args.batch) % 10
    loss_fn = nn.CrossEntropyLoss()
    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
    for _ in range(20):
        step()
    # --clock cpu: seconds of this process's CPU time, which other tenants of
    # a shared machine distort less than wall time (meaningful with 1 thread).
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    n, t0 = 0, clock()
    while clock() - t0 < args.seconds:
        step()
        n += 1
    dt = clock() - t0
    return {"samples_per_s": n * args.batch / dt, "steps": n, "clock": args.clock}


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def accuracy(args):
    torch.manual_seed(args.seed)
    xtr = read_idx(f"{DATA}/train-images-idx3-ubyte.gz")
    ytr = read_idx(f"{DATA}/train-labels-idx1-ubyte.gz").astype(np.int64)
    xte = read_idx(f"{DATA}/t10k-images-idx3-ubyte.gz")
    yte = read_idx(f"{DATA}/t10k-labels-idx1-ubyte.gz").astype(np.int64)
    norm = lambda a: (torch.from_numpy(a.astype(np.float32) / 255.0).unsqueeze(1) - args.mean) / args.std
    xtr, xte = norm(xtr), norm(xte)
    ytr, yte = torch.from_numpy(ytr), torch.from_numpy(yte)
    model = build(args.model)
    opt = make_optimizer(args, model.parameters())
    loss_fn = nn.CrossEntropyLoss()
    history = []
    steps_per_epoch = math.ceil(len(xtr) / args.batch)
    g = torch.Generator().manual_seed(args.seed)
    for epoch in range(args.epochs):
        if args.schedule == "cosine":
            lr = 0.5 * args.lr * (1 + math.cos(math.pi * epoch / args.epochs))
            for pg in opt.param_groups:
                pg["lr"] = lr
        model.train()
        perm = torch.randperm(len(xtr), generator=g)
        t0, total = time.perf_counter(), 0.0
        for i in range(steps_per_epoch):
            idx = perm[i * args.batch:(i + 1) * args.batch]
            opt.zero_grad(set_to_none=True)
            x = xtr[idx]
            if args.crop_padding or args.flip:
                x = augment(x, args.crop_padding, args.flip, g)
            loss = loss_fn(model(x), ytr[idx])
            loss.backward()
            opt.step()
            total += loss.item()
        secs = time.perf_counter() - t0
        model.eval()
        with torch.no_grad():
            correct = sum((model(xte[i:i + 1000]).argmax(1) == yte[i:i + 1000]).sum().item()
                          for i in range(0, len(xte), 1000))
        history.append({"epoch": epoch + 1, "train_loss": total / steps_per_epoch,
                        "test_accuracy": correct / len(xte), "samples_per_s": len(xtr) / secs})
        print(json.dumps(history[-1]), file=sys.stderr)
    return {"history": history, "test_accuracy": history[-1]["test_accuracy"]}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["throughput", "accuracy", "blas"])
    p.add_argument("--model", default="mlp")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--blas-threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                   help="throughput: per wall second or per CPU second of this process")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--optimizer", default="adam")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--momentum", type=float, default=0.0)
    p.add_argument("--nesterov", action="store_true")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--schedule", default="constant", choices=["constant", "cosine"])
    p.add_argument("--mean", type=float, default=0.0)
    p.add_argument("--std", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--crop-padding", type=int, default=0, help="accuracy: random crops")
    p.add_argument("--flip", action="store_true", help="accuracy: random horizontal flips")
    p.add_argument("--no-decay-bias-norm", action="store_true",
                   help="no weight decay on biases and norm parameters")
    args = p.parse_args()
    libs, core = check_blas()
    torch.set_num_threads(args.threads)
    set_blas_threads(args.blas_threads)
    out = {"torch": torch.__version__, "blas": libs, "blas_core": core,
           "threads": args.threads, "blas_threads": args.blas_threads, "model": args.model}
    if args.mode == "throughput":
        out.update(throughput(args))
    elif args.mode == "accuracy":
        out.update(accuracy(args))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
