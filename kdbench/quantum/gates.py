"""Composite gates expanded into the gates a backend runs."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qiskit.circuit import QuantumCircuit

# Kept whatever the backend: they are no gates, and they have no definition to expand.
_DIRECTIVES = frozenset({"measure", "barrier"})


def decompose_to(circuit: QuantumCircuit, supported: Collection[str]) -> QuantumCircuit:
    """`circuit` with every composite instruction outside `supported` replaced by its
    definition, recursively: an `EfficientSU2` instance appended as one gate, a circuit
    composed without `decompose()`, a user gate.

    Qiskit's standard gates (`get_standard_gate_name_mapping`: crx, sx, u, ...) stay as they
    are, as does an instruction without a definition: a backend names one it cannot run in its
    error, or a transpiler handles it, as for a flat circuit. Returns `circuit` itself when
    nothing is expanded, so that a flat circuit compiles exactly as before.
    """
    from qiskit.circuit.library import get_standard_gate_name_mapping

    kept = {*supported, *_DIRECTIVES, *get_standard_gate_name_mapping()}

    def expands(operation: Any) -> bool:
        return operation.name not in kept and operation.definition is not None

    if not any(expands(i.operation) for i in circuit.data):
        return circuit
    out = circuit.copy_empty_like()

    def append(source: QuantumCircuit, qubits: Sequence[Any], clbits: Sequence[Any]) -> None:
        """Append `source`'s instructions to `out`, its bits mapped to `qubits` and `clbits`."""
        qubit_of = dict(zip(source.qubits, qubits, strict=True))
        clbit_of = dict(zip(source.clbits, clbits, strict=True))
        for instruction in source.data:
            operation = instruction.operation
            on_qubits = [qubit_of[q] for q in instruction.qubits]
            on_clbits = [clbit_of[c] for c in instruction.clbits]
            if expands(operation):
                definition = operation.definition
                out.global_phase += definition.global_phase
                append(definition, on_qubits, on_clbits)
            else:
                out.append(operation, on_qubits, on_clbits)

    append(circuit, circuit.qubits, circuit.clbits)
    return out
