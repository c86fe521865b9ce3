#!/usr/bin/python3
"""PyTorch DistributedDataParallel reference for bench/scale_compare.py.

W processes on 127.0.0.1 with the gloo backend, one intra-op and one BLAS
thread each, each rank on its own contiguous part of the training set with
--batch samples per rank, cosine schedule per epoch, same normalisation as
dnnd. By default it trains the Fashion-MNIST MLP exactly as dnnd's
configs/standalone.toml does (Adam 1e-3 with PyTorch's fastest foreach
implementation); --model resnet20 --optimizer sgd --lr 0.1 --momentum 0.9
--weight-decay 5e-4 --crop-padding 2 --flip is configs/standalone-resnet20.toml's
recipe (BatchNorm buffers broadcast from rank 0 each step, DDP's default).
Rank 0 evaluates after every epoch (outside the timed training) and prints
one JSON object: per-epoch training seconds, job samples/s and test accuracy.

    /usr/bin/python3 bench/ddp_reference.py --workers 2 --batch 128 --epochs 5

With --rank R --master HOST:PORT it runs only rank R in this process and
rendezvouses at HOST:PORT (rank 0 listens there): one process per host, as
tests/deploy/netns_cluster.py --bench --ddp starts them in its namespace
hosts (with GLOO_SOCKET_IFNAME naming the host's interface). --limit-train N
trains on the first N training samples (split between the ranks), --limit-test
evaluates on the first N test samples, --probe-compute reports the forward +
backward time of a step without its all-reduce (measured before training).
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_reference as ref  # noqa: E402


def run(rank, args, master, queue):
    torch.set_num_threads(1)
    ref.set_blas_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://{master}", rank=rank, world_size=args.workers)
    torch.manual_seed(args.seed)
    xtr = ref.read_idx(f"{ref.DATA}/train-images-idx3-ubyte.gz")
    ytr = ref.read_idx(f"{ref.DATA}/train-labels-idx1-ubyte.gz").astype("int64")
    xte = ref.read_idx(f"{ref.DATA}/t10k-images-idx3-ubyte.gz")
    yte = ref.read_idx(f"{ref.DATA}/t10k-labels-idx1-ubyte.gz").astype("int64")
    if args.limit_train:
        xtr, ytr = xtr[:args.limit_train], ytr[:args.limit_train]
    if args.limit_test:
        xte, yte = xte[:args.limit_test], yte[:args.limit_test]
    norm = lambda a: (torch.from_numpy(a.astype("float32") / 255.0).unsqueeze(1) - args.mean) / args.std
    per = len(xtr) // args.workers
    xtr, ytr = norm(xtr[rank * per:(rank + 1) * per]), torch.from_numpy(ytr[rank * per:(rank + 1) * per])
    xte, yte = norm(xte), torch.from_numpy(yte)
    model = nn.parallel.DistributedDataParallel(ref.build(args.model))
    if args.comm_hook != "none":
        # Gradients all-reduced as fp16 / bf16 (half the bytes): DDP's own
        # answer to slow links, the counterpart of dnnd's codecs. PyTorch
        # 1.13 refuses the bf16 hook without NCCL (gloo: fp16 only).
        from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
        hook = {"fp16": default_hooks.fp16_compress_hook, "bf16": default_hooks.bf16_compress_hook}
        model.register_comm_hook(None, hook[args.comm_hook])
    opt = ref.make_optimizer(args, model.parameters())
    loss_fn = nn.CrossEntropyLoss()
    steps = per // args.batch
    g = torch.Generator().manual_seed(args.seed + rank)
    history, trained, probe = [], 0.0, None
    if args.probe_compute:
        # Forward + backward without the all-reduce (no_sync), on the first
        # batches, before training; the gradients are discarded.
        times = []
        for i in range(9):
            t = time.perf_counter()
            with model.no_sync():
                loss_fn(model(xtr[i * args.batch:(i + 1) * args.batch]), ytr[i * args.batch:(i + 1) * args.batch]).backward()
            times.append(time.perf_counter() - t)
            opt.zero_grad(set_to_none=True)
        probe = sorted(times[1:])[len(times[1:]) // 2]
    for epoch in range(args.epochs):
        for pg in opt.param_groups:
            pg["lr"] = 0.5 * args.lr * (1 + math.cos(math.pi * epoch / args.epochs))
        model.train()
        perm = torch.randperm(per, generator=g)
        dist.barrier()
        t0 = time.perf_counter()
        opt_secs = 0.0
        for i in range(steps):
            idx = perm[i * args.batch:(i + 1) * args.batch]
            opt.zero_grad(set_to_none=True)
            x = xtr[idx]
            if args.crop_padding or args.flip:
                x = ref.augment(x, args.crop_padding, args.flip, g)
            loss_fn(model(x), ytr[idx]).backward()
            t = time.perf_counter()
            opt.step()
            opt_secs += time.perf_counter() - t
        dist.barrier()
        secs = time.perf_counter() - t0
        trained += secs
        if rank == 0:
            model.eval()
            with torch.no_grad():
                correct = sum((model.module(xte[i:i + 1000]).argmax(1) == yte[i:i + 1000]).sum().item()
                              for i in range(0, len(xte), 1000))
            history.append({"epoch": epoch + 1, "seconds": secs, "train_seconds_total": trained,
                            "samples_per_s": steps * args.batch * args.workers / secs,
                            "test_accuracy": correct / len(xte), "optimizer_s_per_step": opt_secs / steps,
                            "forward_backward_s_per_step_no_sync": probe})
        dist.barrier()
    if rank == 0:
        queue.put(history)
    dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--model", default="mlp")
    p.add_argument("--optimizer", default="adam", choices=["adam", "sgd"])
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--momentum", type=float, default=0.0)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--crop-padding", type=int, default=0)
    p.add_argument("--flip", action="store_true")
    p.add_argument("--mean", type=float, default=0.2860)
    p.add_argument("--std", type=float, default=0.3530)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--limit-train", type=int, default=0, help="train on the first N samples (0: all)")
    p.add_argument("--limit-test", type=int, default=0, help="evaluate on the first N samples (0: all)")
    p.add_argument("--probe-compute", action="store_true",
                   help="time forward + backward without the all-reduce on 8 batches before training")
    p.add_argument("--comm-hook", default="none", choices=["none", "fp16", "bf16"],
                   help="DDP communication hook: all-reduce gradients as fp16 or bf16")
    p.add_argument("--rank", type=int, default=None, help="run only this rank, rendezvous at --master")
    p.add_argument("--master", default=None, help="HOST:PORT of rank 0's rendezvous (with --rank)")
    args = p.parse_args()
    args.nesterov = False
    libs, core = ref.check_blas()
    if args.rank is not None:
        if not args.master:
            sys.exit("--rank needs --master HOST:PORT")
        out = []

        class Sink:
            put = out.append

        run(args.rank, args, args.master, Sink)
        if args.rank == 0:
            print(json.dumps({"workers": args.workers, "batch_per_worker": args.batch, "blas_core": core,
                              "torch": torch.__version__, "history": out[0]}))
        return
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=run, args=(r, args, f"127.0.0.1:{port}", queue)) for r in range(args.workers)]
    for proc in procs:
        proc.start()
    history = queue.get()
    for proc in procs:
        proc.join()
    print(json.dumps({"workers": args.workers, "batch_per_worker": args.batch, "blas_core": core,
                      "torch": torch.__version__, "history": history}))


if __name__ == "__main__":
    main()
