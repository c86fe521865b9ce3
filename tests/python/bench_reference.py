"""bench/torch_reference.py (the benchmarks' PyTorch side: models, IDX reader,
training recipes) for the tests, loaded by path: tests/tensor/ has a
torch_reference.py of its own."""
import importlib.util
import os

_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench", "torch_reference.py")
_spec = importlib.util.spec_from_file_location("bench_torch_reference", _PATH)
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)
read_idx = ref.read_idx
