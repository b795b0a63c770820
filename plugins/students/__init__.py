"""Students: a classical front, then a parameterized quantum circuit (or its classical control);
and the field's models, which encode a feature vector themselves.

Every `pqc` student maps an input to `features` numbers (the front), loads them into qubits
(the encoder), runs the circuit on the cell's backend, and reads the 2**n outcome
probabilities out as class probabilities. The presets name the paper's students in both
readings. `field` and `amplitude` hold the QML benchmark's models.
"""

# Laid out by part: `fronts` (image -> features), `readout` (outcomes -> classes), the two
# students `pqc` and `classical`, and `presets` (the named ones); this module registers them.
from __future__ import annotations

from kdbench import hookimpl

from .amplitude import CircuitCentricStudent, TreeTensorStudent
from .classical import Classical, ClassicalStudent, IsingRing, ring_pairs
from .field import (
    CircuitModel,
    DressedStudent,
    FieldStudent,
    IqpStudent,
    ReuploadingStudent,
    SeparableStudent,
)
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
from .qcnn import QcnnStudent
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
    "CircuitCentricStudent",
    "CircuitModel",
    "Classical",
    "ClassicalStudent",
    "DressedStudent",
    "FieldStudent",
    "Front",
    "IqpStudent",
    "IsingRing",
    "PaperQ3",
    "PaperQ4",
    "Pqc",
    "QcnnStudent",
    "QuantumStudent",
    "ReadOut",
    "Readout",
    "ReleasedQ3",
    "ReleasedQ4",
    "ReuploadingStudent",
    "SeparableStudent",
    "TreeTensorStudent",
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
        ReuploadingStudent,
        DressedStudent,
        IqpStudent,
        SeparableStudent,
        CircuitCentricStudent,
        TreeTensorStudent,
        QcnnStudent,
    )
    for student in students:
        register(student)
