#!/usr/bin/python3
"""HTTP load on the controller's API next to the seeds' stack, in one run:

  - dnnd: `dnnd --role=controller` (configs/controller.toml) with the real
    Fashion-MNIST uploaded, the MLP registered and a few small jobs trained
    (so its SQLite store holds jobs with history and the model has weights);
  - Flask: bench/flask_api.py serving the same two routes from the same data
    (the controller's job list copied into SQLite rows of JSON, the same
    trained weights run with numpy).

Both get `GET /api/v1/jobs` and `POST /api/v1/models/mlp/predict` (one real
test image as JSON {"inputs": [[784 floats]]}) from wrk with 64 concurrent
keep-alive connections; the runs alternate dnnd, Flask, dnnd, Flask so the
machine's load falls on both alike. Prints requests/s, p50/p99 latency and
errors per run, the ratios, and the issue's targets.

    /usr/bin/python3 bench/http_load.py [--build build] [--seconds 10] [--connections 64] [--route get|predict]

--route measures one route only (both by default); its target lines alone are printed.
"""
import argparse
import gzip
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

from controller_client import FM, HERE, ROOT, http, register_fashion_mnist_and_mlp, start_controller

JOBS = 4  # small jobs in the controller's store


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare_controller(base):
    """Fashion-MNIST, the MLP, JOBS small trained jobs; returns the job list."""
    register_fashion_mnist_and_mlp(base)
    for seed in range(JOBS):
        job = {"model": "mlp", "dataset": "fm", "epochs": 2, "batch": 64, "workers": 1, "limit_train": 6000,
               "limit_test": 1000, "seed": 42 + seed}
        http(base, "POST", "/api/v1/jobs", json.dumps(job).encode())
    for _ in range(1200):
        jobs = json.loads(http(base, "GET", "/api/v1/jobs"))["jobs"]
        if all(j["state"] not in ("queued", "running") for j in jobs):
            break
        time.sleep(0.25)
    bad = [j for j in jobs if j["state"] != "succeeded"]
    if bad:
        sys.exit(f"jobs did not succeed: {bad}")
    return jobs


def test_image_json():
    """The first Fashion-MNIST test image as {"inputs": [[784 floats]]}, scaled as training scales it."""
    raw = gzip.open(FM + "t10k-images-idx3-ubyte.gz").read()
    pixels = raw[16:16 + 784]
    return json.dumps({"inputs": [[p / 255.0 for p in pixels]]}).encode()


def wrk(url, seconds, connections, threads, body_file=None):
    env = dict(os.environ, WRK_BODY_FILE=body_file or "")
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s",
                          "-s", os.path.join(HERE, "http_load.lua"), url], capture_output=True, text=True, env=env)
    m = re.search(r"^WRK_JSON (.*)$", out.stdout, re.M)
    if not m:
        sys.exit("wrk failed:\n" + out.stdout + out.stderr)
    r = json.loads(m.group(1))
    r["rps"] = r["requests"] / r["seconds"]
    r["errors"] = sum(r[k] for k in ("connect", "read", "write", "status", "timeout"))
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2, help="alternating dnnd/Flask runs per route; the best is kept")
    ap.add_argument("--route", choices=["get", "predict"], help="measure only this route (default: both)")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="dnnd-http-load-")
    procs = []
    try:
        ctl, base = start_controller(args.build, work)
        procs.append(ctl)
        print(f"controller at {base}; preparing {JOBS} jobs ...", file=sys.stderr)
        jobs = prepare_controller(base)
        newest = max(j["id"] for j in jobs)
        db = os.path.join(work, "flask.db")
        with sqlite3.connect(db) as c:
            c.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY, json TEXT NOT NULL)")
            for j in jobs:
                c.execute("INSERT INTO jobs VALUES (?, ?)", (j["id"], json.dumps(j)))
        model = os.path.join(work, "model.safetensors")
        with open(model, "wb") as f:
            f.write(http(base, "GET", f"/api/v1/jobs/{newest}/checkpoint"))
        port = free_port()
        params = next(j for j in jobs if j["id"] == newest)["params"]
        flask = subprocess.Popen(["/usr/bin/python3", os.path.join(HERE, "flask_api.py"), "--db", db, "--model", model,
                                  "--job", str(newest), "--port", str(port),
                                  "--mean", str(params.get("normalize_mean", 0.0)),
                                  "--std", str(params.get("normalize_std", 1.0))],
                                 stdout=open(os.path.join(work, "flask.log"), "w"), stderr=subprocess.STDOUT)
        procs.append(flask)
        flask_base = f"http://127.0.0.1:{port}"
        body = test_image_json()
        body_file = os.path.join(work, "predict.json")
        open(body_file, "wb").write(body)
        for _ in range(200):
            try:
                http(flask_base, "GET", "/api/v1/jobs")
                break
            except OSError:
                time.sleep(0.05)
        # Same answers from both before measuring anything.
        a = json.loads(http(base, "POST", "/api/v1/models/mlp/predict", body))
        b = json.loads(http(flask_base, "POST", "/api/v1/models/mlp/predict", body))
        assert a["predictions"][0]["class"] == b["predictions"][0]["class"], (a, b)
        pa, pb = a["predictions"][0]["probabilities"], b["predictions"][0]["probabilities"]
        assert max(abs(x - y) for x, y in zip(pa, pb)) < 1e-4, (pa, pb)
        assert len(json.loads(http(flask_base, "GET", "/api/v1/jobs"))["jobs"]) == len(jobs)
        print(f"both answer class {a['predictions'][0]['class']} for test image 0; load: {os.getloadavg()}",
              file=sys.stderr)

        load_before = os.getloadavg()[0]
        get_route = ("GET /api/v1/jobs", "/api/v1/jobs", None)
        predict_route = ("POST /api/v1/models/mlp/predict", "/api/v1/models/mlp/predict", body_file)
        routes = {"get": [get_route], "predict": [predict_route]}.get(args.route, [get_route, predict_route])
        results = {}
        for label, path, bf in routes:
            for name, url in (("dnnd", base), ("Flask", flask_base)):
                wrk(url + path, 1, args.connections, args.wrk_threads, bf)  # warm-up
            for _ in range(args.rounds):
                for name, url in (("dnnd", base), ("Flask", flask_base)):
                    r = wrk(url + path, args.seconds, args.connections, args.wrk_threads, bf)
                    print(f"{label:34s} {name:6s} {r['rps']:9.0f} req/s  p50 {r['p50_ms']:.2f} ms  "
                          f"p99 {r['p99_ms']:.2f} ms  errors {r['errors']}", file=sys.stderr)
                    best = results.get((label, name))
                    if best is None or r["rps"] > best["rps"]:
                        r["all_errors"] = r["errors"] + (best["all_errors"] if best else 0)
                        results[(label, name)] = r
                    else:
                        best["all_errors"] += r["errors"]

        print(f"\n{args.connections} keep-alive connections, wrk -t{args.wrk_threads}, {args.seconds} s per run, "
              f"best of {args.rounds} alternating runs; {len(jobs)} jobs in the store; load average "
              f"{load_before:.2f} before the runs, {os.getloadavg()[0]:.2f} after ({os.cpu_count()} cores)\n")
        print("| route | server | requests/s | p50 | p99 | errors (all runs) | dnnd / Flask |")
        print("|---|---|---|---|---|---|---|")
        for label, _, _ in routes:
            d, f = results[(label, "dnnd")], results[(label, "Flask")]
            for name, r in (("dnnd", d), ("Flask", f)):
                ratio = f"**{d['rps'] / f['rps']:.1f}x**" if name == "dnnd" else ""
                print(f"| `{label}` | {name} | {r['rps']:,.0f} | {r['p50_ms']:.2f} ms | {r['p99_ms']:.2f} ms | "
                      f"{r['all_errors']} | {ratio} |")
        def ratio_met(route):
            return results[(route[0], "dnnd")]["rps"] >= 20 * results[(route[0], "Flask")]["rps"]
        targets = []
        if get_route in routes:
            get = results[(get_route[0], "dnnd")]
            targets += [f"GET >= 20x Flask: {'met' if ratio_met(get_route) else 'MISSED'}",
                        f"GET p99 <= 10 ms: {'met' if get['p99_ms'] <= 10 else 'MISSED'}"]
        if predict_route in routes:
            targets.append(f"predict >= 20x Flask: {'met' if ratio_met(predict_route) else 'MISSED'}")
        targets.append(f"zero errors (dnnd): "
                       f"{'met' if all(results[(l, 'dnnd')]['all_errors'] == 0 for l, _, _ in routes) else 'MISSED'}")
        print("\ntargets: " + ", ".join(targets))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
