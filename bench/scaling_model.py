#!/usr/bin/python3
"""A scaling model of synchronous data-parallel training past this machine:
samples/s and scaling efficiency of 4-256 workers on 1, 10 and 25 Gbit/s
links, for dnnd's parameter servers (on their own hosts, or colocated with
the workers BytePS-style) and for ring all-reduce (PyTorch DDP, Horovod),
with the settings a user picks: gradient codec, weights codec, chunks per
server shard, overlap, and kavg's K.

Its inputs are measured: the runs bench/links_compare.py wrote to
docs/scaling-runs.json (2 workers, 1-4 servers, emulated links, dnnd and
DDP). From the default-settings runs on one link setting (by default
unshaped with the proxy's +0.5 ms) it takes per-step compute, the servers'
time and each system's fixed per-step software cost. Every other run (other
rates, other codecs, chunks, placement, kavg) is predicted from those costs
and the settings' bytes, and compared (the check). Then it prints the tables
of docs/scaling.md and draws docs/scaling.png.

    /usr/bin/python3 bench/scaling_model.py [--runs docs/scaling-runs.json] [--model mlp] \\
        [--png docs/scaling.png] [--calibrate unshaped:0.5] \\
        [--gradient-codec bf16] [--weights-codec bf16] [--chunks 2] [--no-overlap] \\
        [--kavg-steps 4] [--zstd-ratio 1.33] [--zstd-gbs 0.5]

The tables compare float32 both ways with the codec setting of the flags
(default bf16 both ways), same chunks and overlap, and kavg with K.

The model, per step of one worker (P parameters; Bp push bytes = 4 P / the
gradient codec's ratio (bf16, f16: 2; zstd: --zstd-ratio, 1.33 measured on
the MLP's gradients); Bw pull bytes = 4 P, or 2 P with ps.weights_codec =
bf16; R = link rate x 1448/1514 TCP goodput, N workers, S servers, k =
ps.chunks, L = one-way latency = RTT / 2, beta = backward's share of
compute, 2/3):
  dnnd, servers on their own hosts (a worker's uplink carries the push, its
  downlink the pull; k pieces per shard pipeline the two):
    Xp = max(Bp, N Bp / S) / R,  Xw = max(Bw, N Bw / S) / R
    wire = (Xp + Xw) / k + (k - 1) / k x max(Xp, Xw) + 2 L
    (float32 both ways: X (1 + 1/k) + 2 L, the busiest NIC's X = max(B, N B / S) / R)
  dnnd, a server on each worker's host (S = N): a host's uplink carries its
  push to the N - 1 other servers and its server's answers to the N - 1
  other workers, so push and pull share each link and do not pipeline:
    wire = (N - 1) / N x (Bp + Bw) / R + 2 L
  ring all-reduce: wire = 2 (N - 1) / N x Bp / R + 2 (N - 1) L
  codec = P x 4 bytes / (encode + decode rate) per coded direction (bf16
          7.7 GB/s, f16 1.1, zstd 0.50: docs/benchmarks.md's codec table)
  step = compute + server + fixed + codec + wire                (no overlap)
  step = compute + server + fixed + codec + max(0, wire - beta compute)  (overlap)
  server = measured server time x (N + 1) / 3 x 2 / S  (averaging N
           gradients and one optimizer step per shard; 2 x 2 measured)
  kavg, exchange every K steps (float32 weights both ways, no overlap, the
  optimizer local): step = compute + optimizer + (server + fixed + wire) / K
  efficiency = samples/s / (N x one worker alone: batch / (compute +
               server for 1 worker and 1 server)); DDP: its optimizer for server
Calibration (--calibrate): fixed = measured step - compute - server - codec
- wire (overlap as the runs had it), the wire at what an unshaped link
carries here (--unshaped-gbit: 10, as tests/deploy/netns_rate_test.py
measured it). compute and server are dnnd's step split, medians of the
default-settings runs; DDP's compute is ddp_reference.py --probe-compute's
forward + backward without all-reduce, its "server" its optimizer step.
Runs are grouped by series: `baseline` (no `settings` field: before
worker.overlap existed, so overlap off) and `settings` (links_compare.py
records the settings), each predicted from its own series' calibration.
Entries with `transcribed` were copied from docs/scaling.md's tables (no
step split); they are checked against the `settings` calibration.
"""
import argparse
import copy
import json
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PARAMS = {"mlp": 784 * 512 + 512 + 512 * 256 + 256 + 256 * 10 + 10,   # 535,818
          "resnet20": 272_186}                                     # 1 input channel, BatchNorm included
GOODPUT = 1448 / 1514
BETA = 2 / 3
# encode + decode rate of float32 bytes, GB/s (docs/benchmarks.md, codec table)
CODEC_GBS = {"none": None, "bf16": 7.7, "f16": 1.1, "zstd": 0.50}


class Setting:
    """What a user picks: worker.gradient_codec, ps.weights_codec, ps.chunks,
    worker.overlap, and ps.mode = kavg with ps.kavg_steps (kavg = 1: sync)."""

    def __init__(self, gradient="none", weights="none", chunks=2, overlap=True, kavg=1, zstd_ratio=1.33):
        self.gradient, self.weights, self.chunks = gradient, weights, chunks
        self.overlap, self.kavg, self.zstd_ratio = overlap, kavg, zstd_ratio

    @classmethod
    def of_run(cls, run, zstd_ratio):
        """The setting a links_compare.py run recorded (defaults where it set none)."""
        st = run.get("settings")
        if st is None:
            if "DDP" in run["system"]:   # DDP all-reduces buckets while backward runs
                return cls("f16" if "fp16" in run["system"] else "none", zstd_ratio=zstd_ratio)
            return cls(overlap=False, zstd_ratio=zstd_ratio)   # baseline: before worker.overlap
        w, s = st["worker"], st["server"]
        kavg = int(s.get("ps.kavg_steps", 8)) if s.get("ps.mode") == "kavg" else 1
        return cls(w.get("worker.gradient_codec", "none"), s.get("ps.weights_codec", "none"),
                   int(s.get("ps.chunks", 2)), w.get("worker.overlap", "true") != "false", kavg, zstd_ratio)

    def ratio(self, codec):
        return {"none": 1.0, "bf16": 2.0, "f16": 2.0, "zstd": self.zstd_ratio}[codec]

    def push(self, params):
        return 4 * params if self.kavg > 1 else 4 * params / self.ratio(self.gradient)   # kavg pushes float32 weights

    def pull(self, params):
        return 4 * params if self.kavg > 1 else 4 * params / self.ratio(self.weights)

    def codec_s(self, params, kind):
        if self.kavg > 1:
            return 0.0
        coded = [self.gradient] + ([] if kind == "ring" else [self.weights])
        return sum(4 * params / (CODEC_GBS[c] * 1e9) for c in coded if CODEC_GBS[c])

    def label(self, kind="ps"):
        if kind == "ring":
            return "float32" if self.gradient == "none" else f"{self.gradient} gradients"
        if self.kavg > 1:
            return f"kavg K = {self.kavg} (float32 weights both ways), {self.chunks} chunks"
        if self.gradient == self.weights:
            codec = "float32 both ways" if self.gradient == "none" else f"{self.gradient} both ways"
        else:
            codec = f"{'float32' if self.gradient == 'none' else self.gradient} gradients, " \
                    f"{'float32' if self.weights == 'none' else self.weights} weights"
        return f"{codec}, {self.chunks} chunks" + ("" if self.overlap else ", overlap off")


def link_of(run):
    """(rate bit/s or None, RTT s) from a run's link_arg RATE[:RTT_MS]."""
    rate, _, rtt = run["link_arg"].partition(":")
    bits = None if rate == "unshaped" else float(rate[:-4]) * {"k": 1e3, "m": 1e6, "g": 1e9}[rate[-4]]
    return bits, float(rtt or 0) / 1000


def wire(kind, push, pull, n, servers, rate, rtt, chunks):
    """Seconds on the wire per exchange (push + pull bytes per worker)."""
    r = rate * GOODPUT / 8
    lat = rtt / 2
    if kind == "ring":
        return 2 * (n - 1) / n * push / r + 2 * (n - 1) * lat
    if kind == "ps-colocated":
        return (n - 1) / n * (push + pull) / r + 2 * lat
    xp, xw = max(push, n * push / servers) / r, max(pull, n * pull / servers) / r
    return (xp + xw) / chunks + (chunks - 1) / chunks * max(xp, xw) + 2 * lat


class System:
    """One system's measured costs per step (seconds) from its calibration runs."""

    def __init__(self, kind, compute, server, fixed, batch, params):
        self.kind, self.compute, self.server, self.fixed = kind, compute, server, fixed
        self.batch, self.params = batch, params

    def server_time(self, n, servers):
        return self.server * (n + 1) / 3 * 2 / servers

    def parts(self, kind, st, n, servers, rate, rtt):
        """(compute, server, fixed, codec, exposed wire) of one step."""
        w = wire(kind, st.push(self.params), st.pull(self.params), n, servers, rate, rtt, st.chunks)
        codec = st.codec_s(self.params, kind)
        if st.kavg > 1:   # local optimizer every step; exchange, averaging and its software cost every K
            return (self.compute, self.server_time(1, 1), self.fixed / st.kavg, 0.0,
                    (self.server_time(n, servers) + w) / st.kavg)
        exposed = max(0.0, w - BETA * self.compute) if st.overlap else w
        server = self.server_time(n, servers) if kind.startswith("ps") else self.server
        return self.compute, server, self.fixed, codec, exposed

    def step(self, kind, st, n, servers, rate, rtt):
        return sum(self.parts(kind, st, n, servers, rate, rtt))

    def samples_per_s(self, kind, st, n, servers, rate, rtt):
        return n * self.batch / self.step(kind, st, n, servers, rate, rtt)

    def ideal(self, kind, n):
        # N times one worker training alone, its optimizer included (one worker, one server)
        server = self.server_time(1, 1) if kind.startswith("ps") else self.server
        return n * self.batch / (self.compute + server)

    def efficiency(self, kind, st, n, servers, rate, rtt):
        return self.samples_per_s(kind, st, n, servers, rate, rtt) / self.ideal(kind, n)


def series_of(run):
    return "transcribed" if run.get("transcribed") else "settings" if "settings" in run or run.get(
        "date") else "baseline"


def settings_key(run):
    return json.dumps(run.get("settings"), sort_keys=True)


def medians(runs):
    """One run per (series, links, system, model, settings): the median of
    each number over the repeated runs (the VM's run-to-run spread is
    large); `spread` keeps the samples/s seen."""
    groups = {}
    for r in runs:
        groups.setdefault((series_of(r), r["link_arg"], r["system"], r["model"], settings_key(r),
                           r.get("transcribed")), []).append(r)
    out = []
    for same in groups.values():
        m = dict(same[0])
        med = statistics.median
        for k, v in same[0].items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and all(isinstance(x.get(k), (int, float)) for x in same):
                m[k] = med([x[k] for x in same])
        if same[0].get("split"):
            m["split"] = {k: med([x["split"][k] for x in same]) for k in ("compute", "communicate", "wait",
                                                                          "server", "seconds")}
        m["spread"] = sorted(x["samples_per_s"] for x in same)
        m["series"] = series_of(same[0])
        out.append(m)
    return out


def calibrate(runs, model, params, unshaped_bits, link, series, zstd_ratio):
    """(dnnd System, DDP System) from the default-settings runs of `model` on `link` in `series`."""
    default = Setting(zstd_ratio=zstd_ratio).__dict__
    base = [r for r in runs if r["model"] == model and r["link_arg"] == link]
    dnnd = next(r for r in base if r["series"] == series and r["system"].startswith("dnnd")
                and r.get("servers", 2) == 2 and "colocated" not in r["system"]
                and (series == "baseline" or Setting.of_run(r, zstd_ratio).__dict__ == default))
    st = Setting.of_run(dnnd, zstd_ratio)
    # DDP: its own series' run if there is one, else the baseline's (PyTorch did not change)
    ddps = [r for r in base if r["system"] == "PyTorch DDP (gloo), 2 ranks"]
    ddp = next((r for r in ddps if r["series"] == series), None) or next(r for r in ddps if r["series"] == "baseline")
    batch = dnnd["batch_per_worker"]
    n = 2
    s = dnnd["split"]
    per = s["seconds"] / dnnd["steps"]
    step = n * batch / dnnd["samples_per_s"]
    _, rtt = link_of(dnnd)
    compute, server = per * s["compute"] / 100, per * s["server"] / 100
    d = System("ps", compute, server, 0.0, batch, params)
    d.fixed = step - d.step("ps", st, n, 2, unshaped_bits, rtt)
    step = n * batch / ddp["samples_per_s"]
    p = System("ring", ddp["forward_backward_s_no_sync"], ddp["optimizer_s"], 0.0, batch, params)
    p.fixed = step - p.step("ring", Setting(), n, n, unshaped_bits, link_of(ddp)[1])
    return d, p, dnnd, ddp


def fmt_rate(bits):
    return f"{bits / 1e9:g} Gbit/s"


def predict(run, systems, params, unshaped_bits, zstd_ratio):
    """(System, kind, Setting, predicted samples/s) for a measured run (2 workers)."""
    bits, rtt = link_of(run)
    bits = bits or unshaped_bits
    dnnd, ddp = systems
    st = Setting.of_run(run, zstd_ratio)
    if run["system"].startswith("dnnd"):
        kind = "ps-colocated" if "colocated" in run["system"] else "ps"
        s = dnnd
        servers = int(run.get("servers", run.get("settings", {}).get("servers", 2)))
    else:
        kind, s, servers = "ring", ddp, 2
    return s, kind, st, servers, s.samples_per_s(kind, st, 2, servers, bits, rtt)


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
    ap.add_argument("--gradient-codec", default="bf16", choices=["none", "zstd", "bf16", "f16"],
                    help="worker.gradient_codec of the tables' codec rows (ring: its compression hook)")
    ap.add_argument("--weights-codec", default="bf16", choices=["none", "bf16"],
                    help="ps.weights_codec of the tables' codec rows")
    ap.add_argument("--chunks", type=int, default=2, help="ps.chunks of the tables' rows")
    ap.add_argument("--no-overlap", action="store_true", help="the tables without worker.overlap")
    ap.add_argument("--kavg-steps", type=int, default=4, help="K of the tables' kavg row (0: none)")
    ap.add_argument("--zstd-ratio", type=float, default=1.33,
                    help="float32 bytes / zstd bytes on gradients (1.33: the MLP's, docs/benchmarks.md)")
    ap.add_argument("--zstd-gbs", type=float, default=CODEC_GBS["zstd"],
                    help="zstd's encode + decode rate of float32 bytes, GB/s (0.50: docs/benchmarks.md, one quiet core)")
    ap.add_argument("--png", default=os.path.join(ROOT, "docs", "scaling.png"))
    args = ap.parse_args()
    CODEC_GBS["zstd"] = args.zstd_gbs
    with open(args.runs) as f:
        runs = [r for r in medians(json.load(f)) if r["model"] == args.model]
    params = PARAMS[args.model]
    unshaped = args.unshaped_gbit * 1e9
    zr = args.zstd_ratio
    calib = {}
    for series in ("baseline", "settings"):
        try:
            calib[series] = calibrate(runs, args.model, params, unshaped, args.calibrate, series, zr)
        except StopIteration:
            pass
    if not calib:
        sys.exit(f"no {args.model} runs with default settings on {args.calibrate} (dnnd and DDP) to calibrate on")
    calib["transcribed"] = calib.get("settings")
    print(f"{args.model}: {params:,} parameters, {4 * params / 1e6:.2f} MB float32 each way per step")
    for series in ("baseline", "settings"):
        if series not in calib:
            continue
        d, p, dr, pr = calib[series]
        print(f"series {series}, calibrated on {args.calibrate} ({len(dr['spread'])} dnnd runs, "
              f"{len(pr['spread'])} DDP runs): dnnd compute {1e3 * d.compute:.2f} ms, server "
              f"{1e3 * d.server:.2f} ms, fixed {1e3 * d.fixed:.2f} ms; DDP compute {1e3 * p.compute:.2f} ms, "
              f"optimizer {1e3 * p.server:.2f} ms, fixed {1e3 * p.fixed:.2f} ms")

    # The check: every other run of this model with the calibration's round trip.
    cal_rtt = link_of({"link_arg": args.calibrate})[1]
    checks = []
    for series in ("baseline", "settings", "transcribed"):
        if not calib.get(series):
            continue
        d, p, dr, pr = calib[series]
        rows = [r for r in runs if r["series"] == series and link_of(r)[1] == cal_rtt and r is not dr and r is not pr]
        if not rows:
            continue
        print(f"\nseries {series}: measured (median of the runs) against predicted")
        src = series == "transcribed"
        print("| links | system | setting | measured samples/s (runs) | predicted | error |" + (" from |" if src else ""))
        print("|---|---|---|---|---|---|" + ("---|" if src else ""))
        for r in sorted(rows, key=lambda r: (r.get("transcribed", ""), r["link_arg"] == args.calibrate,
                                             -(link_of(r)[0] or unshaped), not r["system"].startswith("dnnd"),
                                             "colocated" in r["system"], r.get("servers", 2), r["system"])):
            s, kind, st, servers, pred = predict(r, (d, p), params, unshaped, zr)
            err = pred / r["samples_per_s"] - 1
            checks.append((r, s, kind, st, err))
            place = {"ps": f"dnnd, {servers} server{'s' if servers > 1 else ''}",
                     "ps-colocated": "dnnd, 2 servers colocated", "ring": "DDP"}[kind]
            if kind == "ring":
                place = "DDP" + (", fp16 hook" if st.gradient == "f16" else "")
            seen = ", ".join(f"{x:.0f}" for x in r["spread"])
            section = r.get("transcribed", "").split("'")[1] if src else ""
            print(f"| {r['links']} | {place} | {st.label(kind)} | {r['samples_per_s']:.0f} ({seen}) | {pred:.0f} | "
                  f"{100 * err:+.1f} % |" + (f" {section} |" if src else ""))
    for series in ("baseline", "settings", "transcribed"):
        errs = [c[4] for c in checks if c[0]["series"] == series]
        if errs:
            print(f"series {series}: {sum(abs(e) <= 0.15 for e in errs)} of {len(errs)} within 15 %")

    # Predictions past this machine, with the newest calibration: the
    # per-step software cost measured here, and none (what the links allow).
    d, p = calib.get("settings", calib["baseline"])[:2]
    workers = [4, 8, 16, 32, 64, 128, 256]
    rates = [1e9, 10e9, 25e9]
    rtt = args.rtt_ms / 1000
    lean_d, lean_p = copy.copy(d), copy.copy(p)
    lean_d.fixed = lean_p.fixed = 0.0
    scenarios = [("software cost as measured here", d, p), ("links only (no software cost)", lean_d, lean_p)]
    ov = not args.no_overlap
    f32 = Setting("none", "none", args.chunks, ov, zstd_ratio=zr)
    codec = Setting(args.gradient_codec, args.weights_codec, args.chunks, ov, zstd_ratio=zr)
    ring_codec = Setting(args.gradient_codec, "none", args.chunks, ov, zstd_ratio=zr)
    kavg = Setting("none", "none", args.chunks, ov, args.kavg_steps, zr) if args.kavg_steps > 1 else None
    cname = codec.label().split(",")[0]

    def setups(d, p):
        out = []
        for name, s, kind, servers in (("dnnd, N servers on own hosts", d, "ps", lambda n: n),
                                       ("dnnd, 2 servers", d, "ps", lambda n: 2),
                                       ("dnnd, colocated (BytePS)", d, "ps-colocated", lambda n: n)):
            out += [(f"{name}, float32", s, kind, servers, f32), (f"{name}, {cname}", s, kind, servers, codec)]
        if kavg:
            out.append((f"dnnd, colocated, kavg K = {args.kavg_steps}", d, "ps-colocated", lambda n: n, kavg))
        out += [("ring all-reduce (DDP), float32", p, "ring", lambda n: n, Setting("none", overlap=ov)),
                (f"ring all-reduce, {args.gradient_codec} gradients", p, "ring", lambda n: n, ring_codec)]
        return out

    for title, sd, sp in scenarios:
        for bits in rates:
            print(f"\n{title}; {fmt_rate(bits)}, {args.rtt_ms} ms RTT, {args.chunks} chunks, overlap "
                  f"{'on' if ov else 'off'}: scaling efficiency (samples/s)")
            print("| setup | " + " | ".join(f"{n} workers" for n in workers) + " |")
            print("|---|" + "---|" * len(workers))
            for name, s, kind, servers, st in setups(sd, sp):
                cells = []
                for n in workers:
                    e = s.efficiency(kind, st, n, servers(n), bits, rtt)
                    sps = s.samples_per_s(kind, st, n, servers(n), bits, rtt)
                    cells.append(f"{100 * e:.0f} % ({sps / 1e3:.1f}k)")
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
        colors = {"dnnd, N servers on own hosts": "tab:blue", "dnnd, 2 servers": "tab:purple",
                  "dnnd, colocated (BytePS)": "tab:green", "dnnd, colocated, kavg": "tab:olive",
                  "ring all-reduce": "tab:orange"}

        def color(name):
            return next(c for k, c in colors.items() if name.startswith(k))

        for row, (title, sd, sp) in zip(grid, scenarios):
            for ax, bits in zip(row, rates):
                for name, s, kind, servers, st in setups(sd, sp):
                    ax.plot(xs, [100 * s.efficiency(kind, st, n, servers(n), bits, rtt) for n in xs],
                            color=color(name), linestyle="-" if st is f32 or st.kavg > 1 or (
                                kind == "ring" and st.gradient == "none") else "--", label=name)
                for r, s, kind, st, err in checks:
                    if link_of(r)[0] != bits or r["series"] != "settings" or st.kavg > 1:   # shaped runs only
                        continue
                    default = st.gradient == "none" and st.weights == "none"
                    bf = st.gradient == "bf16" and st.weights == "bf16"
                    if kind == "ps" and r.get("servers", 2) != 2 or not (default or bf or kind == "ring") \
                            or st.chunks != args.chunks:
                        continue
                    ax.plot([2], [100 * r["samples_per_s"] / s.ideal(kind, 2)],
                            marker={"ps": "o", "ps-colocated": "D", "ring": "s"}[kind],
                            markerfacecolor="none" if not default else None,
                            color={"ps": "tab:blue", "ps-colocated": "tab:green", "ring": "tab:orange"}[kind],
                            markersize=8, linestyle="none",
                            label=f"measured, {'dnnd 2x2' if kind == 'ps' else 'dnnd 2x2 colocated' if kind != 'ring' else 'DDP 2 ranks'}"
                                  f", {'float32' if default else 'bf16' if bf else st.gradient}")
                ax.set_xscale("log", base=2)
                ax.set_xticks(xs)
                ax.set_xticklabels([str(x) for x in xs])
                ax.set_title(f"{fmt_rate(bits)}, {args.rtt_ms} ms RTT; {title}", fontsize=9)
                ax.grid(alpha=0.3)
            row[0].set_ylabel(f"{args.model}: scaling efficiency (%)")
        for ax in grid[1]:
            ax.set_xlabel("workers")
        grid[0][0].set_ylim(0, 130)  # above 100 %: N sharded optimizers beat one local one
        handles, labels = [], []
        for ax in grid.flat:
            for h, l in zip(*ax.get_legend_handles_labels()):
                if l not in labels:
                    handles.append(h)
                    labels.append(l)
        fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8)
        fig.tight_layout(rect=(0, 0.13, 1, 1))
        fig.savefig(args.png, dpi=80)
        print(f"\nwrote {args.png}")


if __name__ == "__main__":
    main()
