"""What a compiled circuit counts (circuits run, shots spent, its size) and its call check."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from qiskit.circuit import QuantumCircuit


class CircuitCounters:
    """The counters of a `CircuitFunction`, for a backend's compiled circuit to inherit.

    `executions` counts circuits run and `shots` the shots spent, `shots_per_circuit` each
    (0 when exact); `depth` and `width` describe the circuit as it runs. `stacks_weights`
    tells whether it also takes the weights of S models at once (see `CircuitFunction`).
    """

    stacks_weights: bool = False

    def __init__(self, *, depth: int, width: int, shots_per_circuit: int = 0):
        self.depth = depth
        self.width = width
        self.shots_per_circuit = shots_per_circuit
        self.executions = 0
        self.shots = 0

    def count(self, circuits: int) -> None:
        """Record that `circuits` more circuits ran, `shots_per_circuit` shots each."""
        self.executions += circuits
        self.shots += circuits * self.shots_per_circuit

    @staticmethod
    def gate_depth(circuit: QuantumCircuit) -> int:
        """The gate layers of a measured circuit (a transpiled one, say): measurements and
        barriers excluded, so that measuring adds no depth."""
        return circuit.depth(lambda item: item.operation.name not in ("measure", "barrier"))


def check_circuit_call(
    inputs: torch.Tensor,
    weights: torch.Tensor,
    num_inputs: int,
    num_weights: int,
    *,
    stacked: bool = False,
) -> None:
    """Raise ValueError unless inputs are [B, num_inputs] and weights [num_weights] (or, where
    `stacked`, [S, num_weights] with B a multiple of S)."""
    if inputs.dim() != 2 or inputs.shape[1] != num_inputs:
        raise ValueError(f"inputs must have shape [B, {num_inputs}], got {list(inputs.shape)}")
    if stacked and weights.dim() == 2 and weights.shape[1] == num_weights:
        if len(weights) and inputs.shape[0] % len(weights) == 0:
            return
        raise ValueError(
            f"{len(weights)} sets of weights for {inputs.shape[0]} inputs: not a multiple"
        )
    if weights.shape != (num_weights,):
        raise ValueError(f"weights must have shape [{num_weights}], got {list(weights.shape)}")
