#!/usr/bin/python3
"""ONNX models exported by PyTorch 1.13, and PyTorch's answers on them, for
tests/tensor/onnx_import_test.cc (and tests/python/test_onnx_models.py).

  onnx_reference.py parity <resnet18|custom> <dir>
      <dir>/model.onnx: the module exported in training mode (opset 13,
      do_constant_folding=False, dynamic batch). <dir>/ref.safetensors, from
      the exported weights, in float64 then stored as float32:
        x, labels                  the batch (labels as floats)
        y_eval                     eval-mode logits (random running statistics)
        y_train                    training-mode logits
        grad.<param>               gradients of mean cross-entropy(y_train)
        state.<buffer>             running statistics after that forward
  onnx_reference.py bad <dir>
      Models dnnd must refuse, each <dir>/<case>.onnx (see BAD below).

Exit status 77 when torch or onnx cannot be imported (the tests skip).
"""
import copy
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

try:
    import numpy as np
    import onnx
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from onnx import helper, numpy_helper, TensorProto
    from safetensors_io import save
except ImportError as e:  # pragma: no cover
    print(f"onnx_reference.py: {e}", file=sys.stderr)
    sys.exit(77)


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + x)


class Head(nn.Module):
    """A linear layer written as x @ W^T + b: MatMul + Add in ONNX."""

    def __init__(self, i, o):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(o, i) / i ** 0.5)
        self.bias = nn.Parameter(torch.randn(o) * 0.1)

    def forward(self, x):
        return x @ self.weight.t() + self.bias


class Custom(nn.Module):
    """A residual block, a concat branch, padded average pooling, a flatten
    by view(size(0), -1) (shape arithmetic), GELU, tanh and a MatMul head."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.act = nn.LeakyReLU(0.1)
        self.block = Block(8)
        self.pool = nn.MaxPool2d(2)
        self.side = nn.Conv2d(8, 4, 1)
        self.avg = nn.AvgPool2d(3, stride=2, padding=1)
        self.fc1 = nn.Linear(12 * 7 * 7, 32)
        self.bn1d = nn.BatchNorm1d(32)
        self.head = Head(32, 10)

    def forward(self, x):
        x = self.act(self.bn(self.stem(x)))
        x = self.pool(self.block(x))
        x = torch.cat([x, torch.sigmoid(self.side(x))], 1)
        x = self.avg(x)
        x = x.view(x.size(0), -1)
        x = torch.tanh(self.bn1d(F.gelu(self.fc1(x))))
        return self.head(x)


def build(name):
    if name == "resnet18":
        import torchvision
        # 64x64, not CIFAR's 32x32: on 32x32 a batch of 4 reaches layer4 as
        # 1x1 planes, whose BatchNorm normalises 4 values per channel. That is
        # so ill-conditioned that PyTorch's own float32 gradients are 6e-4 off
        # its float64 ones there (5e-6 at 64x64), and any float32 summation
        # order passes or fails the test's 1e-3 by luck.
        return torchvision.models.resnet18(num_classes=10), (3, 64, 64)
    if name == "custom":
        return Custom(), (1, 28, 28)
    raise SystemExit(f"unknown model {name}")


def export(model, shape, path, batch=2):
    torch.onnx.export(copy.deepcopy(model), torch.randn(batch, *shape), path,
                      training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False,
                      opset_version=13, input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})


def parity(name, out):
    torch.manual_seed(7)
    model, shape = build(name)
    with torch.no_grad():  # non-trivial BatchNorm state, so eval mode means something
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    path = os.path.join(out, "model.onnx")
    export(model, shape, path)
    # The reference runs on exactly the exported weights.
    inits = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy())
             for i in onnx.load(path).graph.initializer}
    state = model.state_dict()
    for k in state:
        if k in inits:
            state[k] = inits[k]
    model.load_state_dict(state, strict=True)
    model.double()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, *shape, generator=g)
    labels = torch.randint(0, 10, (4,), generator=g)
    res = {"x": x.numpy(), "labels": labels.double().numpy()}
    model.eval()
    with torch.no_grad():
        res["y_eval"] = model(x.double()).numpy()
    model.train()
    y = model(x.double())
    F.cross_entropy(y, labels).backward()
    res["y_train"] = y.detach().numpy()
    for k, p in model.named_parameters():
        res["grad." + k] = p.grad.numpy()
    for k, b in model.named_buffers():
        res["state." + k] = b.double().numpy()
    save(os.path.join(out, "ref.safetensors"), {k: np.asarray(v, dtype=np.float32) for k, v in res.items()})


def tensor_model(nodes, inits, opset=13, inputs=None, outputs=None, input_shape=(None, 4)):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(input_shape))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "g", inputs or [x], outputs or [y], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def w(name, shape):
    return numpy_helper.from_array(np.ones(shape, dtype=np.float32), name)


# Models dnnd must refuse, and a fragment of the error each gets.
BAD = {
    "unsupported": (lambda: tensor_model([
        helper.make_node("Gemm", ["x", "fc.weight"], ["h"], name="fc", transB=1),
        helper.make_node("LogSoftmax", ["h"], ["y"], name="logsoftmax")], [w("fc.weight", (3, 4))]),
        "node 1 'logsoftmax' (LogSoftmax): op type 'LogSoftmax' is not supported; supported: Conv"),
    "opset": (lambda: tensor_model([helper.make_node("Gemm", ["x", "fc.weight"], ["y"], transB=1)],
                                   [w("fc.weight", (3, 4))], opset=5),
              "opset 5 of the default domain is outside the supported 9..17"),
    "chain": (lambda: tensor_model([helper.make_node("Gemm", ["x", "fc.weight"], ["y"], name="fc", transB=1)],
                                   [w("fc.weight", (3, 5))]),
              "node 0 'fc' (Gemm): weight [3, 5] does not fit 4 input features"),
    "rect": (lambda: tensor_model([helper.make_node("Conv", ["x", "c.weight"], ["y"], name="c",
                                                    kernel_shape=[3, 1])],
                                  [w("c.weight", (2, 1, 3, 1))], input_shape=(None, 1, 8, 8)),
             "node 0 'c' (Conv): kernel_shape must be 2 equal values"),
    "external": (lambda: external_model(), "stored outside the file (external data)"),
    "two_inputs": (lambda: tensor_model(
        [helper.make_node("Add", ["x", "z"], ["y"])], [],
        inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4]),
                helper.make_tensor_value_info("z", TensorProto.FLOAT, [None, 4])]),
        "the graph has inputs 'x' and 'z'; dnnd models take one input"),
    "unknown_dim": (lambda: tensor_model([helper.make_node("Relu", ["x"], ["y"])], [],
                                         input_shape=(None, "features")),
                    "input 'x': dimension 1 is 'features'; export with a fixed sample shape"),
    "broadcast": (lambda: tensor_model([
        helper.make_node("Gemm", ["x", "fc.weight"], ["h"], name="fc", transB=1),
        helper.make_node("Add", ["h", "x"], ["y"], name="add")], [w("fc.weight", (3, 4))]),
        "node 1 'add' (Add): adds [3] and [4] (broadcasting is not supported)"),
}


def external_model():
    t = w("fc.weight", (3, 4))
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    e = t.external_data.add()
    e.key, e.value = "location", "weights.bin"
    return tensor_model([helper.make_node("Gemm", ["x", "fc.weight"], ["y"], transB=1)], [t])


def bad(out):
    for name, (make, _) in BAD.items():
        with open(os.path.join(out, name + ".onnx"), "wb") as f:
            f.write(make().SerializeToString())
    with open(os.path.join(out, "expected.txt"), "w") as f:
        for name, (_, msg) in BAD.items():
            f.write(f"{name}\t{msg}\n")


def main(argv):
    if len(argv) == 4 and argv[1] == "parity":
        parity(argv[2], argv[3])
    elif len(argv) == 3 and argv[1] == "bad":
        bad(argv[2])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
