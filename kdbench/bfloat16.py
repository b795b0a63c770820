"""bfloat16 autocast that is fast on every CPU.

Where oneDNN has bfloat16 kernels (AVX-512, AVX512-BF16, AMX), torch's autocast runs the
matmuls and convolutions natively. Elsewhere (an AVX2 CPU, most AMD EPYCs before Zen 4)
torch falls back to a reference loop 5-10x slower than float32: a large teacher takes hours
an epoch. There the same arithmetic is done in float32: operands rounded to bfloat16, the
product (exact in float32: two 8-bit significands) summed in float32 and the result rounded
to bfloat16, which is what oneDNN's bfloat16 kernels compute, up to the order of the sums.
The backward pass rounds at the same places too: autograd rounds each gradient to bfloat16
where it passes back through a cast. Every other op keeps autocast's own policy.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

# The matmuls and convolutions of autocast's bfloat16 list that models call from Python.
_LOWERED: frozenset[Callable[..., Any]] = frozenset(
    {
        F.linear,
        torch.conv1d,
        torch.conv2d,
        torch.conv3d,
        torch.conv_transpose1d,
        torch.conv_transpose2d,
        torch.conv_transpose3d,
        torch.matmul,
        torch.mm,
        torch.bmm,
        torch.addmm,
        torch.baddbmm,
        torch.addbmm,
        torch.Tensor.matmul,
        torch.Tensor.__matmul__,
        torch.Tensor.mm,
        torch.Tensor.bmm,
    }
)


@functools.cache
def cpu_has_bfloat16() -> bool:
    """Whether oneDNN runs bfloat16 natively on this CPU (torch's own test; True where unknown)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return True


def _cpu_autocast_enabled() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled()


def _rounded(value: Any) -> Any:
    """A floating-point tensor rounded to bfloat16 and held in float32; anything else as is."""
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.to(torch.bfloat16).float()
    return value


class _Float32Products(TorchFunctionMode):
    """Autocast's bfloat16 matmuls and convolutions, computed in float32 (module docstring);
    entering it enters `cast`, the autocast it serves."""

    def __init__(self, cast: torch.autocast):
        super().__init__()
        self.cast = cast

    def __enter__(self):
        self.cast.__enter__()
        return super().__enter__()

    def __exit__(self, *exc):
        super().__exit__(*exc)
        return self.cast.__exit__(*exc)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func not in _LOWERED or not _cpu_autocast_enabled():
            return func(*args, **kwargs)
        with torch.autocast("cpu", enabled=False):
            out = func(*map(_rounded, args), **{k: _rounded(v) for k, v in kwargs.items()})
        return out.to(torch.bfloat16)


def autocast(device: torch.device | str, enabled: bool = True) -> AbstractContextManager:
    """torch.autocast to bfloat16 on `device` (nothing when not `enabled`), with its matmuls
    and convolutions done in float32 on a CPU without bfloat16 arithmetic. Built once, it
    may be entered again and again (a training loop's batches)."""
    if not enabled:
        return contextlib.nullcontext()
    kind = torch.device(device).type
    cast = torch.autocast(kind, dtype=torch.bfloat16)
    return _Float32Products(cast) if kind == "cpu" and not cpu_has_bfloat16() else cast
