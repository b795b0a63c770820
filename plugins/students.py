"""Students: a classical front, then a parameterized quantum circuit (or its classical control).

Every student maps an image to `features` numbers (the front), loads them into qubits (the
encoder), runs the circuit on the cell's backend, and reads the 2**n outcome probabilities
out as class probabilities. The presets name the paper's students in both readings.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from qiskit.circuit import Parameter, ParameterVector, QuantumCircuit
from torch import nn

from kdbench import OptionError, Student, StudentContext, hookimpl, option, preset

Front = Literal["cnn", "linear", "pool"]
Readout = Literal["first-c", "linear"]

MAX_QUBITS = 32  # see Pqc.qubits


def make_front(kind: Front, image_shape: tuple[int, int, int], features: int) -> nn.Module:
    """The classical part that turns an image into `features` numbers for the encoder."""
    channels, height, width = image_shape
    if kind == "cnn":  # the released code's front
        flat = 20 * (((height - 4) // 2 - 4) // 2) * (((width - 4) // 2 - 4) // 2)
        return nn.Sequential(
            nn.Conv2d(channels, 10, 5), nn.MaxPool2d(2), nn.ReLU(),
            nn.Conv2d(10, 20, 5), nn.Dropout2d(), nn.MaxPool2d(2), nn.ReLU(),
            nn.Flatten(),
            nn.Linear(flat, 50), nn.ReLU(), nn.Dropout(),
            nn.Linear(50, features),
        )  # fmt: skip
    if kind == "linear":
        return nn.Sequential(nn.Flatten(), nn.Linear(channels * height * width, features))
    # "pool": fixed averages of pixel bands; nothing classical is trained.
    return nn.Sequential(
        nn.Flatten(), nn.Unflatten(1, (1, -1)), nn.AdaptiveAvgPool1d(features), nn.Flatten()
    )


def ansatz(
    qubits: int, layers: int, entanglement: str, block: str
) -> tuple[QuantumCircuit, ParameterVector]:
    """`layers` times: CNOT entanglers, then per qubit RY(w) (block "ry") or H, RY(w) ("h-ry")."""
    weights = ParameterVector("w", qubits * layers)
    qc = QuantumCircuit(qubits)
    for layer in range(layers):
        if entanglement != "none":
            for q in range(qubits - 1):
                qc.cx(q, q + 1)
            if entanglement == "ring" and qubits > 2:
                qc.cx(qubits - 1, 0)
        for q in range(qubits):
            if block == "h-ry":
                qc.h(q)
            qc.ry(weights[layer * qubits + q], q)
    return qc, weights


class ReadOut(nn.Module):
    """Outcome probabilities [B, 2**n] -> class probabilities [B, C]."""

    def __init__(self, kind: Readout, outcomes: int, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.map = nn.Linear(outcomes, num_classes) if kind == "linear" else None

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        if self.map is not None:
            return torch.softmax(self.map(probs), dim=1)
        kept = probs[:, : self.num_classes]  # "first-c": the first C outcomes, renormalized
        return kept / kept.sum(dim=1, keepdim=True).clamp_min(1e-12)


class QuantumStudent(nn.Module):
    """Image -> front -> encoder -> circuit on the backend -> outcome and class probabilities.

    `circuit` is the whole Qiskit circuit (encoding, then the student's ansatz) and
    `run_circuit` its compiled function on the cell's backend.
    """

    def __init__(self, options: Pqc, context: StudentContext):
        super().__init__()
        encoder = context.encoder
        if encoder is None:
            raise ValueError("a quantum student needs an encoder")
        self.encoder = encoder
        self.front = make_front(
            options.front, context.image_shape, encoder.num_features(options.qubits)
        )
        encoding, inputs = encoder.circuit(options.qubits)
        trainable, weights = options.ansatz()
        self.circuit = encoding.compose(trainable)
        self.run_circuit = context.compile(self.circuit, inputs, list(weights))
        self.weights = nn.Parameter(torch.empty(len(weights)).uniform_(-math.pi, math.pi))
        self.readout = ReadOut(options.readout, 2**options.qubits, context.num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        angles = self.encoder.parameter_values(self.front(images))
        return self.readout(self.run_circuit(angles, self.weights.to(angles.dtype)))


@dataclass(kw_only=True)
class Pqc(Student):
    """A parameterized quantum circuit student: encoder, then RY layers with CNOT entanglers.

    Another ansatz is a subclass that overrides `ansatz()` (any Qiskit circuit: composite
    gates such as the `EfficientSU2` class are decomposed by the backends).
    """

    name: ClassVar[str] = "pqc"
    title: ClassVar[str | None] = "{instance} (pqc, {qubits} qubit)"

    # Every backend returns the 2**n outcome probabilities of each image densely: past 32
    # qubits (16 GiB per image) no machine holds them, and building the circuit would hang.
    qubits: int = option(3, help="number of qubits", minimum=2, maximum=MAX_QUBITS)
    encoder: str | None = option("angle", help="encoder instance or plugin name")
    layers: int = option(1, help="trainable layers (0: encoding and readout only)", minimum=0)
    entanglement: Literal["none", "linear", "ring"] = option(
        "linear", help="CNOT pattern at the start of each layer"
    )
    block: Literal["ry", "h-ry"] = option("ry", help="gates per qubit in a layer: RY or H, RY")
    front: Front = option("cnn", help="classical front: cnn (released code), linear or pool")
    readout: Readout = option(
        "first-c", help="first-c: the first C outcomes renormalized; linear: a trainable map"
    )

    def check(self) -> None:
        if self.encoder is None:
            raise OptionError("encoder", "a quantum student needs an encoder")

    def max_classes(self) -> int | None:
        # Capped: a config may say qubits = 2**62, and 2**(2**62) would never finish.
        return 2 ** min(self.qubits, 64) if self.readout == "first-c" else None

    def ansatz(self) -> tuple[QuantumCircuit, Sequence[Parameter]]:
        """The trainable circuit after the encoding on `qubits` qubits, and its weights in order."""
        return ansatz(self.qubits, self.layers, self.entanglement, self.block)

    def build(self, context: StudentContext) -> nn.Module:
        return QuantumStudent(self, context)


# The paper's students in its two readings (the README's "The paper's matrix"): the
# released notebooks' hybrid (CNN front, H + RY angle encoding, no circuit weights) and the
# text's circuit (amplitude encoding, then one trainable layer of H and RY per qubit, Fig. 5).
ReleasedQ3 = preset(
    Pqc, "released-q3",
    "The released code's 3-qubit student: CNN front, H + RY(π·tanh x), no circuit weights.",
    title="Quantum, {qubits} qubit", layers=0, entanglement="none",
)  # fmt: skip
ReleasedQ4 = preset(
    ReleasedQ3, "released-q4",
    "The released code's 4-qubit student: CNN front, H + RY(π·tanh x), no circuit weights.",
    qubits=4,
)  # fmt: skip
PaperQ3 = preset(
    Pqc, "paper-q3",
    "The paper text's 3-qubit student: amplitude encoding, a trainable H + RY layer (Fig. 5).",
    title="Quantum, {qubits} qubit (paper text)",
    encoder="amplitude", entanglement="none", block="h-ry",
)  # fmt: skip
PaperQ4 = preset(
    PaperQ3, "paper-q4",
    "The paper text's 4-qubit student: amplitude encoding, a trainable H + RY layer (Fig. 5).",
    qubits=4,
)  # fmt: skip


class ClassicalStudent(nn.Module):
    """A quantum student with its circuit replaced by a classical layer of the same outline."""

    def __init__(self, options: Classical, context: StudentContext):
        super().__init__()
        outcomes = 2**options.qubits
        self.scale = options.scale
        self.front = make_front(options.front, context.image_shape, options.qubits)
        # features -> 2**n "outcome" probabilities, as the circuit would give
        self.layer = nn.Linear(options.qubits, outcomes)
        self.readout = ReadOut(options.readout, outcomes, context.num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.scale * torch.tanh(self.front(images))
        return self.readout(torch.softmax(self.layer(features), dim=1))


@dataclass(kw_only=True)
class Classical(Student):
    """Classical control: the same front and readout, a linear layer + softmax for the circuit."""

    name: ClassVar[str] = "classical"
    title: ClassVar[str | None] = "Classical control, {qubits}-qubit outline"

    qubits: int = option(
        3, help="width of the quantum student it stands in for", minimum=2, maximum=MAX_QUBITS
    )
    scale: float = option(math.pi, help="features are squashed as scale·tanh(x), as encoded")
    front: Front = option("cnn", help="classical front: cnn (released code), linear or pool")
    readout: Readout = option(
        "first-c", help="first-c: the first C outcomes renormalized; linear: a trainable map"
    )

    def max_classes(self) -> int | None:
        # Capped: a config may say qubits = 2**62, and 2**(2**62) would never finish.
        return 2 ** min(self.qubits, 64) if self.readout == "first-c" else None

    def build(self, context: StudentContext) -> nn.Module:
        return ClassicalStudent(self, context)


@hookimpl
def register_students(register) -> None:
    for student in (Pqc, ReleasedQ3, ReleasedQ4, PaperQ3, PaperQ4, Classical):
        register(student)
