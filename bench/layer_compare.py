#!/usr/bin/python3
"""A model split across layer servers, next to the same model trained
locally, in one run on this machine (two layer-server processes on loopback):

  - DockerNN's XOR network (3-50-100-1, 20,000 full-batch iterations):
    iterations/s locally, with every layer on a layer server, and DockerNN's
    own loop rebuilt (bench/dockernn_xor.py: Flask services, blosc + hex);
  - the Fashion-MNIST MLP split over two layer servers (layer 1-2 and 3-5):
    samples/s with 1 micro-batch per step (no pipelining) and with 2, 4 and 8
    pipelined micro-batches, next to local training on one thread.

Prints the README's markdown table.

    /usr/bin/python3 bench/layer_compare.py [--build build] [--epochs 2]
"""
import argparse
import json
import os
import re
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ITERS = re.compile(r"^iteration 20000/20000 loss ([0-9.]+)\s+([0-9.]+) iterations/s", re.M)
EPOCH = re.compile(r"^epoch (\d+)/\d+ loss ([0-9.]+)\s+([0-9.]+)(k?) samples/s\s+([0-9.]+)s\s+test loss [0-9.]+\s+test accuracy ([0-9.]+)%", re.M)


def run(build, args):
    out = subprocess.run([os.path.join(build, "dnnd")] + args + ["--set", "train.progress=none", "--set",
                                                                  "train.checkpoint_dir="],
                         capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        sys.exit("dnnd failed:\n" + out.stderr[-3000:])
    return out.stderr


def samples_per_s(text):
    rows = EPOCH.findall(text)
    total = sum(float(r[2]) * (1000 if r[3] else 1) * float(r[4]) for r in rows)
    secs = sum(float(r[4]) for r in rows)
    return total / secs, float(rows[-1][5]), float(rows[-1][1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    servers, ports = [], []
    # Each server chains only to layer.next_stages, so both ports are known first.
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(str(s.getsockname()[1]))
    stages = "layer.next_stages=[" + ", ".join(f'"127.0.0.1:{p}"' for p in ports) + "]"
    try:
        for i in range(2):
            log = open(f"/tmp/dnnd-layer-bench-{i}.log", "w+")
            p = subprocess.Popen([os.path.join(args.build, "dnnd"), "--role=layer-server", "--config",
                                  "configs/layer-server.toml", "--set", f"layer.listen=127.0.0.1:{ports[i]}", "--set",
                                  stages, "--set", "transport.token=bench"], cwd=ROOT, stdout=log, stderr=log)
            servers.append((p, log))
            for _ in range(200):
                log.seek(0)
                if re.search(r"listening address=127.0.0.1:(\d+)", log.read()):
                    break
                time.sleep(0.05)
            else:
                sys.exit("a layer server did not start; see " + log.name)

        def placement(a, b):
            return ["--set", f'worker.placement=[{{layers="{a}", server="127.0.0.1:{ports[0]}"}}, '
                             f'{{layers="{b}", server="127.0.0.1:{ports[1]}"}}]', "--set", "transport.token=bench"]

        rows = []
        print("XOR locally ...", file=sys.stderr)
        local = ITERS.search(run(args.build, ["--role=worker", "--config", "configs/worker-xor.toml"]))
        print("XOR, every layer on a layer server ...", file=sys.stderr)
        remote = ITERS.search(run(args.build, ["--role=worker", "--config", "configs/worker-xor-layers.toml"] +
                                  placement("0-1", "2-5")))
        xor_local, xor_remote = float(local.group(2)), float(remote.group(2))
        print("DockerNN's loop (Flask services, blosc + hex) ...", file=sys.stderr)
        ref = subprocess.run(["/usr/bin/python3", os.path.join(HERE, "dockernn_xor.py"), "--iterations", "200"],
                             capture_output=True, text=True)
        dockernn = json.loads(ref.stdout)["iterations_per_s"] if ref.returncode == 0 else None
        print("| DockerNN's XOR, 20,000 full-batch iterations | iterations/s | vs local | final loss |")
        print("|---|---|---|---|")
        print(f"| dnnd local, 1 thread | {xor_local:,.0f} | 1.00x | {local.group(1)} |")
        print(f"| dnnd, every layer on 2 layer servers | {xor_remote:,.0f} | {xor_remote / xor_local:.3f}x | "
              f"{remote.group(1)} |")
        if dockernn:
            print(f"| DockerNN's loop rebuilt (bench/dockernn_xor.py): 6 Flask services, 15 requests/iteration | "
                  f"{dockernn:,.1f} | {dockernn / xor_local:.4f}x | (200 iterations) |")
        print()
        common = ["--set", f"train.epochs={args.epochs}"]
        print("MLP locally, 1 thread ...", file=sys.stderr)
        base = samples_per_s(run(args.build, ["--role=worker", "--config", "configs/worker-mlp.toml", "--set",
                                              "node.threads=1"] + common))
        rows.append(("dnnd local, 1 process, 1 thread", *base))
        for mb in (1, 2, 4, 8):
            print(f"MLP split, {mb} micro-batch(es) ...", file=sys.stderr)
            r = samples_per_s(run(args.build, ["--role=worker", "--config", "configs/worker-mlp-layers.toml",
                                               "--set", f"worker.micro_batches={mb}"] + common +
                                  placement("1-2", "3-5")))
            what = "no pipelining" if mb == 1 else f"{mb} micro-batches pipelined"
            rows.append((f"split over 2 layer servers, {what}", *r))
        print(f"| Fashion-MNIST MLP, batch 128, {args.epochs} epochs | samples/s | vs local | test accuracy | "
              "last epoch's loss |")
        print("|---|---|---|---|---|")
        for name, rate, acc, loss in rows:
            print(f"| {name} | {rate / 1000:.1f}k | {rate / rows[0][1]:.2f}x | {acc:.2f} % | {loss:.4f} |")
    finally:
        for p, log in servers:
            p.terminate()
            p.wait()
            log.close()


if __name__ == "__main__":
    main()
