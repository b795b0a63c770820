"""Fusion: leading single-qubit gates as a product state, weight-only runs as one matrix."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from kdbench import constant_tensor, product_state

from .apply_operation import _Controlled, _Fixed1q, _Monomial, _Rotation

FUSE_MAX_QUBITS = 6
"""Circuits up to this width get weight-block fusion: a fused block is a dense 2^n x 2^n
matrix, whose cost grows as 4^n against 2^n for gate by gate. Product-state fusion costs
2^n, and every width gets it."""


def _affine(op: _Fixed1q | _Rotation) -> tuple[np.ndarray, np.ndarray, np.ndarray, int | None]:
    """A single-qubit gate as M = A0 + cos·Ac + sin·As with constant 2x2 matrices, and the
    column of cos and sin it reads (None: a constant gate)."""
    zero, one = np.zeros((2, 2), complex), np.eye(2, dtype=complex)
    if isinstance(op, _Fixed1q):
        return op.matrix.astype(complex), zero, zero, None
    if op.kind == "ry":
        return zero, one, np.array([[0, -1], [1, 0]], complex), op.index
    if op.kind == "rx":
        return zero, one, np.array([[0, -1j], [-1j, 0]]), op.index
    if op.kind == "rz":
        return zero, one, np.diag([-1j, 1j]), op.index
    return (
        np.diag([1, 0]).astype(complex),
        np.diag([0, 1]).astype(complex),
        np.diag([0, 1j]),
        op.index,
    )


class _QubitMatrices:
    """Single-qubit gates on any qubits, as each qubit's 2x2 product [R, n, 2, 2]: the k-th
    gate of every qubit is built at once (one gather and a multiply-add), whatever n."""

    def __init__(self, ops: list, num_qubits: int):
        per_qubit = [[op for op in ops if op.qubit == q] for q in range(num_qubits)]
        self.positions: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]] = []
        for k in range(max(len(gates) for gates in per_qubit)):
            a0 = np.tile(np.eye(2, dtype=complex), (num_qubits, 1, 1))  # no gate: identity
            ac, a_s = np.zeros_like(a0), np.zeros_like(a0)
            columns = np.zeros(num_qubits, dtype=np.int64)
            parameterized = False
            for q, gates in enumerate(per_qubit):
                if k < len(gates):
                    a0[q], ac[q], a_s[q], column = _affine(gates[k])
                    if column is not None:
                        columns[q], parameterized = column, True
            self.positions.append((a0, ac, a_s, columns, parameterized))
        self.real = all(not np.any(m.imag) for p in self.positions for m in p[:3])
        self._cache: dict[tuple[torch.device, torch.dtype], list[tuple]] = {}

    def matrices(self, cos, sin, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """[R, n, 2, 2]: R = the rows of cos and sin, or 1 for constant gates only."""
        key = (device, dtype)
        if key not in self._cache:
            self._cache[key] = [
                (
                    *(constant_tensor(m, device, dtype) for m in (a0, ac, a_s)),
                    torch.from_numpy(columns).to(device),
                    parameterized,
                )
                for a0, ac, a_s, columns, parameterized in self.positions
            ]
        product = None
        for a0, ac, a_s, columns, parameterized in self._cache[key]:
            if parameterized:
                c, s = cos[:, columns, None, None], sin[:, columns, None, None]
                m = a0 + c * ac + s * a_s
            else:
                m = a0.unsqueeze(0)
            product = m if product is None else m @ product
        return product


class _ProductState:
    """The state after the circuit's leading single-qubit gates on |0...0>: a product state,
    each qubit's first column of its 2x2 product, multiplied out (qubit 0 varies fastest)."""

    def __init__(self, ops: list, num_qubits: int):
        self.block = _QubitMatrices(ops, num_qubits)
        self.real = self.block.real

    def state(self, cos, sin, batch: int, dtype: torch.dtype, device: torch.device):
        state = product_state(self.block.matrices(cos, sin, dtype, device)[..., 0])
        return state.expand(batch, -1) if len(state) == 1 else state


class _Unitary:
    """Gates whose angles involve no input, as one matrix U built per call from the weights
    (the same for every row): layers of single-qubit gates as Kronecker products, constant
    permutations and phases on its rows; the batch is then multiplied by U once."""

    def __init__(self, stages: list):
        self.stages = stages  # _QubitMatrices, _Monomial and _Controlled, in circuit order
        self.real = all(stage.real for stage in stages)

    def apply(self, state, cos, sin, num_qubits):
        dtype, device = state.dtype, state.device
        cos, sin = (None, None) if cos is None else (cos[:1], sin[:1])  # rows are equal
        unitary = None
        for stage in self.stages:
            if not isinstance(stage, _QubitMatrices):  # applied to U's columns as to states
                if unitary is None:
                    unitary = torch.eye(2**num_qubits, dtype=dtype, device=device)
                unitary = stage.apply(unitary.T, cos, sin, num_qubits).T
                continue
            factors = stage.matrices(cos, sin, dtype, device)[0]  # [n, 2, 2]
            layer = factors[-1]
            for q in range(num_qubits - 2, -1, -1):  # qubit 0 is the least significant
                layer = torch.kron(layer, factors[q])
            unitary = layer if unitary is None else layer @ unitary
        return state @ unitary.T


def _constant_in_batch(op: Any, weight_only: list[bool]) -> bool:
    """Whether `op` is the same for every row: no angle, a constant one or a weight's."""
    if isinstance(op, _Controlled):
        return op.index is None or weight_only[op.index]
    return not isinstance(op, _Rotation) or weight_only[op.index]


def _fuse(
    ops: list, num_qubits: int, weight_only: list[bool], blocks: bool = True
) -> tuple[Any, list]:
    """(product state or None, the remaining operations, with weight-only runs as _Unitary
    if `blocks`). A circuit of single-qubit gates only (a separable one) is all product state.

    `weight_only[g]` tells whether angle column g of cos and sin is a weight's (no input)."""
    single = (_Fixed1q, _Rotation)
    lead = 0
    while lead < len(ops) and isinstance(ops[lead], single):
        lead += 1
    start = _ProductState(ops[:lead], num_qubits) if lead else None
    if not blocks:
        return start, _local_blocks(ops[lead:], num_qubits, weight_only)

    fused, run = [], []
    for op in [*ops[lead:], None]:  # None: the end, flushes the last run
        if op is not None and _constant_in_batch(op, weight_only):
            run.append(op)
            continue
        if len(run) > 1:
            stages: list = []
            for gate in run:
                if isinstance(gate, single) and stages and isinstance(stages[-1], list):
                    stages[-1].append(gate)
                else:
                    stages.append([gate] if isinstance(gate, single) else gate)
            stages = [_QubitMatrices(s, num_qubits) if isinstance(s, list) else s for s in stages]
            fused.append(_Unitary(stages))
        else:
            fused += run
        run = []
        if op is not None:
            fused.append(op)
    return start, fused


def _qubits(op: Any, num_qubits: int) -> set[int]:
    """The qubits an operation acts on (for a fused monomial: those it changes or reads)."""
    if isinstance(op, _Controlled):
        return {op.control, op.target}
    if not isinstance(op, _Monomial):
        return {op.qubit}
    index, found = np.arange(2**num_qubits), set()
    flips = None if op.perm is None else op.perm ^ index  # the bits each amplitude moves by
    for q in range(num_qubits):
        other = index ^ (1 << q)  # the same amplitude, qubit q flipped
        # Qubit q matters if it is flipped, or decides a flip (a control) or a phase.
        moved = flips is not None and bool(
            np.any(flips & (1 << q)) or np.any(flips != flips[other])
        )
        phased = op.phase is not None and not np.allclose(op.phase, op.phase[other])
        if moved or phased:
            found.add(q)
    return found


class _Local:
    """Gates whose angles involve no input, all on the same one or two qubits, as one 2x2
    or 4x4 matrix built per call from the weights and applied to those qubits' axes of the
    state in one contraction: a circuit's two-qubit blocks (RY, RY, CNOT, RY, RY) are then
    one operation, not five, past the width of whole-circuit blocks."""

    def __init__(self, qubits: list[int], ops: list, num_qubits: int):
        self.qubits = sorted(qubits)  # local qubit i is self.qubits[i]
        local = {q: i for i, q in enumerate(self.qubits)}
        self.ops = [self._localized(op, local, num_qubits) for op in ops]
        self.real = all(op.real for op in self.ops)

    @staticmethod
    def _localized(op: Any, local: dict[int, int], num_qubits: int) -> Any:
        if isinstance(op, _Controlled):
            return _Controlled(op.kind, local[op.control], local[op.target], op.index, op.fixed)
        if isinstance(op, _Rotation):
            return _Rotation(op.kind, local[op.qubit], op.index)
        if isinstance(op, _Fixed1q):
            return _Fixed1q(local[op.qubit], op.matrix)
        # A monomial: its tables read where the other qubits are 0.
        qubits = sorted(local, key=local.get)
        size = 2 ** len(qubits)
        spread = np.array(
            [sum(((j >> i) & 1) << q for i, q in enumerate(qubits)) for j in range(size)]
        )

        def gather(g: np.ndarray) -> np.ndarray:
            return sum(((g >> q) & 1) << i for i, q in enumerate(qubits))

        perm = None if op.perm is None else gather(op.perm[spread])
        phase = None if op.phase is None else op.phase[spread]
        return _Monomial(perm, phase)

    def apply(self, state, cos, sin, num_qubits):
        cos, sin = (None, None) if cos is None else (cos[:1], sin[:1])  # rows are equal
        size = 2 ** len(self.qubits)
        # Each basis state through the gates: row j is U|j>, so U is the transpose.
        rows = torch.eye(size, dtype=state.dtype, device=state.device)
        for op in self.ops:
            rows = op.apply(rows, cos, sin, len(self.qubits))
        batch = state.shape[0]
        if len(self.qubits) == 1:
            (q,) = self.qubits
            view = state.reshape(batch, 2 ** (num_qubits - 1 - q), 2, 2**q)
            return torch.einsum("ji,bljr->blir", rows, view).reshape(state.shape)
        low, high = self.qubits
        view = state.reshape(
            batch, 2 ** (num_qubits - 1 - high), 2, 2 ** (high - low - 1), 2, 2**low
        )
        # rows[j, i], j and i local indices (bit 0: the low qubit), as [hi', lo', hi, lo].
        unitary = rows.T.reshape(2, 2, 2, 2)
        return torch.einsum("HOho,blhmor->blHmOr", unitary, view).reshape(state.shape)


def _local_blocks(ops: list, num_qubits: int, weight_only: list[bool]) -> list:
    """`ops` with each run of two or more consecutive batch-constant gates on at most two
    qubits as one `_Local`."""

    fused: list = []
    run: list = []
    qubits: set[int] = set()

    def flush() -> None:
        if len(run) > 1:
            fused.append(_Local(sorted(qubits), run, num_qubits))
        else:
            fused.extend(run)
        run.clear()
        qubits.clear()

    for op in ops:
        if not _constant_in_batch(op, weight_only):
            flush()
            fused.append(op)
            continue
        touched = _qubits(op, num_qubits)
        if len(qubits | touched) > 2:
            flush()
        if len(touched) > 2:
            fused.append(op)
            continue
        run.append(op)
        qubits.update(touched)
    flush()
    return fused
