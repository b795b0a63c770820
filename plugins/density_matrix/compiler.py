"""Walks a transpiled circuit once: its gates and errors as steps, their angles as a table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from kdbench import (
    exact_definition,
    gets_depolarizing,
    linear_form,
    measured_qubits,
    parameter_columns,
    varying_angles,
)

from .noise import _NoiseErrors
from .steps import _gate_terms, _Step

if TYPE_CHECKING:  # qiskit is slow to import; it is imported when a circuit is compiled
    from qiskit.circuit import Parameter, QuantumCircuit
    from qiskit_aer.noise import NoiseModel

# Operations with no effect on the outcome probabilities of the final measurement.
_SKIPPED = frozenset({"measure", "barrier", "delay"})


class _Compiler:
    """Walks a measured, transpiled circuit once: its steps, angle table and readout."""

    def __init__(
        self,
        isa: QuantumCircuit,
        inputs: Sequence[Parameter],
        weights: Sequence[Parameter],
        noise_model: NoiseModel | None,
        depolarizing: float,
        readout: bool,
    ):
        self.noise_model, self.depolarizing = noise_model, depolarizing
        columns = parameter_columns(inputs, weights)
        self.num_inputs = len(inputs)
        used = {
            isa.find_bit(q).index
            for instruction in isa.data
            if instruction.operation.name not in ("barrier", "delay")
            for q in instruction.qubits
        }
        # Only the qubits a gate or a measurement touches are simulated: a fake device has
        # up to 133, a student uses a few (an idle qubit has no error in Aer's device models).
        self.physical = sorted(used)
        index = {q: i for i, q in enumerate(self.physical)}
        self.measured = [index[q] for q in measured_qubits(isa)]
        self.slopes: list[dict[int, float]] = []
        self.offsets: list[float] = []
        self.steps: list[_Step] = []
        self._kraus_cache: dict[tuple[str, tuple[int, ...]], list[np.ndarray] | None] = {}
        for instruction in isa.data:
            operation = instruction.operation
            physical = tuple(isa.find_bit(q).index for q in instruction.qubits)
            where = f"density-matrix backend: gate '{operation.name}' on qubits {list(physical)}"
            if operation.name in _SKIPPED:
                continue
            if operation.name == "reset" or operation.num_clbits:
                raise ValueError(f"{where}: only unitary gates and final measurements run here")
            if len(physical) > 2:
                raise ValueError(f"{where}: gates on more than 2 qubits are not supported")
            for piece, qubits in self._pieces(operation, physical):
                terms, omega, angle = _gate_terms(piece, where)
                step = _Step(tuple(index[q] for q in qubits), terms, omega)
                if angle is not None:
                    slopes, offset = linear_form(angle, columns, where)
                    step.angle = len(self.slopes)
                    step.reads_inputs = any(c < self.num_inputs for c in slopes)
                    self.slopes.append(slopes)
                    self.offsets.append(offset)
                self.steps.append(step)
            self.steps[-1].noise = self._error(operation.name, physical)  # after the whole gate
        errors = _NoiseErrors(noise_model)
        if "measure" in errors.noisy_instructions():
            raise ValueError(
                "density-matrix backend: the noise model has quantum errors on 'measure'; only "
                "readout errors (ReadoutError) on measurements are supported"
            )
        if readout and errors.correlated_readout():
            raise ValueError(
                "density-matrix backend: correlated readout errors on several qubits are not "
                "supported; the noise model has them"
            )
        self.confusion = [
            self._confusion(self.physical[q]) if readout else np.eye(2) for q in self.measured
        ]

    @staticmethod
    def _pieces(operation: Any, physical: tuple[int, ...]) -> list[tuple[Any, tuple[int, ...]]]:
        """(gate, qubits) that make up `operation` on `physical`: itself, or, for a gate with
        several parameterized angles (u, cu3, ...: a step has one), its exact definition,
        whose gates have one each (the global phase left out: ρ does not see it)."""
        definition = exact_definition(operation) if len(varying_angles(operation)) > 1 else None
        if definition is None:
            return [(operation, physical)]
        return [
            (i.operation, tuple(physical[definition.find_bit(q).index] for q in i.qubits))
            for i in definition.data
        ]

    def _error(self, name: str, physical: tuple[int, ...]) -> list[np.ndarray] | None:
        """The Kraus operators of the error after gate `name` on `physical`, or None: the
        noise model's (local, else all-qubit, as Aer applies them), then the uniform
        depolarizing."""
        key = (name, physical)
        if key in self._kraus_cache:
            return self._kraus_cache[key]
        from qiskit.quantum_info import Kraus
        from qiskit_aer.noise import depolarizing_error

        error = _NoiseErrors(self.noise_model).after(name, physical)
        if self.depolarizing and gets_depolarizing(name, len(physical)):
            uniform = depolarizing_error(self.depolarizing, len(physical))
            error = uniform if error is None else error.compose(uniform)
        kraus = None if error is None else list(Kraus(error.to_quantumchannel()).data)
        self._kraus_cache[key] = kraus
        return kraus

    def _confusion(self, physical: int) -> np.ndarray:
        """P(read m | state t) as [t, m] for `physical`'s measurement (identity: none)."""
        error = _NoiseErrors(self.noise_model).readout(physical)
        return np.eye(2) if error is None else np.asarray(error.probabilities, dtype=float)
