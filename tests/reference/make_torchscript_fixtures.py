#!/usr/bin/python3
"""TorchScript fixtures for tests/model_torchscript_test.cpp.

Usage: /usr/bin/python3 make_torchscript_fixtures.py OUT_DIR

Writes, with fixed seeds (Debian's python3-torch 1.13):
  scripted.pt           torch.jit.script of a small CNN with named children, a nested Sequential and dropout
  scripted_expected.pt  plain dict of tensors: input, output (eval mode) and tap.<child> for every child call
  scripted_names.txt    "param <name>" / "buffer <name>" lines, in named_parameters()/named_buffers() order
  traced.pt             torch.jit.trace of an nn.Sequential MLP
  traced_expected.pt    input, output and tap.0, tap.1, ...
  listed.pt             torch.jit.script of a model iterating over an nn.ModuleList, with a defaulted argument
  listed_expected.pt    input, output and tap.blocks.0, tap.blocks.1, tap.head
  tuple.pt              torch.jit.script of a model whose forward returns a tuple (traindx must refuse it)
The expected files are plain dicts because torch::pickle_load cannot read an OrderedDict with _metadata.
"""
import sys

import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.pool = nn.MaxPool2d(2)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        x = self.pool(self.features(x))
        x = torch.flatten(x, 1)  # a functional call: not a submodule, so not tapped
        return self.fc(self.drop(x))


class Listed(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([nn.Linear(5, 5), nn.Linear(5, 5)])
        self.head = nn.Linear(5, 2)

    def forward(self, x, scale: float = 2.0):
        for block in self.blocks:  # unrolled by TorchScript: each item is called from forward itself
            x = torch.relu(block(x))
        return self.head(x) * scale


class TupleOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        y = self.fc(x)
        return y, y.sum()


def tapped(model, x, names=None):
    """Output of model(x) and the output of each named submodule (default: the children), via forward hooks."""
    modules = dict(model.named_modules())
    taps = {}
    hooks = []
    for name in names or [n for n, _ in model.named_children()]:
        hooks.append(modules[name].register_forward_hook(
            lambda _m, _i, out, name=name: taps.__setitem__("tap." + name, out.detach().clone())))
    out = model(x)
    for h in hooks:
        h.remove()
    return out, taps


def main(out_dir):
    torch.manual_seed(1234)
    net = Net()
    # Non-trivial running statistics, so eval-mode batch norm is tested for real.
    net.train()
    with torch.no_grad():
        net(torch.randn(16, 1, 8, 8))
    net.eval()
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        out, taps = tapped(net, x)
    torch.jit.save(torch.jit.script(net), f"{out_dir}/scripted.pt")
    torch.save(dict(input=x, output=out, **taps), f"{out_dir}/scripted_expected.pt")
    with open(f"{out_dir}/scripted_names.txt", "w") as f:
        for name, _ in net.named_parameters():
            f.write(f"param {name}\n")
        for name, _ in net.named_buffers():
            f.write(f"buffer {name}\n")

    torch.manual_seed(99)
    mlp = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 2))
    x = torch.randn(4, 6)
    traced = torch.jit.trace(mlp, x)
    with torch.no_grad():
        out, taps = tapped(mlp, x)
    torch.jit.save(traced, f"{out_dir}/traced.pt")
    torch.save(dict(input=x, output=out, **taps), f"{out_dir}/traced_expected.pt")

    torch.manual_seed(7)
    listed = Listed()
    x = torch.randn(3, 5)
    with torch.no_grad():
        out, taps = tapped(listed, x, ["blocks.0", "blocks.1", "head"])
    torch.jit.save(torch.jit.script(listed), f"{out_dir}/listed.pt")
    torch.save(dict(input=x, output=out, **taps), f"{out_dir}/listed_expected.pt")

    torch.jit.save(torch.jit.script(TupleOut()), f"{out_dir}/tuple.pt")


if __name__ == "__main__":
    main(sys.argv[1])
