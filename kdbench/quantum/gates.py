"""Composite gates expanded into the gates a backend runs, and standard gates a backend lacks
into exact equivalents made of gates it has."""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qiskit.circuit import QuantumCircuit

# Kept whatever the backend: they are no gates, and they have no definition to expand.
_DIRECTIVES = frozenset({"measure", "barrier"})

_PI_2, _PI_4 = math.pi / 2, math.pi / 4

# A QuantumCircuit method and its arguments: angles, then qubits (0, 1: the gate's own).
_Call = tuple[Any, ...]


def _u(theta: Any, phi: Any, lam: Any) -> list[_Call]:
    # P(φ)·RY(θ)·P(λ) is U(θ, φ, λ) entry by entry, phase included.
    return [("p", lam, 0), ("ry", theta, 0), ("p", phi, 0)]


def _cu3(theta: Any, phi: Any, lam: Any) -> list[_Call]:
    # A product of controlled gates is the controlled product: CP(φ)·CRY(θ)·CP(λ).
    return [("cp", lam, 0, 1), ("cry", theta, 0, 1), ("cp", phi, 0, 1)]


# Standard gates as circuits of other standard gates, equal as matrices (global phase in
# _PHASES), each angle `a * angle + b` of ONE of the gate's angles: angle tables and the
# parameter-shift rule then read them, and a controlled gate keeps its relative phase (cp
# and crz differ by one). A gate may use another of the table; the chain ends in h, x, cx,
# cz, s, sdg, rx, ry, rz and p. Each is checked against Qiskit's matrix in tests.
_EXACT: dict[str, Callable[..., list[_Call]]] = {
    "tdg": lambda: [("p", -_PI_4, 0)],
    "sx": lambda: [("rx", _PI_2, 0)],
    "sxdg": lambda: [("rx", -_PI_2, 0)],
    "u": _u,
    "u3": _u,
    "u2": lambda phi, lam: _u(_PI_2, phi, lam),
    "u1": lambda lam: [("p", lam, 0)],
    "r": lambda theta, phi: _u(theta, phi - _PI_2, _PI_2 - phi),
    "cy": lambda: [("sdg", 1), ("cx", 0, 1), ("s", 1)],  # S·X·S† = Y
    "ch": lambda: [("ry", -_PI_4, 1), ("cz", 0, 1), ("ry", _PI_4, 1)],  # RY(π/4)·Z·RY(-π/4) = H
    "cry": lambda t: [("ry", t / 2, 1), ("cx", 0, 1), ("ry", -t / 2, 1), ("cx", 0, 1)],
    "crz": lambda t: [("rz", t / 2, 1), ("cx", 0, 1), ("rz", -t / 2, 1), ("cx", 0, 1)],
    "crx": lambda t: [("s", 1), ("cry", t, 0, 1), ("sdg", 1)],  # S†·RY·S = RX
    "cp": lambda t: [
        ("p", t / 2, 0),
        ("cx", 0, 1),
        ("p", -t / 2, 1),
        ("cx", 0, 1),
        ("p", t / 2, 1),
    ],
    "cu1": lambda t: [("cp", t, 0, 1)],
    "cs": lambda: [("cp", _PI_2, 0, 1)],
    "csdg": lambda: [("cp", -_PI_2, 0, 1)],
    "csx": lambda: [("p", _PI_4, 0), ("crx", _PI_2, 0, 1)],  # SX = e^{iπ/4}·RX(π/2)
    "cu3": _cu3,
    "cu": lambda theta, phi, lam, gamma: [("p", gamma, 0), *_cu3(theta, phi, lam)],
    "rzz": lambda t: [("cx", 0, 1), ("rz", t, 1), ("cx", 0, 1)],
    "rxx": lambda t: [("h", 0), ("h", 1), ("rzz", t, 0, 1), ("h", 0), ("h", 1)],
    "ryy": lambda t: [
        ("rx", _PI_2, 0),
        ("rx", _PI_2, 1),
        ("rzz", t, 0, 1),
        ("rx", -_PI_2, 0),
        ("rx", -_PI_2, 1),
    ],
    "rzx": lambda t: [("h", 1), ("rzz", t, 0, 1), ("h", 1)],
}
_PHASES = {"sx": _PI_4, "sxdg": -_PI_4}

EXACT_GATES = tuple(sorted(_EXACT))
"""Standard gates `exact_definition` expands: a backend runs them if it runs h, x, cx, cz, s,
sdg, rx, ry, rz and p."""


def exact_definition(operation: Any) -> QuantumCircuit | None:
    """`operation`, a gate of `EXACT_GATES`, as a circuit on its qubits equal to it global
    phase included, whose angles are each linear in one of its angles; None for another."""
    from qiskit.circuit import QuantumCircuit

    build = _EXACT.get(operation.name)
    if build is None:
        return None
    circuit = QuantumCircuit(operation.num_qubits, global_phase=_PHASES.get(operation.name, 0.0))
    for method, *arguments in build(*operation.params):
        getattr(circuit, method)(*arguments)
    return circuit


def varying_angles(operation: Any) -> list[int]:
    """The indices of `operation`'s angles that depend on a Parameter."""
    from qiskit.circuit import ParameterExpression

    return [
        i
        for i, value in enumerate(operation.params)
        if isinstance(value, ParameterExpression) and value.parameters
    ]


def decompose_to(
    circuit: QuantumCircuit, supported: Collection[str], *, keep_constant: bool = False
) -> QuantumCircuit:
    """`circuit` with every instruction outside `supported` that can be expanded replaced by
    its expansion, recursively: a composite (an `EfficientSU2` instance appended as one gate,
    a circuit composed without `decompose()`, a user gate) by its definition, a gate of
    `EXACT_GATES` by `exact_definition` (with `keep_constant`, only where an angle depends on
    a Parameter: a transpiler takes the others).

    Other standard gates (`get_standard_gate_name_mapping`) stay as they are, as does an
    instruction without a definition: a backend names one it cannot run in its error, or a
    transpiler handles it. Returns `circuit` itself when nothing is expanded, so that a flat
    circuit compiles exactly as before.
    """
    from qiskit.circuit.library import get_standard_gate_name_mapping

    kept = {*supported, *_DIRECTIVES}
    standard = get_standard_gate_name_mapping()

    def expands(operation: Any) -> bool:
        name = operation.name
        if name in kept:
            return False
        if name in _EXACT:
            return not keep_constant or bool(varying_angles(operation))
        return name not in standard and operation.definition is not None

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
                exact = operation.name in _EXACT
                definition = exact_definition(operation) if exact else operation.definition
                out.global_phase += definition.global_phase
                append(definition, on_qubits, on_clbits)
            else:
                out.append(operation, on_qubits, on_clbits)

    append(circuit, circuit.qubits, circuit.clbits)
    return out
