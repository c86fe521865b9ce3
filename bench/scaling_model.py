#!/usr/bin/python3
"""A scaling model of synchronous data-parallel training past this machine:
samples/s and scaling efficiency of 4-256 workers on 1, 10 and 25 Gbit/s
links, for dnnd's parameter servers (on their own hosts, or colocated with
the workers BytePS-style) and for ring all-reduce (PyTorch DDP, Horovod),
with and without overlap of communication with backward. Its inputs are
measured: the runs bench/links_compare.py wrote (2 servers x 2 workers on
emulated links, dnnd and DDP), from which it takes per-step compute, the
servers' time and each system's fixed per-step software cost (calibrated on
one link setting only, by default unshaped with the proxy's +0.5 ms, so
that the runs it predicts differ from it in their rate alone); bytes per step are the model's parameters x 4 each way.
It then predicts the shaped runs and compares (the check), prints the tables
of docs/scaling.md and draws docs/scaling.png.

    /usr/bin/python3 bench/scaling_model.py [--runs docs/scaling-runs.json] [--model mlp] \\
        [--png docs/scaling.png] [--calibrate unshaped:0.5]

The model, per step of one worker (B = 4 x parameters bytes, R = link rate x
1448/1514 TCP goodput, N workers, S servers, k = ps.chunks pieces per shard,
L = one-way latency = RTT / 2, beta = backward's share of compute, 2/3):
  dnnd, servers on their own hosts:
    wire = X (1 + 1/k) + 2 L,  X = max(B, N B / S) / R
    (the busiest NIC, a worker's or a server's, carries X each way; the
    shard's last piece goes back after the push; one round trip)
  dnnd, a server on each worker's host (S = N):
    wire = X (1 + 1/k) + 2 L,  X = (N - 1) / N x B / R   (its own shard stays local)
  ring all-reduce: wire = 2 (N - 1) / N x B / R + 2 (N - 1) L
  step = compute + server + fixed + wire               (no overlap)
  step = compute + server + fixed + max(0, wire - beta compute)   (overlap)
  server = measured server time x (N + 1) / 3 x 2 / S  (averaging N
           gradients and one optimizer step per shard; 2 x 2 measured)
  efficiency = samples/s / (N x one worker alone: batch / (compute +
               server for 1 worker and 1 server)); DDP: its optimizer for server
Calibration (--calibrate): fixed = measured step - compute - server - wire,
the wire at what an unshaped link carries here (--unshaped-gbit: 10, as
tests/deploy/netns_rate_test.py measured it). compute and server are dnnd's
step split; DDP's compute is ddp_reference.py --probe-compute's forward +
backward without all-reduce, its "server" its optimizer step.
"""
import argparse
import copy
import json
import math
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PARAMS = {"mlp": 784 * 512 + 512 + 512 * 256 + 256 + 256 * 10 + 10,   # 535,818
          "resnet20": 272_186}                                     # 1 input channel, BatchNorm included
GOODPUT = 1448 / 1514
BETA = 2 / 3
CHUNKS = 2          # configs/parameter-server.toml ps.chunks


def link_of(run):
    """(rate bit/s or None, RTT s) from a run's link_arg RATE[:RTT_MS]."""
    rate, _, rtt = run["link_arg"].partition(":")
    bits = None if rate == "unshaped" else float(rate[:-4]) * {"k": 1e3, "m": 1e6, "g": 1e9}[rate[-4]]
    return bits, float(rtt or 0) / 1000


def wire(kind, bytes_, n, servers, rate, rtt):
    r = rate * GOODPUT / 8
    lat = rtt / 2
    if kind == "ring":
        return 2 * (n - 1) / n * bytes_ / r + 2 * (n - 1) * lat
    if kind == "ps-colocated":
        x = (n - 1) / n * bytes_ / r
    else:
        x = max(bytes_, n * bytes_ / servers) / r
    return x * (1 + 1 / CHUNKS) + 2 * lat


class System:
    """One system's measured costs per step (seconds) from its unshaped run."""

    def __init__(self, kind, compute, server, fixed, batch):
        self.kind, self.compute, self.server, self.fixed, self.batch = kind, compute, server, fixed, batch

    def server_time(self, n, servers):
        return self.server * (n + 1) / 3 * 2 / servers

    def step(self, kind, bytes_, n, servers, rate, rtt, overlap):
        w = wire(kind, bytes_, n, servers, rate, rtt)
        comm = max(0.0, w - BETA * self.compute) if overlap else w
        server = self.server_time(n, servers) if kind.startswith("ps") else self.server
        return self.compute + server + self.fixed + comm

    def samples_per_s(self, kind, bytes_, n, servers, rate, rtt, overlap=False):
        return n * self.batch / self.step(kind, bytes_, n, servers, rate, rtt, overlap)

    def efficiency(self, kind, bytes_, n, servers, rate, rtt, overlap=False):
        # N times one worker training alone, its optimizer included (one worker, one server)
        server = self.server_time(1, 1) if kind.startswith("ps") else self.server
        ideal = n * self.batch / (self.compute + server)
        return self.samples_per_s(kind, bytes_, n, servers, rate, rtt, overlap) / ideal


def medians(runs):
    """One run per (links, system, model): the median of each number over
    the repeated runs (the VM's run-to-run spread is large); `spread` keeps
    the samples/s seen."""
    groups = {}
    for r in runs:
        groups.setdefault((r["link_arg"], r["system"], r["model"]), []).append(r)
    out = []
    for same in groups.values():
        m = dict(same[0])
        med = lambda xs: statistics.median(xs)
        for k, v in same[0].items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and all(isinstance(x.get(k), (int, float)) for x in same):
                m[k] = med([x[k] for x in same])
        if same[0].get("split"):
            m["split"] = {k: med([x["split"][k] for x in same]) for k in same[0]["split"]}
        m["spread"] = sorted(x["samples_per_s"] for x in same)
        out.append(m)
    return out


def calibrate(runs, model, bytes_, unshaped_bits, link):
    """(dnnd System, DDP System) from the runs of `model` on `link`."""
    base = [r for r in runs if r["model"] == model and r["link_arg"] == link]
    dnnd = next(r for r in base if r["system"].startswith("dnnd") and r.get("servers", 2) == 2)
    ddp = next(r for r in base if r["system"].startswith("PyTorch"))
    batch = dnnd["batch_per_worker"]
    n = 2
    s = dnnd["split"]
    per = s["seconds"] / dnnd["steps"]
    step = n * batch / dnnd["samples_per_s"]
    _, rtt = link_of(dnnd)
    compute, server = per * s["compute"] / 100, per * s["server"] / 100
    fixed = step - compute - server - wire("ps", bytes_, n, 2, unshaped_bits, rtt)
    d = System("ps", compute, server, fixed, batch)
    step = n * batch / ddp["samples_per_s"]
    compute = ddp["forward_backward_s_no_sync"]
    opt = ddp["optimizer_s"]
    fixed = step - compute - opt - wire("ring", bytes_, n, n, unshaped_bits, link_of(ddp)[1])
    p = System("ring", compute, opt, fixed, batch)
    return d, p


def fmt_rate(bits):
    return f"{bits / 1e9:g} Gbit/s"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default=os.path.join(ROOT, "docs", "scaling-runs.json"))
    ap.add_argument("--model", default="mlp", choices=sorted(PARAMS))
    ap.add_argument("--unshaped-gbit", type=float, default=10.0,
                    help="what an unshaped link carries here (tests/deploy/netns_rate_test.py)")
    ap.add_argument("--calibrate", default="unshaped:0.5",
                    help="the runs (link RATE[:RTT_MS]) the costs are taken from; the others of the "
                         "same round trip are predicted")
    ap.add_argument("--rtt-ms", type=float, default=0.5, help="the predictions' round trip")
    ap.add_argument("--png", default=os.path.join(ROOT, "docs", "scaling.png"))
    args = ap.parse_args()
    with open(args.runs) as f:
        runs = medians(json.load(f))
    bytes_ = 4 * PARAMS[args.model]
    dnnd, ddp = calibrate(runs, args.model, bytes_, args.unshaped_gbit * 1e9, args.calibrate)
    print(f"{args.model}: {PARAMS[args.model]:,} parameters, {bytes_ / 1e6:.2f} MB each way per step")
    for name, s in (("dnnd", dnnd), ("DDP", ddp)):
        print(f"{name} per step (calibrated on {args.calibrate}): compute {1e3 * s.compute:.2f} ms, "
              f"{'server' if s is dnnd else 'optimizer'} {1e3 * s.server:.2f} ms, fixed {1e3 * s.fixed:.2f} ms")

    # The check: every shaped run of this model against its prediction.
    print("\n| links | system | measured samples/s (median; runs) | predicted | error |")
    print("|---|---|---|---|---|")
    checks = []
    for r in runs:
        bits, rtt = link_of(r)
        if r["model"] != args.model or r["link_arg"] == args.calibrate or rtt != link_of(
                {"link_arg": args.calibrate})[1]:
            continue
        bits = bits or args.unshaped_gbit * 1e9
        s, kind = (dnnd, "ps") if r["system"].startswith("dnnd") else (ddp, "ring")
        pred = s.samples_per_s(kind, bytes_, 2, r.get("servers", 2), bits, rtt)
        err = pred / r["samples_per_s"] - 1
        checks.append((r, bits, s, kind, err))
        runs_seen = ", ".join(f"{x:.0f}" for x in r["spread"])
        print(f"| {r['links']} | {r['system']} | {r['samples_per_s']:.0f} ({runs_seen}) | {pred:.0f} | "
              f"{100 * err:+.1f} % |")

    # Predictions past this machine, twice: with the per-step software cost
    # measured here, and with none (what the links alone allow).
    workers = [4, 8, 16, 32, 64, 128, 256]
    rates = [1e9, 10e9, 25e9]
    rtt = args.rtt_ms / 1000
    lean_dnnd, lean_ddp = copy.copy(dnnd), copy.copy(ddp)
    lean_dnnd.fixed = lean_ddp.fixed = 0.0
    scenarios = [("software cost as measured here", dnnd, ddp), ("links only (no software cost)", lean_dnnd, lean_ddp)]

    def setups(d, p):
        return [("dnnd, N servers on own hosts", d, "ps", lambda n: n),
                ("dnnd, 2 servers", d, "ps", lambda n: 2),
                ("dnnd, colocated (BytePS)", d, "ps-colocated", lambda n: n),
                ("ring all-reduce (DDP)", p, "ring", lambda n: n)]

    for title, d, p in scenarios:
        for bits in rates:
            print(f"\n{title}; {fmt_rate(bits)}, {args.rtt_ms} ms RTT: scaling efficiency without / with "
                  f"overlap (samples/s without)")
            print("| setup | " + " | ".join(f"{n} workers" for n in workers) + " |")
            print("|---|" + "---|" * len(workers))
            for name, s, kind, servers in setups(d, p):
                cells = []
                for n in workers:
                    e0 = s.efficiency(kind, bytes_, n, servers(n), bits, rtt)
                    e1 = s.efficiency(kind, bytes_, n, servers(n), bits, rtt, True)
                    sp = s.samples_per_s(kind, bytes_, n, servers(n), bits, rtt)
                    cells.append(f"{100 * e0:.0f} / {100 * e1:.0f} % ({sp / 1e3:.1f}k)")
                print(f"| {name} | " + " | ".join(cells) + " |")

    if args.png:
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            sys.exit("matplotlib is missing (apt-get install python3-matplotlib); no plot")
        xs = [2] + workers
        fig, grid = plt.subplots(2, 3, figsize=(15, 8.5), sharey=True)
        colors = ["tab:blue", "tab:purple", "tab:green", "tab:orange"]
        for row, (title, d, p) in zip(grid, scenarios):
            for ax, bits in zip(row, rates):
                for (name, s, kind, servers), c in zip(setups(d, p), colors):
                    ax.plot(xs, [100 * s.efficiency(kind, bytes_, n, servers(n), bits, rtt) for n in xs],
                            color=c, label=name)
                    ax.plot(xs, [100 * s.efficiency(kind, bytes_, n, servers(n), bits, rtt, True) for n in xs],
                            color=c, linestyle="--", label=name + ", overlap")
                for r, rb, s, kind, err in checks:
                    if rb != bits:
                        continue
                    ideal = 2 * s.batch / (s.compute + (s.server_time(1, 1) if kind == "ps" else s.server))
                    one = r.get("servers", 2) == 1
                    ax.plot([2], [100 * r["samples_per_s"] / ideal],
                            marker="^" if one else "o" if kind == "ps" else "s",
                            color="black" if one else colors[0] if kind == "ps" else colors[3], markersize=8,
                            linestyle="none", label="measured, " + (
                                "dnnd 1 server x 2" if one else "dnnd 2x2" if kind == "ps" else "DDP 2 ranks"))
                ax.set_xscale("log", base=2)
                ax.set_xticks(xs)
                ax.set_xticklabels([str(x) for x in xs])
                ax.set_title(f"{fmt_rate(bits)}, {args.rtt_ms} ms RTT; {title}", fontsize=9)
                ax.grid(alpha=0.3)
            row[0].set_ylabel(f"{args.model}: scaling efficiency (%)")
        for ax in grid[1]:
            ax.set_xlabel("workers")
        grid[0][0].set_ylim(0, 125)  # above 100 %: N sharded optimizers beat one local one
        handles, labels = [], []
        for ax in grid.flat:
            for h, l in zip(*ax.get_legend_handles_labels()):
                if l not in labels:
                    handles.append(h)
                    labels.append(l)
        fig.legend(handles, labels, loc="lower center", ncol=5, fontsize=8)
        fig.tight_layout(rect=(0, 0.07, 1, 1))
        fig.savefig(args.png, dpi=80)
        print(f"\nwrote {args.png}")


if __name__ == "__main__":
    main()
