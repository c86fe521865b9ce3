#!/usr/bin/python3
"""dnnd vs PyTorch, side by side in one run, on this machine.

  /usr/bin/python3 bench/compare_training.py [--quick]

1. Throughput (samples/s, batch 128, Adam, synthetic Fashion-MNIST-shaped
   data) of the MLP 784-512-256-10 and the LeNet-5-like CNN on 1 and 2 cores:
   dnnd's bench/train_bench against PyTorch at its best thread split per core
   count (torch intra-op threads x OpenBLAS threads, every split tried).
2. The MLP's achieved GFLOP/s next to the same GEMMs run bare through
   kernels::Gemm (dnnd's AVX-512 kernel where the CPU has it, else OpenBLAS).
3. Test accuracy on the real Fashion-MNIST after 5 epochs, same model,
   optimiser, schedule, batch and normalisation on both sides; dnnd's peak RSS.
Prints the OpenBLAS core both sides use; refuses PyTorch on the reference BLAS.
"""
import argparse
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build")
PY = "/usr/bin/python3"
TORCH = os.path.join(ROOT, "bench", "torch_reference.py")


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit("failed: %s\n%s%s" % (" ".join(cmd), r.stdout, r.stderr))
    return r


def dnnd_throughput(seconds):
    out = run([os.path.join(BUILD, "bench", "train_bench"), "--benchmark_format=json",
               "--benchmark_min_time=%g" % seconds]).stdout
    res = {}
    for b in json.loads(out)["benchmarks"]:
        name, threads = b["name"].split("/")[0], int(b["name"].split("/")[1])
        res[(name, threads)] = b
    return res


def torch_throughput(model, cores, seconds, optimizer):
    best = None
    for t in range(1, cores + 1):
        for bt in range(1, cores + 1):
            extra = ["--optimizer", "sgd", "--lr", "0.1", "--momentum", "0.9"] if optimizer == "sgd" else []
            r = json.loads(run([PY, TORCH, "throughput", "--model", model, "--threads", str(t),
                                "--blas-threads", str(bt), "--seconds", str(seconds), *extra]).stdout)
            if best is None or r["samples_per_s"] > best["samples_per_s"]:
                best = r
    return best


def dnnd_accuracy(config, epochs):
    r = run(["/usr/bin/time", "-v", os.path.join(BUILD, "dnnd"), "--role=worker", "--config",
             os.path.join(ROOT, "configs", config), "--set", "train.progress=none",
             "--set", "train.epochs=%d" % epochs, "--set", "train.checkpoint_dir=/tmp/dnnd_compare"],
            cwd=ROOT)
    acc = float(re.search(r"final test accuracy ([0-9.]+)%", r.stderr).group(1)) / 100
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr).group(1)) / 1024
    rates = [float(x) * (1000 if u == "k" else 1) for x, u in
             re.findall(r"loss [0-9.]+\s+([0-9.]+)(k?) samples/s", r.stderr)]
    return acc, rss, sum(rates) / len(rates)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="1 epoch, shorter timings")
    args = ap.parse_args()
    seconds = 1.0 if args.quick else 3.0
    epochs = 1 if args.quick else 5
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    version = run([os.path.join(BUILD, "dnnd"), "version"]).stdout.strip()
    blas = json.loads(run([PY, TORCH, "blas"]).stdout)
    print("machine: %s, %d cores; OPENBLAS_CORETYPE=%s" % (cpu, os.cpu_count(), os.environ.get("OPENBLAS_CORETYPE", "(unset)")))
    print("dnnd: %s" % version)
    print("torch %s, BLAS %s, core %s" % (blas["torch"], blas["blas"][-1], blas["blas_core"]))
    print()

    d = dnnd_throughput(seconds)
    rows = []
    for model, opt, bench in (("mlp", "adam", "BM_TrainMlp"), ("mlp", "sgd", "BM_TrainMlpSgd"),
                              ("lenet", "adam", "BM_TrainLenet")):
        for cores in (1, 2):
            t = torch_throughput(model, cores, seconds, opt)
            ds = d[(bench, cores)]["samples_per_s"]
            rows.append((model, opt, cores, ds, t["samples_per_s"], "%dx%d" % (t["threads"], t["blas_threads"])))
    print("| model | optimizer | cores | dnnd samples/s | PyTorch samples/s (best torch x BLAS threads) | dnnd / PyTorch |")
    print("|---|---|---|---|---|---|")
    for m, o, c, ds, ts, split in rows:
        print("| %s | %s | %d | %.0f | %.0f (%s) | %.2fx |" % (m, o, c, ds, ts, split, ds / ts))
    print()
    print("| MLP training vs GEMM roofline | cores | training GFLOP/s | bare GEMMs GFLOP/s | share |")
    print("|---|---|---|---|---|")
    for cores in (1, 2):
        tr = d[("BM_TrainMlp", cores)]["GFLOP_per_s"]  # counters are already GFLOP/s
        rf = d[("MlpGemmRoofline", cores)]["GFLOP_per_s"]
        print("| | %d | %.1f | %.1f | %.0f%% |" % (cores, tr, rf, 100 * tr / rf))
    print()
    print("| model (%d epochs, Fashion-MNIST test set) | dnnd accuracy | PyTorch accuracy | difference | dnnd peak RSS | dnnd samples/s (end to end) |" % epochs)
    print("|---|---|---|---|---|---|")
    for model, config, lr in (("mlp", "worker-mlp.toml", 1e-3), ("lenet", "worker-cnn.toml", 2e-3)):
        acc, rss, rate = dnnd_accuracy(config, epochs)
        t = json.loads(run([PY, TORCH, "accuracy", "--model", model, "--threads", "1", "--blas-threads", "2",
                            "--epochs", str(epochs), "--lr", str(lr), "--schedule", "cosine",
                            "--mean", "0.2860", "--std", "0.3530"]).stdout)
        print("| %s | %.2f%% | %.2f%% | %+.2f pts | %.0f MB | %.0f |" % (
            model, 100 * acc, 100 * t["test_accuracy"], 100 * (acc - t["test_accuracy"]), rss, rate))


if __name__ == "__main__":
    main()
