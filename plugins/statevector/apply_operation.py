"""The operations a compiled circuit applies to a batch of states [B, 2**n]."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def _halves(state: torch.Tensor, qubit: int, num_qubits: int) -> tuple[torch.Tensor, ...]:
    """The amplitudes with qubit `qubit` at 0 and at 1, each [B, 2**(n-1-q), 2**q]."""
    view = state.reshape(state.shape[0], 2 ** (num_qubits - 1 - qubit), 2, 2**qubit)
    return view[:, :, 0], view[:, :, 1]


def _join(new0: torch.Tensor, new1: torch.Tensor) -> torch.Tensor:
    return torch.stack((new0, new1), dim=2).reshape(new0.shape[0], -1)


class _Monomial:
    """new[k] = phase[k] * old[perm[k]]: fused constant permutation and diagonal gates."""

    def __init__(self, perm: np.ndarray | None, phase: np.ndarray | None):
        self.perm, self.phase = perm, phase
        self.real = phase is None or not np.iscomplexobj(phase)
        self._cache: dict[tuple[torch.device, torch.dtype], tuple[Any, Any]] = {}

    def apply(self, state, cos, sin, num_qubits):
        key = (state.device, state.dtype)
        if key not in self._cache:
            perm = None if self.perm is None else torch.from_numpy(self.perm).to(state.device)
            phase = None if self.phase is None else torch.from_numpy(self.phase)
            self._cache[key] = (perm, None if phase is None else phase.to(state.device, key[1]))
        perm, phase = self._cache[key]
        if perm is not None:
            state = state.index_select(1, perm)
        return state if phase is None else state * phase


class _Fixed1q:
    """A constant single-qubit matrix (h, or rx/ry with a fixed angle)."""

    def __init__(self, qubit: int, matrix: np.ndarray):
        self.qubit = qubit
        self.real = not np.any(matrix.imag)
        self.matrix = matrix.real.copy() if self.real else matrix

    def apply(self, state, cos, sin, num_qubits):
        a0, a1 = _halves(state, self.qubit, num_qubits)
        (m00, m01), (m10, m11) = self.matrix.tolist()
        return _join(m00 * a0 + m01 * a1, m10 * a0 + m11 * a1)


class _Rotation:
    """rx, ry, rz or p whose angle depends on a parameter; column `index` of cos and sin."""

    def __init__(self, kind: str, qubit: int, index: int):
        self.kind, self.qubit, self.index = kind, qubit, index
        self.real = kind == "ry"

    def apply(self, state, cos, sin, num_qubits):
        c = cos[:, self.index, None, None]
        s = sin[:, self.index, None, None]
        if self.kind in ("rz", "p"):
            # Diagonal: one multiply of the [B, L, 2, R] view by per-sample phases [B, 1, 2, 1].
            e1 = torch.complex(c, s)
            e0 = torch.ones_like(e1) if self.kind == "p" else torch.complex(c, -s)
            view = state.reshape(state.shape[0], 2 ** (num_qubits - 1 - self.qubit), 2, -1)
            return (view * torch.stack((e0, e1), dim=2)).reshape(state.shape)
        a0, a1 = _halves(state, self.qubit, num_qubits)
        if self.kind == "ry":
            return _join(c * a0 - s * a1, s * a0 + c * a1)
        minus_i_s = s * -1j
        return _join(c * a0 + minus_i_s * a1, minus_i_s * a0 + c * a1)
