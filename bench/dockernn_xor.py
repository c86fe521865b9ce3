#!/usr/bin/python3
"""DockerNN's XOR training loop, rebuilt from its README for a speed
reference on this machine (bench/layer_compare.py prints it next to dnnd).

DockerNN (../shared/seeds) runs every layer as its own Flask service; the
client loops over the layers, one HTTP request per layer per direction plus
one per parameterised layer to update, each a fresh `requests.post` carrying
the array as `blosc.pack_array(a).hex()` in a form field. The network is the
XOR model 3-50-100-1 (ReLU, ReLU, sigmoid), MSE, SGD lr 0.02, full batch of 8.
Here each layer is a Flask server in its own process on 127.0.0.1, and the
arithmetic is numpy's (per-output biases and exact gradients, like dnnd's,
not DockerNN's scalar bias). Prints one JSON object:
{"iterations_per_s": ..., "requests_per_iteration": 15, "bytes_per_iteration": ...}

    /usr/bin/python3 bench/dockernn_xor.py [--iterations 200]
"""
import argparse
import json
import logging
import multiprocessing
import socket
import time

import blosc
import numpy as np
import requests
from flask import Flask, request
from werkzeug.serving import make_server


def pack(a):
    return blosc.pack_array(np.ascontiguousarray(a)).hex()


def unpack(s):
    return blosc.unpack_array(bytes.fromhex(s))


def serve(kind, shape, port, ready):
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app = Flask(__name__)
    rng = np.random.default_rng(0)
    state = {}
    if kind == "linear":
        fan_in, out = shape
        bound = 1 / np.sqrt(fan_in)
        state["w"] = rng.uniform(-bound, bound, (fan_in, out)).astype(np.float32)
        state["b"] = rng.uniform(-bound, bound, out).astype(np.float32)

    @app.route("/forward", methods=["POST"])
    def forward():
        x = unpack(request.form["x"])
        state["x"] = x
        if kind == "linear":
            y = x @ state["w"] + state["b"]
        elif kind == "relu":
            y = np.maximum(x, 0)
        else:
            y = 1 / (1 + np.exp(-x))
        state["y"] = y
        return pack(y)

    @app.route("/backward", methods=["POST"])
    def backward():
        g = unpack(request.form["g"])
        if kind == "linear":
            state["gw"] = state["x"].T @ g
            state["gb"] = g.sum(0)
            dx = g @ state["w"].T
        elif kind == "relu":
            dx = g * (state["x"] > 0)
        else:
            dx = g * state["y"] * (1 - state["y"])
        return pack(dx.astype(np.float32))

    @app.route("/step", methods=["POST"])
    def step():
        lr = float(request.form["lr"])
        state["w"] -= lr * state["gw"]
        state["b"] -= lr * state["gb"]
        return "ok"

    server = make_server("127.0.0.1", port, app, threaded=False)
    ready.set()
    server.serve_forever()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=200)
    args = ap.parse_args()
    layers = [("linear", (3, 50)), ("relu", None), ("linear", (50, 100)), ("relu", None), ("linear", (100, 1)),
              ("sigmoid", None)]
    procs, urls = [], []
    for kind, shape in layers:
        port, ready = free_port(), multiprocessing.Event()
        p = multiprocessing.Process(target=serve, args=(kind, shape, port, ready), daemon=True)
        p.start()
        ready.wait(10)
        procs.append(p)
        urls.append(f"http://127.0.0.1:{port}")
    x = np.array([[a, b, 1] for a in (0, 1) for b in (0, 1)] * 2, dtype=np.float32)
    t = np.array([[a ^ b] for a in (0, 1) for b in (0, 1)] * 2, dtype=np.float32)
    sent = [0]

    def post(url, **form):
        sent[0] += sum(len(v) for v in form.values())
        r = requests.post(url, data=form)  # a fresh connection each time, as DockerNN does
        r.raise_for_status()
        return r.text

    def iteration():
        h = x
        for url in urls:
            h = unpack(post(url + "/forward", x=pack(h)))
        loss = float(((h - t) ** 2).mean())
        g = (2 * (h - t) / h.size).astype(np.float32)
        for url in reversed(urls):
            g = unpack(post(url + "/backward", g=pack(g)))
        for url, (kind, _) in zip(urls, layers):
            if kind == "linear":
                post(url + "/step", lr="0.02")
        return loss

    iteration()  # warm-up
    sent[0] = 0
    start = time.perf_counter()
    for _ in range(args.iterations):
        loss = iteration()
    secs = time.perf_counter() - start
    for p in procs:
        p.terminate()
    print(json.dumps({"iterations_per_s": args.iterations / secs, "requests_per_iteration": 15,
                      "bytes_per_iteration": sent[0] / args.iterations, "final_loss": loss}))


if __name__ == "__main__":
    main()
