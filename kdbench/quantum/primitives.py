"""Adapters from Qiskit's sampler primitives to the parameter-shift `Sampler`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from qiskit.circuit import Parameter, QuantumCircuit


def measured(circuit: QuantumCircuit) -> QuantumCircuit:
    """`circuit` without its final measurements, then measuring every qubit into 'meas'.

    Measuring before transpilation keeps classical bit q = logical qubit q whatever the layout.
    """
    out = circuit.remove_final_measurements(inplace=False)
    out.measure_all()
    return out


def measured_qubits(circuit: QuantumCircuit) -> list[int]:
    """The index of the qubit measured into each classical bit of `circuit`, in bit order (a
    transpiler may have moved the logical qubits `measured` measured)."""
    qubit_of = {}
    for instruction in circuit.data:
        if instruction.operation.name == "measure":
            clbit = circuit.find_bit(instruction.clbits[0]).index
            qubit_of[clbit] = circuit.find_bit(instruction.qubits[0]).index
    return [qubit_of[c] for c in range(circuit.num_clbits)]


def bit_array_probabilities(bits: Any, num_bits: int) -> np.ndarray:
    """Outcome frequencies [K, 2**num_bits] of a Qiskit `BitArray` of shape [K] (or [])."""
    array = np.asarray(bits.array)  # [..., shots, bytes], bytes big-endian
    shots = array.shape[-2]
    outcomes = np.zeros(array.shape[:-1], dtype=np.int64)
    for column in range(array.shape[-1]):
        outcomes = (outcomes << 8) | array[..., column]
    outcomes = outcomes.reshape(-1, shots)
    rows, size = outcomes.shape[0], 2**num_bits
    flat = outcomes + size * np.arange(rows, dtype=np.int64)[:, None]
    counts = np.bincount(flat.ravel(), minlength=rows * size).reshape(rows, size)
    return counts / shots


def bind_order(circuit: QuantumCircuit, slots: Sequence[Parameter]) -> tuple[list[int], list[int]]:
    """(order, unused): the slot of each Parameter of `circuit`, in `circuit.parameters` order
    (the order Qiskit's primitives and Aer bind values in), and the slots the circuit lacks
    (the transpiler dropped them; their values change nothing)."""
    index = {param: s for s, param in enumerate(slots)}
    order = [index[param] for param in circuit.parameters]
    return order, sorted(set(range(len(slots))) - set(order))


class PrimitiveSampler:
    """A `Sampler` over a Qiskit V2 sampler primitive: one PUB, one job per call.

    `circuit` is the measured circuit (register 'meas') as it is submitted, with the slot
    Parameters of `slots` (any that it lacks do not change its outcome: see `unused`).
    `before_submit(num_circuits)` runs before each job, to reseed, log or refuse it.
    """

    def __init__(
        self,
        primitive: Any,
        circuit: QuantumCircuit,
        slots: Sequence[Parameter],
        *,
        shots: int,
        before_submit: Callable[[int], None] | None = None,
    ):
        self.primitive = primitive
        self.circuit = circuit
        self.shots = shots
        self.before_submit = before_submit
        self.num_bits = circuit.num_clbits
        self._order, self.unused = bind_order(circuit, slots)

    def __call__(self, values: torch.Tensor) -> torch.Tensor:
        rows = values.detach().to("cpu", torch.float64).numpy()[:, self._order]
        if self.before_submit is not None:
            self.before_submit(rows.shape[0])
        # A circuit without parameters runs once; its rows are all the same distribution.
        pub = (self.circuit, rows) if self._order else (self.circuit,)
        result = self.primitive.run([pub], shots=self.shots).result()
        probs = bit_array_probabilities(result[0].data.meas, self.num_bits)
        return torch.from_numpy(probs).expand(rows.shape[0], -1)
