#!/usr/bin/env python3
"""The layer order is enforced by the build (CMakeLists.txt: each library's
include root holds only its own headers and those of what it links). This
checks the enforcement itself: for each layer, a translation unit compiled
with that layer's real flags (from compile_commands.json) may include a
header of a layer below it and must fail to include one above it.

usage: layering.py <build dir>
"""
import json
import pathlib
import shlex
import subprocess
import sys
import tempfile

# (a source file of the layer, a header it may include, a header above it)
CASES = [
    ("src/core/status.cc", "core/log.h", "tensor/tensor.h"),
    ("src/tensor/tensor.cc", "core/status.h", "tensor/data/dataset.h"),
    ("src/tensor/tensor.cc", "core/status.h", "transport/wire.h"),
    ("src/tensor/data/dataset.cc", "tensor/tensor.h", "transport/wire.h"),
    ("src/tensor/onnx/onnx_import.cc", "tensor/model_spec.h", "tensor/data/dataset.h"),
    ("src/transport/wire.cc", "tensor/tensor.h", "roles/base/role.h"),
    ("src/roles/base/control_plane.cc", "transport/http.h", "roles/ps/parameter_server.h"),
    ("src/roles/ps/parameter_server.cc", "roles/base/role.h", "roles/train/trainer.h"),
    ("src/roles/layers/layer_server.cc", "roles/base/role.h", "roles/train/trainer.h"),
    ("src/roles/train/trainer.cc", "roles/ps/protocol.h", "roles/pool/worker_end.h"),
    ("src/roles/pool/protocol.cc", "roles/train/worker.h", "roles/node/registry.h"),
    ("src/roles/tools/splitter.cc", "roles/train/trainer.h", "roles/pool/protocol.h"),
    ("src/roles/ctl/ctl.cc", "transport/http_client.h", "roles/train/trainer.h"),
]


def flags_for(db, source):
    for entry in db:
        if entry["file"].endswith("/" + source):
            args = entry.get("arguments") or shlex.split(entry["command"])
            keep, skip = [], False
            for a in args[1:]:
                if skip:
                    skip = False
                    continue
                if a in ("-o", "-c"):
                    skip = a == "-o"
                    continue
                if a.endswith((".cc", ".cpp")):
                    continue
                keep.append(a)
            return args[0], keep, entry["directory"]
    sys.exit(f"layering.py: {source} is not in compile_commands.json")


def compiles(compiler, flags, cwd, header):
    with tempfile.NamedTemporaryFile("w", suffix=".cc", delete=False) as f:
        f.write(f'#include "{header}"\n')
    r = subprocess.run([compiler, *flags, "-fsyntax-only", f.name], cwd=cwd,
                       capture_output=True, text=True)
    pathlib.Path(f.name).unlink()
    return r.returncode == 0, r.stderr


def main():
    db = json.loads((pathlib.Path(sys.argv[1]) / "compile_commands.json").read_text())
    failed = 0
    for source, allowed, forbidden in CASES:
        compiler, flags, cwd = flags_for(db, source)
        ok, err = compiles(compiler, flags, cwd, allowed)
        if not ok:
            print(f"FAIL {source}: may include {allowed} but cannot:\n{err[:600]}")
            failed += 1
        ok, err = compiles(compiler, flags, cwd, forbidden)
        if ok or "No such file" not in err:
            print(f"FAIL {source}: includes {forbidden}, which is above its layer")
            failed += 1
        else:
            print(f"ok   {source}: {allowed} yes, {forbidden} no")
    sys.exit(1 if failed else 0)


main()
