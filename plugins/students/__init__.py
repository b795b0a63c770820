"""Students: a classical front, then a parameterized quantum circuit (or its classical control).

Every student maps an image to `features` numbers (the front), loads them into qubits (the
encoder), runs the circuit on the cell's backend, and reads the 2**n outcome probabilities
out as class probabilities. The presets name the paper's students in both readings.
"""

# Laid out by part: `fronts` (image -> features), `readout` (outcomes -> classes), the two
# students `pqc` and `classical`, and `presets` (the named ones); this module registers them.
from __future__ import annotations

from kdbench import hookimpl

from .classical import Classical, ClassicalStudent, IsingRing, ring_pairs
from .fronts import Front, make_front
from .pqc import MAX_QUBITS, Pqc, QuantumStudent, ansatz
from .presets import (
    PaperQ3,
    PaperQ4,
    ReleasedQ3,
    ReleasedQ4,
    TwinQ3,
    TwinQ4,
    VqcQ3,
    VqcQ4,
)
from .readout import (
    FIXED_READOUTS,
    READOUT_HELP,
    ReadOut,
    Readout,
    outcome_spins,
    readout_limit,
    unused_qubits,
    xor_fold,
)

__all__ = [
    "FIXED_READOUTS",
    "MAX_QUBITS",
    "READOUT_HELP",
    "Classical",
    "ClassicalStudent",
    "Front",
    "IsingRing",
    "PaperQ3",
    "PaperQ4",
    "Pqc",
    "QuantumStudent",
    "ReadOut",
    "Readout",
    "ReleasedQ3",
    "ReleasedQ4",
    "TwinQ3",
    "TwinQ4",
    "VqcQ3",
    "VqcQ4",
    "ansatz",
    "make_front",
    "outcome_spins",
    "readout_limit",
    "register_students",
    "ring_pairs",
    "unused_qubits",
    "xor_fold",
]


@hookimpl
def register_students(register) -> None:
    students = (
        Pqc,
        ReleasedQ3,
        ReleasedQ4,
        VqcQ3,
        VqcQ4,
        PaperQ3,
        PaperQ4,
        Classical,
        TwinQ3,
        TwinQ4,
    )
    for student in students:
        register(student)
