"""Walks a circuit once: its gates as operations on the state, their angles as a table."""

from __future__ import annotations

import cmath
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from kdbench import AMPLITUDES, EXACT_GATES, linear_angle, parameter_columns

from .apply_operation import _Amplitudes, _Controlled, _Fixed1q, _Monomial, _Parity, _Rotation

if TYPE_CHECKING:
    from qiskit.circuit import QuantumCircuit

# Operations with no effect on the probabilities before the final measurement.
_SKIPPED = frozenset({"measure", "barrier"})
# Gates that map each basis state to one basis state times a phase, with no angle.
_FIXED_MONOMIAL = frozenset({"id", "x", "y", "z", "s", "sdg", "t", "cx", "cz", "swap", "ccx"})
_ROTATIONS = frozenset({"rx", "ry", "rz", "p"})
# Controlled rotations, run as their rotation on the control's half ("crx" runs "rx").
_CONTROLLED = frozenset({"crx", "cry", "crz", "cp"})
NATIVE_GATES = tuple(sorted(_FIXED_MONOMIAL | _ROTATIONS | _CONTROLLED | {"h", "rzz"}))
"""Names of the Qiskit gates the builder turns into operations."""
SUPPORTED_GATES = tuple(sorted({*NATIVE_GATES, *EXACT_GATES}))
"""Names of the Qiskit gates the statevector backend simulates: the native ones and those
that `decompose_to` expands into them exactly (crx, cp, rzz, u, sx, ...)."""

# Below this, an imaginary part is rounding noise (phases are products of unit numbers).
_IMAG_TOL = 1e-12


def loads_amplitudes_first(circuit: QuantumCircuit) -> bool:
    """Whether `circuit` starts with `kdbench.amplitude_circuit`'s gate on all its qubits in
    order, every angle a parameter's, and has no other such gate: the state it prepares is
    then loaded at once, not gate by gate."""
    from qiskit.circuit import ParameterExpression

    if not circuit.data:
        return False
    first = circuit.data[0]
    return (
        first.operation.name == AMPLITUDES
        and [circuit.find_bit(q).index for q in first.qubits] == list(range(circuit.num_qubits))
        and all(isinstance(p, ParameterExpression) for p in first.operation.params)
        and sum(i.operation.name == AMPLITUDES for i in circuit.data) == 1
    )


class _Builder:
    """Walks a circuit once and emits the operations and the angle table."""

    def __init__(self, circuit: QuantumCircuit, inputs: list, weights: list):
        self.num_qubits = circuit.num_qubits
        self.columns: list[int] = []
        self.slopes: list[float] = []
        self.offsets: list[float] = []
        self.ops: list[Any] = []
        self._params = parameter_columns(inputs, weights)
        self._index = np.arange(2**self.num_qubits, dtype=np.int64)
        # Constant monomial gates not yet emitted: they are fused until a gate touching one
        # of their qubits arrives; other gates commute with them and are emitted first.
        self._perm: np.ndarray | None = None
        self._phase: np.ndarray | None = None
        self._pending: set[int] = set()
        for instruction in circuit.data:
            operation = instruction.operation
            qubits = [circuit.find_bit(q).index for q in instruction.qubits]
            if operation.name not in _SKIPPED:
                self._add(operation.name, qubits, list(operation.params))
        self._flush()

    def _add(self, name: str, qubits: list[int], params: list) -> None:
        if name in _FIXED_MONOMIAL:
            self._monomial(*self._fixed(name, qubits), qubits)
        elif name == "h":
            self._emit(_Fixed1q(qubits[0], np.array([[1, 1], [1, -1]]) / math.sqrt(2)), qubits)
        elif name in _ROTATIONS:
            index, angle = self._angle_column(name, name, qubits, params[0])
            if index is None:
                self._fixed_rotation(name, qubits[0], angle)
            else:
                self._emit(_Rotation(name, qubits[0], index), qubits)
        elif name in _CONTROLLED:
            self._controlled(name[1:], qubits, params[0])
        elif name == "rzz":
            self._parity(qubits, params[0])
        elif name == AMPLITUDES:  # first in the circuit: see `loads_amplitudes_first`
            columns = [self._angle_column(name, "ry", qubits, value)[0] for value in params]
            self._emit(_Amplitudes(columns, self.num_qubits), qubits)
        else:
            raise ValueError(
                f"statevector backend: unsupported gate '{name}' on qubits {qubits}; "
                f"supported: {', '.join(SUPPORTED_GATES)} (and measure, barrier)"
            )

    def _fixed(self, name: str, q: list[int]) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(perm, phase) of a constant monomial gate, with new[k] = phase[k] * old[perm[k]]."""
        k = self._index
        bit = [(k >> qubit) & 1 for qubit in q]
        flip = [1 << qubit for qubit in q]
        if name == "id":
            return None, None
        if name == "x":
            return k ^ flip[0], None
        if name == "y":
            # Y = i·[[0, -1], [1, 0]]; the global phase i does not change probabilities and
            # leaving it out keeps Y real.
            return k ^ flip[0], np.where(bit[0] == 1, 1.0, -1.0)
        if name == "z":
            return None, np.where(bit[0] == 1, -1.0, 1.0)
        if name in ("s", "sdg", "t"):
            angle = {"s": math.pi / 2, "sdg": -math.pi / 2, "t": math.pi / 4}[name]
            return None, np.where(bit[0] == 1, cmath.exp(1j * angle), 1.0)
        if name == "cx":
            return np.where(bit[0] == 1, k ^ flip[1], k), None
        if name == "cz":
            return None, np.where((bit[0] & bit[1]) == 1, -1.0, 1.0)
        if name == "swap":
            differ = bit[0] ^ bit[1]
            return k ^ (differ * (flip[0] | flip[1])), None
        # ccx
        return np.where((bit[0] & bit[1]) == 1, k ^ flip[2], k), None

    def _fixed_rotation(self, name: str, qubit: int, angle: float) -> None:
        c, s = math.cos(angle / 2), math.sin(angle / 2)
        bit = (self._index >> qubit) & 1
        if name == "rx":
            self._emit(_Fixed1q(qubit, np.array([[c, -1j * s], [-1j * s, c]])), [qubit])
        elif name == "ry":
            self._emit(_Fixed1q(qubit, np.array([[c, -s], [s, c]])), [qubit])
        elif name == "rz":
            self._monomial(None, np.where(bit == 1, complex(c, s), complex(c, -s)), [qubit])
        else:  # p
            self._monomial(None, np.where(bit == 1, cmath.exp(1j * angle), 1.0), [qubit])

    def _controlled(self, kind: str, qubits: list[int], value: Any) -> None:
        control, target = qubits
        index, angle = self._angle_column(f"c{kind}", kind, qubits, value)
        if index is not None:
            self._emit(_Controlled(kind, control, target, index), qubits)
            return
        half = angle if kind == "p" else angle / 2  # the angle the rotation's formula uses
        if kind in ("rz", "p"):  # diagonal: a phase on the control's half, fused with others
            on = ((self._index >> control) & 1) == 1
            bit = (self._index >> target) & 1
            turned = np.where(
                bit == 1, cmath.exp(1j * half), 1.0 if kind == "p" else cmath.exp(-1j * half)
            )
            self._monomial(None, np.where(on, turned, 1.0), qubits)
        else:
            self._emit(
                _Controlled(kind, control, target, None, (math.cos(half), math.sin(half))), qubits
            )

    def _parity(self, qubits: list[int], value: Any) -> None:
        """rzz: exp(-iθ/2) where the two qubits agree, exp(iθ/2) where they differ."""
        index, angle = self._angle_column("rzz", "rz", qubits, value)
        if index is not None:
            self._emit(_Parity(*qubits, index), qubits)
            return
        differ = ((self._index >> qubits[0]) ^ (self._index >> qubits[1])) & 1
        turned = cmath.exp(1j * angle / 2)
        self._monomial(None, np.where(differ == 1, turned, turned.conjugate()), qubits)

    def _angle_column(
        self, gate: str, kind: str, qubits: list[int], value: Any
    ) -> tuple[int | None, float]:
        """(index, 0.0) of the angle table's new column for a gate of rotation `kind` whose
        angle depends on a parameter, or (None, the angle) for a constant one. The table holds
        the angle each formula uses: θ/2 for rx, ry, rz and θ for p."""
        column, slope, offset = self._angle(gate, qubits, value)
        if column is None:
            return None, offset
        scale = 1.0 if kind == "p" else 0.5
        self.columns.append(column)
        self.slopes.append(scale * slope)
        self.offsets.append(scale * offset)
        return len(self.columns) - 1, 0.0

    def _angle(self, gate: str, qubits: list[int], value: Any) -> tuple[int | None, float, float]:
        """(column, slope, offset) of a gate angle slope * values[column] + offset."""
        return linear_angle(
            value, self._params, f"statevector backend: gate '{gate}' on qubits {qubits}"
        )

    def _monomial(self, perm: np.ndarray | None, phase: np.ndarray | None, qubits) -> None:
        # Applying (p1, f1) then (p2, f2): new[k] = f2[k] f1[p2[k]] old[p1[p2[k]]].
        if perm is not None:
            if self._phase is not None:
                self._phase = self._phase[perm]
            self._perm = perm if self._perm is None else self._perm[perm]
        if phase is not None:
            self._phase = phase if self._phase is None else self._phase * phase
        self._pending.update(qubits)

    def _emit(self, op: Any, qubits: list[int]) -> None:
        if self._pending.intersection(qubits):
            self._flush()
        last = self.ops[-1] if self.ops else None
        if isinstance(op, _Fixed1q) and isinstance(last, _Fixed1q) and last.qubit == op.qubit:
            # Consecutive constant gates on one qubit become one 2x2 matrix.
            self.ops[-1] = _Fixed1q(op.qubit, op.matrix @ last.matrix)
        else:
            self.ops.append(op)

    def _flush(self) -> None:
        perm, phase = self._perm, self._phase
        self._perm, self._phase, self._pending = None, None, set()
        if perm is not None and np.array_equal(perm, self._index):
            perm = None
        if phase is not None:
            # A global phase does not change probabilities; without it, phases such as
            # S·S = Z or rz(π) are real and keep the circuit in a real dtype.
            phase = phase / phase[0]
            if np.iscomplexobj(phase) and np.abs(phase.imag).max() < _IMAG_TOL:
                phase = phase.real.copy()
            if np.allclose(phase, 1.0, rtol=0.0, atol=_IMAG_TOL):
                phase = None
        if perm is not None or phase is not None:
            self.ops.append(_Monomial(perm, phase))
