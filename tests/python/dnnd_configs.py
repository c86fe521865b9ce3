"""Config sections the Python tests share (TOML text): Fashion-MNIST data,
a local worker node, a standalone cluster of parameter servers and workers."""

FM = "/usr/share/datasets/fashion-mnist"
MEAN, STD = 0.2860, 0.3530


def fashion_mnist(extra=""):
    return f"""[data]
format = "idx"
train_images = "{FM}/train-images-idx3-ubyte.gz"
train_labels = "{FM}/train-labels-idx1-ubyte.gz"
test_images = "{FM}/t10k-images-idx3-ubyte.gz"
test_labels = "{FM}/t10k-labels-idx1-ubyte.gz"
normalize_mean = {MEAN}
normalize_std = {STD}
{extra}
"""


def local_worker(name, threads=2):
    return f"""[node]
role = "worker"
name = "{name}"
threads = {threads}
"""


def standalone(name, servers=2, workers=2):
    """controller = false: the servers and workers in one process, no controller."""
    return f"""[node]
role = "standalone"
name = "{name}"
threads = 2
[standalone]
controller = false
servers = {servers}
workers = {workers}
[ps]
mode = "sync"
checkpoint_dir = ""
[http]
listen = "127.0.0.1:0"
[transport]
token = "{name}"
"""
