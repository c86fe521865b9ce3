#!/usr/bin/python3
"""Multi-host data-parallel training without a cluster: network namespaces
as hosts. Needs root (ip netns) and a built dnnd.

Three namespaces the script creates itself -- one for the two parameter
servers, one per worker -- hang off a bridge in a fourth, on 10.231.0.0/24;
they talk through the real wire protocol with a token. Added round-trip
latency comes from a delaying TCP proxy in the servers' namespace
(tests/deploy/delay_proxy.cc; this kernel has no netem): every byte is held
for half the delay in each direction, order kept.

    tests/deploy/netns_cluster.py --check   # sync job across namespaces; its
                                            # accuracy must equal the same job on loopback
    tests/deploy/netns_cluster.py --table   # samples/s of sync, async, kavg at
                                            # 0, 1 and 5 ms added round trip (README)
Everything it starts is ended by PID and the namespaces are deleted, also on
failure.
"""
import argparse
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DNND = os.environ.get("DNND_BINARY", os.path.join(ROOT, "build", "dnnd"))
TAG = f"d{os.getpid() % 100000}"
SUBNET = "10.231.0"
HOSTS = {"ps": 1, "w0": 2, "w1": 3}
EPOCH = re.compile(r"epoch \d+/\d+ loss [0-9.]+\s+([0-9.]+)(k?) samples/s")
FINAL = re.compile(r"final test accuracy ([0-9.]+)%")
PROXY = None  # the delay_proxy binary


def sh(*cmd):
    subprocess.run(cmd, check=True)


def ns(host):
    return f"{TAG}-{host}"


def setup():
    hub = ns("hub")
    sh("ip", "netns", "add", hub)
    sh("ip", "-n", hub, "link", "add", "br0", "type", "bridge")
    sh("ip", "-n", hub, "link", "set", "br0", "up")
    for host, last in HOSTS.items():
        name = ns(host)
        sh("ip", "netns", "add", name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        outside, inside = f"{TAG}{host}h", f"{TAG}{host}n"
        sh("ip", "link", "add", outside, "netns", hub, "type", "veth", "peer", "name", inside, "netns", name)
        sh("ip", "-n", hub, "link", "set", outside, "master", "br0", "up")
        sh("ip", "-n", name, "addr", "add", f"{SUBNET}.{last}/24", "dev", inside)
        sh("ip", "-n", name, "link", "set", inside, "up")


def teardown():
    for host in list(HOSTS) + ["hub"]:
        subprocess.run(["ip", "netns", "del", ns(host)], stderr=subprocess.DEVNULL)


def start(host, args, log):
    cmd = ([] if host is None else ["ip", "netns", "exec", ns(host)]) + [DNND] + args
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


def job(mode, delay_ms, hosts, logdir, limit_train):
    """Runs 2 servers + 2 workers, through the delaying proxy unless
    delay_ms is None; returns (job samples/s, final accuracy)."""
    srv_host = "ps" if hosts else None
    worker_hosts = ("w0", "w1") if hosts else (None, None)
    reach = f"{SUBNET}.1" if hosts else "127.0.0.1"
    procs, proxies = [], []
    tag = "direct" if delay_ms is None else f"{delay_ms}ms"
    try:
        addresses = []
        for i in range(2):
            port = 17000 + i
            proxied = delay_ms is not None and hosts
            bind = "127.0.0.1" if (proxied or not hosts) else reach
            log = open(f"{logdir}/ps{i}-{mode}-{tag}.log", "w")
            procs.append(start(srv_host, ["--role=parameter-server", "--config", f"{ROOT}/configs/parameter-server.toml",
                                          "--set", f"ps.listen={bind}:{port}", "--set", f"ps.index={i}",
                                          "--set", "ps.servers=2", "--set", "ps.workers=2", "--set", f"ps.mode={mode}",
                                          "--set", "ps.kavg_steps=4", "--set", "ps.checkpoint_dir=",
                                          "--set", "http.listen=", "--set", "node.threads=1",
                                          "--set", "transport.token=netns"], log))
            if proxied:
                cmd = ([] if srv_host is None else ["ip", "netns", "exec", ns(srv_host)]) + [
                    PROXY, f"{reach}:{port + 1000}", f"127.0.0.1:{port}", str(delay_ms)]
                proxies.append(subprocess.Popen(cmd))
                addresses.append(f'"{reach}:{port + 1000}"')
            else:
                addresses.append(f'"{reach}:{port}"')
        workers = []
        for i in range(2):
            log = open(f"{logdir}/w{i}-{mode}-{tag}.log", "w+")
            workers.append((start(worker_hosts[i], [
                "--role=worker", "--config", f"{ROOT}/configs/worker-ps.toml",
                "--set", f"worker.parameter_servers=[{','.join(addresses)}]", "--set", f"worker.index={i}",
                "--set", "worker.count=2", "--set", "node.threads=1", "--set", "transport.token=netns",
                "--set", f"data.limit_train={limit_train}", "--set", "data.limit_test=2000",
                "--set", "train.epochs=1", "--set", "train.progress=none", "--set", "train.checkpoint_dir="], log), log))
        for p, log in workers:
            if p.wait(600) != 0:
                log.seek(0)
                sys.exit(f"worker failed ({mode}, {delay_ms} ms):\n{log.read()[-3000:]}")
        workers[0][1].seek(0)
        out = workers[0][1].read()
        rate = EPOCH.search(out)
        acc = FINAL.search(out)
        if not rate or not acc:
            sys.exit("no epoch summary in worker 0's output:\n" + out[-3000:])
        return float(rate.group(1)) * (1000 if rate.group(2) else 1) * 2, float(acc.group(1))
    finally:
        stop(procs + proxies)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--table", action="store_true")
    ap.add_argument("--proxy-binary", default=os.path.join(ROOT, "build", "tests", "delay_proxy"))
    ap.add_argument("--logdir", default="/tmp")
    args = ap.parse_args()
    global PROXY
    PROXY = args.proxy_binary
    if os.geteuid() != 0:
        sys.exit("needs root for ip netns")
    os.makedirs(args.logdir, exist_ok=True)
    try:
        setup()
        if args.check or not args.table:
            loop_rate, loop_acc = job("sync", None, False, args.logdir, 8192)
            ns_rate, ns_acc = job("sync", None, True, args.logdir, 8192)
            print(f"sync, 2 servers + 2 workers: loopback {loop_acc:.2f}% ({loop_rate:.0f} samples/s), "
                  f"three namespaces {ns_acc:.2f}% ({ns_rate:.0f} samples/s)")
            if ns_acc != loop_acc:
                sys.exit("FAIL: the job across namespaces did not reach the loopback job's accuracy")
            d_rate, d_acc = job("sync", 5, True, args.logdir, 4096)
            print(f"sync across namespaces with 5 ms added round trip: {d_acc:.2f}% ({d_rate:.0f} samples/s)")
        if args.table:
            print("| mode (2 servers, 2 workers, batch 64 per worker) | direct | proxy, +0 ms | proxy, +1 ms | proxy, +5 ms |")
            print("|---|---|---|---|---|")
            for mode in ("sync", "async", "kavg"):
                cells = []
                for delay in (None, 0, 1, 5):
                    rate, acc = job(mode, delay, True, args.logdir, 16384)
                    cells.append(f"{rate / 1000:.1f}k ({acc:.1f} %)")
                print(f"| {mode} | " + " | ".join(cells) + " |")
    finally:
        teardown()


if __name__ == "__main__":
    main()
