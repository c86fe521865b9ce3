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
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FM = "/usr/share/datasets/fashion-mnist/"


def http(base, method, path, body=None, content_type="application/json"):
    req = urllib.request.Request(base + path, data=body, method=method)
    if body is not None:
        req.add_header("Content-Type", content_type)
    with urllib.request.urlopen(req, timeout=300) as r:
        return r.read()


def wait_for_port(log_path, proc, marker="control plane listening address=127.0.0.1:"):
    for _ in range(300):
        text = open(log_path).read()
        if marker in text:
            return int(re.search(re.escape(marker) + r"(\d+)", text).group(1))
        if proc.poll() is not None:
            sys.exit("dnnd exited:\n" + text[-3000:])
        time.sleep(0.05)
    sys.exit("dnnd did not start:\n" + open(log_path).read()[-3000:])


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
    log = os.path.join(work, "controller.log")
    ctl = subprocess.Popen([os.path.join(args.build, "dnnd"), "--role=controller", "--config",
                            os.path.join(ROOT, "configs/controller.toml"), "--set", "http.listen=127.0.0.1:0",
                            "--set", f"controller.data_dir={work}/data"],
                           stdout=open(log, "w"), stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        base = f"http://127.0.0.1:{wait_for_port(log, ctl)}"
        for part, name in [("train-images", "train-images-idx3-ubyte.gz"), ("train-labels", "train-labels-idx1-ubyte.gz"),
                           ("test-images", "t10k-images-idx3-ubyte.gz"), ("test-labels", "t10k-labels-idx1-ubyte.gz")]:
            http(base, "PUT", f"/api/v1/datasets/fm/files/{part}", open(FM + name, "rb").read(),
                 "application/octet-stream")
        http(base, "POST", "/api/v1/datasets", json.dumps({"name": "fm", "format": "idx"}).encode())
        spec = open(os.path.join(ROOT, "configs/models/mlp.toml")).read()
        http(base, "POST", "/api/v1/models", json.dumps({"name": "mlp", "spec": spec}).encode())
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
