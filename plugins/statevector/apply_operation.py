"""The operations a compiled circuit applies to a batch of states [B, 2**n]."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from kdbench import amplitudes_from_angles


def _halves(state: torch.Tensor, qubit: int, num_qubits: int) -> tuple[torch.Tensor, ...]:
    """The amplitudes with qubit `qubit` at 0 and at 1, each [B, 2**(n-1-q), 2**q]."""
    view = state.reshape(state.shape[0], 2 ** (num_qubits - 1 - qubit), 2, 2**qubit)
    return view[:, :, 0], view[:, :, 1]


def _join(new0: torch.Tensor, new1: torch.Tensor) -> torch.Tensor:
    return torch.stack((new0, new1), dim=2).reshape(new0.shape[0], -1)


def pair_view(state: torch.Tensor, a: int, b: int, num_qubits: int) -> torch.Tensor:
    """The amplitudes as [B, ., 2, ., 2, .]: axis 2 is the higher of qubits a and b, axis 4
    the lower."""
    high, low = max(a, b), min(a, b)
    return state.reshape(
        state.shape[0], 2 ** (num_qubits - 1 - high), 2, 2 ** (high - low - 1), 2, 2**low
    )


def angles_of(cos: torch.Tensor, sin: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """The angles of some columns of the table back from their cos and sin (what every
    operation is handed), for operations that combine angles before their cos and sin."""
    columns = columns.to(cos.device)
    return torch.atan2(sin[:, columns], cos[:, columns])


def _kron(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The Kronecker product of the last two axes of a and b (other axes broadcast)."""
    (ra, ca), (rb, cb) = a.shape[-2:], b.shape[-2:]
    product = a[..., :, None, :, None] * b[..., None, :, None, :]
    return product.reshape(*product.shape[:-4], ra * rb, ca * cb)


def on_qubits(state: torch.Tensor, matrix: torch.Tensor, low: int, num_qubits: int):
    """`state` [B, 2**n] with a matrix on the qubits low, low + 1, ... (2**k x 2**k for k of
    them, bit 0 the low qubit's) applied to them: the same for every row [2**k, 2**k] or one
    per row [B, 2**k, 2**k]. Of three forms, the fastest for training where measured (16
    qubits, batch 32, one thread, an operation's forward and backward): near qubit 0 the
    matrix widened to act on 4 to 8 amplitudes, times the state as rows of those (11-24 ms
    against 24-44 for einsum); a matrix per row from qubit 7 up, times each block of the
    amplitudes it mixes (11-13 ms against 19-23); einsum elsewhere."""
    batch, per_row, size = state.shape[0], matrix.dim() == 3, matrix.shape[-1]
    below = 2**low  # amplitudes between two that the matrix mixes
    if size * below <= 8 and 2**num_qubits >= 4:
        eye = torch.eye(max(below, 4 // size), dtype=matrix.dtype, device=matrix.device)
        wide = _kron(matrix, eye) if below > 1 else _kron(eye, matrix)  # bit 0 varies fastest
        rows = state.reshape(batch, -1, wide.shape[-1])
        return (rows @ wide.transpose(-1, -2)).reshape(state.shape)
    view = state.reshape(batch, -1, size, below)
    if low >= 7 and per_row:
        return torch.matmul(matrix[:, None], view).reshape(state.shape)
    form = "bij,bljr->blir" if per_row else "ij,bljr->blir"
    return torch.einsum(form, matrix, view).reshape(state.shape)


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


def _turn(kind: str, a0, a1, c, s) -> tuple[torch.Tensor, torch.Tensor]:
    """The halves a0, a1 (target qubit 0 and 1) after rx, ry, rz or p, its angle's cos and
    sin given (of θ/2; of θ for p)."""
    if kind == "ry":
        return c * a0 - s * a1, s * a0 + c * a1
    if kind == "rx":
        minus_i_s = s * -1j
        return c * a0 + minus_i_s * a1, minus_i_s * a0 + c * a1
    if torch.is_tensor(c):
        e0, e1 = torch.complex(c, -s), torch.complex(c, s)
    else:
        e0, e1 = complex(c, -s), complex(c, s)
    return (a0 if kind == "p" else a0 * e0), a1 * e1


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
        return _join(*_turn(self.kind, *_halves(state, self.qubit, num_qubits), c, s))


class _Amplitudes:
    """`kdbench.amplitude_circuit`'s gate first in the circuit, on all its qubits: the state it
    prepares from |0...0>, computed at once from its RY angles (columns of cos and sin)."""

    def __init__(self, columns: list[int], num_qubits: int):
        self.columns = torch.tensor(columns, dtype=torch.long)
        self.qubits = tuple(range(num_qubits))
        self.real = True

    def apply(self, state, cos, sin, num_qubits):
        half = angles_of(cos, sin, self.columns)  # the table holds RY's half angles
        return amplitudes_from_angles(half).to(state.dtype)


class _Parity:
    """rzz whose angle depends on a parameter: exp(-iθ/2) where qubits `a` and `b` agree,
    exp(iθ/2) where they differ; column `index` of cos and sin (of θ/2)."""

    def __init__(self, a: int, b: int, index: int):
        self.qubits, self.index = (a, b), index
        self.real = False

    def apply(self, state, cos, sin, num_qubits):
        view = pair_view(state, *self.qubits, num_qubits)
        c, s = cos[:, self.index], sin[:, self.index]
        same, differ = torch.complex(c, -s), torch.complex(c, s)
        factor = torch.stack((same, differ, differ, same), dim=1)  # [high bit, low bit]
        return (view * factor.reshape(-1, 1, 2, 1, 2, 1)).reshape(state.shape)


class _Controlled:
    """crx, cry, crz or cp: rx, ry, rz or p on `target` in the half of the state where
    `control` is 1. One operation on a quarter of the amplitudes where the gate's exact
    definition is four to six on all of them. Its angle is column `index` of cos and sin, or
    `fixed` (cos, sin) for a constant one."""

    def __init__(
        self,
        kind: str,
        control: int,
        target: int,
        index: int | None,
        fixed: tuple[float, float] | None = None,
    ):
        self.kind, self.control, self.target = kind, control, target
        self.index, self.fixed = index, fixed
        self.real = kind == "ry"

    def apply(self, state, cos, sin, num_qubits):
        view = pair_view(state, self.control, self.target, num_qubits)
        # Axes of the view: the control's is 2 if it is the higher qubit, else 4; the
        # target's, once the control's is taken away, 3 or 2.
        control_axis, target_axis = (2, 3) if self.control > self.target else (4, 2)
        off, on = view.unbind(control_axis)
        if self.fixed is not None:
            c, s = self.fixed
        else:
            c = cos[:, self.index, None, None, None]
            s = sin[:, self.index, None, None, None]
        turned = torch.stack(_turn(self.kind, *on.unbind(target_axis), c, s), dim=target_axis)
        return torch.stack((off, turned), dim=control_axis).reshape(state.shape)
