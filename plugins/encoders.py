"""Encoders: how classical features are loaded into qubits."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from qiskit.circuit import Parameter, ParameterVector, QuantumCircuit

from kdbench import Encoder, hookimpl, option


@dataclass(kw_only=True)
class Angle(Encoder):
    """One feature per qubit: H, then RY(scale·tanh(feature)) (the released code)."""

    name: ClassVar[str] = "angle"

    scale: float = option(math.pi, help="angle of a saturated feature: x' = scale·tanh(x)")

    def num_features(self, qubits: int) -> int:
        return qubits

    def circuit(self, qubits: int) -> tuple[QuantumCircuit, list[Parameter]]:
        features = ParameterVector("x", qubits)
        qc = QuantumCircuit(qubits)
        for q in range(qubits):
            qc.h(q)
            qc.ry(features[q], q)
        return qc, list(features)

    def parameter_values(self, features: torch.Tensor) -> torch.Tensor:
        return self.scale * torch.tanh(features)


@hookimpl
def register_encoders(register) -> None:
    register(Angle)
