"""A gate and the error after it as matrices on at most 2 qubits, linear in cos and sin."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kdbench import varying_angles

# A gate's matrix as A + cos(ωθ)·B + sin(ωθ)·C: ω = 1/2 for rotations, 1 for phase gates.
_FREQUENCIES = (0.5, 1.0)
_MATRIX_TOL = 1e-12


@dataclass
class _Step:
    """One gate and the error after it, on `qubits` (indices of the simulated qubits; bit j
    of the matrices' index is qubits[j], as in Qiskit): matrix = A + cos(ω·angle)·B +
    sin(ω·angle)·C with `angle` a column of the angle table (None: the matrix is A), then
    the channel `noise` (its Kraus operators, None: no error)."""

    qubits: tuple[int, ...]
    terms: tuple[np.ndarray, np.ndarray, np.ndarray]
    frequency: float = 0.0
    angle: int | None = None
    noise: list[np.ndarray] | None = None
    reads_inputs: bool = False

    def embedded(self, block: tuple[int, ...]) -> _Step:
        """The same step on the qubits of `block` (a superset), identity elsewhere."""
        if block == self.qubits:
            return self
        terms = tuple(_embed(m, self.qubits, block) for m in self.terms)
        noise = None if self.noise is None else [_embed(k, self.qubits, block) for k in self.noise]
        return _Step(block, terms, self.frequency, self.angle, noise, self.reads_inputs)


def _superop(kraus: Sequence[np.ndarray]) -> np.ndarray:
    """The superoperator of a channel: vec(E(ρ)) = S vec(ρ), vec row-major (index r·d + c)."""
    return sum(np.kron(k, k.conj()) for k in kraus)


def _embed(matrix: np.ndarray, qubits: tuple[int, ...], block: tuple[int, ...]) -> np.ndarray:
    """`matrix` on `qubits` as a matrix on `block` ⊇ qubits (identity on the others)."""
    k, n = len(qubits), len(block)
    tensor = matrix.reshape([2] * (2 * k))  # axes: out bits k-1..0, in bits k-1..0
    out = np.zeros([2] * (2 * n), dtype=complex)
    others = [q for q in block if q not in qubits]
    position = {q: n - 1 - block.index(q) for q in block}  # axis of qubit q's bit
    for other in np.ndindex(*([2] * len(others))):
        index: list[Any] = [slice(None)] * (2 * n)
        for q, bit in zip(others, other, strict=True):
            index[position[q]] = bit
            index[n + position[q]] = bit
        # The remaining axes are `qubits` in block order; the matrix's axes are in its order.
        order = sorted(qubits, key=lambda q: position[q])
        perm = [k - 1 - qubits.index(q) for q in order]
        out[tuple(index)] = tensor.transpose(perm + [k + p for p in perm])
    return out.reshape(2**n, 2**n)


def _gate_terms(operation: Any, where: str) -> tuple[tuple[np.ndarray, ...], float, Any]:
    """((A, B, C), ω, the angle expression or None) of a gate's matrix A + cos(ωθ)B + sin(ωθ)C."""
    from qiskit.quantum_info import Operator

    varying = varying_angles(operation)
    try:
        if not varying:
            matrix = Operator(operation).data
            zero = np.zeros_like(matrix)
            return (matrix, zero, zero), 0.0, None
        if len(varying) > 1:
            raise ValueError(f"{where}: more than one angle depends on parameters")
        slot = varying[0]

        def at(angle: float) -> np.ndarray:
            gate = operation.to_mutable()
            gate.params = [angle if i == slot else p for i, p in enumerate(operation.params)]
            return Operator(gate).data

        for omega in _FREQUENCIES:
            zero, half, full = at(0.0), at(math.pi / (2 * omega)), at(math.pi / omega)
            a, b = (zero + full) / 2, (zero - full) / 2
            c = half - a
            if all(
                np.allclose(
                    at(t), a + math.cos(omega * t) * b + math.sin(omega * t) * c, atol=_MATRIX_TOL
                )
                for t in (0.37, -1.9)
            ):
                return (a, b, c), omega, operation.params[slot]
    except ValueError:
        raise
    except Exception as error:  # Qiskit raises several kinds for a gate without a matrix
        raise ValueError(f"{where}: no matrix ({error})") from None
    raise ValueError(f"{where}: its matrix is not a rotation or phase in its angle")
