#!/usr/bin/python3
"""DockerNN's tensor path, measured on this machine for bench/wire_compare.py.

DockerNN (../shared/seeds, "Limitations") ships every array as
`blosc.pack_array(a).hex()` in a form field of a `requests.post` to a Flask
service: a fresh HTTP connection per call, pickle + blosc + hex on the way
out, the reverse on the way in. This script measures
  codec:  pack_array + hex, then fromhex + unpack_array, for the sizes of
          wire_bench's EncodeDecode (float32 values of a uniform(-1, 1)
          tensor, as there);
  push:   one 2 MB float32 gradient posted to a local Flask server that
          decodes it and answers "ok", end to end.
Prints one JSON object. Run with Debian's interpreter (python3-blosc,
python3-flask, python3-requests): /usr/bin/python3 bench/dockernn_reference.py
"""
import json
import logging
import socket
import sys
import threading
import time

import blosc
import numpy as np
import requests
from flask import Flask, request
from werkzeug.serving import make_server

SIZES = [4 << 10, 64 << 10, 1 << 20, 16 << 20, 64 << 20]


def best_rate(fn, nbytes, min_time=1.0, repeats=3):
    """Bytes/s of the fastest of `repeats` runs of at least `min_time` s."""
    best = 0.0
    for _ in range(repeats):
        n, start = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_time:
                break
        best = max(best, n * nbytes / elapsed)
    return best


def codec(nbytes):
    a = np.random.default_rng(1).uniform(-1, 1, nbytes // 4).astype(np.float32)

    def round_trip():
        wire = blosc.pack_array(a).hex()
        b = blosc.unpack_array(bytes.fromhex(wire))
        assert b.shape == a.shape
    wire_len = len(blosc.pack_array(a).hex())
    return {"bytes": nbytes, "bytes_per_second": best_rate(round_trip, nbytes), "wire_bytes": wire_len}


def push_2mb():
    app = Flask("dockernn")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    @app.route("/push", methods=["POST"])
    def push():
        g = blosc.unpack_array(bytes.fromhex(request.form["grad"]))
        return "ok" if g.size else "empty"

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    grad = np.random.default_rng(2).normal(0, 0.01, (2 << 20) // 4).astype(np.float32)
    url = f"http://127.0.0.1:{port}/push"

    def call():
        # A fresh connection per call, as DockerNN's requests.post does.
        r = requests.post(url, data={"grad": blosc.pack_array(grad).hex()})
        assert r.text == "ok"
    call()
    best = None
    for _ in range(3):
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < 2.0:
            call()
            n += 1
        per_call = (time.perf_counter() - start) / n
        best = per_call if best is None else min(best, per_call)
    server.shutdown()
    return {"bytes": 2 << 20, "seconds_per_push": best}


def main():
    out = {"python": sys.version.split()[0], "blosc": blosc.__version__, "numpy": np.__version__,
           "codec": [codec(n) for n in SIZES], "push": push_2mb()}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
