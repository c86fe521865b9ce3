#!/usr/bin/python3
"""Runs the wire benchmark and DockerNN's Python path in one go and prints
the comparison table of the README (markdown).

    /usr/bin/python3 bench/wire_compare.py [--build build] [--min-time 0.5]

Every ratio compares two figures measured in this run on this machine.
"""
import argparse
import json
import os
import platform
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def human(n):
    for unit, div in (("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= div:
            return f"{n // div} {unit}"
    return f"{n} B"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def run_wire_bench(build, min_time):
    exe = os.path.join(build, "bench", "wire_bench")
    out = subprocess.run([exe, "--benchmark_format=json", f"--benchmark_min_time={min_time}"],
                         check=True, capture_output=True, text=True).stdout
    return {b["name"]: b for b in json.loads(out)["benchmarks"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("--min-time", default="0.5")
    args = ap.parse_args()

    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, Linux {platform.release()}", file=sys.stderr)
    print("running wire_bench ...", file=sys.stderr)
    b = run_wire_bench(args.build, args.min_time)
    print("running DockerNN's blosc/Flask path ...", file=sys.stderr)
    d = json.loads(subprocess.run(["/usr/bin/python3", os.path.join(HERE, "dockernn_reference.py")],
                                  check=True, capture_output=True, text=True).stdout)
    gbs = lambda name: b[name]["bytes_per_second"] / 1e9

    print(f"Machine: {cpu_model()}, {os.cpu_count()} cores. GB/s are 10^9 bytes of float32 payload per second.\n")
    print("| payload | dnnd encode+decode | memcpy | ratio | dnnd, fresh buffers | memcpy, fresh | protobuf bytes | protobuf repeated float | vs protobuf (best) | DockerNN codec | vs DockerNN |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    sizes = [4 << 10, 64 << 10, 1 << 20, 16 << 20, 64 << 20]
    dockernn = {c["bytes"]: c["bytes_per_second"] / 1e9 for c in d["codec"]}
    for n in sizes:
        ours = gbs(f"EncodeDecode/bytes:{n}/reuse:1/tensors:1")
        mem = gbs(f"Memcpy/bytes:{n}/reuse:1/tensors:1")
        fresh = gbs(f"EncodeDecode/bytes:{n}/reuse:0/tensors:1")
        mem_fresh = gbs(f"Memcpy/bytes:{n}/reuse:0/tensors:1")
        pb = gbs(f"ProtobufBytes/bytes:{n}")
        pf = gbs(f"ProtobufFloats/bytes:{n}")
        dn = dockernn[n]
        print(f"| {human(n)} | {ours:.2f} | {mem:.2f} | {ours / mem:.2f}x | {fresh:.2f} | {mem_fresh:.2f} | "
              f"{pb:.2f} | {pf:.2f} | {ours / max(pb, pf):.1f}x | {dn:.3f} | {ours / dn:.0f}x |")
    ours16 = gbs("EncodeDecode/bytes:67108864/reuse:1/tensors:16")
    print(f"| 64 MB as 16 tensors | {ours16:.2f} | {gbs('Memcpy/bytes:67108864/reuse:1/tensors:1'):.2f} | "
          f"{ours16 / gbs('Memcpy/bytes:67108864/reuse:1/tensors:1'):.2f}x | | | | | | | |")

    print("\n| loopback TCP | dnnd RPC | raw socket | ratio |")
    print("|---|---|---|---|")
    for what, rpc, raw in (("push 64 MB (16 tensors)", "RpcPush64MB/real_time", "RawPush64MB/real_time"),
                           ("pull 64 MB (16 tensors)", "RpcPull64MB/real_time", "RawPull64MB/real_time")):
        print(f"| {what} | {gbs(rpc):.2f} GB/s | {gbs(raw):.2f} GB/s | {gbs(rpc) / gbs(raw):.2f}x |")
    rt, pp = b["RpcRoundTrip64B/real_time"]["real_time"], b["RawPingPong64B/real_time"]["real_time"]
    print(f"| 64-byte round trip | {rt:.1f} us | {pp:.1f} us | {rt / pp:.2f}x the time |")
    push2 = b["RpcPush2MB/real_time"]["real_time"] / 1e3  # ms
    dpush = d["push"]["seconds_per_push"] * 1e3
    print(f"| push one 2 MB gradient, end to end | {push2:.2f} ms | DockerNN (Flask + blosc + hex): {dpush:.1f} ms | {dpush / push2:.0f}x faster |")

    print("\n| codec (MLP after 300 steps) | wire MB (raw 2.14) | size ratio | encode+decode GB/s | relative RMS error |")
    print("|---|---|---|---|---|")
    names = {0: "none", 1: "shuffle+zstd", 2: "bf16", 3: "f16"}
    for g, what in ((0, "weights"), (1, "gradients")):
        for c in range(4):
            r = b[f"Codec/codec:{c}/gradients:{g}"]
            print(f"| {names[c]}, {what} | {r['wire_MB']:.2f} | {r['ratio']:.2f}x | "
                  f"{r['bytes_per_second'] / 1e9:.2f} | {r['rel_rms_err']:.1e} |")


if __name__ == "__main__":
    main()
