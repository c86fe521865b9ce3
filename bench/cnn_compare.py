#!/usr/bin/python3
"""CNN training throughput, dnnd vs PyTorch, side by side in one run.

  /usr/bin/python3 bench/cnn_compare.py [--seconds S] [--rounds R] [--models a,b] [--before DIR]
                                        [--bf16]

Models (batch 128, synthetic data):
  lenet      the LeNet-5-like CNN of bench/train_bench.cc, Adam
  lenet-sgd  the same, SGD momentum 0.9
  resnet20   configs/models/resnet20.toml (with BatchNorm), 1x28x28, SGD momentum 0.9
  resnet20c  the same on 3x32x32
on 1 and 2 cores: dnnd at that many threads, PyTorch at its best split (torch
intra-op threads x OpenBLAS threads). The two sides alternate, R rounds, and
the best of each is kept: the machine is shared, so re-run before believing
a ratio. --before DIR times another build's benchmarks in the same rounds;
--bf16 also times dnnd with DNND_PRECISION=bf16 (opt-in bfloat16 convolution
products, AVX512-BF16 CPUs only), against the same float32 PyTorch runs.
"""
import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build", "bench")
PY = "/usr/bin/python3"
TORCH = os.path.join(ROOT, "bench", "torch_reference.py")

# model -> (dnnd benchmark binary, benchmark name prefix, torch args)
MODELS = {
    "lenet": ("train_bench", "BM_TrainLenet/", ["--model", "lenet"]),
    "lenet-sgd": ("train_bench", "BM_TrainLenetSgd/", ["--model", "lenet", "--optimizer", "sgd",
                                                       "--lr", "0.1", "--momentum", "0.9"]),
    "resnet20": ("train_bench", "BM_TrainResnet20Gray/", ["--model", "resnet20", "--optimizer",
                                                          "sgd", "--lr", "0.1", "--momentum", "0.9"]),
    "resnet20c": ("train_bench", "BM_TrainResnet20Rgb/", ["--model", "resnet20c", "--optimizer",
                                                          "sgd", "--lr", "0.1", "--momentum", "0.9"]),
}


def run(cmd, env=None):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit("failed: %s\n%s%s" % (" ".join(cmd), r.stdout, r.stderr))
    return r.stdout


def dnnd(model, cores, seconds, build=BUILD, precision="fp32"):
    binary, prefix, _ = MODELS[model]
    out = run([os.path.join(build, binary), "--benchmark_format=json",
               "--benchmark_min_time=%g" % seconds,
               "--benchmark_filter=^%s%d/" % (prefix, cores)],
              env=dict(os.environ, DNND_PRECISION=precision))
    (b,) = json.loads(out)["benchmarks"]
    return b["samples_per_s"], b.get("label", "")


def torch(model, cores, seconds):
    best = None
    for t in range(1, cores + 1):
        for bt in range(1, cores + 1):
            r = json.loads(run([PY, TORCH, "throughput", *MODELS[model][2], "--threads", str(t),
                                "--blas-threads", str(bt), "--seconds", str(seconds)]))
            if best is None or r["samples_per_s"] > best[0]:
                best = (r["samples_per_s"], "%dx%d" % (t, bt))
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--models", default="lenet,lenet-sgd,resnet20,resnet20c")
    ap.add_argument("--cores", default="1,2")
    ap.add_argument("--before", help="another build's bench/ directory, timed in the same rounds")
    ap.add_argument("--bf16", action="store_true",
                    help="also time dnnd with DNND_PRECISION=bf16 in the same rounds")
    args = ap.parse_args()
    print("OPENBLAS_CORETYPE=%s" % os.environ.get("OPENBLAS_CORETYPE", "(unset)"))
    # dnnd's variants, each timed once per round: (column, build, precision)
    variants = [("dnnd before", args.before, "fp32")] if args.before else []
    variants.append(("dnnd", BUILD, "fp32"))
    if args.bf16:
        variants.append(("dnnd bf16", BUILD, "bf16"))
    names = [v[0] for v in variants]
    print("| model | cores | %s | PyTorch samples/s (torch x BLAS threads) | %s |" % (
        " | ".join("%s samples/s" % n for n in names), " | ".join("%s / PyTorch" % n for n in names)))
    print("|---|---|%s---|%s" % ("---|" * len(names), "---|" * len(names)))
    label = ""
    for model in args.models.split(","):
        for cores in [int(c) for c in args.cores.split(",")]:
            best, t = [0.0] * len(variants), (0.0, "")
            for _ in range(args.rounds):
                for i, (_, build, precision) in enumerate(variants):
                    rate, lab = dnnd(model, cores, args.seconds, build, precision)
                    best[i] = max(best[i], rate)
                    if build == BUILD and precision == "fp32":
                        label = lab
                t = max(t, torch(model, cores, args.seconds))
            print("| %s | %d | %s | %.0f (%s) | %s |" % (
                model, cores, " | ".join("%.0f" % b for b in best), t[0], t[1],
                " | ".join("%.2fx" % (b / t[0]) for b in best)), flush=True)
    print("dnnd: %s" % label)


if __name__ == "__main__":
    main()
