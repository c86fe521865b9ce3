#!/usr/bin/python3
"""dnnd's Conv2d vs PyTorch's on ResNet-20's convolution shapes, batch 128.

  /usr/bin/python3 bench/conv_compare.py [--seconds S] [--rounds R] [--filter NAME] [--bench BIN]

For each shape, forward alone (no graph) and forward + backward (data,
weight and bias gradients; no data gradient for a stem), at 1 and 2 threads:
dnnd's bench/conv_bench and PyTorch (oneDNN) timed alternately in one run,
R rounds, best of each. Prints GFLOP/s and dnnd / PyTorch.
The machine is shared, so alternate and repeat before believing a ratio.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "build", "bench", "conv_bench")
BATCH = 128
ARGS = None

# Keep equal to kShapes in bench/conv_bench.cc (checked at run time).
SHAPES = [
    ("stem28_1x16", 1, 16, 28, 3, 1, 1, 1, False),
    ("s1_28_16x16", 16, 16, 28, 3, 1, 1, 1, True),
    ("s2in_28_16x32", 16, 32, 28, 3, 2, 1, 1, True),
    ("s2_14_32x32", 32, 32, 14, 3, 1, 1, 1, True),
    ("s3in_14_32x64", 32, 64, 14, 3, 2, 1, 1, True),
    ("s3_7_64x64", 64, 64, 7, 3, 1, 1, 1, True),
    ("proj_28_16x32_1x1", 16, 32, 28, 1, 2, 0, 1, True),
    ("stem32_3x16", 3, 16, 32, 3, 1, 1, 1, False),
    ("s1_32_16x16", 16, 16, 32, 3, 1, 1, 1, True),
    ("s2in_32_16x32", 16, 32, 32, 3, 2, 1, 1, True),
    ("s2_16_32x32", 32, 32, 16, 3, 1, 1, 1, True),
    ("s3in_16_32x64", 32, 64, 16, 3, 2, 1, 1, True),
    ("s3_8_64x64", 64, 64, 8, 3, 1, 1, 1, True),
    ("dw_14_32", 32, 32, 14, 3, 1, 1, 32, True),
]


def flops(shape, backward):
    _, c, oc, hw, k, s, p, g, igrad = shape
    o = (hw + 2 * p - k) // s + 1
    f = 2.0 * BATCH * oc * o * o * (c // g) * k * k
    return f * ((3 if igrad else 2) if backward else 1)


def torch_worker(conn_args):
    """Runs in a child: times every (shape, mode) at one thread count."""
    import torch
    threads, seconds, idx = conn_args
    torch.set_num_threads(threads)
    out = {}
    for i in idx:
        name, c, oc, hw, k, s, p, g, igrad = SHAPES[i]
        torch.manual_seed(0)
        x = torch.rand(BATCH, c, hw, hw) * 2 - 1
        w = (torch.rand(oc, c // g, k, k) - 0.5) * 0.4
        b = (torch.rand(oc) - 0.5) * 0.2
        for mode in ("fwd", "fwdbwd"):
            if mode == "fwd":
                def step():
                    with torch.no_grad():
                        torch.nn.functional.conv2d(x, w, b, s, p, 1, g)
            else:
                xg = x.clone().requires_grad_(igrad)
                wg = w.clone().requires_grad_(True)
                bg = b.clone().requires_grad_(True)
                o = (hw + 2 * p - k) // s + 1
                gy = torch.rand(BATCH, oc, o, o)
                def step():
                    y = torch.nn.functional.conv2d(xg, wg, bg, s, p, 1, g)
                    y.backward(gy)
                    wg.grad = None
                    bg.grad = None
                    xg.grad = None
            for _ in range(3):
                step()
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds or n < 3:
                step()
                n += 1
            dt = (time.perf_counter() - t0) / n
            out["%s/%s" % (name, mode)] = dt
    return out


def run_torch(threads, seconds, idx):
    code = ("import sys, json; sys.path.insert(0, %r); import conv_compare as c; "
            "print(json.dumps(c.torch_worker((%d, %g, %r))))" % (os.path.dirname(__file__), threads, seconds, idx))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if r.returncode:
        sys.exit(r.stderr)
    return json.loads(r.stdout)


def run_dnnd(threads, seconds, idx):
    filt = "Conv(Forward|ForwardBackward)/(%s)/%d/" % ("|".join(str(i) for i in idx), threads)
    r = subprocess.run([ARGS.bench, "--benchmark_format=json", "--benchmark_min_time=%g" % seconds,
                        "--benchmark_filter=" + filt], capture_output=True, text=True)
    if r.returncode:
        sys.exit(r.stderr)
    out = {}
    for b in json.loads(r.stdout)["benchmarks"]:
        kind, i, t = b["name"].split("/")[:3]
        name = SHAPES[int(i)][0]
        if b.get("label") != name:
            sys.exit("shape table out of sync with conv_bench: %s vs %s" % (b.get("label"), name))
        mode = "fwd" if kind == "ConvForward" else "fwdbwd"
        out["%s/%s" % (name, mode)] = b["real_time"] * {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1}[b["time_unit"]]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=0.5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--filter", default="", help="regex on shape names")
    ap.add_argument("--bench", default=BENCH, help="conv_bench binary (e.g. an older build's)")
    args = ap.parse_args()
    global ARGS
    ARGS = args
    idx = [i for i, s in enumerate(SHAPES) if re.search(args.filter, s[0])]
    print("OPENBLAS_CORETYPE=%s" % os.environ.get("OPENBLAS_CORETYPE", "(unset)"))
    for threads in [int(t) for t in args.threads.split(",")]:
        best_d, best_t = {}, {}
        for _ in range(args.rounds):  # alternate the two sides
            for res, fn in ((best_d, run_dnnd), (best_t, run_torch)):
                for k, v in fn(threads, args.seconds, idx).items():
                    res[k] = min(res.get(k, 1e9), v)
        print()
        print("threads = %d (best of %d alternating rounds)" % (threads, args.rounds))
        print("| shape | mode | dnnd ms | torch ms | dnnd GFLOP/s | torch GFLOP/s | dnnd / torch |")
        print("|---|---|---|---|---|---|---|")
        tot_d = tot_t = 0.0
        for i in idx:
            for mode in ("fwd", "fwdbwd"):
                k = "%s/%s" % (SHAPES[i][0], mode)
                f = flops(SHAPES[i], mode == "fwdbwd")
                d, t = best_d[k], best_t[k]
                if SHAPES[i][7] == 1 and SHAPES[i][4] == 3 and mode == "fwdbwd":
                    tot_d += d
                    tot_t += t
                print("| %s | %s | %.2f | %.2f | %.1f | %.1f | %.2fx |" % (
                    SHAPES[i][0], mode, d * 1e3, t * 1e3, f / d / 1e9, f / t / 1e9, t / d))
        print("3x3 fwd+bwd total: dnnd %.1f ms, torch %.1f ms, dnnd / torch %.2fx" % (
            tot_d * 1e3, tot_t * 1e3, tot_t / tot_d))


if __name__ == "__main__":
    main()
