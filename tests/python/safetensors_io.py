"""safetensors read/write with json + numpy only (the format is one JSON
header and raw little-endian bytes; the `safetensors` package is not needed)."""
import json
import struct

import numpy as np

_DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I64": np.int64, "I32": np.int32}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}


def load(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    body = data[8 + n:]
    tensors = {}
    for name, e in header.items():
        b, en = e["data_offsets"]
        tensors[name] = np.frombuffer(body[b:en], dtype=_DTYPES[e["dtype"]]).reshape(e["shape"]).copy()
    return tensors, meta


def save(path, tensors, meta=None):
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        t = np.asarray(tensors[name])
        # Integer arrays (num_batches_tracked) stay int64, as torch saves them.
        a = np.ascontiguousarray(t, dtype=np.int64 if t.dtype.kind in "iu" else np.float32)
        header[name] = {"dtype": _NAMES[a.dtype], "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        blobs.append(a.tobytes())
        offset += a.nbytes
    if meta:
        header["__metadata__"] = meta
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
