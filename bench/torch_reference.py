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
        return ResNet20(1 if name == "resnet20" else 3, 28 if name == "resnet20" else 32)
    raise SystemExit("unknown model " + name)


class Block(nn.Module):
    def __init__(self, c, oc, stride):
        super().__init__()
        self.c1 = nn.Conv2d(c, oc, 3, stride, 1, bias=False)
        self.c2 = nn.Conv2d(oc, oc, 3, 1, 1, bias=False)
        self.proj = nn.Conv2d(c, oc, 1, stride, 0, bias=False) if stride != 1 or c != oc else None

    def forward(self, x):
        y = self.c2(torch.relu(self.c1(x)))
        return torch.relu(y + (self.proj(x) if self.proj is not None else x))


class ResNet20(nn.Module):
    """bench/resnet_bench.cc's network: ResNet-20 without batch normalisation
    (dnnd has none yet), 1x1 stride-2 projection shortcuts, convs without
    bias, a linear classifier on the flattened last feature map."""

    def __init__(self, channels, hw):
        super().__init__()
        self.stem = nn.Conv2d(channels, 16, 3, 1, 1, bias=False)
        blocks, c = [], 16
        for stage in range(3):
            oc = 16 << stage
            for b in range(3):
                blocks.append(Block(c, oc, 2 if stage > 0 and b == 0 else 1))
                c = oc
        self.blocks = nn.Sequential(*blocks)
        last = (hw + 3) // 4
        self.fc = nn.Linear(64 * last * last, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.blocks(torch.relu(self.stem(x))), 1))


INPUT = {"resnet20c": (3, 32, 32)}


def make_optimizer(args, params):
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
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < args.seconds:
        step()
        n += 1
    dt = time.perf_counter() - t0
    return {"samples_per_s": n * args.batch / dt, "steps": n}


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
            loss = loss_fn(model(xtr[idx]), ytr[idx])
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
