"""numpy arrays as the dataset files the controller reads: NPY and IDX."""
import io
import struct


def _np():
    try:
        import numpy as np
    except ImportError as e:  # pragma: no cover - numpy is optional for the rest
        raise ImportError("dnnd_client: datasets.from_arrays needs numpy") from e
    return np


def samples(x, what):
    """Samples as the controller keeps them: uint8 stays uint8 (scaled by
    1/255 when training), every other dtype becomes float32."""
    np = _np()
    a = np.asarray(x)
    if a.ndim < 2:
        raise ValueError("%s must have shape [n, ...] (one row per sample); got %r" % (what, a.shape))
    if a.dtype != np.uint8:
        if a.dtype.kind not in "fiub":
            raise ValueError("%s has dtype %s; expected numbers" % (what, a.dtype))
        a = a.astype(np.float32)
    return np.ascontiguousarray(a)


def labels(y, n, what):
    """Class indices 0..k-1, one per sample, as int32."""
    np = _np()
    a = np.asarray(y)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise ValueError("%s must have shape [n]; got %r" % (what, a.shape))
    if a.shape[0] != n:
        raise ValueError("%s has %d labels for %d samples" % (what, a.shape[0], n))
    if a.dtype.kind not in "iub":
        if a.dtype.kind == "f" and np.all(np.mod(a, 1) == 0):
            a = a.astype(np.int64)
        else:
            raise ValueError("%s must be class indices (integers); got dtype %s" % (what, a.dtype))
    if a.size and (a.min() < 0 or a.max() > 2**31 - 1):
        raise ValueError("%s must be class indices >= 0" % what)
    return np.ascontiguousarray(a.astype(np.int32))


def npy_bytes(a):
    np = _np()
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


# IDX type codes (http://yann.lecun.com/exdb/mnist/): big-endian values.
_IDX = {"uint8": (0x08, ">u1"), "int32": (0x0C, ">i4"), "float32": (0x0D, ">f4")}


def idx_bytes(a):
    np = _np()
    a = np.asarray(a)
    name = "uint8" if a.dtype == np.uint8 else "int32" if a.dtype.kind in "iu" else "float32"
    code, dt = _IDX[name]
    head = struct.pack(">BBBB", 0, 0, code, a.ndim) + struct.pack(">%dI" % a.ndim, *a.shape)
    return head + np.ascontiguousarray(a, dtype=dt).tobytes()
