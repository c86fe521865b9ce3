#!/usr/bin/env python3
"""A minimal authoritative DNS server for tests: answers A queries for the
names given on the command line, NXDOMAIN for any other name, an empty answer
(NODATA) for other record types of known names. UDP only (answers are small).

    fake_dns.py --listen 127.53.0.1 --port 53 --seconds 120 \
        ps.dnnd.test=127.0.0.1 other.dnnd.test=127.0.0.1

Prints "ready" once bound; exits after --seconds (bounded, always) or on
SIGTERM. Prints each query it answered to stderr, so a test can check that a
lookup really went through DNS.
"""
import argparse
import signal
import socket
import struct
import sys
import time


def parse_question(packet):
    """Returns (id, flags, qname, qtype, qclass, end offset of question)."""
    if len(packet) < 12:
        raise ValueError("short header")
    qid, flags, qdcount = struct.unpack("!HHH", packet[:6])
    if qdcount != 1:
        raise ValueError("expected one question")
    labels, i = [], 12
    while True:
        if i >= len(packet):
            raise ValueError("truncated name")
        n = packet[i]
        i += 1
        if n == 0:
            break
        if n & 0xC0:
            raise ValueError("compressed name in question")
        labels.append(packet[i:i + n].decode("ascii", "replace"))
        i += n
    if i + 4 > len(packet):
        raise ValueError("truncated question")
    qtype, qclass = struct.unpack("!HH", packet[i:i + 4])
    return qid, flags, ".".join(labels).lower(), qtype, qclass, i + 4


def answer(packet, names):
    qid, flags, qname, qtype, qclass, end = parse_question(packet)
    rd = flags & 0x0100
    question = packet[12:end]
    known = qname in names
    rcode = 0 if known else 3  # NXDOMAIN
    answers = b""
    ancount = 0
    if known and qtype == 1 and qclass == 1:  # A IN
        answers = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 5, 4) + socket.inet_aton(names[qname])
        ancount = 1
    # QR, AA, RD copied, RA.
    out_flags = 0x8000 | 0x0400 | rd | 0x0080 | rcode
    header = struct.pack("!HHHHHH", qid, out_flags, 1, ancount, 0, 0)
    return header + question + answers, qname, qtype, rcode


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=53)
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("records", nargs="+", help="name=ipv4")
    args = ap.parse_args()
    names = {}
    for r in args.records:
        name, sep, ip = r.partition("=")
        if not sep:
            ap.error(f"record '{r}' is not name=ipv4")
        socket.inet_aton(ip)
        names[name.lower().rstrip(".")] = ip
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((args.listen, args.port))
    print("ready", flush=True)
    deadline = time.monotonic() + args.seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(min(left, 1.0))
        try:
            packet, peer = sock.recvfrom(4096)
        except socket.timeout:
            continue
        try:
            reply, qname, qtype, rcode = answer(packet, names)
        except ValueError as e:
            print(f"bad query from {peer}: {e}", file=sys.stderr, flush=True)
            continue
        sock.sendto(reply, peer)
        print(f"query {qname} type {qtype} rcode {rcode}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
