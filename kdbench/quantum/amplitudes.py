"""Amplitude encoding of real vectors with angles linear in the circuit's inputs.

A real unit vector a of length 2**n is prepared from |0...0> by uniformly controlled RY
rotations (Möttönen et al. 2004, "Transformation of quantum states using uniformly
controlled rotations"): qubit n-1 (the most significant bit of the amplitude's index) first,
each next qubit rotated by an angle that depends on the qubits above it, each uniformly
controlled rotation written as RY and CNOT gates. Its RY angles are linear combinations of
the tree's angles, so `amplitude_angles` computes them all in torch and the circuit takes
each as one input: every backend sees RY(input), and gradients (where a model needs them)
flow through torch.

Amplitude k sits on the basis state |k> in Qiskit's order (bit q of k is qubit q).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from qiskit.circuit import ParameterVector, QuantumCircuit


def _gray(i: int) -> int:
    return i ^ (i >> 1)


def _changed_bit(i: int, controls: int) -> int:
    """The bit in which Gray codes i and i + 1 (cyclically) differ."""
    return (_gray(i) ^ _gray((i + 1) % 2**controls)).bit_length() - 1


def amplitude_circuit(qubits: int) -> tuple[QuantumCircuit, ParameterVector]:
    """The preparation circuit of a real vector of length 2**qubits, and its 2**qubits - 1
    inputs in the order `amplitude_angles` gives them."""
    from qiskit.circuit import ParameterVector, QuantumCircuit

    inputs = ParameterVector("a", 2**qubits - 1)
    qc = QuantumCircuit(qubits)
    used = 0
    for level in range(qubits):
        target = qubits - 1 - level
        controls = list(range(qubits - 1, target, -1))  # control m: qubit n-1-m
        for i in range(2**level):
            qc.ry(inputs[used + i], target)
            if level:
                qc.cx(controls[_changed_bit(i, level)], target)
        used += 2**level
    return qc, inputs


@functools.cache
def _walsh(level: int) -> torch.Tensor:
    """M [2^l, 2^l] with the RY angles of a uniformly controlled RY = M @ its angles per
    control pattern: M[i, j] = (-1)^(bits of j · Gray code i) / 2^l."""
    size = 2**level
    rows = [[(-1) ** bin(j & _gray(i)).count("1") / size for j in range(size)] for i in range(size)]
    return torch.tensor(rows, dtype=torch.float64)


def amplitude_angles(vectors: torch.Tensor) -> torch.Tensor:
    """The inputs [B, 2**n - 1] of `amplitude_circuit(n)` that prepare each real vector of
    `vectors` [B, 2**n], normalised (a zero vector prepares |0...0>)."""
    size = vectors.shape[1]
    qubits = size.bit_length() - 1
    if size != 2**qubits or qubits < 1:
        raise ValueError(f"a vector to encode needs 2**n entries (n >= 1), got {size}")
    # Level l splits each node (amplitudes sharing their top l bits) by bit n-1-l: node j of
    # level l holds indices whose top l bits, read with the qubit just above first, are j.
    angles = []
    x = vectors.reshape(len(vectors), *[2] * qubits)  # dims: bit n-1, ..., bit 0
    for level in range(qubits):
        nodes = x.reshape(len(vectors), 2**level, 2, -1)  # [B, node, bit, rest]
        if level == qubits - 1:  # signed: the last bit's pair gives the signs
            theta = 2 * torch.atan2(nodes[:, :, 1, 0], nodes[:, :, 0, 0])
        else:
            norms = nodes.square().sum(-1).sqrt()
            theta = 2 * torch.atan2(norms[:, :, 1], norms[:, :, 0])
        # Node j's l bits are bits n-1 ... n-l of the index, most significant first; control
        # m is qubit n-1-m, i.e. bit l-1-m of j: the control pattern is j's bits reversed.
        theta = theta[:, _reversed_bits(level)]
        angles.append(theta @ _walsh(level).to(theta.dtype).T)
    return torch.cat(angles, dim=1)


@functools.cache
def _reversed_bits(level: int) -> list[int]:
    """Node index, control pattern: pattern p's bit m is the node's bit (level - 1 - m)."""
    return [int(format(p, f"0{level}b")[::-1] or "0", 2) for p in range(2**level)]
