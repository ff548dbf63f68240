#!/usr/bin/python3
"""Gradient-check fixtures for tests/doctor_gradcheck_test.cpp: TorchScript functions and torch.autograd.gradcheck's
verdict on each, so the C++ check can be shown to agree with PyTorch's on the same functions and inputs.

Usage: /usr/bin/python3 make_gradcheck_fixtures.py OUT_DIR

Writes, with fixed seeds (Debian's python3-torch 1.13), for every case NAME:
  NAME.pt          torch.jit.script of a parameter-free module whose forward takes the case's tensors
  NAME_inputs.pt   plain dict {"count": n, "0": tensor, "1": tensor, ...} of the float64 inputs (torch::pickle_load
                   reads it)
and verdicts.txt, one line per case: "NAME pass|fail REQUIRES_GRAD", REQUIRES_GRAD a string of 0/1 per input
(only inputs that require grad are checked, as torch.autograd.gradcheck does), and gradcheck.log with the message
of every failing case. The verdict is torch.autograd.gradcheck(module, inputs, raise_exception=False) at its
defaults: eps 1e-6, atol 1e-5, rtol 1e-3, in float64.

The cases: smooth functions that must pass; functions whose autograd gradient is wrong by construction (a detach
trick, a straight-through estimator, a gradient off by more than the tolerance); one off by less than the tolerance;
a kink within eps of a sample point (fails, as finite differences straddle it) and one far from every sample
(passes); an unused input and an input that does not require grad.
"""
import os
import sys

import torch
from torch import nn


class SinMul(nn.Module):
    def forward(self, x, w):
        return torch.sin(x) * w


class MatmulTanh(nn.Module):
    def forward(self, x, w):
        return x.matmul(w).tanh()


class SoftmaxLinear(nn.Module):
    def forward(self, x, w, b):
        return torch.softmax(x.matmul(w) + b, dim=1)


class DetachSquare(nn.Module):
    # Value x^2, but autograd sees x * const: gradient x instead of 2x.
    def forward(self, x):
        return x * x.detach()


class StraightThrough(nn.Module):
    # Value round(x) (derivative 0 away from .5), autograd gradient 1: the straight-through estimator.
    def forward(self, x):
        return x + (torch.round(x) - x).detach()


class OffBy(nn.Module):
    # Value 2x; autograd gradient 2 + k. Passes iff k <= atol + rtol * 2 = 2.01e-3.
    def __init__(self, k: float):
        super().__init__()
        self.k = k

    def forward(self, x):
        return 2.0 * x + self.k * (x - x.detach())


class Abs(nn.Module):
    def forward(self, x):
        return torch.abs(x)


class Relu(nn.Module):
    def forward(self, x):
        return torch.relu(x)


class UnusedInput(nn.Module):
    def forward(self, x, w, unused):
        return (x * w).sum(dim=1)


class ScaleByConstant(nn.Module):
    def forward(self, x, c):
        return x * c + torch.exp(-x * x)


def d(*shape):
    return torch.randn(*shape, dtype=torch.float64)


def main(out):
    torch.manual_seed(0)
    near_kink = d(3, 4)
    near_kink[1, 2] = 2e-7  # within eps = 1e-6 of abs's kink at 0
    away = d(3, 4)
    away = torch.where(away.abs() < 0.05, torch.full_like(away, 0.3), away)  # every sample >= 0.05 from 0
    rounding = torch.rand(3, 4, dtype=torch.float64) * 4 - 2
    rounding = torch.where((rounding - rounding.round()).abs() > 0.45, rounding * 0 + 0.2, rounding)
    cases = [
        ("sin_mul", SinMul(), [d(3, 4), d(3, 4)], "11"),
        ("matmul_tanh", MatmulTanh(), [d(3, 4), d(4, 2)], "11"),
        ("softmax_linear", SoftmaxLinear(), [d(2, 3), d(3, 4), d(4)], "111"),
        ("detach_square", DetachSquare(), [d(2, 3)], "1"),
        ("straight_through", StraightThrough(), [rounding], "1"),
        ("off_by_1e-3", OffBy(1e-3), [d(5)], "1"),
        ("off_by_4e-3", OffBy(4e-3), [d(5)], "1"),
        ("abs_near_kink", Abs(), [near_kink], "1"),
        ("relu_away_from_kink", Relu(), [away], "1"),
        ("unused_input", UnusedInput(), [d(2, 3), d(2, 3), d(4)], "111"),
        ("constant_input", ScaleByConstant(), [d(2, 3), d(2, 3)], "10"),
    ]
    lines, log = [], []
    for name, module, inputs, flags in cases:
        scripted = torch.jit.script(module)
        torch.jit.save(scripted, os.path.join(out, name + ".pt"))
        # "count" also keeps every dict at >= 2 items: pickle writes a 1-item dict with SETITEM, an opcode
        # LibTorch 1.13's unpickler does not know (it reads SETITEMS).
        stored = {"count": torch.tensor(len(inputs))}
        stored.update({str(i): t for i, t in enumerate(inputs)})
        torch.save(stored, os.path.join(out, name + "_inputs.pt"))
        args = tuple(t.clone().requires_grad_(f == "1") for t, f in zip(inputs, flags))
        ok = torch.autograd.gradcheck(scripted, args, raise_exception=False)
        if not ok:
            try:
                torch.autograd.gradcheck(scripted, args)
            except Exception as e:  # the message says which entries differ
                log.append("%s: %s" % (name, str(e).splitlines()[0] if str(e) else type(e).__name__))
        lines.append("%s %s %s" % (name, "pass" if ok else "fail", flags))
    with open(os.path.join(out, "verdicts.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(out, "gradcheck.log"), "w") as f:
        f.write("\n".join(log) + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_gradcheck_fixtures.py OUT_DIR")
    main(sys.argv[1])
