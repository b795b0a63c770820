"""The benchmark's amplitude-encoded students: circuit-centric and tree tensor.

Both load the features as the amplitudes of a state (`kdbench.amplitude_circuit`), with the
benchmark's preprocessing: x × `scaling`, padded with the constant 1/2^q up to 2^q entries,
normalised. Wires are numbered as the benchmark's (PennyLane's: wire 0 is the most
significant bit of an amplitude's index), which is Qiskit's qubit n-1-w.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from qiskit.circuit import ParameterVector, QuantumCircuit
from torch import nn

from kdbench import StudentContext, amplitude_angles, amplitude_circuit, option

from .field import CircuitModel, FieldStudent, _strongly_entangling, _two


def padded(x: torch.Tensor, scaling: float, qubits: int) -> torch.Tensor:
    """The benchmark's amplitudes: scaling·x padded with 1/2^q to 2^q entries, normalised."""
    size = 2**qubits
    x = nn.functional.pad(scaling * x, (0, size - x.shape[1]), value=1 / size)
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


class AmplitudeModel(CircuitModel):
    """Amplitude encoding of `amplitudes(x)` on all n qubits, then `ansatz`; P(class 1) =
    (1 + f)/2, f = (⟨Z⟩ on wire 0 + b)/(1 + |b|) with a trainable bias b: the benchmark's
    ⟨Z⟩ + b, kept within [-1, 1] (it trains it on a square loss; a probability past 0 or 1
    would give the cross-entropy no gradient)."""

    def __init__(
        self,
        context: StudentContext,
        qubits: int,
        ansatz: QuantumCircuit,
        weights: ParameterVector,
        options: FieldStudent,
        bias: torch.Tensor,
    ):
        encoding, inputs = amplitude_circuit(qubits)
        super().__init__(context, encoding.compose(ansatz), inputs, weights, options)
        self.bias = nn.Parameter(torch.as_tensor(bias, dtype=torch.float32))

    def amplitudes(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def angles(self, x: torch.Tensor) -> torch.Tensor:
        return amplitude_angles(self.amplitudes(x).double()).to(x.dtype)

    def own(self, z: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        f = (z[:, -1] + self.bias) / (1 + self.bias.abs())  # wire 0: Qiskit's last qubit
        return _two((1 + f) / 2)


def _wire(qubits: int, w: int) -> int:
    return qubits - 1 - w


class CircuitCentric(AmplitudeModel):
    def __init__(self, options: CircuitCentricStudent, context: StudentContext):
        features = math.prod(context.input_shape)
        self.per_copy = max(1, math.ceil(math.log2(features)))
        self.copies = options.copies
        n = self.copies * self.per_copy
        w = ParameterVector("w", 3 * n * options.layers)
        qc = QuantumCircuit(n)
        _strongly_entangling(
            qc, w, options.layers, "cx", options.entangle, lambda wire: _wire(n, wire)
        )
        super().__init__(context, n, qc, w, options, bias=torch.tensor(0.01))

    def amplitudes(self, x: torch.Tensor) -> torch.Tensor:
        one = padded(x, self.scaling, self.per_copy)
        state = one
        for _ in range(self.copies - 1):  # the first copy on the most significant wires
            state = (state.unsqueeze(2) * one.unsqueeze(1)).flatten(1)
        return state


@dataclass(kw_only=True)
class CircuitCentricStudent(FieldStudent):
    """Circuit-centric classifier (Schuld, Bocharov, Svore & Wiebe 2020, "Circuit-centric
    quantum classifiers"; the benchmark's CircuitCentricClassifier).

    q = ⌈log2 d⌉ qubits per copy of the input, `copies` copies: the amplitudes are the
    tensor product of the copies of x (padded and normalised, see the module). Then `layers`
    strongly entangling layers: Rot(w) on each wire, then CNOT(i → i + r mod n) for every
    wire i, r = layer mod (n-1) + 1. Readout: f = ⟨Z⟩ on wire 0 plus a trainable bias
    b (starting at 0.01), divided by 1 + |b| to stay within [-1, 1]; P(class 1) = (1 + f)/2.
    Weights start uniform in [0, 2π).
    Separable: no CNOT (the encoding stays as it is: an amplitude-encoded state is
    entangled in general).
    """

    name: ClassVar[str] = "circuit-centric"
    title: ClassVar[str | None] = "Circuit-centric ({layers} layers)"

    copies: int = option(2, help="copies of the input in the encoded state", minimum=1)
    layers: int = option(4, help="strongly entangling layers", minimum=1)

    def build(self, context: StudentContext) -> nn.Module:
        return CircuitCentric(self, context)


class TreeTensor(AmplitudeModel):
    def __init__(self, options: TreeTensorStudent, context: StudentContext):
        features = math.prod(context.input_shape)
        enough = max(1, math.ceil(math.log2(features)))
        n = 2 ** math.ceil(math.log2(enough))  # a power of 2, for the tree
        self.qubits = n
        w = ParameterVector("w", 2 * n - 1)
        qc = QuantumCircuit(n)
        used, stride = 0, 1
        while stride < n:
            for wire in range(0, n, stride):
                qc.ry(w[used], _wire(n, wire))
                used += 1
            if options.entangle:
                for wire in range(0, n, 2 * stride):
                    qc.cx(_wire(n, wire + stride), _wire(n, wire))
            stride *= 2
        qc.ry(w[used], _wire(n, 0))
        super().__init__(context, n, qc, w, options, bias=0.1 * torch.randn(()))

    def amplitudes(self, x: torch.Tensor) -> torch.Tensor:
        return padded(x, self.scaling, self.qubits)


@dataclass(kw_only=True)
class TreeTensorStudent(FieldStudent):
    """Tree tensor network classifier (Grant et al. 2018, "Hierarchical quantum classifiers";
    the benchmark's TreeTensorClassifier).

    n qubits, a power of 2 with 2^n ≥ d (d = 5..16: 4 qubits); x amplitude-encoded (padded
    to 2^n entries and normalised, see the module). A binary tree of log2 n layers: RY(w) on
    wires 0, 2^l, 2·2^l, ..., then CNOT(i + 2^l → i) for i = 0, 2^(l+1), ...; a last RY on
    wire 0. 2n - 1 weights, uniform in [0, 2π). Readout: f = ⟨Z⟩ on wire 0 plus a trainable
    bias b (starting at 0.1·N(0, 1)), divided by 1 + |b| to stay within [-1, 1]; P(class 1)
    = (1 + f)/2. Separable: no CNOT.
    """

    name: ClassVar[str] = "tree-tensor"
    title: ClassVar[str | None] = "Tree tensor"

    def build(self, context: StudentContext) -> nn.Module:
        return TreeTensor(self, context)
