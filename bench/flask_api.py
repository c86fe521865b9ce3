#!/usr/bin/python3
"""The seeds' stack for the same two routes the dnnd controller serves, as a
fair baseline for bench/http_load.py: Flask (Debian's python3-flask) on its
own threaded server with HTTP/1.1 keep-alive, as the seeds ran it
(`app.run`), SQLite for state and numpy for the model.

  GET  /api/v1/jobs                 {"jobs": [...]}: every job's JSON object,
                                    read from SQLite rows, newest first (the
                                    controller's store is SQLite too)
  POST /api/v1/models/<name>/predict  JSON {"inputs": [sample, ...]}: each
                                    sample checked against the model's input
                                    size, standardised with the job's mean
                                    and std, the model's layers run with
                                    numpy, softmax; the controller's answer
                                    format

    /usr/bin/python3 bench/flask_api.py --db jobs.db --model model.safetensors \
        --model-name mlp --job 1 --port 5000

The model is loaded once at start (the controller caches it too). Layers:
flatten, linear, relu, sigmoid, tanh, softmax (what the MLP specs use).
"""
import argparse
import json
import os
import sqlite3
import sys
import threading
import tomllib

import numpy as np
from flask import Flask, jsonify, request
from werkzeug.serving import WSGIRequestHandler

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))
import safetensors_io  # noqa: E402


def load_model(path):
    tensors, meta = safetensors_io.load(path)
    spec = tomllib.loads(meta["dnnd.model_spec"])["model"]
    layers = []
    for i, layer in enumerate(spec["layers"]):
        kind = layer["type"]
        if kind == "linear":
            w, b = tensors[f"{i}.weight"], tensors.get(f"{i}.bias")
            layers.append(("linear", w.T.copy(), b))
        elif kind in ("flatten", "relu", "sigmoid", "tanh", "softmax"):
            layers.append((kind, None, None))
        else:
            raise SystemExit(f"flask_api.py: layer type {kind} is not implemented here")
    return spec["input"], layers


def forward(layers, x):
    for kind, w, b in layers:
        if kind == "flatten":
            x = x.reshape(x.shape[0], -1)
        elif kind == "linear":
            x = x @ w + (b if b is not None else 0)
        elif kind == "relu":
            x = np.maximum(x, 0)
        elif kind == "sigmoid":
            x = 1 / (1 + np.exp(-x))
        elif kind == "tanh":
            x = np.tanh(x)
        elif kind == "softmax":
            e = np.exp(x - x.max(axis=1, keepdims=True))
            x = e / e.sum(axis=1, keepdims=True)
    return x


def make_app(db_path, model_path, model_name, job, mean, std):
    app = Flask(__name__)
    input_shape, layers = load_model(model_path)
    per = int(np.prod(input_shape))
    softmax_last = layers[-1][0] == "softmax"
    local = threading.local()  # one SQLite connection per server thread

    def db():
        if not hasattr(local, "db"):
            local.db = sqlite3.connect(db_path)
        return local.db

    def error(status, code, message):
        return jsonify({"error": {"code": code, "message": message}}), status

    @app.get("/api/v1/jobs")
    def list_jobs():
        rows = db().execute("SELECT json FROM jobs ORDER BY id DESC").fetchall()
        return jsonify({"jobs": [json.loads(r[0]) for r in rows]})

    @app.post("/api/v1/models/<name>/predict")
    def predict(name):
        if name != model_name:
            return error(404, "not_found", f"model '{name}' not found")
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("inputs"), list) or not body["inputs"]:
            return error(400, "invalid_argument", 'the JSON body must be {"inputs": [sample, ...]}')
        try:
            x = np.asarray(body["inputs"], dtype=np.float32).reshape(len(body["inputs"]), -1)
        except ValueError as e:
            return error(400, "invalid_argument", f"inputs: {e}")
        if x.shape[1] != per:
            return error(400, "invalid_argument", f"inputs have {x.shape[1]} values; the model takes {per}")
        y = forward(layers, (x - mean) / std)  # standardised as the job trained
        if not softmax_last:
            e = np.exp(y - y.max(axis=1, keepdims=True))
            y = e / e.sum(axis=1, keepdims=True)
        predictions = [{"class": int(row.argmax()), "probabilities": [float(p) for p in row]} for row in y]
        return jsonify({"model": name, "job": job, "input": input_shape, "predictions": predictions})

    return app


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", required=True, help="SQLite file with a table jobs(id INTEGER, json TEXT)")
    ap.add_argument("--model", required=True, help="a dnnd model.safetensors")
    ap.add_argument("--model-name", default="mlp")
    ap.add_argument("--job", type=int, default=1)
    ap.add_argument("--port", type=int, default=5000)
    ap.add_argument("--mean", type=float, default=0.0, help="the job's normalize_mean")
    ap.add_argument("--std", type=float, default=1.0, help="the job's normalize_std")
    args = ap.parse_args()
    app = make_app(args.db, args.model, args.model_name, args.job, np.float32(args.mean), np.float32(args.std))
    WSGIRequestHandler.protocol_version = "HTTP/1.1"  # keep-alive, as wrk's connections expect
    app.run(host="127.0.0.1", port=args.port, threaded=True)


if __name__ == "__main__":
    main()
