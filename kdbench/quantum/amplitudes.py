"""Amplitude encoding of real vectors with angles linear in the circuit's inputs.

A real unit vector a of length 2**n is prepared from |0...0> by uniformly controlled RY
rotations (Möttönen et al. 2004, "Transformation of quantum states using uniformly
controlled rotations"): qubit n-1 (the most significant bit of the amplitude's index) first,
each next qubit rotated by an angle that depends on the qubits above it, each uniformly
controlled rotation written as RY and CNOT gates. Its RY angles are linear combinations of
the tree's angles, so `amplitude_angles` computes them all in torch and the circuit takes
each as one input: every backend sees RY(input), and gradients (where a model needs them)
flow through torch.

The preparation is one gate, `AMPLITUDES` ("amplitudes"), whose definition is those RY and
CNOT gates: a backend that knows it may load the state at once (2**n products of cosines
and sines where the gates are 2**n rotations and as many CNOTs, each a pass over the state);
the others, and Qiskit, expand it.

Amplitude k sits on the basis state |k> in Qiskit's order (bit q of k is qubit q).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from qiskit.circuit import ParameterVector, QuantumCircuit


def _gray(i: int) -> int:
    return i ^ (i >> 1)


def _changed_bit(i: int, controls: int) -> int:
    """The bit in which Gray codes i and i + 1 (cyclically) differ."""
    return (_gray(i) ^ _gray((i + 1) % 2**controls)).bit_length() - 1


AMPLITUDES = "amplitudes"
"""The name of `amplitude_circuit`'s one gate."""


def amplitude_circuit(qubits: int) -> tuple[QuantumCircuit, ParameterVector]:
    """The preparation circuit of a real vector of length 2**qubits (one `AMPLITUDES` gate on
    all its qubits, defined by RY and CNOT gates), and its 2**qubits - 1 inputs in the order
    `amplitude_angles` gives them."""
    from qiskit.circuit import ParameterVector, QuantumCircuit

    inputs = ParameterVector("a", 2**qubits - 1)
    qc = QuantumCircuit(qubits, name=AMPLITUDES)
    used = 0
    for level in range(qubits):
        target = qubits - 1 - level
        controls = list(range(qubits - 1, target, -1))  # control m: qubit n-1-m
        for i in range(2**level):
            qc.ry(inputs[used + i], target)
            if level:
                qc.cx(controls[_changed_bit(i, level)], target)
        used += 2**level
    circuit = QuantumCircuit(qubits)
    circuit.append(qc.to_gate(), range(qubits))
    return circuit, inputs


def amplitudes_from_angles(half_angles: torch.Tensor) -> torch.Tensor:
    """The state [B, 2**n] that `amplitude_circuit(n)` prepares from |0...0>, given half its
    RY angles [B, 2**n - 1] (θ/2, any values): level by level, each node's amplitude times
    the cosine and the sine of its uniformly controlled rotation's half angle."""
    rows, size = half_angles.shape
    qubits = (size + 1).bit_length() - 1
    state = half_angles.new_ones(rows, 1)
    used = 0
    for level in range(qubits):
        node = _linear(_ry_to_nodes, half_angles[:, used : used + 2**level], level)
        state = torch.stack((state * node.cos(), state * node.sin()), dim=2).flatten(1)
        used += 2**level
    return state


def _hadamard(x: torch.Tensor) -> torch.Tensor:
    """The Walsh-Hadamard transform of each row of x [B, 2^l]: y[i] = Σ_j (-1)^(i·j) x[j]
    (i·j: the bits they share), in l passes of sums and differences."""
    rows, size = x.shape
    for bit in range(size.bit_length() - 1):
        pairs = x.reshape(rows, -1, 2, 2**bit)
        x = torch.stack((pairs[:, :, 0] + pairs[:, :, 1], pairs[:, :, 0] - pairs[:, :, 1]), 2)
    return x.reshape(rows, size)


@functools.cache
def _gray_codes(level: int) -> torch.Tensor:
    return torch.tensor([_gray(i) for i in range(2**level)])


@functools.cache
def _gray_ranks(level: int) -> torch.Tensor:
    """The inverse of `_gray_codes`: the i whose Gray code is each index."""
    return torch.argsort(_gray_codes(level))


def amplitude_angles(vectors: torch.Tensor) -> torch.Tensor:
    """The inputs [B, 2**n - 1] of `amplitude_circuit(n)` that prepare each real vector of
    `vectors` [B, 2**n], normalised (a zero vector prepares |0...0>)."""
    size = vectors.shape[1]
    qubits = size.bit_length() - 1
    if size != 2**qubits or qubits < 1:
        raise ValueError(f"a vector to encode needs 2**n entries (n >= 1), got {size}")
    # Level l splits each node (amplitudes sharing their top l bits) by bit n-1-l: node j of
    # level l holds indices whose top l bits, read with the qubit just above first, are j.
    # Its two halves' squared norms are the sums of the next level's, from the leaves up.
    halves = [vectors.reshape(len(vectors), -1, 2)]  # the last level: signed amplitudes
    squares = vectors.square()
    for _ in range(qubits - 1):
        squares = squares.reshape(len(vectors), -1, 2).sum(-1)
        halves.append(squares.sqrt().reshape(len(vectors), -1, 2))
    angles = []
    for level in range(qubits):
        pairs = halves[qubits - 1 - level]  # [B, node, bit]
        theta = 2 * torch.atan2(pairs[:, :, 1], pairs[:, :, 0])
        angles.append(_linear(_nodes_to_ry, theta, level))
    return torch.cat(angles, dim=1)


def _nodes_to_ry(theta: torch.Tensor, level: int) -> torch.Tensor:
    """The RY angles of level `level` from its nodes' angles theta [B, 2^l]."""
    # Node j's l bits are bits n-1 ... n-l of the index, most significant first; control m
    # is qubit n-1-m, i.e. bit l-1-m of j: the control pattern is j's bits reversed.
    theta = theta[:, _reversed_bits(level)]
    # The RY angles of the uniformly controlled RY whose angle per control pattern is theta:
    # RY i gets Σ_p (-1)^(p·gray(i)) theta_p / 2^l (the CNOTs flip its sign).
    return _hadamard(theta)[:, _gray_codes(level)] / 2**level


def _ry_to_nodes(ry: torch.Tensor, level: int) -> torch.Tensor:
    """`_nodes_to_ry` backwards (the transform is its own inverse but for a factor 2^l)."""
    return _hadamard(ry[:, _gray_ranks(level)])[:, _reversed_bits(level)]


DENSE_LEVELS = 8
"""Up to 2^8 angles a level, a level's transform is one product with its matrix (a few
hundred small tensor operations fewer for 8 qubits); past it, l passes over the angles."""


def _linear(transform: Callable, values: torch.Tensor, level: int) -> torch.Tensor:
    if level > DENSE_LEVELS:
        return transform(values, level)
    return values @ _matrix_of(transform, level).to(values)


@functools.cache
def _matrix_of(transform: Callable, level: int) -> torch.Tensor:
    """The matrix M of a linear transform of rows, transform(x) = x @ M."""
    return transform(torch.eye(2**level, dtype=torch.float64), level)


@functools.cache
def _reversed_bits(level: int) -> list[int]:
    """Node index, control pattern: pattern p's bit m is the node's bit (level - 1 - m)."""
    return [int(format(p, f"0{level}b")[::-1] or "0", 2) for p in range(2**level)]
