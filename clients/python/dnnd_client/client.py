"""A client for the dnnd controller's REST API (/api/v1; docs/controller.md).

Standard library only (http.client, json); numpy is imported where arrays are
made or returned (datasets.from_arrays, predict, checkpoint) and torch only by
load_into and models.from_module.
"""
import http.client
import io
import json
import os
import sys
import time
import urllib.parse

from . import arrays as _arrays
from . import safetensors as _safetensors

__all__ = ["Client", "DnndError", "JobFailed", "Job", "Predictions"]

_FINAL = ("succeeded", "failed", "cancelled")


class DnndError(Exception):
    """An answer of the controller that is not 2xx, or no answer at all.

    status: the HTTP status (None when the controller was unreachable or the
    error is not an HTTP one); code and message: the server's
    {"error": {"code", "message"}} ("unreachable", "http_<status>" when the
    body was not that JSON).
    """

    def __init__(self, status, code, message, method=None, path=None):
        self.status, self.code, self.message = status, code, message
        self.method, self.path = method, path
        where = " (%s %s)" % (method, path) if method else ""
        super().__init__("%s %s: %s%s" % (status if status is not None else "-", code, message, where))


class JobFailed(DnndError):
    """Job.wait() saw the job end failed or cancelled; .job is its record,
    .state its state, .message the server's reason."""

    def __init__(self, job):
        self.job = job
        self.state = job.get("state")
        reason = job.get("reason") or ("cancelled" if self.state == "cancelled" else "no reason given")
        super().__init__(None, "job_" + str(self.state), "job %s %s: %s" % (job.get("id"), self.state, reason))


def _quote(name):
    return urllib.parse.quote(str(name), safe="")


def _read_spec(spec):
    """models.create's spec as the JSON value the API takes (TOML text or an object)."""
    if isinstance(spec, dict):
        return spec
    if isinstance(spec, os.PathLike) or (isinstance(spec, str) and "\n" not in spec and "=" not in spec
                                         and os.path.isfile(spec)):
        path = os.fspath(spec)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        return json.loads(text) if path.endswith(".json") else text
    if isinstance(spec, str):
        if "\n" not in spec and spec.endswith((".toml", ".json")):
            raise FileNotFoundError("model spec file %r does not exist" % spec)
        return spec
    raise TypeError("spec must be TOML text, a path to a .toml/.json file, or a dict; got %s" % type(spec).__name__)


class Client:
    """The controller at `url` ("http://host:port", "host:port"; default env
    DNND_CONTROLLER or 127.0.0.1:8080), with its API token (default env
    DNND_TOKEN; needed for every POST, PUT and DELETE when the controller has
    one; `dnnd api-token --config <file>` prints it).

        c = Client("http://127.0.0.1:8080", token="...")
        c.datasets.from_arrays("fm", x_train, y_train, x_test, y_test)
        c.models.create("mlp", "configs/models/mlp.toml")
        job = c.jobs.submit("mlp", "fm", epochs=5)
        job.wait()
        c.predict("mlp", x_test[:10]).names
    """

    def __init__(self, url=None, token=None, timeout=300.0):
        url = url or os.environ.get("DNND_CONTROLLER") or "127.0.0.1:8080"
        if "://" not in url:
            url = "http://" + url
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError("controller url %r: expected http://host:port" % url)
        self.url = "%s://%s" % (u.scheme, u.netloc)
        self._scheme, self._host = u.scheme, u.hostname
        self._port = u.port or (443 if u.scheme == "https" else 80)
        self._prefix = u.path.rstrip("/")
        self.token = token if token is not None else os.environ.get("DNND_TOKEN")
        self.timeout = timeout
        self.datasets = Datasets(self)
        self.models = Models(self)
        self.jobs = Jobs(self)
        self._classes = {}      # dataset name -> class names given to upload/from_arrays
        self._job_dataset = {}  # job id -> its dataset (predict's class names)

    def __repr__(self):
        return "Client(%r%s)" % (self.url, ", token=..." if self.token else "")

    # -- HTTP ---------------------------------------------------------------

    def _connection(self):
        cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
        return cls(self._host, self._port, timeout=self.timeout)

    def request(self, method, path, body=None, content_type=None, query=None):
        """One request; returns (HTTPResponse with its headers, body bytes).

        body: bytes, a str, a JSON-able dict/list (sent as application/json)
        or a binary file object (streamed, its size from fstat/seek). Raises
        DnndError for any status >= 400 and when the controller is unreachable.
        """
        url = self._prefix + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        headers = {"Accept": "application/json", "User-Agent": "dnnd-client/0.1"}
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode("utf-8")
            content_type = content_type or "application/json"
        elif isinstance(body, str):
            body = body.encode("utf-8")
        if body is not None:
            headers["Content-Type"] = content_type or "application/octet-stream"
            if isinstance(body, (bytes, bytearray, memoryview)):
                headers["Content-Length"] = str(len(body))
            else:  # a file: its remaining size
                pos = body.tell()
                size = body.seek(0, io.SEEK_END) - pos
                body.seek(pos)
                headers["Content-Length"] = str(size)
        elif method in ("POST", "PUT", "PATCH"):
            headers["Content-Length"] = "0"
        conn = self._connection()
        try:
            try:
                conn.request(method, url, body=body, headers=headers)
            except (BrokenPipeError, ConnectionResetError):
                # The server may answer before reading the body (401, 413)
                # and close: its answer is still there to read.
                pass
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as e:
            raise DnndError(None, "unreachable", "%s: %s" % (self.url, e), method, path) from e
        finally:
            conn.close()
        if resp.status >= 400:
            code, message = "http_%d" % resp.status, data.decode("utf-8", "replace").strip() or resp.reason
            try:
                err = json.loads(data)["error"]
                code, message = err.get("code", code), err.get("message", message)
            except (ValueError, KeyError, TypeError):
                pass
            raise DnndError(resp.status, code, message, method, path)
        return resp, data

    def _json(self, method, path, body=None, **kw):
        _, data = self.request(method, path, body=body, **kw)
        return json.loads(data) if data else None

    # -- everything else ----------------------------------------------------

    def health(self):
        """True when /healthz answers 200."""
        try:
            self.request("GET", "/healthz")
            return True
        except DnndError:
            return False

    def nodes(self):
        """The worker pool: GET /api/v1/nodes ({"nodes": [...], "capacity", "idle"})."""
        return self._json("GET", "/api/v1/nodes")

    def predict(self, model, inputs, job=None, classes=None, invert=None, max_body_bytes=1 << 20):
        """Classify samples with the model's newest succeeded job (or `job`).

        inputs: a numpy array (or nested list) of samples, each the model's
        input flat or shaped ([n, 28, 28] or [n, 784] for input [1, 28, 28];
        one sample of exactly the input's shape is a batch of one). uint8
        arrays are pixels and are divided by 255, as training scales them;
        other values are sent as they are (the dataset's scale). The
        controller standardises them with the job's normalisation itself.
        Or PNG/JPEG bytes, or the path of such a file: one image
        (`invert`: "auto", "true", "false").
        Large batches are split so each request stays under max_body_bytes
        (the controller's http.max_body_bytes, 1 MiB by default).

        Returns Predictions: .classes (class indices), .names (class names:
        `classes` here, else the ones the controller answers, the job's
        dataset's), .probabilities ([n, k]), or .outputs for a model
        without a cross-entropy loss.
        """
        path = "/api/v1/models/%s/predict" % _quote(model)
        query = {}
        if job is not None:
            query["job"] = str(job.id if isinstance(job, Job) else job)
        answers = []
        image = _image_bytes(inputs)
        if image is not None:
            if invert is not None:
                query["invert"] = invert if isinstance(invert, str) else ("true" if invert else "false")
            ctype = "image/png" if image[:4] == b"\x89PNG" else "image/jpeg"
            answers.append(self._json("POST", path, body=image, content_type=ctype, query=query))
        else:
            rows = self._samples(model, inputs)
            if not rows:
                raise ValueError("predict: no samples")
            batch, size = [], 16
            for r in rows:
                if batch and size + len(r) + 1 > max_body_bytes:
                    answers.append(self._predict_rows(path, batch, query))
                    batch, size = [], 16
                batch.append(r)
                size += len(r) + 1
            answers.append(self._predict_rows(path, batch, query))
        preds = [p for a in answers for p in a["predictions"]]
        job_id = answers[0]["job"]
        names = classes
        if names is None:
            names = answers[0].get("classes")  # the model file's (its dataset's) class names
        if names is None:
            names = self._classes_of_job(job_id)
        return Predictions(answers[0]["model"], job_id, answers[0].get("input"), preds, names)

    def _predict_rows(self, path, rows, query):
        body = ('{"inputs":[' + ",".join(rows) + "]}").encode("ascii")
        return self._json("POST", path, body=body, content_type="application/json", query=query)

    def _samples(self, model, inputs):
        """Each sample as the JSON text of its flat values."""
        try:
            import numpy as np
        except ImportError:
            np = None
        if np is not None:
            a = np.asarray(inputs)
            if a.dtype == np.uint8:
                a = a.astype(np.float32) / np.float32(255)
            elif a.dtype.kind not in "fiub":
                raise TypeError("predict: inputs of dtype %s" % a.dtype)
            a = a.astype(np.float32, copy=False)
            shape = self._input_shape(model)
            per = 1
            for d in shape or ():
                per *= d
            if shape and a.size == per and a.ndim <= len(shape):
                a = a.reshape(1, -1)
            else:
                a = a.reshape(a.shape[0] if a.ndim else 1, -1)
            # %.9g: every float32 exactly, in fewer bytes than repr(float).
            return ["[" + ",".join(["%.9g" % v for v in row]) + "]" for row in a.tolist()]

        def flat(x, out):
            if isinstance(x, (list, tuple)):
                for v in x:
                    flat(v, out)
            else:
                out.append(float(x))
            return out

        return [json.dumps(flat(s, [])) for s in inputs]

    def _input_shape(self, model):
        try:
            return self.models.get(model).get("input")
        except DnndError:
            return None  # predict's own request gives the error

    def _classes_of_job(self, job_id):
        if not self._classes:
            return None
        if job_id not in self._job_dataset:
            try:
                self._job_dataset[job_id] = self._json("GET", "/api/v1/jobs/%d" % job_id)["dataset"]
            except DnndError:
                return None
        return self._classes.get(self._job_dataset[job_id])

    def checkpoint(self, model_or_job, metadata=False):
        """Trained weights as {name: numpy array}: a Job or job id (its
        checkpoint), or a model name (its newest succeeded job's).
        metadata=True returns (tensors, safetensors metadata) instead."""
        if isinstance(model_or_job, Job):
            path = "/api/v1/jobs/%d/checkpoint" % model_or_job.id
        elif isinstance(model_or_job, int):
            path = "/api/v1/jobs/%d/checkpoint" % model_or_job
        else:
            path = "/api/v1/models/%s/checkpoint" % _quote(model_or_job)
        _, data = self.request("GET", path)
        tensors, meta = _safetensors.loads(data)
        return (tensors, meta) if metadata else tensors

    def load_into(self, module, model_or_job=None, tensors=None):
        """Load trained weights into a torch.nn.Module with
        module.load_state_dict(..., strict=True) (every name and shape must
        match: a list-form spec's layers are nn.Sequential's indices, "1.weight").
        Either model_or_job (as in checkpoint()) or tensors (its result).
        Returns the module. Needs torch."""
        import torch

        if tensors is None:
            if model_or_job is None:
                raise ValueError("load_into: give model_or_job or tensors")
            tensors = self.checkpoint(model_or_job)
        state = {k: torch.from_numpy(v) for k, v in tensors.items()}
        module.load_state_dict(state, strict=True)
        return module


def _image_bytes(inputs):
    if isinstance(inputs, (bytes, bytearray)):
        data = bytes(inputs)
    elif isinstance(inputs, (str, os.PathLike)) and os.fspath(inputs).lower().endswith((".png", ".jpg", ".jpeg")):
        with open(inputs, "rb") as f:
            data = f.read()
    else:
        return None
    if not (data[:4] == b"\x89PNG" or data[:2] == b"\xff\xd8"):
        raise ValueError("predict: bytes that are neither PNG nor JPEG")
    return data


class Predictions:
    """The answer of predict(): one entry per sample.

    classes: class indices (numpy int64 array, or a list without numpy);
    names: their class names, or None; probabilities: [n, k] float32 (or
    lists); outputs: [n, k] raw outputs of a model without cross-entropy
    (else None); inverted: per image, whether the controller inverted it;
    job: the job whose weights answered; raw: the server's prediction objects.
    """

    def __init__(self, model, job, input_shape, raw, names):
        self.model, self.job, self.input_shape, self.raw = model, job, input_shape, raw
        try:
            import numpy as np
        except ImportError:
            np = None
        cls = [p["class"] for p in raw if "class" in p]
        probs = [p["probabilities"] for p in raw if "probabilities" in p]
        outs = [p["outputs"] for p in raw if "outputs" in p]
        if np is not None:
            self.classes = np.asarray(cls, dtype=np.int64) if cls else None
            self.probabilities = np.asarray(probs, dtype=np.float32) if probs else None
            self.outputs = np.asarray(outs, dtype=np.float32) if outs else None
        else:
            self.classes, self.probabilities, self.outputs = cls or None, probs or None, outs or None
        self.names = [names[c] if 0 <= c < len(names) else str(c) for c in cls] if names and cls else None
        self.inverted = [p.get("inverted") for p in raw] if any("inverted" in p for p in raw) else None

    def __len__(self):
        return len(self.raw)

    def __repr__(self):
        shown = self.names if self.names is not None else self.classes
        if shown is not None:
            shown = list(shown[:8]) + (["..."] if len(self.raw) > 8 else [])
        return "Predictions(model=%r, job=%s, n=%d, classes=%s)" % (self.model, self.job, len(self.raw), shown)


class Datasets:
    """/api/v1/datasets: upload (files, then registration), list, get, delete."""

    _PARTS = {"idx": ("train-images", "train-labels", "test-images", "test-labels"),
              "npy": ("train-images", "train-labels", "test-images", "test-labels"),
              "npz": ("train", "test"), "csv": ("train", "test"), "cifar10": ("train", "test")}

    def __init__(self, client):
        self._c = client

    def upload(self, name, files, format="idx", classes=None):
        """Upload a dataset's files and register it; returns its record
        (sizes, sample_shape, num_classes, class_histogram).

        files: {part: path, bytes or binary file}; parts are train-images,
        train-labels, test-images, test-labels (idx, npy) or train, test
        (npz, csv, cifar10); the test parts are optional. Files are
        streamed, not read into memory. classes: class names by index (one
        per class, else the controller refuses the dataset), stored by the
        controller with the dataset and written into its jobs' models, so
        predict() names the classes.
        """
        if format not in self._PARTS:
            raise ValueError("format %r: expected one of %s" % (format, ", ".join(self._PARTS)))
        for part in files:
            if part not in self._PARTS[format]:
                raise ValueError("format %s has no file part %r (parts: %s)" % (format, part, ", ".join(self._PARTS[format])))
        for part, src in files.items():
            path = "/api/v1/datasets/%s/files/%s" % (_quote(name), _quote(part))
            if isinstance(src, (str, os.PathLike)):
                with open(src, "rb") as f:
                    self._c.request("PUT", path, body=f)
            else:
                self._c.request("PUT", path, body=src)
        body = {"name": name, "format": format}
        if classes is not None:
            # The controller stores them with the dataset and writes them into
            # its jobs' models; predictions then answer them.
            body["classes"] = [str(c) for c in classes]
        record = self._c._json("POST", "/api/v1/datasets", body=body)
        if classes is not None:
            self._c._classes[name] = [str(c) for c in classes]
        return record

    def from_arrays(self, name, x_train, y_train, x_test=None, y_test=None, classes=None, format="npy"):
        """Register numpy arrays as a dataset: samples [n, ...] (uint8
        pixels, scaled by 1/255 in training and in predict(), or any numbers,
        sent as float32; [n, h, w] is read as [n, 1, h, w]) and labels [n]
        (class indices 0..k-1). Written as NPY (or format="idx") in memory and
        uploaded. Needs numpy."""
        if format not in ("npy", "idx"):
            raise ValueError("from_arrays writes format 'npy' or 'idx', not %r" % format)
        if (x_test is None) != (y_test is None):
            raise ValueError("give both x_test and y_test, or neither")
        encode = _arrays.npy_bytes if format == "npy" else _arrays.idx_bytes
        files = {}
        for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
            if x is None:
                continue
            xs = _arrays.samples(x, "x_" + split)
            ys = _arrays.labels(y, xs.shape[0], "y_" + split)
            files[split + "-images"] = encode(xs)
            files[split + "-labels"] = encode(ys)
        return self.upload(name, files, format=format, classes=classes)

    def list(self):
        return self._c._json("GET", "/api/v1/datasets")["datasets"]

    def get(self, name):
        return self._c._json("GET", "/api/v1/datasets/%s" % _quote(name))

    def delete(self, name):
        self._c._classes.pop(name, None)
        return self._c._json("DELETE", "/api/v1/datasets/%s" % _quote(name))


class Models:
    """/api/v1/models: create from a spec, list, get; from_module (ONNX)."""

    def __init__(self, client):
        self._c = client

    def create(self, name, spec, init_from=None):
        """Create a model; spec is the engine's model spec as TOML text, a
        path to a .toml (or .json) file, or a dict mirroring the TOML keys
        ({"input": [1, 28, 28], "layers": [...], "optimizer": {...}} or
        {"model": {...}}). init_from: weights its jobs start from instead of
        the seed (see set_initial). Returns its record (parameters, input,
        spec, initial_weights)."""
        record = self._c._json("POST", "/api/v1/models", body={"name": name, "spec": _read_spec(spec)})
        if init_from is not None:
            record = self.set_initial(name, init_from)
        return record

    def set_initial(self, name, weights):
        """Give a model the weights its jobs start from: a state_dict
        ({name: torch tensor or numpy array}), a path to a .safetensors file,
        or its bytes. Names and shapes must match the spec exactly (a list
        spec's layers are nn.Sequential's indices: "1.weight"); the 400 lists
        every difference. Set once per model (409 after). Fine-tune part of
        it with jobs.submit(..., freeze=["0.*"])."""
        if isinstance(weights, (bytes, bytearray)):
            data = bytes(weights)
        elif isinstance(weights, (str, os.PathLike)):
            with open(weights, "rb") as f:
                data = f.read()
        else:
            data = _safetensors.dumps(weights)
        return self._c._json("PUT", "/api/v1/models/%s/initial" % _quote(name), body=data,
                             content_type="application/octet-stream")

    def list(self):
        return self._c._json("GET", "/api/v1/models")["models"]

    def get(self, name):
        return self._c._json("GET", "/api/v1/models/%s" % _quote(name))

    def initial(self, name):
        """The weights a model's jobs start from (an ONNX model's, or
        set_initial's), as {name: numpy array}; DnndError 404 for a model
        that starts from its seed."""
        _, data = self._c.request("GET", "/api/v1/models/%s/initial" % _quote(name))
        return _safetensors.loads(data)[0]

    def from_module(self, name, module, example_input, opset_version=None, **export_kwargs):
        """Create a model from a torch.nn.Module through ONNX.

        The module is exported with torch.onnx.export(module, example_input,
        ..., training=torch.onnx.TrainingMode.TRAINING,
        do_constant_folding=False) into memory (so BatchNorm and Dropout
        stay trainable operators and no parameter is folded away) and the
        bytes are uploaded as application/octet-stream. export_kwargs go to
        torch.onnx.export (input_names, dynamic_axes, ...). Returns the
        server's answer: the model's record, with "initial_weights": true
        (its jobs start from the module's weights) and "renamed" (weights
        whose names could not follow the module's state_dict).
        """
        import torch

        buf = io.BytesIO()
        args = example_input if isinstance(example_input, tuple) else (example_input,)
        was_training = module.training
        kwargs = dict(export_kwargs)
        if opset_version is not None:
            kwargs["opset_version"] = opset_version
        try:
            torch.onnx.export(module, args, buf, training=torch.onnx.TrainingMode.TRAINING,
                              do_constant_folding=False, **kwargs)
        finally:
            module.train(was_training)
        return self._c._json("PUT", "/api/v1/models/%s/onnx" % _quote(name), body=buf.getvalue(),
                             content_type="application/octet-stream")


class Jobs:
    """/api/v1/jobs: submit, get, list."""

    def __init__(self, client):
        self._c = client

    def submit(self, model, dataset, epochs=None, batch=None, lr=None, workers=None, mode=None, **fields):
        """Submit a training job; returns its Job. Fields left None take the
        controller's defaults (epochs 5, batch 64 per worker, the spec's lr
        and optimizer, workers 2, mode sync); any other job field of
        docs/controller.md (seed, limit_train, goal_accuracy, normalize,
        elastic, momentum, weight_decay, freeze=["0.*"], ...) goes in
        **fields."""
        body = {"model": model, "dataset": dataset}
        for k, v in dict(epochs=epochs, batch=batch, lr=lr, workers=workers, mode=mode, **fields).items():
            if v is not None:
                body[k] = v
        record = self._c._json("POST", "/api/v1/jobs", body=body)
        self._c._job_dataset[record["id"]] = record.get("dataset")
        return Job(self._c, record["id"], record)

    def get(self, job_id):
        return Job(self._c, int(job_id))

    def list(self):
        """Every job's record (list of dicts)."""
        return self._c._json("GET", "/api/v1/jobs")["jobs"]


class Job:
    """A job of the controller. .id; .info() its record; .status() its state."""

    def __init__(self, client, job_id, record=None):
        self._c, self.id, self._record = client, int(job_id), record

    def __repr__(self):
        state = self._record.get("state") if self._record else "?"
        return "Job(id=%d, state=%r)" % (self.id, state)

    def info(self):
        """GET /api/v1/jobs/{id}: state, reason, epoch, step, progress,
        eta_seconds, params, history, ..."""
        self._record = self._c._json("GET", "/api/v1/jobs/%d" % self.id)
        return self._record

    def status(self):
        """The job's state: queued, running, succeeded, failed or cancelled."""
        return self.info()["state"]

    def history(self):
        """Per-epoch records: epoch, train_loss, test_loss, test_accuracy
        (when evaluated), seconds, samples_per_s, parallelism."""
        return self.info()["history"]

    def normalization(self):
        """(mean, std) the job standardised its inputs with (after uint8
        pixels are scaled to [0, 1]), or None when it was submitted with
        normalize=False. Apply it to feed a torch copy of the model."""
        p = (self._record or self.info())["params"]
        if "normalize_mean" not in p:
            return None
        return float(p["normalize_mean"]), float(p["normalize_std"])

    def cancel(self):
        """Cancel a queued or running job (409 not_active when it has ended)."""
        return self._c._json("POST", "/api/v1/jobs/%d/cancel" % self.id)

    def delete(self):
        """Delete a finished job (409 job_active while queued or running)."""
        return self._c._json("DELETE", "/api/v1/jobs/%d" % self.id)

    def logs(self, offset=0):
        """The job's log from byte `offset` to its current end, as text."""
        chunks = []
        while True:
            resp, data = self._c.request("GET", "/api/v1/jobs/%d/logs" % self.id, query={"offset": offset})
            if not data:
                break
            chunks.append(data)
            offset = int(resp.getheader("X-Log-Offset", offset + len(data)))
        return b"".join(chunks).decode("utf-8", "replace")

    def checkpoint(self, metadata=False):
        return self._c.checkpoint(self, metadata=metadata)

    def wait(self, progress=True, poll=0.5, timeout=None, out=None):
        """Follow the job until it ends; returns its final record.

        progress: print one line per finished epoch (loss, accuracy) and one
        at the end, to `out` (default sys.stdout). Raises JobFailed (a
        DnndError) with the server's reason when the job fails or is
        cancelled, TimeoutError after `timeout` seconds.
        """
        out = out or sys.stdout
        start = time.monotonic()
        shown = set()
        epochs = None
        while True:
            job = self.info()
            epochs = epochs or job.get("params", {}).get("epochs")
            if progress:
                for h in job.get("history", []):
                    if h["epoch"] not in shown:
                        shown.add(h["epoch"])
                        print(_epoch_line(self.id, h, epochs), file=out, flush=True)
            state = job["state"]
            if state in _FINAL:
                if progress:
                    took = time.monotonic() - start
                    last = [h for h in job.get("history", []) if "test_accuracy" in h]
                    acc = ", test accuracy %.2f %%" % (100 * last[-1]["test_accuracy"]) if last else ""
                    why = ": " + job["reason"] if job.get("reason") and state != "succeeded" else ""
                    print("job %d %s after %.1f s%s%s" % (self.id, state, took, acc, why), file=out, flush=True)
                if state != "succeeded":
                    raise JobFailed(job)
                return job
            if timeout is not None and time.monotonic() - start > timeout:
                raise TimeoutError("job %d still %s after %.0f s" % (self.id, state, timeout))
            time.sleep(poll)


def _epoch_line(job_id, h, epochs):
    s = "job %d epoch %d%s  train_loss %.4f" % (job_id, h["epoch"], "/%d" % epochs if epochs else "", h["train_loss"])
    if "test_loss" in h:
        s += "  test_loss %.4f  test_accuracy %.2f %%" % (h["test_loss"], 100 * h["test_accuracy"])
    s += "  %.2f s" % h.get("seconds", 0)
    if h.get("samples_per_s"):
        s += "  %.0f samples/s" % h["samples_per_s"]
    if h.get("parallelism"):
        s += "  %d workers" % h["parallelism"]
    return s
