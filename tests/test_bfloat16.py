"""bfloat16 autocast on a CPU without bfloat16 arithmetic: float32 products of bfloat16-rounded
operands, rounded back, against torch's own bfloat16 kernels (which every CPU runs, if slowly)
and against the same roundings computed in float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import _get_current_function_mode_stack

from kdbench import bfloat16


@pytest.fixture(params=["native", "float32 products"])
def autocast(request, monkeypatch):
    """kdbench's autocast, made to take each path whatever this CPU has."""
    monkeypatch.setattr(bfloat16, "cpu_has_bfloat16", lambda: request.param == "native")
    return lambda: bfloat16.autocast("cpu")


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(8 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, 5),
    )  # fmt: skip


def gradients(net: nn.Module, context, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    net.zero_grad()
    with context():
        out = net(x).log_softmax(1)
    F.nll_loss(out.float(), y).backward()  # as fit() takes the loss
    return [p.grad.clone() for p in net.parameters()]


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def test_a_product_is_its_bfloat16_operands_product_rounded_once(autocast):
    torch.manual_seed(0)
    x, w, b = torch.randn(64, 512), torch.randn(256, 512), torch.randn(256)
    with autocast():
        out = F.linear(x, w, b)
        convolved = F.conv2d(x.view(64, 2, 16, 16), w.view(256, 2, 16, 16)[:16, :, :3, :3])
    assert out.dtype == convolved.dtype == torch.bfloat16
    r = [t.to(torch.bfloat16).double() for t in (x, w, b)]
    ideal = F.linear(*r).to(torch.bfloat16)
    # Only the order of the float32 sums differs from the float64 one: a rare last bit.
    assert (out == ideal).float().mean() > 0.999
    assert relative(out, ideal) < 1e-3


def test_gradients_agree_with_torchs_bfloat16_kernels_far_closer_than_float32_does(autocast):
    net = small_net()
    x, y = torch.rand(32, 1, 14, 14), torch.randint(0, 5, (32,))
    native = gradients(net, lambda: torch.autocast("cpu", dtype=torch.bfloat16), x, y)
    plain = gradients(net, lambda: bfloat16.autocast("cpu", enabled=False), x, y)
    ours = gradients(net, autocast, x, y)
    for mine, theirs, full in zip(ours, native, plain, strict=True):
        # float32 training differs from bfloat16's by its roundings; the two bfloat16 paths
        # by where a last bit falls.
        assert relative(mine, theirs) < relative(full, theirs) / 5


def test_a_region_that_turns_autocast_off_stays_float32(monkeypatch):
    monkeypatch.setattr(bfloat16, "cpu_has_bfloat16", lambda: False)
    torch.manual_seed(0)
    x, w = torch.randn(8, 16), torch.randn(4, 16)
    with bfloat16.autocast("cpu"):
        with torch.autocast("cpu", enabled=False):
            inner = F.linear(x, w)
        outer = x @ w.T
    assert inner.dtype == torch.float32 and torch.equal(inner, F.linear(x, w))
    assert outer.dtype == torch.bfloat16
    with bfloat16.autocast("cpu", enabled=False):
        assert torch.equal(F.linear(x, w), x @ w.T)


def test_a_cpu_without_bfloat16_arithmetic_takes_the_float32_products(monkeypatch):
    """What fit() trains with (kdbench.distill): the path follows the CPU's answer."""
    modes = {}
    for has in (True, False):
        monkeypatch.setattr(bfloat16, "cpu_has_bfloat16", lambda has=has: has)
        with bfloat16.autocast("cpu"):
            assert torch.is_autocast_enabled("cpu")
            modes[has] = [type(m) for m in _get_current_function_mode_stack()]
    assert modes == {True: [], False: [bfloat16._Float32Products]}
