#!/usr/bin/python3
"""dnnd against PyTorch DDP on emulated links: for each link setting, one
tests/deploy/netns_cluster.py --bench --ddp run (dnnd sync, 2 parameter
servers (--servers) x 2 workers, every one on its own namespace host; then DDP with gloo,
one rank on each worker host; same model, batch per worker and optimizer, 1
epoch of --limit-train samples). Needs root. Prints the markdown table of
docs/scaling.md and writes every run's JSON (samples/s, accuracy, dnnd's
step split, DDP's compute probe; dnnd's `settings`: servers, colocation and
the --worker-set/--server-set it ran with; the date) to --out, the input of
bench/scaling_model.py.

    /usr/bin/python3 bench/links_compare.py [--links unshaped 10gbit:0.5 1gbit:0.5] \\
        [--model mlp] [--limit-train 16384] [--out docs/scaling-runs.json]

A link is RATE[:RTT_MS] (tc rate syntax) or `unshaped`. Runs one at a time
under nice 10; each takes about a minute for the MLP.
"""
import argparse
import datetime
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def run(link, args):
    rate, _, rtt = link.partition(":")
    cmd = ["/usr/bin/python3", os.path.join(ROOT, "tests", "deploy", "netns_cluster.py"), "--bench",
           "--servers", str(args.servers), "--model", args.model, "--batch", str(args.batch), "--limit-train", str(args.limit_train),
           "--logdir", args.logdir]
    if args.colocate:
        cmd.append("--colocate")
    cmd += ["--epochs", str(args.epochs)]
    if args.target is not None:
        cmd += ["--target", str(args.target)]
    if not args.no_ddp:
        cmd += ["--ddp", "--ddp-hooks"] + args.ddp_hooks
    if rate != "unshaped":
        cmd += ["--rate", rate]
    if rtt:
        cmd += ["--rtt-ms", rtt]
    if args.proxy_binary:
        cmd += ["--proxy-binary", args.proxy_binary]
    for kv in args.worker_set:
        cmd += ["--worker-set", kv]
    for kv in args.server_set:
        cmd += ["--server-set", kv]
    print("running", " ".join(cmd[2:]), file=sys.stderr, flush=True)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        sys.exit(f"{link} failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    for r in rows:
        r["link_arg"] = link
        r["date"] = datetime.date.today().isoformat()
        if r["system"].startswith("dnnd"):
            # what bench/scaling_model.py predicts the run from
            r["settings"] = {"servers": args.servers, "colocate": args.colocate,
                             "worker": dict(kv.split("=", 1) for kv in args.worker_set),
                             "server": dict(kv.split("=", 1) for kv in args.server_set)}
    return rows


def time_cell(r):
    """Training seconds to the run's target accuracy ("" for runs before it was recorded)."""
    if "target" not in r:
        return ""
    t = r.get("time_to_target_s")
    return f"{t:.1f} s to {r['target']:g} %" if t is not None else f"{r['target']:g} % not reached"


def table(rows):
    print("| links | system | samples/s | vs DDP | time to target | accuracy | dnnd compute / communicate / wait / server | exchange hidden |")
    print("|---|---|---|---|---|---|---|---|")
    for link in dict.fromkeys(r["links"] for r in rows):
        same = [r for r in rows if r["links"] == link]
        ddp = next((r["samples_per_s"] for r in same if r["system"] == "PyTorch DDP (gloo), 2 ranks"), None)
        for r in same:
            s = r.get("split")
            print(f"| {link} | {r['system']} | {r['samples_per_s']:.0f} | "
                  f"{'%.2fx' % (r['samples_per_s'] / ddp) if ddp else ''} | {time_cell(r)} | {r['accuracy']:.2f} % | "
                  + (f"{s['compute']} / {s['communicate']} / {s['wait']} / {s['server']} % | "
                     + (f"{s['hidden']} % |" if s.get('hidden') is not None else " |") if s else " | |"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--links", nargs="+", default=["unshaped", "10gbit:0.5", "1gbit:0.5"])
    ap.add_argument("--model", default="mlp")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--servers", type=int, default=2, help="dnnd's parameter servers (hosts)")
    ap.add_argument("--no-ddp", action="store_true", help="dnnd only")
    ap.add_argument("--colocate", action="store_true",
                    help="the parameter servers on the workers' hosts (BytePS-style), not on their own")
    ap.add_argument("--ddp-hooks", nargs="+", default=["none"], choices=["none", "fp16"],
                    help="a DDP run per communication hook (fp16: gradients all-reduced as fp16)")
    ap.add_argument("--limit-train", type=int, default=16384)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--target", type=float, default=None,
                    help="test accuracy (%%) whose time to reach is reported (default 88 MLP, 90 ResNet-20)")
    ap.add_argument("--proxy-binary", default=None)
    ap.add_argument("--logdir", default="/tmp/links-logs")
    ap.add_argument("--worker-set", action="append", default=[], metavar="KEY=VALUE",
                    help="a setting of every dnnd worker, e.g. worker.overlap=false")
    ap.add_argument("--server-set", action="append", default=[], metavar="KEY=VALUE",
                    help="a setting of every dnnd parameter server, e.g. ps.chunks=8")
    ap.add_argument("--out", default=None, help="append the runs to this JSON file")
    ap.add_argument("--table-only", action="store_true", help="print the table of --out's runs")
    args = ap.parse_args()
    if args.table_only:
        with open(args.out) as f:
            return table(json.load(f))
    rows = []
    for link in args.links:
        rows += run(link, args)
    if args.out:
        old = []
        if os.path.exists(args.out):
            with open(args.out) as f:
                old = json.load(f)
        with open(args.out, "w") as f:
            json.dump(old + rows, f, indent=1)
            f.write("\n")
    table(rows)


if __name__ == "__main__":
    main()
