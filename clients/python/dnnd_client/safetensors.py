"""safetensors reading with struct + json (+ numpy for the arrays).

The format: 8 bytes little-endian header length N, N bytes of JSON
({name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__":
{...}}), then the raw little-endian bytes of every tensor. The `safetensors`
package is not needed.
"""
import json
import struct

# safetensors dtype -> numpy dtype string (little-endian).
_DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2",
    "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
    "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1",
    "BOOL": "?",
}


def parse_header(data):
    """(header dict without __metadata__, metadata dict, offset of the body)."""
    if len(data) < 8:
        raise ValueError("not a safetensors file: %d bytes" % len(data))
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise ValueError("safetensors header of %d bytes in a %d-byte file" % (n, len(data)))
    header = json.loads(data[8:8 + n].decode("utf-8"))
    if not isinstance(header, dict):
        raise ValueError("safetensors header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    return header, meta, 8 + n


def loads(data):
    """bytes of a safetensors file -> ({name: numpy array}, metadata dict).

    Every tensor is a copy (writable, native byte order); int64 tensors such
    as BatchNorm's num_batches_tracked stay int64, scalars have shape ().
    """
    import numpy as np  # needed for the arrays themselves

    header, meta, base = parse_header(data)
    body_len = len(data) - base
    tensors = {}
    for name, entry in header.items():
        dtype = entry.get("dtype")
        if dtype not in _DTYPES:
            raise ValueError("tensor %r: unsupported safetensors dtype %r" % (name, dtype))
        begin, end = entry["data_offsets"]
        shape = [int(d) for d in entry["shape"]]
        dt = np.dtype(_DTYPES[dtype])
        count = 1
        for d in shape:
            count *= d
        if not (0 <= begin <= end <= body_len) or end - begin != count * dt.itemsize:
            raise ValueError("tensor %r: data_offsets %r do not hold %s %r" % (name, [begin, end], dtype, shape))
        a = np.frombuffer(data, dtype=dt, count=count, offset=base + begin)
        tensors[name] = a.reshape(shape).astype(dt.newbyteorder("="), copy=True)
    return tensors, meta


def dumps(tensors, metadata=None):
    """{name: array} (numpy arrays, or torch tensors: a state_dict) -> the
    bytes of a safetensors file, tensors sorted by name as the writers do.
    Floating tensors are written as float32 (what dnnd trains in), integer
    ones (num_batches_tracked) as int64."""
    import numpy as np

    header, chunks, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name]
        if hasattr(t, "detach"):  # a torch tensor
            t = t.detach().cpu().numpy()
        a = np.asarray(t)
        if a.dtype.kind == "f":
            a, dtype = a.astype("<f4"), "F32"
        elif a.dtype.kind in "iub":
            a, dtype = a.astype("<i8"), "I64"
        else:
            raise ValueError("tensor %r: dtype %s is neither floating nor integer" % (name, a.dtype))
        raw = np.ascontiguousarray(a).tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the body starts 8-byte aligned
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def load(path):
    """A safetensors file -> ({name: numpy array}, metadata dict)."""
    with open(path, "rb") as f:
        return loads(f.read())
