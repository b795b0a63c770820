"""Fusion: leading single-qubit gates as a product state, each qubit's single-qubit gates as
one matrix per row, diagonal runs as one phase per row, weight-only runs as one matrix."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from kdbench import constant_tensor, product_state

from .apply_operation import (
    _Amplitudes,
    _Controlled,
    _Fixed1q,
    _kron,
    _Monomial,
    _Parity,
    _Rotation,
    angles_of,
    on_qubits,
    pair_view,
)

PHASE_TABLE_MAX = 2**26
"""Entries of one diagonal run's table (gates x 2^n, 256 MB in float32): longer runs are cut."""

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
        self.columns = {op.index for op in ops if isinstance(op, _Rotation)}
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
    (the same for every row of a block that shares weights): layers of single-qubit gates as
    Kronecker products, constant permutations and phases on its rows; each block of the
    batch is then multiplied by its U once."""

    per_block = True  # handed one row of cos and sin per block of rows sharing weights

    def __init__(self, stages: list):
        self.stages = stages  # _QubitMatrices, _Monomial and _Controlled, in circuit order
        self.real = all(stage.real for stage in stages)

    def matrix(self, cos, sin, num_qubits: int, dtype: torch.dtype, device: torch.device):
        """U [2^n, 2^n] for the weights in the one row of cos and sin, or [R, 2^n, 2^n] for
        R rows (one per block)."""
        blocks = 1 if cos is None else len(cos)
        size = 2**num_qubits
        unitary = None
        for stage in self.stages:
            if not isinstance(stage, _QubitMatrices):  # applied to U's columns as to states
                if unitary is None:
                    unitary = torch.eye(size, dtype=dtype, device=device)
                    unitary = unitary if blocks == 1 else unitary.expand(blocks, -1, -1)
                if unitary.dim() == 2:
                    unitary = stage.apply(unitary.T, cos, sin, num_qubits).T
                else:  # each block's columns, with its row of cos and sin
                    columns = unitary.transpose(1, 2).reshape(-1, size)
                    c, s = (
                        (None, None)
                        if cos is None
                        else (cos.repeat_interleave(size, 0), sin.repeat_interleave(size, 0))
                    )
                    columns = stage.apply(columns, c, s, num_qubits)
                    unitary = columns.reshape(blocks, size, size).transpose(1, 2)
                continue
            factors = stage.matrices(cos, sin, dtype, device)  # [R or 1, n, 2, 2]
            factors = factors[0] if blocks == 1 else factors.expand(blocks, -1, -1, -1)
            layer = factors[..., -1, :, :]
            for q in range(num_qubits - 2, -1, -1):  # qubit 0 is the least significant
                layer = _kron(layer, factors[..., q, :, :])
            unitary = layer if unitary is None else layer @ unitary
        return unitary

    def apply(self, state, cos, sin, num_qubits):
        unitary = self.matrix(cos, sin, num_qubits, state.dtype, state.device)
        if unitary.dim() == 2:
            return state @ unitary.T
        blocks = state.reshape(len(unitary), -1, state.shape[1])
        return (blocks @ unitary.transpose(1, 2)).reshape(state.shape)


def _stages(run: list, num_qubits: int) -> list:
    """A run's gates as `_Unitary` stages: each stretch of single-qubit gates one
    `_QubitMatrices`, the other gates as they are."""
    single = (_Fixed1q, _Rotation)
    stages: list = []
    for gate in run:
        if isinstance(gate, single) and stages and isinstance(stages[-1], list):
            stages[-1].append(gate)
        else:
            stages.append([gate] if isinstance(gate, single) else gate)
    return [_QubitMatrices(s, num_qubits) if isinstance(s, list) else s for s in stages]


def angle_columns(op: Any) -> set[int]:
    """The columns of cos and sin an operation (or a product state) reads."""
    if isinstance(op, (_Phases, _Amplitudes)):
        return set(op.columns.tolist())
    if isinstance(op, (_RowMatrix, _ProductState)):
        return op.block.columns
    if isinstance(op, (_Local, _Unitary)):
        blocks = op.unitary.stages if isinstance(op, _Local) else op.stages
        return set().union(*(angle_columns(stage) for stage in blocks))
    if isinstance(op, _QubitMatrices):
        return op.columns
    index = getattr(op, "index", None)
    return set() if index is None else {index}


def _constant_in_batch(op: Any, weight_only: list[bool]) -> bool:
    """Whether `op` is the same for every row: no angle, a constant one or a weight's."""
    if isinstance(op, (_RowMatrix, _Phases, _Amplitudes)):
        return False
    index = getattr(op, "index", None)  # rotations: the column of their angle
    return index is None or weight_only[index]


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
    rest = _single_qubit_runs(ops[lead:], num_qubits, weight_only)
    rest = _diagonal_runs(rest, num_qubits, weight_only)
    if not blocks:
        return start, _local_blocks(rest, num_qubits, weight_only)

    fused, run = [], []
    for op in [*rest, None]:  # None: the end, flushes the last run
        if op is not None and _constant_in_batch(op, weight_only):
            run.append(op)
            continue
        if len(run) > 1:
            fused.append(_Unitary(_stages(run, num_qubits)))
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
    if isinstance(op, (_Parity, _Amplitudes)):
        return set(op.qubits)
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


def _localized(op: Any, local: dict[int, int]) -> Any:
    """`op` on a circuit of the qubits of `local` only, qubit q renumbered local[q]."""
    if isinstance(op, _Controlled):
        return _Controlled(op.kind, local[op.control], local[op.target], op.index, op.fixed)
    if isinstance(op, _Parity):
        return _Parity(*(local[q] for q in op.qubits), op.index)
    if isinstance(op, _Rotation):
        return _Rotation(op.kind, local[op.qubit], op.index)
    if isinstance(op, _Fixed1q):
        return _Fixed1q(local[op.qubit], op.matrix)
    # A monomial: its tables read where the other qubits are 0.
    qubits = sorted(local, key=local.get)
    size = 2 ** len(qubits)
    spread = np.array([sum(((j >> i) & 1) << q for i, q in enumerate(qubits)) for j in range(size)])

    def gather(g: np.ndarray) -> np.ndarray:
        return sum(((g >> q) & 1) << i for i, q in enumerate(qubits))

    perm = None if op.perm is None else gather(op.perm[spread])
    phase = None if op.phase is None else op.phase[spread]
    return _Monomial(perm, phase)


class _RowMatrix:
    """Single-qubit gates on one qubit, one of them at least reading an input, as one 2x2
    matrix per row applied in one pass over the state: re-uploading's Rot(x·ω) then Rot(θ)
    is one operation, not six."""

    def __init__(self, qubit: int, ops: list):
        self.qubit = qubit
        self.block = _QubitMatrices([_localized(op, {qubit: 0}) for op in ops], 1)
        self.real = self.block.real

    def apply(self, state, cos, sin, num_qubits):
        matrix = self.block.matrices(cos, sin, state.dtype, state.device)[:, 0]
        return on_qubits(state, matrix, self.qubit, num_qubits)


def _single_qubit_runs(ops: list, num_qubits: int, weight_only: list[bool]) -> list:
    """`ops` with each qubit's single-qubit gates moved on to the next gate that touches the
    qubit (they commute with gates on other qubits), and each such run of two or more gates
    that reads an input made one `_RowMatrix`."""
    fused: list = []
    pending: dict[int, list] = {q: [] for q in range(num_qubits)}

    def flush(qubit: int) -> None:
        run = pending[qubit]
        if len(run) > 1 and not all(_constant_in_batch(op, weight_only) for op in run):
            fused.append(_RowMatrix(qubit, run))
        else:
            fused.extend(run)
        pending[qubit] = []

    for op in ops:
        if isinstance(op, (_Fixed1q, _Rotation)):
            pending[op.qubit].append(op)
            continue
        for qubit in sorted(_qubits(op, num_qubits)):
            flush(qubit)
        fused.append(op)
    for qubit in range(num_qubits):
        flush(qubit)
    return fused


def _diagonal(op: Any) -> bool:
    if isinstance(op, (_Rotation, _Controlled)):
        return op.kind in ("rz", "p") and op.index is not None
    return isinstance(op, _Parity) or (isinstance(op, _Monomial) and op.perm is None)


class _Phases:
    """Diagonal gates (rz, p, crz, cp, rzz and constant phases), one at least reading an
    input, as one phase per row and basis state, exp(i·angles @ D): D[g, k] is the multiple
    of gate g's angle that basis state k takes. The IQP embedding's RZZ on every pair of
    qubits is one operation, whatever the number of pairs."""

    def __init__(self, ops: list, num_qubits: int):
        index = np.arange(2**num_qubits)

        def bit(q: int) -> np.ndarray:
            return ((index >> q) & 1).astype(np.float64)

        def minus_z(q: int) -> np.ndarray:  # -1 where qubit q is 0, +1 where it is 1
            return 2 * bit(q) - 1

        self.constant: np.ndarray | None = None
        rows, columns = [], []
        for op in ops:
            if isinstance(op, _Monomial):
                self.constant = op.phase if self.constant is None else self.constant * op.phase
                continue
            # The angle table holds θ/2 for rz, crz and rzz, θ for p and cp.
            if isinstance(op, _Parity):
                rows.append(-minus_z(op.qubits[0]) * minus_z(op.qubits[1]))
            elif isinstance(op, _Controlled):
                target = bit(op.target) if op.kind == "p" else minus_z(op.target)
                rows.append(bit(op.control) * target)
            else:
                rows.append(bit(op.qubit) if op.kind == "p" else minus_z(op.qubit))
            columns.append(op.index)
        self.columns = torch.tensor(columns, dtype=torch.long)
        self.table = np.stack(rows)
        self.real = False
        self._cache: dict[tuple[torch.device, torch.dtype], tuple[Any, Any]] = {}

    def apply(self, state, cos, sin, num_qubits):
        real = cos.dtype
        key = (state.device, real)
        if key not in self._cache:
            table = torch.from_numpy(self.table).to(state.device, real)
            constant = None if self.constant is None else torch.from_numpy(self.constant)
            self._cache[key] = (table, None if constant is None else constant.to(state))
        table, constant = self._cache[key]
        phase = angles_of(cos, sin, self.columns) @ table
        factor = torch.complex(torch.cos(phase), torch.sin(phase))
        return state * (factor if constant is None else factor * constant)


def _diagonal_runs(ops: list, num_qubits: int, weight_only: list[bool]) -> list:
    """`ops` with each run of two or more consecutive diagonal gates that reads an input made
    one `_Phases` (cut where its table would pass PHASE_TABLE_MAX entries)."""
    fused: list = []
    run: list = []
    longest = max(2, PHASE_TABLE_MAX // 2**num_qubits)

    def flush() -> None:
        if len(run) > 1 and not all(_constant_in_batch(op, weight_only) for op in run):
            fused.append(_Phases(run, num_qubits))
        else:
            fused.extend(run)
        run.clear()

    for op in ops:
        if not _diagonal(op) or len(run) == longest:
            flush()
        if _diagonal(op):
            run.append(op)
        else:
            fused.append(op)
    flush()
    return fused


class _Local:
    """Gates whose angles involve no input, all on the same one or two qubits, as one 2x2
    or 4x4 matrix built per call from the weights (a `_Unitary` of those qubits) and applied
    to those qubits' axes of the state: a circuit's two-qubit blocks (RY, RY, CNOT, RY, RY)
    are then one operation, not five, past the width of whole-circuit blocks."""

    def __init__(self, qubits: list[int], ops: list):
        self.qubits = sorted(qubits)  # local qubit i is self.qubits[i]
        local = {q: i for i, q in enumerate(self.qubits)}
        self.unitary = _Unitary(_stages([_localized(op, local) for op in ops], len(local)))
        self.real = self.unitary.real

    per_block = True  # as _Unitary

    def apply(self, state, cos, sin, num_qubits):
        unitary = self.unitary.matrix(cos, sin, len(self.qubits), state.dtype, state.device)
        if unitary.dim() == 3:  # one per block of rows: one per row
            unitary = unitary.repeat_interleave(len(state) // len(unitary), 0)
        low, high = self.qubits[0], self.qubits[-1]
        if high - low + 1 == len(self.qubits):  # one qubit, or two neighbours
            return on_qubits(state, unitary, low, num_qubits)
        view = pair_view(state, low, high, num_qubits)
        # U[i, j], i and j local indices (bit 0: the low qubit), as [hi', lo', hi, lo].
        if unitary.dim() == 3:
            unitary = unitary.reshape(-1, 2, 2, 2, 2)
            return torch.einsum("bHOho,blhmor->blHmOr", unitary, view).reshape(state.shape)
        unitary = unitary.reshape(2, 2, 2, 2)
        return torch.einsum("HOho,blhmor->blHmOr", unitary, view).reshape(state.shape)


def _local_blocks(ops: list, num_qubits: int, weight_only: list[bool]) -> list:
    """`ops` with each run of two or more consecutive batch-constant gates on at most two
    qubits as one `_Local`."""

    fused: list = []
    run: list = []
    qubits: set[int] = set()

    def flush() -> None:
        if len(run) > 1:
            fused.append(_Local(sorted(qubits), run))
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
