#!/usr/bin/python3
"""clients/python (dnnd_client) against a real controller process.

A controller (configs/controller.toml: two pool workers as threads) starts on
an ephemeral loopback port with an API token, its data in a temp directory.
Through the client only: a dataset from numpy arrays (2000 training / 500
test images of Fashion-MNIST, or separable synthetic images when it is not
installed) and one uploaded as IDX files, a small MLP from a dict and one
from TOML text, a 2-worker job followed with progress, its history and log,
predictions with class names, the checkpoint loaded strictly into an
equivalent torch.nn.Sequential whose predictions equal dnnd's, a long job
cancelled while running, a wrong token (401 unauthorized), unknown names
(404 not_found).

Run by ctest with DNND_BINARY; by hand:
  DNND_BINARY=build/dnnd /usr/bin/python3 tests/python/test_client.py
"""
import gzip
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("DNND_SOURCE_DIR", os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, os.path.join(SRC, "clients", "python"))
from dnnd_client import Client, DnndError, JobFailed  # noqa: E402

try:
    import torch
except ImportError:
    torch = None

DNND = os.environ.get("DNND_BINARY", os.path.join(SRC, "build", "dnnd"))
FM = "/usr/share/datasets/fashion-mnist"
TOKEN = "client-test-token"
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
MLP = {"input": [1, 28, 28],
       "loss": "cross_entropy",
       "layers": [{"type": "flatten"}, {"type": "linear", "out": 32}, {"type": "relu"},
                  {"type": "linear", "out": 10}],
       "optimizer": {"type": "adam", "lr": 0.003}}
MLP_TOML = """
[model]
input = [1, 28, 28]
loss = "cross_entropy"
[[model.layers]]
type = "flatten"
[[model.layers]]
type = "linear"
out = 10
[model.optimizer]
type = "sgd"
lr = 0.1
"""


def read_idx(path, count):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    a = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)
    return a[:count].copy()


def fashion_mnist(train, test):
    """A slice of Fashion-MNIST, or synthetic images whose class is a bright
    band (separable) when the dataset is not installed."""
    if os.path.exists(os.path.join(FM, "train-images-idx3-ubyte.gz")):
        return (read_idx(os.path.join(FM, "train-images-idx3-ubyte.gz"), train),
                read_idx(os.path.join(FM, "train-labels-idx1-ubyte.gz"), train),
                read_idx(os.path.join(FM, "t10k-images-idx3-ubyte.gz"), test),
                read_idx(os.path.join(FM, "t10k-labels-idx1-ubyte.gz"), test))
    rng = np.random.default_rng(1)

    def make(n):
        y = rng.integers(0, 10, n).astype(np.uint8)
        x = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(y):
            x[i, 2 + 2 * c:4 + 2 * c, :] = 250
        return x, y

    return (*make(train), *make(test))


class ControllerProcess:
    """dnnd --role=controller on 127.0.0.1:<ephemeral>, two local workers."""

    def __init__(self, tmp):
        token_file = os.path.join(tmp, "token")
        with open(token_file, "w") as f:
            f.write(TOKEN + "\n")
        self.log_path = os.path.join(tmp, "controller.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [DNND, "--role=controller", "--config", os.path.join(SRC, "configs/controller.toml"),
             "--set", "http.listen=127.0.0.1:0", "--set", "controller.data_dir=" + os.path.join(tmp, "data"),
             "--set", "node.threads=2", "--set", "controller.local_workers=2",
             "--set", "http.token_file=" + token_file],
            stdout=self.log, stderr=subprocess.STDOUT, env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
        self.port = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and self.proc.poll() is None:
            m = re.search(r"control plane listening address=127\.0\.0\.1:(\d+)", self.output())
            if m:
                self.port = int(m.group(1))
                break
            time.sleep(0.05)
        if self.port is None:
            self.stop()
            raise RuntimeError("the controller did not start:\n" + self.output())
        self.url = "http://127.0.0.1:%d" % self.port

    def output(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self, grace=5):
        """SIGTERM, then SIGKILL after `grace` seconds; the exit status."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


class ClientTest(unittest.TestCase):
    """One controller for the whole flow; the tests run in name order and the
    later ones use what test_1_train made."""

    @classmethod
    def setUpClass(cls):
        cls.t0 = time.monotonic()
        cls.tmp = tempfile.mkdtemp(prefix="dnnd-client-test-")
        cls.controller = ControllerProcess(cls.tmp)
        cls.c = Client(cls.controller.url, token=TOKEN)
        cls.x_train, cls.y_train, cls.x_test, cls.y_test = fashion_mnist(2000, 500)
        cls.job = None
        print("setup: %.1f s" % (time.monotonic() - cls.t0))

    @classmethod
    def tearDownClass(cls):
        t = time.monotonic()
        # SIGTERM must end the controller, its pool workers' tasks included
        # (test_2_cancel's cancelled one too), within seconds; the kill after
        # 5 s is only a safety net, and fails the run.
        code = cls.controller.stop()
        print("controller stopped: exit %s after %.1f s" % (code, time.monotonic() - t))
        output = cls.controller.output() if code != 0 else ""
        shutil.rmtree(cls.tmp, ignore_errors=True)
        print("whole test: %.1f s" % (time.monotonic() - cls.t0))
        if code == -9:
            raise AssertionError("the controller ignored SIGTERM for 5 s and was killed:\n" + output)
        if code != 0:
            raise AssertionError("the controller exited with %s:\n%s" % (code, output))

    def setUp(self):
        self.started = time.monotonic()

    def tearDown(self):
        print("(%.1f s) " % (time.monotonic() - self.started), end="", flush=True)

    def test_0_datasets_and_models(self):
        c = self.c
        self.assertTrue(c.health())
        deadline = time.monotonic() + 20  # the two local workers register by heartbeating
        while c.nodes()["capacity"] < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(c.nodes()["capacity"], 2)
        d = c.datasets.from_arrays("fm-small", self.x_train, self.y_train, self.x_test, self.y_test,
                                   classes=CLASSES)
        self.assertEqual((d["train_samples"], d["test_samples"], d["num_classes"]), (2000, 500, 10))
        self.assertEqual(d["sample_shape"], [1, 28, 28])
        self.assertEqual(sum(d["class_histogram"]), 2000)
        # IDX files from paths, with no test part; then list, get, delete.
        idx_dir = os.path.join(self.tmp, "idx")
        os.makedirs(idx_dir)
        from dnnd_client import arrays
        files = {}
        for part, a in (("train-images", self.x_train[:100]), ("train-labels", self.y_train[:100])):
            files[part] = os.path.join(idx_dir, part)
            with open(files[part], "wb") as f:
                f.write(arrays.idx_bytes(a))
        d = c.datasets.upload("idx-small", files, format="idx")
        self.assertEqual((d["format"], d["train_samples"], d["test_samples"]), ("idx", 100, 0))
        self.assertEqual(sorted(x["name"] for x in c.datasets.list()), ["fm-small", "idx-small"])
        self.assertEqual(c.datasets.get("idx-small")["bytes"], (16 + 100 * 784) + (8 + 100))
        c.datasets.delete("idx-small")
        with self.assertRaises(DnndError) as e:
            c.datasets.get("idx-small")
        self.assertEqual((e.exception.status, e.exception.code), (404, "not_found"))
        # A registration error carries the server's message.
        with self.assertRaises(DnndError) as e:
            c.datasets.upload("bad", {"train-images": b"not an array", "train-labels": b"x"}, format="npy")
        self.assertEqual(e.exception.status, 400)
        self.assertIn("invalid dataset 'bad'", e.exception.message)

        m = c.models.create("mlp-small", MLP)
        self.assertEqual(m["parameters"], 784 * 32 + 32 + 32 * 10 + 10)
        self.assertEqual(m["input"], [1, 28, 28])
        spec_path = os.path.join(self.tmp, "linear.toml")
        with open(spec_path, "w") as f:
            f.write(MLP_TOML)
        self.assertEqual(c.models.create("linear-text", MLP_TOML)["parameters"], 7850)
        self.assertEqual(c.models.create("linear-file", spec_path)["parameters"], 7850)
        self.assertEqual({x["name"] for x in c.models.list()}, {"mlp-small", "linear-text", "linear-file"})
        self.assertIn("linear", c.models.get("mlp-small")["spec"])

    def test_1_train_predict_checkpoint(self):
        c = self.c
        job = c.jobs.submit("mlp-small", "fm-small", epochs=2, batch=32, lr=0.003, workers=2, mode="sync")
        type(self).job = job
        out = io.StringIO()
        t = time.monotonic()
        final = job.wait(progress=True, poll=0.2, timeout=120, out=out)
        print("train: %.1f s\n%s" % (time.monotonic() - t, out.getvalue()), end="")
        self.assertEqual(final["state"], "succeeded")
        lines = out.getvalue().splitlines()
        self.assertEqual(len(lines), 3, lines)
        self.assertTrue(lines[0].startswith("job %d epoch 1/2  train_loss " % job.id), lines[0])
        self.assertIn("test_accuracy", lines[1])
        self.assertIn("succeeded", lines[2])
        history = job.history()
        self.assertEqual([h["epoch"] for h in history], [1, 2])
        self.assertGreater(history[-1]["test_accuracy"], 0.6)
        self.assertEqual(job.status(), "succeeded")
        self.assertIn("queued: model mlp-small", job.logs())
        self.assertIn(job.id, [j["id"] for j in c.jobs.list()])

        # Predictions: class indices, names (the dataset's classes), probabilities;
        # 500 samples cross the 1 MiB body limit, so they go in several requests.
        p = c.predict("mlp-small", self.x_test)
        self.assertEqual(len(p), 500)
        self.assertEqual(p.job, job.id)
        self.assertEqual(p.probabilities.shape, (500, 10))
        np.testing.assert_allclose(p.probabilities.sum(axis=1), 1, atol=1e-4)
        np.testing.assert_array_equal(p.classes, p.probabilities.argmax(axis=1))
        self.assertEqual(p.names[:5], [CLASSES[k] for k in p.classes[:5]])
        accuracy = float(np.mean(p.classes == self.y_test))
        # The same weights on the same 500 samples (one flipped argmax allowed).
        self.assertAlmostEqual(accuracy, history[-1]["test_accuracy"], delta=1.01 / 500)
        one = c.predict("mlp-small", self.x_test[0], job=job)  # one sample, its own shape
        self.assertEqual(one.classes[0], p.classes[0])
        floats = c.predict("mlp-small", (self.x_test[:3] / 255.0).reshape(3, 784).tolist())
        np.testing.assert_array_equal(floats.classes, p.classes[:3])

        # The checkpoint, in torch: strict load, same predictions.
        tensors = c.checkpoint(job)
        self.assertEqual(sorted(tensors), ["1.bias", "1.weight", "3.bias", "3.weight"])
        self.assertEqual(tensors["1.weight"].shape, (32, 784))
        by_model = c.checkpoint("mlp-small")
        for k in tensors:
            np.testing.assert_array_equal(tensors[k], by_model[k])
        if torch is None:
            print("torch is not importable: skipping the torch comparison")
            return
        module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 32), torch.nn.ReLU(),
                                     torch.nn.Linear(32, 10))
        c.load_into(module, job)
        mean, std = job.normalization()
        x = (torch.from_numpy(self.x_test).float().unsqueeze(1) / 255 - mean) / std
        with torch.no_grad():
            probs = torch.softmax(module(x), dim=1).numpy()
        np.testing.assert_array_equal(probs.argmax(axis=1), p.classes)
        np.testing.assert_allclose(probs, p.probabilities, atol=1e-5)
        wrong = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 32))
        with self.assertRaises(RuntimeError):
            c.load_into(wrong, tensors=tensors)

    def test_1b_model_from_module(self):
        """A torch.nn.Module through ONNX: the model's jobs start from the
        module's weights, and the trained weights load back into it strictly."""
        if torch is None:
            self.skipTest("torch is not importable")
        c = self.c
        torch.manual_seed(3)
        module = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4),
                                     torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                                     torch.nn.Linear(4 * 14 * 14, 10))
        m = c.models.from_module("cnn-onnx", module, torch.zeros(2, 1, 28, 28))
        self.assertTrue(m["initial_weights"])
        self.assertEqual((m["input"], m["renamed"]), ([1, 28, 28], []))
        params = {k: v.detach().numpy() for k, v in module.named_parameters()}
        initial = c.models.initial("cnn-onnx")
        for k, v in params.items():
            np.testing.assert_array_equal(initial[k], v, err_msg=k)
        with self.assertRaises(DnndError) as e:
            c.models.initial("mlp-small")
        self.assertEqual(e.exception.status, 404)

        # At a learning rate of 1e-9 the trained parameters are the module's:
        # the job started from them, not from a seed.
        still = c.jobs.submit("cnn-onnx", "fm-small", epochs=1, batch=32, lr=1e-9, workers=2)
        self.assertEqual(still.wait(progress=False, poll=0.2, timeout=120)["state"], "succeeded")
        kept = c.checkpoint(still)
        for k, v in params.items():
            np.testing.assert_allclose(kept[k], v, rtol=0, atol=1e-6, err_msg=k)

        job = c.jobs.submit("cnn-onnx", "fm-small", epochs=2, batch=32, lr=0.01, workers=2)
        self.assertEqual(job.wait(progress=False, poll=0.2, timeout=120)["state"], "succeeded")
        self.assertGreater(job.history()[-1]["test_accuracy"], 0.6)
        c.load_into(module, job)  # strict: the names are the module's
        module.eval()
        mean, std = job.normalization()
        x = (torch.from_numpy(self.x_test).float().unsqueeze(1) / 255 - mean) / std
        with torch.no_grad():
            classes = module(x).argmax(1).numpy()
        p = c.predict("cnn-onnx", self.x_test, job=job)
        self.assertLessEqual(int(np.sum(classes != p.classes)), 1)

    def test_1c_warm_start_from_state_dict(self):
        """A spec model started from a module's state_dict (set once, names
        checked), fine-tuned with its first layer frozen: bit-identical after."""
        if torch is None:
            self.skipTest("torch is not importable")
        c = self.c
        torch.manual_seed(5)
        module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 32), torch.nn.ReLU(),
                                     torch.nn.Linear(32, 10))
        spec = {"input": [1, 28, 28],
                "layers": [{"type": "flatten"}, {"type": "linear", "out": 32}, {"type": "relu"},
                           {"type": "linear", "out": 10}],
                "optimizer": {"type": "sgd", "lr": 0.05}}
        start = {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}
        self.assertTrue(c.models.create("mlp-warm", spec, init_from=module.state_dict())["initial_weights"])
        for k, v in c.models.initial("mlp-warm").items():
            np.testing.assert_array_equal(v, start[k], err_msg=k)
        with self.assertRaises(DnndError) as e:  # a model's start is set once
            c.models.set_initial("mlp-warm", module.state_dict())
        self.assertEqual(e.exception.status, 409)
        c.models.create("mlp-warm-bad", spec)
        bad = dict(start)
        del bad["3.bias"]
        with self.assertRaises(DnndError) as e:
            c.models.set_initial("mlp-warm-bad", bad)
        self.assertEqual(e.exception.status, 400)
        self.assertIn("3.bias", e.exception.message)

        job = c.jobs.submit("mlp-warm", "fm-small", epochs=1, batch=32, workers=2, momentum=0.9,
                            weight_decay=1e-4, freeze=["1.*"])
        self.assertEqual(job.wait(progress=False, poll=0.2, timeout=120)["state"], "succeeded")
        tuned = c.checkpoint(job)
        for k in ("1.weight", "1.bias"):
            np.testing.assert_array_equal(tuned[k], start[k], err_msg=k)
        for k in ("3.weight", "3.bias"):
            self.assertFalse(np.array_equal(tuned[k], start[k]), k)

    def test_2_cancel(self):
        c = self.c
        job = c.jobs.submit("linear-text", "fm-small", epochs=500, batch=16, workers=1)
        deadline = time.monotonic() + 30
        while job.status() != "running" and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(job.status(), "running")
        self.assertTrue(job.cancel()["cancelling"])
        with self.assertRaises(JobFailed) as e:
            job.wait(progress=False, poll=0.1, timeout=30)
        self.assertEqual(e.exception.state, "cancelled")
        self.assertEqual(e.exception.code, "job_cancelled")
        with self.assertRaises(DnndError) as e:
            job.cancel()
        self.assertEqual((e.exception.status, e.exception.code), (409, "not_active"))
        job.delete()
        with self.assertRaises(DnndError) as e:
            job.status()
        self.assertEqual(e.exception.status, 404)

    def test_3_errors(self):
        for token in ("wrong", ""):
            bad = Client(self.controller.url, token=token)
            with self.assertRaises(DnndError) as e:
                bad.models.create("m", MLP)
            self.assertEqual((e.exception.status, e.exception.code), (401, "unauthorized"))
            with self.assertRaises(DnndError) as e:  # refused before the body is read
                bad.datasets.upload("big", {"train-images": b"\0" * (4 << 20)}, format="npy")
            self.assertEqual(e.exception.code, "unauthorized")
        self.assertEqual(len(bad.models.list()), 6)  # reads need no token
        with self.assertRaises(DnndError) as e:
            self.c.models.get("no-such-model")
        self.assertEqual((e.exception.status, e.exception.code), (404, "not_found"))
        self.assertIn("no-such-model", e.exception.message)
        with self.assertRaises(DnndError) as e:
            self.c.predict("no-such-model", self.x_test[:2])
        self.assertEqual(e.exception.status, 404)
        with self.assertRaises(DnndError) as e:
            self.c.jobs.submit("no-such-model", "fm-small")
        self.assertEqual(e.exception.status, 400)
        with self.assertRaises(DnndError) as e:
            self.c.predict("linear-file", self.x_test[:2])  # no job trained it
        self.assertEqual((e.exception.status, e.exception.code), (409, "not_trained"))
        with self.assertRaises(DnndError) as e:
            Client("127.0.0.1:1").models.list()
        self.assertEqual((e.exception.status, e.exception.code), (None, "unreachable"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
