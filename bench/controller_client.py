"""What the controller benchmarks share: start a `dnnd --role=controller`
(configs/controller.toml, any free port, its data in a temporary directory),
call its API, and register the real Fashion-MNIST and the MLP in it.

    from controller_client import FM, ROOT, http, register_fashion_mnist_and_mlp, start_controller
    proc, base = start_controller(build_dir, work_dir)   # base = "http://127.0.0.1:<port>"
"""
import json
import os
import re
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FM = "/usr/share/datasets/fashion-mnist/"


def http(base, method, path, body=None, content_type="application/json"):
    req = urllib.request.Request(base + path, data=body, method=method)
    if body is not None:
        req.add_header("Content-Type", content_type)
    with urllib.request.urlopen(req, timeout=300) as r:
        return r.read()


def wait_for_port(log_path, proc, marker="control plane listening address=127.0.0.1:"):
    for _ in range(300):
        text = open(log_path).read()
        if marker in text:
            return int(re.search(re.escape(marker) + r"(\d+)", text).group(1))
        if proc.poll() is not None:
            sys.exit("dnnd exited:\n" + text[-3000:])
        time.sleep(0.05)
    sys.exit("dnnd did not start:\n" + open(log_path).read()[-3000:])


def start_controller(build, work):
    """The controller process and its API's base URL; its log is <work>/controller.log."""
    log = os.path.join(work, "controller.log")
    proc = subprocess.Popen([os.path.join(build, "dnnd"), "--role=controller", "--config",
                             os.path.join(ROOT, "configs/controller.toml"), "--set", "http.listen=127.0.0.1:0",
                             "--set", f"controller.data_dir={work}/data"],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, cwd=ROOT)
    return proc, f"http://127.0.0.1:{wait_for_port(log, proc)}"


def register_fashion_mnist_and_mlp(base):
    """Dataset "fm" (the four IDX files) and model "mlp" (configs/models/mlp.toml)."""
    for part, name in [("train-images", "train-images-idx3-ubyte.gz"), ("train-labels", "train-labels-idx1-ubyte.gz"),
                       ("test-images", "t10k-images-idx3-ubyte.gz"), ("test-labels", "t10k-labels-idx1-ubyte.gz")]:
        http(base, "PUT", f"/api/v1/datasets/fm/files/{part}", open(FM + name, "rb").read(), "application/octet-stream")
    http(base, "POST", "/api/v1/datasets", json.dumps({"name": "fm", "format": "idx"}).encode())
    spec = open(os.path.join(ROOT, "configs/models/mlp.toml")).read()
    http(base, "POST", "/api/v1/models", json.dumps({"name": "mlp", "spec": spec}).encode())
