#!/usr/bin/python3
"""Checks the emulated links of tests/deploy/netns_cluster.py: a TCP sender
in one namespace host and a receiver in another measure the throughput
through the router at three tbf rates (each must be within 12 % of the
configured rate's TCP goodput), unshaped (must be at least twice the fastest shaped rate),
and through the delaying proxy together with a rate; a 1-byte ping-pong
measures the added round trip (the median must be within 0-1.5 ms above it).
Needs root and the delay_proxy binary; about 20 s.

    tests/deploy/netns_rate_test.py [--proxy-binary build/tests/delay_proxy]

ctest runs it as deploy.netns_rate. With --serve / --send / --ping it is its
own helper, run inside the namespaces.
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netns_cluster as nc  # noqa: E402

PORT = 18500
SECONDS = 1.6   # the sender's time; the receiver skips the first WARMUP
WARMUP = 0.3
TOLERANCE = 0.10
# tbf counts whole Ethernet frames; TCP carries 1448 payload bytes (MSS with
# timestamps) in each 1514-byte frame, so a link's goodput is 95.6 % of its
# rate, as on a real NIC (941 Mbit/s on 1 Gbit/s Ethernet).
GOODPUT = 1448 / 1514


def serve(port):
    """Receiver: one connection; counts bytes after WARMUP; echoes 1-byte pings."""
    with socket.socket() as ls:
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("0.0.0.0", port))
        ls.listen(1)
        print("ready", flush=True)
        conn, _ = ls.accept()
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            first = conn.recv(1)
            if first == b"p":  # ping-pong
                conn.sendall(b"p")
                while True:
                    b = conn.recv(1)
                    if not b:
                        return
                    conn.sendall(b)
            buf = bytearray(1 << 20)
            start = time.perf_counter()
            counted, t0, t1 = 0, None, None
            while True:
                n = conn.recv_into(buf)
                if not n:
                    break
                now = time.perf_counter()
                if now - start >= WARMUP:
                    if t0 is None:
                        t0 = now
                    else:
                        counted += n
                    t1 = now
            print(json.dumps({"bits_per_s": 8 * counted / (t1 - t0)}), flush=True)


def send(host, port):
    with socket.create_connection((host, port)) as s:
        chunk = b"x" * (1 << 20)
        end = time.perf_counter() + SECONDS
        while time.perf_counter() < end:
            s.sendall(chunk)


def ping(host, port, count=40):
    with socket.create_connection((host, port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rtts = []
        for _ in range(count + 1):
            t = time.perf_counter()
            s.sendall(b"p")
            s.recv(1)
            rtts.append(1000 * (time.perf_counter() - t))
        print(json.dumps({"rtt_ms": statistics.median(rtts[1:])}), flush=True)


def in_host(host, *args):
    return ["ip", "netns", "exec", nc.ns(host), "/usr/bin/python3", os.path.abspath(__file__), *args]


def measure(kind):
    """Runs the receiver in w1 and a sender (kind 'send') or pinger ('ping')
    in w0; returns the receiver's or pinger's JSON."""
    server = subprocess.Popen(in_host("w1", "--serve", str(PORT)), stdout=subprocess.PIPE, text=True)
    try:
        if server.stdout.readline().strip() != "ready":
            sys.exit("receiver did not start")
        client = subprocess.run(in_host("w0", f"--{kind}", nc.ip("w1"), str(PORT)), capture_output=True,
                                text=True, timeout=30)
        if client.returncode != 0:
            sys.exit(f"{kind} failed:\n{client.stderr}")
        if kind == "ping":
            return json.loads(client.stdout)
        return json.loads(server.communicate(timeout=30)[0])
    finally:
        nc.stop([server])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--serve", type=int)
    ap.add_argument("--send", nargs=2)
    ap.add_argument("--ping", nargs=2)
    ap.add_argument("--proxy-binary", default=nc.PROXY)
    args = ap.parse_args()
    if args.serve:
        return serve(args.serve)
    if args.send:
        return send(args.send[0], int(args.send[1]))
    if args.ping:
        return ping(args.ping[0], int(args.ping[1]))
    if os.geteuid() != 0:
        sys.exit("needs root for ip netns")
    nc.PROXY = args.proxy_binary
    failures = []
    try:
        nc.setup(nc.host_map(servers=0, workers=2))
        cases = [("100mbit", None), ("300mbit", None), ("1gbit", None), ("1gbit", 0.5)]
        for rate, rtt in cases:
            with nc.Links(rate, rtt) as links:
                got = measure("send")["bits_per_s"]
            want = nc.rate_bits(rate) * GOODPUT
            ok = abs(got / want - 1) <= TOLERANCE
            print(f"{links.describe()}: {got / 1e6:.0f} Mbit/s goodput ({100 * (got / want - 1):+.1f} % "
                  f"from the {want / 1e6:.0f} Mbit/s expected)"
                  f"{'' if ok else '  FAIL'}")
            if not ok:
                failures.append(links.describe())
        with nc.Links(None, None):
            free = measure("send")["bits_per_s"]
        print(f"unshaped: {free / 1e6:.0f} Mbit/s")
        if free < 2 * nc.rate_bits("1gbit"):
            failures.append("unshaped is not at least twice 1 Gbit/s")
        base = measure("ping")["rtt_ms"]
        for rtt in (0.5, 5):
            with nc.Links("1gbit", rtt):
                got = measure("ping")["rtt_ms"]
            ok = rtt <= got <= rtt + base + 1.5
            print(f"+{rtt} ms round trip: median TCP ping-pong {got:.2f} ms (unproxied {base:.2f} ms)"
                  f"{'' if ok else '  FAIL'}")
            if not ok:
                failures.append(f"+{rtt} ms round trip")
    finally:
        nc.teardown()
    if failures:
        sys.exit("FAIL: " + "; ".join(failures))
    print("shaped links OK")


if __name__ == "__main__":
    main()
