#!/usr/bin/python3
"""dnnd's graph models (configs/models/resnet20.toml, resnet18.toml) load into
their plain torch.nn equivalents, through real files and the dnnd binary.

A tiny CIFAR-10 in the binary format (data_batch_1.bin ... data_batch_5.bin,
test_batch.bin: one label byte + 3072 channel-major pixel bytes per record)
is written to a temp directory; a local dnnd worker trains on it and writes a
checkpoint; then
  (a) a ResNet-20 written here in torch.nn (torchvision's BasicBlock layout
      and names: conv1/bn1/conv2/bn2/downsample) loads model.safetensors with
      load_state_dict(strict=True), and `dnnd infer` matches its eval-mode
      output on random inputs;
  (b) torchvision.models.resnet18(num_classes=10) with a 3x3 stride-1 stem
      and no max pool loads the checkpoint of configs/models/resnet18.toml
      (1 step, batch 2) strictly, and `dnnd infer` matches it;
  (c) every num_batches_tracked is int64 and equals the steps trained.
Torch computes in float64 from the checkpoint's float32 values; dnnd's float32
output must be within 1e-4 * max(1, max|torch|).
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import safetensors_io as st  # noqa: E402

try:
    import torch
    import torchvision
except ImportError:
    print("SKIP: /usr/bin/python3 cannot import torch and torchvision")
    sys.exit(0)

DNND = os.environ["DNND_BINARY"]
SRC = os.environ["DNND_SOURCE_DIR"]
TOL = 1e-4
nn = torch.nn


class BasicBlock(nn.Module):
    def __init__(self, inplanes, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet20(nn.Module):
    """He et al. 2016, section 4.2: 3 stages of 3 basic blocks, 16/32/64."""

    def __init__(self, in_channels=3, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        layers, inplanes = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(3):
                blocks.append(BasicBlock(inplanes, planes, stride if i == 0 else 1))
                inplanes = planes
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def cifar_resnet18():
    m = torchvision.models.resnet18(num_classes=10)
    m.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    m.maxpool = nn.Identity()
    return m


def write_cifar(directory, rng, train=64, test=32):
    """The binary CIFAR-10 layout: 5 training files and test_batch.bin."""
    os.makedirs(directory)

    def records(n):
        labels = rng.integers(0, 10, size=(n, 1), dtype=np.uint8)
        pixels = rng.integers(0, 256, size=(n, 3 * 32 * 32), dtype=np.uint8)
        return np.concatenate([labels, pixels], axis=1).tobytes()

    per_file = [train // 5 + (1 if i < train % 5 else 0) for i in range(5)]
    for i, n in enumerate(per_file):
        with open(os.path.join(directory, "data_batch_%d.bin" % (i + 1)), "wb") as f:
            f.write(records(n))
    with open(os.path.join(directory, "test_batch.bin"), "wb") as f:
        f.write(records(test))


def dnnd(*args):
    r = subprocess.run([DNND, *args], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("dnnd %s failed (%d):\n%s%s" % (" ".join(args), r.returncode, r.stdout, r.stderr))
    return r


def train(tmp, name, model_file, steps, batch, cifar):
    ckpt = os.path.join(tmp, name + "-ckpt")
    config = os.path.join(tmp, name + ".toml")
    with open(config, "w") as f:
        f.write(f"""[node]
role = "worker"
name = "{name}"
threads = 2

[data]
format = "cifar10"
cifar_dir = "{cifar}"

[train]
epochs = 1
batch_size = {batch}
seed = 7
max_steps = {steps}
checkpoint_dir = "{ckpt}"
resume = false
progress = "none"
eval_every_epochs = 0

[model]
file = "{model_file}"
""")
    dnnd("--config", config)
    return ckpt


def infer(model_dir, x, tmp):
    st.save(os.path.join(tmp, "x.safetensors"), {"x": x})
    dnnd("infer", "--model", model_dir, "--input", os.path.join(tmp, "x.safetensors"),
         "--output", os.path.join(tmp, "y.safetensors"))
    return st.load(os.path.join(tmp, "y.safetensors"))[0]["y"]


failures = []


def check(what, ok, detail=""):
    print("%-60s %s %s" % (what, "ok" if ok else "FAIL", detail))
    if not ok:
        failures.append(what)


def check_checkpoint(name, ckpt, model, steps, x, tmp):
    tensors, meta = st.load(os.path.join(ckpt, "model.safetensors"))
    check(name + ": checkpoint at step %d" % steps, meta.get("dnnd.step") == str(steps),
          "dnnd.step=%s" % meta.get("dnnd.step"))
    # (c) num_batches_tracked: int64, the steps trained.
    counts = {k: v for k, v in tensors.items() if k.endswith("num_batches_tracked")}
    check(name + ": num_batches_tracked present", len(counts) > 0, "%d tensors" % len(counts))
    for k, v in counts.items():
        if v.dtype != np.int64 or v.shape != () or int(v) != steps:
            check(name + ": " + k, False, "dtype %s shape %s value %s" % (v.dtype, v.shape, v))
    check(name + ": num_batches_tracked int64 == %d" % steps,
          all(v.dtype == np.int64 and v.shape == () and int(v) == steps for v in counts.values()))
    # Running statistics moved from their initial 0 / 1.
    means = [v for k, v in tensors.items() if k.endswith("running_mean")]
    check(name + ": running_mean moved", all(np.abs(m).max() > 0 for m in means))
    # (a), (b) strict load, then dnnd infer == torch eval.
    state = {k: torch.from_numpy(v) for k, v in tensors.items()}
    try:
        model.load_state_dict(state, strict=True)
        check(name + ": load_state_dict(strict=True)", True, "%d tensors" % len(state))
    except RuntimeError as e:
        check(name + ": load_state_dict(strict=True)", False, str(e))
        return
    model.double().eval()
    with torch.no_grad():
        want = model(torch.from_numpy(x).double()).numpy()
    got = infer(ckpt, x, tmp)
    err = float(np.max(np.abs(got - want)))
    bound = TOL * max(1.0, float(np.max(np.abs(want))))
    check(name + ": dnnd infer == torch eval", got.shape == want.shape and err <= bound,
          "max |dnnd - torch| = %.2e (bound %.2e, max|torch| %.2f)" % (err, bound, np.max(np.abs(want))))


def main():
    torch.set_num_threads(2)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        cifar = os.path.join(tmp, "cifar")
        write_cifar(cifar, rng)
        x = rng.standard_normal((5, 3, 32, 32)).astype(np.float32)

        ckpt = train(tmp, "resnet20", os.path.join(SRC, "configs/models/resnet20.toml"), 3, 16, cifar)
        check_checkpoint("resnet20", ckpt, ResNet20(), 3, x, tmp)

        ckpt = train(tmp, "resnet18", os.path.join(SRC, "configs/models/resnet18.toml"), 1, 2, cifar)
        check_checkpoint("resnet18 (torchvision)", ckpt, cifar_resnet18(), 1, x[:2], tmp)
    if failures:
        sys.exit("FAIL: " + ", ".join(failures))
    print("OK")


if __name__ == "__main__":
    main()
