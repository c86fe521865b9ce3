#!/usr/bin/python3
"""Writes ping.frame from docs/wire.md alone (not from dnnd's encoder), so the
golden test checks the C++ code against the spec rather than against itself.

The frame: a PING request, id 0x0102030405060708, fields step=42 (int),
lr=0.5 (float), note="hi" (string), blob=b"\\x00\\x01" (bytes); tensors
"w" f32 [2,3] = 1..6 (codec none), "b" f32 [3] = [0.5,-1,2] (codec none),
"q" f32 [2] = [1,-2] sent as bf16.
"""
import struct

def field(key, kind, value):
    out = struct.pack("<B", len(key)) + key.encode() + struct.pack("<B", kind)
    if kind == 1: return out + struct.pack("<q", value)
    if kind == 2: return out + struct.pack("<d", value)
    return out + struct.pack("<I", len(value)) + value

def descriptor(name, dtype, codec, shape, raw_len, enc_len, offset):
    out = struct.pack("<H", len(name)) + name.encode()
    out += struct.pack("<BBBB", dtype, codec, len(shape), 0)
    out += b"".join(struct.pack("<q", d) for d in shape)
    return out + struct.pack("<QQQ", raw_len, enc_len, offset)

fields = [field("step", 1, 42), field("lr", 2, 0.5), field("note", 3, b"hi"), field("blob", 4, b"\x00\x01")]
w = struct.pack("<6f", 1, 2, 3, 4, 5, 6)             # 24 bytes at 0
b = struct.pack("<3f", 0.5, -1, 2)                  # 12 bytes at 64
q = struct.pack("<2H", 0x3F80, 0xC000)             # bf16 1.0, -2.0: 4 bytes at 128
metadata = struct.pack("<H", len(fields)) + b"".join(fields)
metadata += descriptor("w", 1, 0, [2, 3], 24, 24, 0)
metadata += descriptor("b", 1, 0, [3], 12, 12, 64)
metadata += descriptor("q", 1, 2, [2], 8, 4, 128)
payload = w + bytes(64 - 24) + b + bytes(64 - 12) + q
header = b"DNNW" + struct.pack("<HHIIQIIQ", 1, 3, 0, 3, 0x0102030405060708, len(metadata), 0,
                               len(metadata) + len(payload))
assert len(header) == 40
with open("ping.frame", "wb") as f:
    f.write(header + metadata + payload)
