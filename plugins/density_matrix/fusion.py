"""Fusion: steps as a product state, blocks on at most 2 qubits, one superoperator each."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from kdbench import constant_tensor, product_state

from .apply_operation import _Local
from .steps import _Step, _superop


def _segments(steps: list[_Step], n: int) -> tuple[list[_Step], list[_Step], list[_Step]]:
    """(product, middle, tail): each qubit's 1-qubit steps before its first multi-qubit step
    (a product state); the steps after the last one that reads an input on their qubits
    (input-free: run on the observables); the rest, in order. Each qubit's steps keep their
    order, so the three run one after the other mean the same circuit."""
    product, rest = [], []
    entangled: set[int] = set()
    for step in steps:
        if len(step.qubits) == 1 and step.qubits[0] not in entangled:
            product.append(step)
        else:
            entangled.update(step.qubits)
            rest.append(step)
    tail: list[_Step] = []
    middle: list[_Step] = []
    blocked: set[int] = set()
    for step in reversed(rest):
        if step.reads_inputs or blocked.intersection(step.qubits):
            blocked.update(step.qubits)
            middle.append(step)
        else:
            tail.append(step)
    return product, middle[::-1], tail[::-1]


@dataclass
class _Block:
    """Steps on the same at most 2 qubits, run as one superoperator: constant runs are
    multiplied out at compile time, the angle-dependent steps multiplied in per call."""

    qubits: tuple[int, ...]
    steps: list[_Step] = field(default_factory=list)


def _blocks(steps: list[_Step]) -> list[_Block]:
    """Fuse steps into blocks on at most 2 qubits: a step joins the block that last touched
    all its qubits when that block covers them; a 2-qubit step takes in the 1-qubit blocks
    that are the last on its qubits. Moving a step or block past others on other qubits
    keeps the circuit's meaning: they commute."""
    blocks: list[_Block | None] = []
    last: dict[int, int] = {}
    for step in steps:
        owners = {last.get(q) for q in step.qubits}
        if len(owners) == 1 and None not in owners:
            block = blocks[owners.pop()]  # type: ignore[index]
            if block is not None and set(step.qubits) <= set(block.qubits):
                block.steps.append(step)
                continue
        new = _Block(step.qubits)
        if len(step.qubits) == 2:
            for q in step.qubits:
                index = last.get(q)
                old = None if index is None else blocks[index]
                if old is not None and old.qubits == (q,):
                    new.steps += old.steps
                    blocks[index] = None  # type: ignore[index]
        new.steps.append(step)
        blocks.append(new)
        for q in step.qubits:
            last[q] = len(blocks) - 1
    return [b for b in blocks if b is not None]


def _kron_terms(step: _Step) -> np.ndarray:
    """[5, d², d²]: U ⊗ conj(U) of the step's gate U = A + cB + sC (c, s = cos, sin ωθ) as
    T_0 + c·T_1 + s·T_2 + cos(2ωθ)·T_3 + sin(2ωθ)·T_4 (c² = (1 + cos 2ωθ)/2, ...)."""

    def k(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.kron(x, y.conj())

    a, b, c = step.terms
    return np.stack(
        [
            k(a, a) + (k(b, b) + k(c, c)) / 2,
            k(a, b) + k(b, a),
            k(a, c) + k(c, a),
            (k(b, b) - k(c, c)) / 2,
            (k(b, c) + k(c, b)) / 2,
        ]
    )


class _Factors:
    """Superoperators F_g = Σ_j φ_j(ω_g·angle_g)·T_gj of several gates at once per call, the
    T_gj fixed ([G, 5, d², d²]: each gate's U ⊗ conj(U) terms with its neighbouring
    constant runs multiplied in), φ = (1, cos, sin, cos 2·, sin 2·): one einsum for all."""

    def __init__(self, terms: np.ndarray, frequency: Sequence[float], columns: Sequence[int]):
        self.terms = terms
        self.frequency = np.asarray(frequency, dtype=float)
        self.columns = np.asarray(columns, dtype=np.int64)
        self._cache: dict[tuple, tuple[torch.Tensor, ...]] = {}

    def __call__(self, angles: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """angles [R, all] -> [R, G, d², d²] in `dtype` (real: the terms are)."""
        key = (angles.device, dtype)
        if key not in self._cache:
            self._cache[key] = (
                constant_tensor(self.terms, angles.device, dtype),
                torch.from_numpy(self.frequency).to(angles.device, angles.dtype),
                torch.from_numpy(self.columns).to(angles.device),
            )
        terms, frequency, columns = self._cache[key]
        theta = angles[:, columns] * frequency  # [R, G]
        phi = torch.stack(
            [
                torch.ones_like(theta),
                theta.cos(),
                theta.sin(),
                (2 * theta).cos(),
                (2 * theta).sin(),
            ],
            -1,
        )
        return torch.einsum("rgj,gjab->rgab", phi.to(terms.dtype), terms)


class _FusedBlock:
    """A block's superoperator S = C_m·K_m···C_1·K_1·C_0 (K_g = U_g ⊗ conj(U_g) of its
    angle-dependent gates, C_g the constant runs between them, multiplied out once) as the
    factors F_g = C_g·K_g, C_0 folded into F_1 unless `keep_first`."""

    def __init__(self, block: _Block, keep_first: bool = False):
        self.qubits = block.qubits
        d2 = 4 ** len(block.qubits)
        self.reads_inputs = any(s.reads_inputs for s in block.steps)
        runs: list[np.ndarray] = []
        varying: list[_Step] = []
        current = np.eye(d2, dtype=complex)
        for step in (s.embedded(block.qubits) for s in block.steps):
            noise = np.eye(d2) if step.noise is None else _superop(step.noise)
            if step.angle is None:
                a = step.terms[0]
                current = noise @ np.kron(a, a.conj()) @ current
            else:
                runs.append(current)
                varying.append(step)
                current = noise
        runs.append(current)
        self.first = runs[0]  # C_0: the whole block when no angle varies
        self.terms = [runs[g + 1] @ _kron_terms(step) for g, step in enumerate(varying)]
        if self.terms and not keep_first:
            self.terms[0] = self.terms[0] @ self.first
        self.frequency = [s.frequency for s in varying]
        self.columns = [s.angle for s in varying]
        self._cache: dict[tuple, torch.Tensor] = {}

    def constant(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """C_0 on `device` in `dtype`."""
        key = (device, dtype)
        if key not in self._cache:
            self._cache[key] = constant_tensor(self.first, device, dtype)
        return self._cache[key]


class _FusedBlocks:
    """Blocks run one after the other; the factors of all their angle-dependent gates are
    computed at once per call, one batch per block width."""

    def __init__(self, blocks: list[_Block], num_qubits: int):
        self.blocks = [_FusedBlock(b) for b in blocks]
        self.locals = [_Local(b.qubits, num_qubits) for b in blocks]
        by_width: dict[int, list[_FusedBlock]] = {}
        self.where: list[tuple[int, int]] = []  # per block: (width, first of its factors)
        for block in self.blocks:
            group = by_width.setdefault(len(block.qubits), [])
            self.where.append((len(block.qubits), sum(len(b.terms) for b in group)))
            group.append(block)
        self.factors = {
            width: _Factors(
                np.concatenate([np.stack(b.terms) for b in group if b.terms]),
                [f for b in group for f in b.frequency],
                [c for b in group for c in b.columns],
            )
            for width, group in by_width.items()
            if any(b.terms for b in group)
        }

    def __bool__(self) -> bool:
        return bool(self.blocks)

    def run(self, rows: torch.Tensor, angles: torch.Tensor, heisenberg: bool) -> torch.Tensor:
        """rows [R, 4^n] through the blocks: forwards on density matrices, or backwards on
        observables (`heisenberg`: each block's adjoint, the last block first). Blocks that
        read no input use the first row of `angles`."""
        factors = {width: f(angles, rows.dtype) for width, f in self.factors.items()}
        order = range(len(self.blocks))
        for i in reversed(order) if heisenberg else order:
            block, (width, start) = self.blocks[i], self.where[i]
            if not block.terms:
                superop = block.constant(rows.device, rows.dtype)
            else:
                mine = factors[width][:, start : start + len(block.terms)]
                superop = mine[:, 0]
                for g in range(1, len(block.terms)):
                    superop = mine[:, g] @ superop
                if not block.reads_inputs:
                    superop = superop[0]
            rows = self.locals[i].apply(rows, superop, heisenberg)
        return rows


class _ProductState:
    """Each qubit's 2x2 density matrix after its leading 1-qubit steps, per sample, as the
    vectorized product [R, 4^n] in the paired order (qubit n-1's (row, column) bits most
    significant). The k-th angle-dependent gate of every qubit runs at once."""

    def __init__(self, steps: list[_Step], n: int):
        self.n = n
        per_qubit = [
            _FusedBlock(_Block((q,), [s for s in steps if s.qubits == (q,)]), keep_first=True)
            for q in range(n)
        ]
        # C_0 applied to |0><0| (vectorized: (1, 0, 0, 0)), per qubit.
        self.start = np.stack([b.first[:, 0] for b in per_qubit])  # [n, 4]
        identity = np.zeros((5, 4, 4), dtype=complex)
        identity[0] = np.eye(4)
        self.positions = []
        for k in range(max((len(b.terms) for b in per_qubit), default=0)):
            have = [k < len(b.terms) for b in per_qubit]
            self.positions.append(
                _Factors(
                    np.stack(
                        [
                            b.terms[k] if h else identity
                            for b, h in zip(per_qubit, have, strict=True)
                        ]
                    ),
                    [b.frequency[k] if h else 0.0 for b, h in zip(per_qubit, have, strict=True)],
                    [b.columns[k] if h else 0 for b, h in zip(per_qubit, have, strict=True)],
                )
            )
        self._cache: dict[tuple, torch.Tensor] = {}

    def vector(self, angles: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """[R, 4^n] in `dtype`; R = 1 when no angle here reads an input."""
        key = (angles.device, dtype)
        if key not in self._cache:
            self._cache[key] = constant_tensor(self.start, angles.device, dtype)
        qubits = self._cache[key][None]  # [1, n, 4]
        for factors in self.positions:
            qubits = (factors(angles, dtype) @ qubits[..., None])[..., 0]  # [R, n, 4]
        return product_state(qubits)


def _paired_order(n: int) -> np.ndarray:
    """The row-major index (r·2^n + c) of each position of the paired order, whose digits in
    base 4 are (r_q, c_q) from qubit n-1 down to 0."""
    d = 2**n
    position = np.arange(d * d)
    r = sum(((position >> (2 * q + 1)) & 1) << q for q in range(n))
    c = sum(((position >> (2 * q)) & 1) << q for q in range(n))
    return (r * d + c).astype(np.int64)
