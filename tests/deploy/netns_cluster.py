#!/usr/bin/python3
"""Multi-host data-parallel training without a cluster: network namespaces
as hosts, joined by links with a bandwidth and a round trip. Needs root
(ip netns, tc, iptables) and a built dnnd.

Every parameter server and every worker gets a namespace of its own (a
"host", 10.231.0.0/24: servers from .1, workers from .11); each host's one
veth ends in a router namespace (the "switch", 10.231.0.254). A link is:

  * a rate: `tc` `tbf` on both ends of each host's veth, so every host has
    a full-duplex NIC of --rate (upload shaped in the host, download in the
    router); this kernel has tbf but no netem;
  * a round trip: no qdisc here can delay, so with --rtt-ms the router
    REDIRECTs every TCP connection between hosts to a delaying proxy
    (tests/deploy/delay_proxy.cc in its `transparent` mode), which holds
    each byte for half the round trip in each direction and forwards it to
    the original destination. It sits between the two shaped hops, like a
    switch's buffer, and catches any port, so PyTorch's gloo (which picks
    its own ports) crosses the same links as dnnd.

    tests/deploy/netns_cluster.py --check   # sync job across namespaces; its
                                            # accuracy must equal the same job on loopback
    tests/deploy/netns_cluster.py --table   # samples/s of sync, async, kavg at
                                            # 0, 1 and 5 ms added round trip
    tests/deploy/netns_cluster.py --bench --rate 1gbit --rtt-ms 0.5 [--ddp]
        # dnnd sync, 2 servers (--servers) x 2 workers (MLP, batch 64 per worker, 1 epoch
        # of --limit-train samples) on those links, and with --ddp PyTorch DDP
        # (gloo) with the same model, batch and optimizer on the same links;
        # prints one JSON line per system (samples/s, accuracy, step split)

Everything it starts is ended by PID and the namespaces are deleted, also on
failure. tests/deploy/netns_rate_test.py imports it to check the shaped
rates and round trips.
"""
import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DNND = os.environ.get("DNND_BINARY", os.path.join(ROOT, "build", "dnnd"))
TAG = f"d{os.getpid() % 100000}"
SUBNET = "10.231.0"
ROUTER_IP = f"{SUBNET}.254"
PROXY_PORT = 9999
EPOCH = re.compile(r"epoch \d+/\d+ loss [0-9.]+\s+([0-9.]+)(k?) samples/s")
# An epoch's summary with its training seconds and test accuracy.
EPOCH_END = re.compile(r"epoch \d+/\d+ loss [0-9.]+\s+[0-9.]+k? samples/s\s+([0-9.]+)s\s+test loss [0-9.]+\s+"
                       r"test accuracy ([0-9.]+)%")


def time_to(epochs, target):
    """Training seconds until the first epoch whose test accuracy (%) is at
    least `target`, from [(seconds, accuracy)] per epoch; None if never."""
    total = 0.0
    for seconds, accuracy in epochs:
        total += seconds
        if accuracy >= target:
            return round(total, 1)
    return None
FINAL = re.compile(r"final test accuracy ([0-9.]+)%")
STAMP = re.compile(r"^(\S+)Z INFO worker: (training train_samples=(\d+)|joined|done)", re.M)
SPLIT = re.compile(r"step time: compute (\d+)%, communicate (\d+)%, wait (\d+)%, server (\d+)% \(([0-9.]+) s"
                   r"(?:[^;\n]*; (\d+)% of the exchange was hidden)?")
PROXY = os.path.join(ROOT, "build", "tests", "delay_proxy")  # the delay_proxy binary


def sh(*cmd):
    subprocess.run(cmd, check=True)


def ns(host):
    return f"{TAG}-{host}"


def host_map(servers=2, workers=2):
    """Host name -> last address byte: s0, s1, ... from .1, w0, w1, ... from .11."""
    hosts = {f"s{i}": 1 + i for i in range(servers)}
    hosts.update({f"w{i}": 11 + i for i in range(workers)})
    return hosts


def ip(host):
    return f"{SUBNET}.{HOSTS[host]}"


def veth(host):
    """(router side, host side) names of a host's veth."""
    return f"{TAG}{host}r", f"{TAG}{host}h"


HOSTS = host_map()


def setup(hosts=None):
    """Creates the router namespace and one namespace per host, unshaped."""
    global HOSTS
    if hosts is not None:
        HOSTS = hosts
    router = ns("router")
    sh("ip", "netns", "add", router)
    sh("ip", "-n", router, "link", "set", "lo", "up")
    sh("ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    for host, last in HOSTS.items():
        name = ns(host)
        sh("ip", "netns", "add", name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        outside, inside = veth(host)
        sh("ip", "link", "add", outside, "netns", router, "type", "veth", "peer", "name", inside, "netns", name)
        sh("ip", "-n", router, "addr", "add", f"{ROUTER_IP}/32", "dev", outside)
        sh("ip", "-n", router, "link", "set", outside, "up")
        sh("ip", "-n", router, "route", "add", f"{SUBNET}.{last}/32", "dev", outside)
        sh("ip", "-n", name, "addr", "add", f"{SUBNET}.{last}/32", "dev", inside)
        sh("ip", "-n", name, "link", "set", inside, "up")
        sh("ip", "-n", name, "route", "add", f"{ROUTER_IP}/32", "dev", inside)
        sh("ip", "-n", name, "route", "add", f"{SUBNET}.0/24", "via", ROUTER_IP, "dev", inside)


def teardown():
    for host in list(HOSTS) + ["router"]:
        subprocess.run(["ip", "netns", "del", ns(host)], stderr=subprocess.DEVNULL)


def rate_bits(rate):
    """'1gbit', '500mbit', '10gbit' -> bits per second."""
    m = re.fullmatch(r"([0-9.]+)([kmg]?)bit", rate)
    if not m:
        sys.exit(f"rate {rate!r}: expected e.g. 500mbit, 1gbit, 10gbit")
    return float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[m.group(2)]


class Links:
    """Shapes every host's veth to `rate` (None: unshaped) in both directions
    and, unless rtt_ms is None, sends every TCP connection between hosts
    through the delaying proxy in the router. A context manager: leaving it
    removes the shaping and ends the proxy."""

    def __init__(self, rate=None, rtt_ms=None):
        self.rate, self.rtt_ms, self.proxy = rate, rtt_ms, None

    def qdiscs(self):
        for host in HOSTS:
            outside, inside = veth(host)
            yield ns("router"), outside
            yield ns(host), inside

    def __enter__(self):
        try:
            if self.rate:
                bits = rate_bits(self.rate)
                # burst: 1 ms of the rate (less loses 7-30 % of 1 Gbit/s to
                # timer slack on this loaded VM: 686 Mbit/s at 64 KB, 928 at
                # 125 KB, measured), at least one 64 KB GSO packet (smaller
                # would make tbf split them in software); queue: 10 ms.
                burst = max(65536 + 1514, int(bits / 8 * 1e-3))
                for name, dev in self.qdiscs():
                    sh("ip", "netns", "exec", name, "tc", "qdisc", "replace", "dev", dev, "root", "tbf",
                       "rate", self.rate, "burst", str(burst), "latency", "10ms")
            if self.rtt_ms is not None:
                router = ns("router")
                # SCHED_FIFO: the proxy stands for wires and switches, which do
                # not wait for a CPU; at normal priority on this loaded 2-core VM
                # its wake-ups turned +5 ms into 8-13 ms (5.5-5.9 ms with it).
                self.proxy = subprocess.Popen(["ip", "netns", "exec", router, "chrt", "-f", "10", PROXY,
                                               f"0.0.0.0:{PROXY_PORT}", "transparent", str(self.rtt_ms)])
                sh("ip", "netns", "exec", router, "iptables", "-t", "nat", "-A", "PREROUTING", "-p", "tcp",
                   "-s", f"{SUBNET}.0/24", "-d", f"{SUBNET}.0/24", "-j", "REDIRECT", "--to-ports", str(PROXY_PORT))
                time.sleep(0.2)
                if self.proxy.poll() is not None:
                    sys.exit("delay_proxy did not start")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        if self.proxy is not None:
            subprocess.run(["ip", "netns", "exec", ns("router"), "iptables", "-t", "nat", "-F", "PREROUTING"],
                           stderr=subprocess.DEVNULL)
            stop([self.proxy])
            self.proxy = None
        if self.rate:
            for name, dev in self.qdiscs():
                subprocess.run(["ip", "netns", "exec", name, "tc", "qdisc", "del", "dev", dev, "root"],
                               stderr=subprocess.DEVNULL)

    def describe(self):
        rate = self.rate or "unshaped"
        return rate + ("" if self.rtt_ms is None else f", +{self.rtt_ms} ms RTT")


def start(host, args, log):
    cmd = ([] if host is None else ["ip", "netns", "exec", ns(host)]) + ["nice", "-n", "10", DNND] + args
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)


def stop(procs):
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


MODELS = {
    # name: worker --set options (the servers take the model spec from the workers)
    "mlp": [],
    "resnet20": ["--set", "model.file=models/resnet20.toml", "--set", "model.input=[1, 28, 28]",
                 "--set", "data.augment_crop_padding=2", "--set", "data.augment_flip=true"],
}


def sets(pairs):
    """["worker.overlap=false", ...] -> --set arguments."""
    return [a for kv in pairs for a in ("--set", kv)]


def wall_rate(out, workers):
    """The job's samples/s from worker 0's log timestamps (joined the servers
    -> done, so it includes evaluating limit_test samples): the epoch line
    rounds to two digits."""
    marks = {m.group(2).split()[0]: m for m in STAMP.finditer(out)}
    if not {"training", "joined", "done"} <= set(marks):
        return None
    t = {k: datetime.datetime.fromisoformat(m.group(1)) for k, m in marks.items()}
    return int(marks["training"].group(3)) * workers / (t["done"] - t["joined"]).total_seconds()


def job(mode, hosts, logdir, limit_train, tag="", model="mlp", batch=64, servers=2, workers=2, limit_test=2000,
        worker_sets=(), server_sets=(), colocate=False, epochs=1, target=88.0):
    """Runs `servers` servers + `workers` workers, each on its own host (or
    all on loopback unless `hosts`), on whatever links are set up; returns
    {samples_per_s (the job's, from the epoch line), wall_samples_per_s (from
    the log's timestamps), accuracy, split: worker 0's step-time percentages
    and seconds}."""
    procs = []
    tag = tag or ("hosts" if hosts else "loopback")
    try:
        addresses = []
        for i in range(servers):
            port = 17000 + i
            # colocate: server i shares worker i % workers's host (BytePS's
            # placement): that worker reaches it without crossing a link.
            host = f"w{i % workers}" if colocate else f"s{i}"
            bind = ip(host) if hosts else "127.0.0.1"
            log = open(f"{logdir}/ps{i}-{mode}-{tag}.log", "w")
            procs.append(start(host if hosts else None, [
                "--role=parameter-server", "--config", f"{ROOT}/configs/parameter-server.toml",
                "--set", f"ps.listen={bind}:{port}", "--set", f"ps.index={i}",
                "--set", f"ps.servers={servers}", "--set", f"ps.workers={workers}", "--set", f"ps.mode={mode}",
                "--set", "ps.kavg_steps=4", "--set", "ps.checkpoint_dir=",
                "--set", "http.listen=", "--set", "node.threads=1",
                "--set", "transport.token=netns"] + sets(server_sets), log))
            addresses.append(f'"{bind}:{port}"')
        running = []
        for i in range(workers):
            log = open(f"{logdir}/w{i}-{mode}-{tag}.log", "w+")
            running.append((start(f"w{i}" if hosts else None, [
                "--role=worker", "--config", f"{ROOT}/configs/worker-ps.toml",
                "--set", f"worker.parameter_servers=[{','.join(addresses)}]", "--set", f"worker.index={i}",
                "--set", f"worker.count={workers}", "--set", "node.threads=1", "--set", "transport.token=netns",
                "--set", f"data.limit_train={limit_train}", "--set", f"data.limit_test={limit_test}",
                "--set", f"train.batch_size={batch}",
                "--set", f"train.epochs={epochs}", "--set", "train.progress=none", "--set", "train.checkpoint_dir="]
                + MODELS[model] + sets(worker_sets), log), log))
        for p, log in running:
            if p.wait(600) != 0:
                log.seek(0)
                sys.exit(f"worker failed ({mode}, {tag}):\n{log.read()[-3000:]}")
        running[0][1].seek(0)
        out = running[0][1].read()
        rate = EPOCH.search(out)
        acc = FINAL.search(out)
        if not rate or not acc:
            sys.exit("no epoch summary in worker 0's output:\n" + out[-3000:])
        split = SPLIT.search(out)
        per_epoch = [(float(m.group(1)), float(m.group(2))) for m in EPOCH_END.finditer(out)]
        rates = [float(m.group(1)) * (1000 if m.group(2) else 1) * workers for m in EPOCH.finditer(out)]
        return {"samples_per_s": round(sum(rates) / len(rates), 1), "epochs": epochs,
                "target": target, "time_to_target_s": time_to(per_epoch, target),
                "wall_samples_per_s": wall_rate(out, workers),
                "accuracy": float(acc.group(1)), "steps": limit_train // workers // batch,
                "split": None if not split else {
                    "compute": int(split.group(1)), "communicate": int(split.group(2)), "wait": int(split.group(3)),
                    "server": int(split.group(4)), "seconds": float(split.group(5)),
                    "hidden": int(split.group(6)) if split.group(6) else None}}
    finally:
        stop(procs)


def ddp_job(limit_train, logdir, tag, model="mlp", batch=64, workers=2, limit_test=2000, hook="none", epochs=1,
            target=88.0):
    """PyTorch DDP (gloo), one rank per worker host, rendezvous at w0's
    address, with the MLP's recipe (Adam 1e-3, cosine) or ResNet-20's;
    returns {samples_per_s, accuracy}."""
    extra = [] if model == "mlp" else ["--model", "resnet20", "--optimizer", "sgd", "--lr", "0.1",
                                       "--momentum", "0.9", "--weight-decay", "5e-4", "--crop-padding", "2", "--flip"]
    procs = []
    try:
        for r in range(workers):
            host = f"w{r}"
            log = open(f"{logdir}/ddp{r}-{tag}.log", "w+")
            env = dict(os.environ, GLOO_SOCKET_IFNAME=veth(host)[1])
            procs.append((subprocess.Popen(
                ["ip", "netns", "exec", ns(host), "nice", "-n", "10", "/usr/bin/python3",
                 os.path.join(ROOT, "bench", "ddp_reference.py"), "--workers", str(workers), "--rank", str(r),
                 "--master", f"{ip('w0')}:29500", "--epochs", str(epochs), "--batch", str(batch),
                 "--limit-train", str(limit_train), "--limit-test", str(limit_test), "--probe-compute",
                 "--comm-hook", hook] + extra,
                stdout=log, stderr=subprocess.STDOUT, env=env), log))
            if r == 0:
                # Rank 0's store must listen before the others dial it: through
                # the proxy a refused connection turns into a reset, which
                # PyTorch does not retry.
                for _ in range(600):
                    ss = subprocess.run(["ip", "netns", "exec", ns(host), "ss", "-Hltn", "sport", "= :29500"],
                                        capture_output=True, text=True).stdout
                    if ss.strip() or procs[0][0].poll() is not None:
                        break
                    time.sleep(0.1)
        deadline = time.time() + 600
        while any(p.poll() is None for p, _ in procs) and time.time() < deadline:
            for p, log in procs:
                if p.poll() not in (None, 0):
                    log.seek(0)
                    sys.exit(f"DDP rank failed ({tag}):\n{log.read()[-3000:]}")
            time.sleep(0.2)
        if any(p.poll() != 0 for p, _ in procs):
            sys.exit(f"DDP ranks did not finish ({tag})")
        procs[0][1].seek(0)
        history = json.loads(procs[0][1].read().strip().splitlines()[-1])["history"]
        h = history[-1]
        per_epoch = [(e["seconds"], 100 * e["test_accuracy"]) for e in history]
        return {"samples_per_s": sum(e["samples_per_s"] for e in history) / len(history),
                "accuracy": 100 * h["test_accuracy"], "epochs": epochs, "target": target,
                "time_to_target_s": time_to(per_epoch, target),
                "seconds": h["seconds"], "steps": limit_train // workers // batch,
                "forward_backward_s_no_sync": h["forward_backward_s_per_step_no_sync"],
                "optimizer_s": h["optimizer_s_per_step"]}
    finally:
        stop([p for p, _ in procs])


def main():
    global PROXY
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--table", action="store_true")
    ap.add_argument("--bench", action="store_true")
    ap.add_argument("--rate", default=None, help="--bench: link rate (tc tbf syntax: 1gbit, 10gbit); default unshaped")
    ap.add_argument("--rtt-ms", type=float, default=None, help="--bench: added round trip; default none (no proxy)")
    ap.add_argument("--ddp", action="store_true", help="--bench: PyTorch DDP on the same links too")
    ap.add_argument("--ddp-hooks", nargs="+", default=["none"], choices=["none", "fp16"],
                    help="--bench --ddp: a DDP run per communication hook (fp16: gradients all-reduced as fp16; PyTorch 1.13 allows bf16 on NCCL only)")
    ap.add_argument("--model", default="mlp", choices=sorted(MODELS))
    ap.add_argument("--batch", type=int, default=64, help="--bench: samples per worker per step")
    ap.add_argument("--servers", type=int, default=2, help="--bench: parameter servers, each on its own host")
    ap.add_argument("--colocate", action="store_true",
                    help="--bench: the servers on the workers' hosts (server i with worker i %% 2), not their own")
    ap.add_argument("--limit-train", type=int, default=16384, help="--bench: training samples (all workers)")
    ap.add_argument("--limit-test", type=int, default=1000, help="--bench: test samples evaluated")
    ap.add_argument("--epochs", type=int, default=1, help="--bench: epochs of each job")
    ap.add_argument("--target", type=float, default=None,
                    help="--bench: test accuracy (%%) whose time to reach is reported; default 88 (MLP), 90 (ResNet-20)")
    ap.add_argument("--proxy-binary", default=PROXY)
    ap.add_argument("--logdir", default="/tmp")
    ap.add_argument("--worker-set", action="append", default=[], metavar="KEY=VALUE",
                    help="--bench: a setting of every dnnd worker (worker.overlap=false)")
    ap.add_argument("--server-set", action="append", default=[], metavar="KEY=VALUE",
                    help="--bench: a setting of every dnnd parameter server (ps.chunks=4)")
    args = ap.parse_args()
    PROXY = args.proxy_binary
    if os.geteuid() != 0:
        sys.exit("needs root for ip netns")
    os.makedirs(args.logdir, exist_ok=True)
    try:
        setup(host_map(servers=args.servers))
        if args.bench:
            links = Links(args.rate, args.rtt_ms)
            target = args.target if args.target is not None else (88.0 if args.model == "mlp" else 90.0)
            with links:
                tag = f"{args.model}-{args.rate or 'unshaped'}-{args.rtt_ms}"
                r = job("sync", True, args.logdir, args.limit_train, tag, args.model, args.batch,
                        servers=args.servers, limit_test=args.limit_test,
                        worker_sets=args.worker_set, server_sets=args.server_set, colocate=args.colocate,
                        epochs=args.epochs, target=target)
                system = f"dnnd sync, {args.servers} servers x 2 workers" + (", colocated" if args.colocate else "")
                if args.worker_set or args.server_set:
                    system += " (" + ", ".join(args.worker_set + args.server_set) + ")"
                print(json.dumps({"system": system, "links": links.describe(),
                                  "servers": args.servers, "model": args.model, "batch_per_worker": args.batch,
                                  "limit_train": args.limit_train, **r}), flush=True)
                for hook in args.ddp_hooks if args.ddp else []:
                    r = ddp_job(args.limit_train, args.logdir, f"{tag}-{hook}", args.model, args.batch,
                                limit_test=args.limit_test, hook=hook, epochs=args.epochs, target=target)
                    system = "PyTorch DDP (gloo), 2 ranks" + ("" if hook == "none" else f", {hook} compress hook")
                    print(json.dumps({"system": system, "links": links.describe(),
                                      "model": args.model, "batch_per_worker": args.batch,
                                      "limit_train": args.limit_train, **r}), flush=True)
        elif args.check or not args.table:
            loop = job("sync", False, args.logdir, 8192)
            hosts = job("sync", True, args.logdir, 8192)
            print(f"sync, 2 servers + 2 workers: loopback {loop['accuracy']:.2f}% "
                  f"({loop['samples_per_s']:.0f} samples/s), four namespace hosts {hosts['accuracy']:.2f}% "
                  f"({hosts['samples_per_s']:.0f} samples/s)")
            if hosts["accuracy"] != loop["accuracy"]:
                sys.exit("FAIL: the job across namespaces did not reach the loopback job's accuracy")
            with Links("1gbit", 5):
                d = job("sync", True, args.logdir, 4096, "1gbit-5ms")
            print(f"sync across namespaces on 1 Gbit/s links with 5 ms added round trip: {d['accuracy']:.2f}% "
                  f"({d['samples_per_s']:.0f} samples/s)")
        if args.table:
            print("| mode (2 servers, 2 workers, batch 64 per worker) | direct | proxy, +0 ms | proxy, +1 ms | proxy, +5 ms |")
            print("|---|---|---|---|---|")
            for mode in ("sync", "async", "kavg"):
                cells = []
                for delay in (None, 0, 1, 5):
                    with Links(None, delay):
                        r = job(mode, True, args.logdir, 16384, f"{delay}ms")
                    cells.append(f"{r['samples_per_s'] / 1000:.1f}k ({r['accuracy']:.1f} %)")
                print(f"| {mode} | " + " | ".join(cells) + " |")
    finally:
        teardown()


if __name__ == "__main__":
    main()
