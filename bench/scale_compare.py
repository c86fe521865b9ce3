#!/usr/bin/python3
"""Data-parallel scaling: dnnd's standalone cluster (1, 2, 4 workers x 1, 2
parameter servers, sync mode, 128 samples per worker per step) next to
PyTorch DistributedDataParallel (gloo over 127.0.0.1, one process and one
thread per rank, same model, optimizer, schedule and per-worker batch) and
dnnd's own single-process local training, all in one run on this machine.
Prints the README's markdown table.

    /usr/bin/python3 bench/scale_compare.py [--build build] [--epochs 5]

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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--epochs", type=int, default=5)
    args = ap.parse_args()
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
            text = dnnd(args.build, ["--role=standalone", "--config", "configs/standalone.toml", "--set", "standalone.controller=false", "--set",
                                     f"standalone.servers={servers}", "--set", f"standalone.workers={workers}",
                                     "--set", "ps.checkpoint_dir=", "--set", "train.checkpoint_dir="] + common)
            h, split = parse_dnnd(text, workers)
            rows.append((f"dnnd sync, {servers} server(s), {workers} worker(s)", *summarize(h), split))
    for workers in (1, 2, 4):
        print(f"PyTorch DDP, {workers} rank(s) ...", file=sys.stderr)
        out = subprocess.run(["/usr/bin/python3", os.path.join(HERE, "ddp_reference.py"), "--workers", str(workers),
                              "--epochs", str(args.epochs), "--batch", "128"], capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit("ddp_reference failed:\n" + out.stderr[-3000:])
        h = json.loads(out.stdout.strip().splitlines()[-1])["history"]
        rows.append((f"PyTorch DDP (gloo), {workers} rank(s)", *summarize(h), None))

    ddp2 = next(r for r in rows if r[0].startswith("PyTorch DDP (gloo), 2"))[1]
    local1 = rows[0][1]
    print(f"| setup ({args.epochs} epochs, 128 samples per worker per step) | samples/s | vs DDP 2 ranks | vs dnnd local 1 thread | time to 88 % | final accuracy | compute / communicate / wait / server |")
    print("|---|---|---|---|---|---|---|")
    for name, rate, to88, acc, total, split in rows:
        print(f"| {name} | {rate / 1000:.1f}k | {rate / ddp2:.2f}x | {rate / local1:.2f}x | "
              f"{'%.1f s' % to88 if to88 else 'not reached'} | {100 * acc:.2f} % | "
              f"{'/'.join(split) + ' %' if split else ''} |")


if __name__ == "__main__":
    main()
