"""The quantum student: a classical front, an encoder, a parameterized circuit, a readout."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from qiskit.circuit import Parameter, ParameterVector, QuantumCircuit
from torch import nn

from kdbench import (
    NotStackable,
    OptionError,
    Student,
    StudentContext,
    option,
    params_of,
    stacked_call,
)

from .fronts import Front, make_front, stacking_pays
from .readout import READOUT_HELP, ReadOut, Readout, readout_limit, unused_qubits

MAX_QUBITS = 32  # see Pqc.qubits


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
            options.front, context.input_shape, encoder.num_features(options.qubits)
        )
        encoding, inputs = encoder.circuit(options.qubits)
        trainable, weights = options.ansatz()
        self.circuit = encoding.compose(trainable)
        self.run_circuit = context.compile(self.circuit, inputs, list(weights))
        spread = options.weight_spread
        self.weights = nn.Parameter(torch.empty(len(weights)).uniform_(-spread, spread))
        self.readout = ReadOut(options.readout, options.qubits, context.num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        angles = self.encoder.parameter_values(self.front(images))
        return self.readout(self.run_circuit(angles, self.weights.to(angles.dtype)))

    def forward_stacked(self, params: dict[str, torch.Tensor], images: torch.Tensor):
        """`forward` for S models at once (`kdbench.stacked_call`): one circuit call for all."""
        if not getattr(self.run_circuit, "stacks_weights", False):
            raise NotStackable("its backend runs one model's circuit weights at a time")
        features = stacked_call(self.front, params_of(params, "front"), images)
        angles = self.encoder.parameter_values(features.flatten(0, 1))
        probs = self.run_circuit(angles, params["weights"].to(angles.dtype))
        return stacked_call(
            self.readout, params_of(params, "readout"), probs.unflatten(0, images.shape[:2])
        )


@dataclass(kw_only=True)
class Pqc(Student):
    """A parameterized quantum circuit student: encoder, then RY layers with CNOT entanglers.

    Another ansatz is a subclass that overrides `ansatz()` (any Qiskit circuit: composite
    gates such as the `EfficientSU2` class are decomposed by the backends).
    """

    stackable: ClassVar[bool] = True
    name: ClassVar[str] = "pqc"
    title: ClassVar[str | None] = "{instance} (pqc, {qubits} qubit)"

    # Every backend returns the 2**n outcome probabilities of each image densely: past 32
    # qubits (16 GiB per image) no machine holds them, and building the circuit would hang.
    qubits: int = option(3, help="number of qubits", minimum=2, maximum=MAX_QUBITS)
    # The defaults are the recommended start (they run on any number of classes up to what
    # the data set has, and learn): the monotone encoding and weights near 0 took a circuit
    # from 48 to 82 % on MNIST 0-5 (RESULTS.md); the linear readout takes any class count.
    # Configs that set the earlier defaults (angle, first-c, π) keep their cell ids.
    encoder: str | None = option("monotone-angle", help="encoder instance or plugin name")
    layers: int = option(1, help="trainable layers (0: encoding and readout only)", minimum=0)
    entanglement: Literal["none", "linear", "ring"] = option(
        "linear", help="CNOT pattern at the start of each layer"
    )
    block: Literal["ry", "h-ry"] = option("ry", help="gates per qubit in a layer: RY or H, RY")
    front: Front = option("cnn", help="classical front: cnn (released code), linear or pool")
    readout: Readout = option("linear", help=READOUT_HELP)
    weight_spread: float = option(
        0.1,
        help="circuit weights start uniform in [−spread, spread] (π: anywhere on the circle;"
        " small: near the rotations' identity, so the circuit starts as its CNOTs alone)",
        minimum=0,
        unrecorded=math.pi,  # the default before 0.1: recorded only when it is not π
    )
    allow_unused_qubits: bool = option(
        False,
        help="run even when the readout ignores a qubit (its measured value never decides the"
        " class), e.g. to replicate code that did",
        recorded_at_default=False,
    )

    def check(self) -> None:
        if self.encoder is None:
            raise OptionError("encoder", "a quantum student needs an encoder")

    def stacking_pays(self, batch_size: int) -> bool:
        return stacking_pays(self.front, batch_size)

    def max_classes(self) -> int | None:
        return readout_limit(self.readout, self.qubits)

    def readout_problem(self, num_classes: int) -> str | None:
        unused = unused_qubits(self.readout, self.qubits, num_classes)
        if not unused or self.allow_unused_qubits:
            return None
        which = ", ".join(map(str, unused))
        return (
            f"readout '{self.readout}' ignores qubit{'s' if len(unused) > 1 else ''} {which}"
            f" of {self.qubits} with {num_classes} classes (its measured value never decides"
            " the class); use readout 'parity', 'z-linear', 'linear' or 'sigmoid-pair', or"
            " set allow_unused_qubits = true"
        )

    def ansatz(self) -> tuple[QuantumCircuit, Sequence[Parameter]]:
        """The trainable circuit after the encoding on `qubits` qubits, and its weights in order."""
        return ansatz(self.qubits, self.layers, self.entanglement, self.block)

    def build(self, context: StudentContext) -> nn.Module:
        return QuantumStudent(self, context)
