#!/usr/bin/python3
"""Data-parallel scaling: dnnd's standalone cluster (1, 2, 4 workers x 1, 2
parameter servers, sync mode, 128 samples per worker per step) next to
PyTorch DistributedDataParallel (gloo over 127.0.0.1, one process and one
thread per rank, same model, optimizer, schedule and per-worker batch) and
dnnd's own single-process local training, all in one run on this machine.
Prints the README's markdown table.

    /usr/bin/python3 bench/scale_compare.py [--build build] [--epochs 5]
    /usr/bin/python3 bench/scale_compare.py --model resnet20 [--epochs 5]

--model resnet20 trains ResNet-20 with the ResNet recipe (SGD 0.1, momentum
0.9, weight decay 5e-4, crops + flips): dnnd local on 2 threads
(configs/worker-resnet20.toml), dnnd sync with 2 servers x 2 workers
(configs/standalone-resnet20.toml) and DDP with 2 ranks, --per-worker samples
per worker (default 64) and twice that for the local run, so every setup
takes the same samples per step.

samples/s is the job's (all workers) over training time, evaluation excluded;
time to 88 % is training time until the first epoch whose test accuracy is at
least 88 %; the compute / communicate / wait / server split is dnnd's own accounting
(/metrics' dnnd_worker_step_seconds_total, summed over workers): forward and
backward, the network round trips, waiting at the barrier for other workers,
and the servers' averaging + optimizer.
"""
import argparse
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
EPOCH = re.compile(r"^epoch (\d+)/\d+ loss [0-9.]+\s+([0-9.]+)(k?) samples/s\s+([0-9.]+)s\s+test loss [0-9.]+\s+test accuracy ([0-9.]+)%", re.M)
SPLIT = re.compile(r"step time: compute (\d+)%, communicate (\d+)%, wait (\d+)%, server (\d+)%")


def dnnd(build, args):
    out = subprocess.run([os.path.join(build, "dnnd")] + args + ["--set", "train.progress=none"],
                         capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        sys.exit("dnnd failed:\n" + out.stderr[-3000:])
    return out.stderr


def parse_dnnd(text, workers):
    history = []
    for m in EPOCH.finditer(text):
        rate = float(m.group(2)) * (1000 if m.group(3) else 1)
        history.append({"epoch": int(m.group(1)), "samples_per_s": rate * workers, "seconds": float(m.group(4)),
                        "test_accuracy": float(m.group(5)) / 100})
    split = SPLIT.search(text)
    return history, (split.groups() if split else None)


def summarize(history):
    total_samples = sum(h["samples_per_s"] * h["seconds"] for h in history)
    total_time = sum(h["seconds"] for h in history)
    t, to88 = 0.0, None
    for h in history:
        t += h["seconds"]
        if to88 is None and h["test_accuracy"] >= 0.88:
            to88 = t
    return total_samples / total_time, to88, history[-1]["test_accuracy"], total_time


RESNET_RECIPE = ["--model", "resnet20", "--optimizer", "sgd", "--lr", "0.1", "--momentum", "0.9",
                 "--weight-decay", "5e-4", "--crop-padding", "2", "--flip"]


def ddp(workers, epochs, batch, extra=()):
    out = subprocess.run(["/usr/bin/python3", os.path.join(HERE, "ddp_reference.py"), "--workers", str(workers),
                          "--epochs", str(epochs), "--batch", str(batch), *extra], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit("ddp_reference failed:\n" + out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])["history"]


def print_table(title, rows, ddp_name):
    ddp2 = next(r for r in rows if r[0].startswith(ddp_name))[1]
    local1 = rows[0][1]
    print(f"| {title} | samples/s | vs {ddp_name} | vs {rows[0][0]} | time to 88 % | final accuracy | compute / communicate / wait / server |")
    print("|---|---|---|---|---|---|---|")
    for name, rate, to88, acc, total, split in rows:
        print(f"| {name} | {rate / 1000:.2f}k | {rate / ddp2:.2f}x | {rate / local1:.2f}x | "
              f"{'%.1f s' % to88 if to88 else 'not reached'} | {100 * acc:.2f} % | "
              f"{'/'.join(split) + ' %' if split else ''} |")


def resnet(args):
    rows = []
    per = args.per_worker
    common = ["--set", f"train.epochs={args.epochs}", "--set", "train.checkpoint_dir="]
    print(f"dnnd local ResNet-20, 2 threads, batch {2 * per} ...", file=sys.stderr)
    text = dnnd(args.build, ["--config", "configs/worker-resnet20.toml", "--set", "node.threads=2",
                             "--set", f"train.batch_size={2 * per}"] + common)
    rows.append((f"dnnd local, 1 process, 2 threads, batch {2 * per}",
                 *summarize(parse_dnnd(text, 1)[0]), None))
    print("dnnd sync ResNet-20, 2 servers x 2 workers ...", file=sys.stderr)
    text = dnnd(args.build, ["--config", "configs/standalone-resnet20.toml", "--set", "standalone.controller=false",
                             "--set", "http.listen=127.0.0.1:0", "--set", "ps.checkpoint_dir=",
                             "--set", f"train.batch_size={per}"] + common)
    h, split = parse_dnnd(text, 2)
    rows.append((f"dnnd sync, 2 servers x 2 workers, {per} per worker", *summarize(h), split))
    print("PyTorch DDP ResNet-20, 2 ranks ...", file=sys.stderr)
    rows.append((f"PyTorch DDP (gloo), 2 ranks, {per} per rank",
                 *summarize(ddp(2, args.epochs, per, RESNET_RECIPE)), None))
    print_table(f"ResNet-20, {args.epochs} epochs, {2 * per} samples per step", rows, "PyTorch DDP (gloo), 2")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--model", default="mlp", choices=["mlp", "resnet20"])
    ap.add_argument("--per-worker", type=int, default=64,
                    help="resnet20: samples per worker per step (PyTorch 1.13 on 1 thread trains "
                         "ResNet-20 at ~2x the samples/s at 64 as at 128 here)")
    args = ap.parse_args()
    if args.model == "resnet20":
        return resnet(args)
    rows = []
    common = ["--set", f"train.epochs={args.epochs}", "--set", "train.batch_size=128"]
    for threads in (1, 2):
        print(f"dnnd local, {threads} thread(s) ...", file=sys.stderr)
        text = dnnd(args.build, ["--role=worker", "--config", "configs/worker-mlp.toml", "--set",
                                 f"node.threads={threads}", "--set", "train.checkpoint_dir="] + common)
        h, _ = parse_dnnd(text, 1)
        rows.append((f"dnnd local, 1 process, {threads} thread(s)", *summarize(h), None))
    for servers in (1, 2):
        for workers in (1, 2, 4):
            print(f"dnnd standalone, {servers} server(s), {workers} worker(s) ...", file=sys.stderr)
            text = dnnd(args.build, ["--role=standalone", "--config", "configs/standalone.toml", "--set", "standalone.controller=false", "--set", "http.listen=127.0.0.1:0", "--set",
                                     f"standalone.servers={servers}", "--set", f"standalone.workers={workers}",
                                     "--set", "ps.checkpoint_dir=", "--set", "train.checkpoint_dir="] + common)
            h, split = parse_dnnd(text, workers)
            rows.append((f"dnnd sync, {servers} server(s), {workers} worker(s)", *summarize(h), split))
    for workers in (1, 2, 4):
        print(f"PyTorch DDP, {workers} rank(s) ...", file=sys.stderr)
        rows.append((f"PyTorch DDP (gloo), {workers} rank(s)", *summarize(ddp(workers, args.epochs, 128)), None))
    print_table(f"setup ({args.epochs} epochs, 128 samples per worker per step)", rows, "PyTorch DDP (gloo), 2")


if __name__ == "__main__":
    main()
