"""The quantum convolutional neural network (Cong, Choi & Lukin 2019, "Quantum convolutional
neural networks"), for images such as `bars-and-stripes`.

The benchmark's repository has no QCNN of Cong et al.; this one follows the paper's layout
in the form most QML studies use for classical data (e.g. Hur, Kim & Park 2022): one qubit
per pixel, then convolution and pooling layers until one qubit is left. The measurements and
classically controlled gates of the paper's pooling become controlled rotations (the
deferred-measurement form), so the whole model is one unitary circuit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from qiskit.circuit import ParameterVector, QuantumCircuit
from torch import nn

from kdbench import StudentContext

from .field import CircuitModel, FieldStudent, _two, feature_qubits

CONV_WEIGHTS = 4  # per convolution: RY on each qubit, CNOT, RY on each qubit
POOL_WEIGHTS = 2  # per pooling: CRZ and, with the control flipped, CRX


def _convolve(qc: QuantumCircuit, w, a: int, b: int, entangle: bool) -> None:
    qc.ry(w[0], a)
    qc.ry(w[1], b)
    if entangle:
        qc.cx(a, b)
    qc.ry(w[2], a)
    qc.ry(w[3], b)


def _pool(qc: QuantumCircuit, w, dropped: int, kept: int, entangle: bool) -> None:
    if entangle:
        qc.crz(w[0], dropped, kept)
        qc.x(dropped)
        qc.crx(w[1], dropped, kept)
    else:  # separable: the kept qubit turns on its own
        qc.rz(w[0], kept)
        qc.rx(w[1], kept)


class Qcnn(CircuitModel):
    def __init__(self, options: QcnnStudent, context: StudentContext):
        n = feature_qubits(context, "qcnn")
        layers = math.ceil(math.log2(n))  # each halves the qubits: down to one
        x = ParameterVector("x", n)
        w = ParameterVector("w", (CONV_WEIGHTS + POOL_WEIGHTS) * layers)
        qc = QuantumCircuit(n)
        for q in range(n):
            qc.ry(x[q], q)
        active = list(range(n))
        for layer in range(layers):
            start = (CONV_WEIGHTS + POOL_WEIGHTS) * layer
            conv = w[start : start + CONV_WEIGHTS]
            pool = w[start + CONV_WEIGHTS : start + CONV_WEIGHTS + POOL_WEIGHTS]
            pairs = list(zip(active[0::2], active[1::2], strict=False))  # an odd one waits
            shifted = list(zip(active[1::2], active[2::2] + active[:1], strict=False))
            for a, b in pairs + (shifted if len(active) > 2 else []):
                _convolve(qc, conv, a, b, options.entangle)
            for dropped, kept in pairs:  # weights shared across a layer, as in the paper
                _pool(qc, pool, dropped, kept, options.entangle)
            active = [kept for _, kept in pairs] + active[len(pairs) * 2 :]
        self.last = active[0]
        super().__init__(context, qc, x, w, options)

    def own(self, z: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        return _two((1 + z[:, self.last]) / 2)


@dataclass(kw_only=True)
class QcnnStudent(FieldStudent):
    """Quantum convolutional neural network (Cong, Choi & Lukin 2019): one qubit per input
    (a 4×4 bars-and-stripes image: 16), each pixel loaded as RY(scaling·x). Then, until one
    qubit is left, a convolution (on neighbouring pairs (0,1), (2,3), ... then (1,2), (3,4),
    ... and, for an even count, (last, 0): RY on each, CNOT, RY on each) and a pooling (CRZ
    from the first qubit of each pair onto the second, X on the first, then CRX: the first
    is dropped), each
    layer's weights shared across its pairs. Readout: P(class 1) = (1 + ⟨Z⟩)/2 of the
    last qubit. Weights start uniform in [0, 2π). Separable: no two-qubit gate (pooling
    becomes RZ, RX on the kept qubit).
    """

    name: ClassVar[str] = "qcnn"
    title: ClassVar[str | None] = "QCNN"

    def build(self, context: StudentContext) -> nn.Module:
        return Qcnn(self, context)
