#!/usr/bin/python3
"""What elasticity costs: one controller (configs/controller.toml, its 2 local
pool workers) trains the same job on the real Fashion-MNIST twice over,
alternating

  - fixed:   "workers": 2, every epoch in one go;
  - elastic: "elastic": true with min_workers = max_workers = 2, so the
             workers never change but every epoch is its own segment: the
             parameter servers checkpoint, stop and restart, and the parts
             are handed out and fetch their data again between epochs.

Prints each run's wall time (job started -> finished, from the controller's
job record), its summed epoch times (training steps only), and what is
neither: start-up, evaluation, and for elastic runs the re-shards. The
re-shard overhead per epoch boundary is the difference of that remainder
(mean over rounds) between elastic and fixed, over epochs - 1. Subtracting the
epoch times first keeps the machine's run-to-run speed out of it. Both kinds
train the same data in the same order with the same seeds, so they also
report the same losses: the servers' checkpoint and restart are exact.

    /usr/bin/python3 bench/elastic_overhead.py [--build build] [--epochs 5] [--limit-train 60000] [--rounds 2]
"""
import argparse
import datetime
import json
import os
import shutil
import sys
import tempfile
import time

from controller_client import ROOT, http, register_fashion_mnist_and_mlp, start_controller


def stamp(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").timestamp()


def run_job(base, body):
    job = json.loads(http(base, "POST", "/api/v1/jobs", json.dumps(body).encode()))
    while True:
        job = json.loads(http(base, "GET", f"/api/v1/jobs/{job['id']}"))
        if job["state"] not in ("queued", "running"):
            break
        time.sleep(0.2)
    if job["state"] != "succeeded":
        sys.exit(f"job {job['id']} {job['state']}: {job['reason']}")
    # Started/finished are whole seconds; the log's first and last lines are too,
    # so the wall time is read from the job record (+-1 s per run).
    wall = stamp(job["finished"]) - stamp(job["started"])
    epochs = sum(e["seconds"] for e in job["history"])
    return wall, epochs, job["history"][-1].get("test_loss", 0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--limit-train", type=int, default=60000)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="dnnd-elastic-")
    ctl, base = start_controller(args.build, work)
    try:
        register_fashion_mnist_and_mlp(base)
        common = {"model": "mlp", "dataset": "fm", "epochs": args.epochs, "batch": 64, "workers": 2,
                  "limit_train": args.limit_train, "limit_test": 2000, "seed": 42}
        kinds = {"fixed": dict(common), "elastic": dict(common, elastic=True, min_workers=2, max_workers=2)}
        rest = {k: [] for k in kinds}
        losses = {k: set() for k in kinds}
        print(f"{'run':<10} {'wall s':>7} {'epochs s':>9} {'other s':>8} {'test loss':>11}")
        for _ in range(args.rounds):
            for kind, body in kinds.items():
                wall, epochs, loss = run_job(base, body)
                print(f"{kind:<10} {wall:>7.0f} {epochs:>9.2f} {wall - epochs:>8.2f} {loss:>11.6f}")
                rest[kind].append(wall - epochs)
                losses[kind].add(loss)
        mean = {k: sum(v) / len(v) for k, v in rest.items()}
        per = (mean["elastic"] - mean["fixed"]) / max(1, args.epochs - 1)
        print(f"time outside the epochs (mean): fixed {mean['fixed']:.2f} s, elastic {mean['elastic']:.2f} s; "
              f"re-shard overhead ~{per:.2f} s per epoch boundary ({args.epochs - 1} boundaries; wall times are "
              f"whole seconds)")
        print("same final test loss, fixed and elastic: " + ("yes" if losses["fixed"] == losses["elastic"] else
                                                           f"NO {losses}"))
    finally:
        ctl.terminate()
        ctl.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
