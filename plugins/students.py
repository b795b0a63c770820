"""Students: parameterized quantum circuits behind a classical front."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from qiskit.circuit import ParameterVector, QuantumCircuit
from torch import nn

from kdbench import OptionError, Student, StudentContext, hookimpl, option

Front = Literal["cnn", "linear", "pool"]


def make_front(kind: Front, image_shape: tuple[int, int, int], features: int) -> nn.Module:
    """The classical part that turns an image into `features` numbers for the encoder."""
    channels, height, width = image_shape
    if kind == "cnn":  # the released code's front, sized for 28x28
        flat = 20 * ((height - 4) // 2 - 4) // 2 * (((width - 4) // 2 - 4) // 2)
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


def ansatz(qubits: int, layers: int, entanglement: str) -> tuple[QuantumCircuit, ParameterVector]:
    """`layers` times: CNOT entanglers, then one trainable RY per qubit."""
    weights = ParameterVector("w", qubits * layers)
    qc = QuantumCircuit(qubits)
    for layer in range(layers):
        if entanglement != "none":
            for q in range(qubits - 1):
                qc.cx(q, q + 1)
            if entanglement == "ring" and qubits > 2:
                qc.cx(qubits - 1, 0)
        for q in range(qubits):
            qc.ry(weights[layer * qubits + q], q)
    return qc, weights


class QuantumStudent(nn.Module):
    """Image -> front -> encoder -> circuit on the backend -> outcome and class probabilities."""

    def __init__(self, options: Pqc, context: StudentContext):
        super().__init__()
        encoder = context.encoder
        assert encoder is not None, "the harness resolves a pqc student's encoder"
        self.encoder = encoder
        self.front = make_front(
            options.front, context.image_shape, encoder.num_features(options.qubits)
        )
        encoding, inputs = encoder.circuit(options.qubits)
        trainable, weights = ansatz(options.qubits, options.layers, options.entanglement)
        self.circuit = encoding.compose(trainable)
        self.run_circuit = context.backend.compile(
            self.circuit, inputs, list(weights), seed=context.seed
        )
        self.weights = nn.Parameter(torch.empty(len(weights)).uniform_(-math.pi, math.pi))
        self.num_classes = context.num_classes
        outcomes = 2**options.qubits
        self.readout = (
            nn.Linear(outcomes, context.num_classes) if options.readout == "linear" else None
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        angles = self.encoder.parameter_values(self.front(images))
        probs = self.run_circuit(angles, self.weights.to(angles.dtype))
        if self.readout is not None:
            return torch.softmax(self.readout(probs), dim=1)
        kept = probs[:, : self.num_classes]
        return kept / kept.sum(dim=1, keepdim=True).clamp_min(1e-12)


@dataclass(kw_only=True)
class Pqc(Student):
    """A parameterized quantum circuit student: encoder, RY layers with CNOT entanglers."""

    name: ClassVar[str] = "pqc"

    qubits: int = option(3, help="number of qubits", minimum=2)
    encoder: str | None = option("angle", help="encoder instance or plugin name")
    layers: int = option(1, help="trainable RY layers (0: encoding and readout only)", minimum=0)
    entanglement: Literal["none", "linear", "ring"] = option(
        "linear", help="CNOT pattern before each RY layer"
    )
    front: Front = option("cnn", help="classical front: cnn (released code), linear or pool")
    readout: Literal["first-c", "linear"] = option(
        "first-c", help="first-c: the first C outcomes renormalized; linear: a trainable map"
    )

    def check(self) -> None:
        if self.encoder is None:
            raise OptionError("encoder", "a quantum student needs an encoder")

    def max_classes(self) -> int | None:
        return 2**self.qubits

    def build(self, context: StudentContext) -> nn.Module:
        return QuantumStudent(self, context)


@hookimpl
def register_students(register) -> None:
    register(Pqc)
