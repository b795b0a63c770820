"""Students from the QML literature, as the field's benchmark defines them.

Bowles, Ahmed & Schuld 2024, "Better than classical? The subtle art of benchmarking quantum
machine learning models" (arXiv 2403.07059, XanaduAI/qml-benchmarks), trains these models on
feature vectors; each here is written from its definition there, as a Qiskit circuit that
runs on every backend. Each takes a feature vector directly (any input, flattened; no
front, no encoder plugin): its own encoding is part of the model.

What differs from the benchmark, and why:
- Inputs arrive as the data set gives them (kdbench's vector sets are standardised or lie in
  [-1, 1]; bars and stripes are ±1 plus noise); the benchmark min-max scales each feature to
  [-π/2, π/2] on the training set inside the model. Angles here are `scaling` × the input.
- kdbench trains every student on the cross-entropy of its class probabilities (plus the
  distiller's term); the benchmark trains some on a square loss. The class probabilities
  are the benchmark's own reading of the circuit (`readout = "paper"`, two classes); with
  more classes (or `readout = "z-linear"`) a trainable linear map of the qubits' ⟨Z⟩
  values, softmaxed.
- Circuit angles that mix data and weights (re-uploading's x·ω + θ) are computed in torch
  and enter the circuit as its inputs: every backend then sees angles linear in one
  parameter, and gradients reach the weights through them.
- `entangle = false` removes every two-qubit gate: the benchmark's separable ablation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from qiskit.circuit import ParameterVector, QuantumCircuit
from torch import nn

from kdbench import Student, StudentContext, option

from .readout import outcome_spins

FieldReadout = Literal["auto", "paper", "z-linear"]
READOUT_HELP = (
    "auto (the model's own reading of the circuit for 2 classes, z-linear for more), paper"
    " (2 classes only) or z-linear (a trainable linear map of every qubit's ⟨Z⟩, softmaxed)"
)


MAX_FEATURE_QUBITS = 24  # one qubit per feature past this: 2**n amplitudes per input


def feature_qubits(context: StudentContext, who: str) -> int:
    """One qubit per feature: their number, or a ValueError past what a backend can hold."""
    n = math.prod(context.input_shape)
    if n > MAX_FEATURE_QUBITS:
        raise ValueError(
            f"{who} takes one qubit per feature: {n} features would be {n} qubits (at most"
            f" {MAX_FEATURE_QUBITS}); reduce the features or use reuploading (3 per qubit)"
        )
    return n


class CircuitModel(nn.Module):
    """Features -> the model's circuit inputs (`angles`) -> its circuit on the cell's backend
    -> outcome probabilities -> class probabilities (`own`, the model's reading of the
    circuit, for its student's `own_classes`; else a linear map of the qubits' ⟨Z⟩)."""

    def __init__(
        self,
        context: StudentContext,
        circuit: QuantumCircuit,
        inputs: ParameterVector | list,
        weights: ParameterVector | list,
        options: FieldStudent,
        initial: torch.Tensor | None = None,
    ):
        """`initial`: the circuit weights' start (default: uniform in [0, 2π))."""
        super().__init__()
        if initial is None:
            initial = torch.rand(len(weights)) * 2 * math.pi
        self.scaling = options.scaling
        self.circuit = circuit
        self.parameters_in_order = [*inputs, *weights]  # as `angles` and `weights` give them
        self.run_circuit = context.compile(circuit, list(inputs), list(weights))
        self.weights = nn.Parameter(initial)
        self.register_buffer("spins", outcome_spins(circuit.num_qubits), persistent=False)
        fits = options.own_classes in (None, context.num_classes)
        own = options.readout == "paper" or (options.readout == "auto" and fits)
        self.map = None if own else nn.Linear(circuit.num_qubits, context.num_classes)

    def angles(self, x: torch.Tensor) -> torch.Tensor:
        """The circuit's input values [B, len(inputs)] for features x [B, d]: by default the
        features times `scaling`, one per input."""
        return self.scaling * x

    def own(self, z: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        """Class probabilities [B, C] from ⟨Z⟩ per qubit [B, n] (and the outcome
        probabilities [B, 2**n]), as the model reads its circuit."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        angles = self.angles(x)
        probs = self.run_circuit(angles, self.weights.to(angles.dtype))
        z = probs @ self.spins.to(probs.dtype)  # ⟨Z_q⟩ = P(q = 0) - P(q = 1)
        if self.map is not None:
            return torch.softmax(self.map(z), dim=1)
        return self.own(z, probs)


def _two(one: torch.Tensor) -> torch.Tensor:
    """[P(class 0), P(class 1)] from P(class 1), kept off 0 and 1 (a logarithm follows)."""
    one = one.clamp(1e-6, 1 - 1e-6)
    return torch.stack((1 - one, one), dim=1)


def _rot(qc: QuantumCircuit, angles: ParameterVector, k: int, qubit: int) -> None:
    """The k-th Rot of `angles` (its entries 3k, 3k+1, 3k+2) on `qubit`: PennyLane's
    Rot(φ, θ, ω) = RZ(ω) RY(θ) RZ(φ), RZ(φ) acting first."""
    phi, theta, omega = angles[3 * k : 3 * k + 3]
    qc.rz(phi, qubit)
    qc.ry(theta, qubit)
    qc.rz(omega, qubit)


def _strongly_entangling(
    qc: QuantumCircuit,
    weights: ParameterVector,
    layers: int,
    entangler: str,
    entangle: bool,
    wire: Callable[[int], int] | None = None,
) -> None:
    """PennyLane's StronglyEntanglingLayers: per layer Rot(w) on each wire, then `entangler`
    ("cx" or "cz") from wire i to wire i + r mod n for every i, r = layer mod (n-1) + 1 (none
    when separable). `wire` maps a wire to its qubit (default: the same number)."""
    n, qubit = qc.num_qubits, wire or (lambda w: w)
    for layer in range(layers):
        for w in range(n):
            _rot(qc, weights, layer * n + w, qubit(w))
        if entangle and n > 1:
            reach = layer % (n - 1) + 1
            for w in range(n):
                getattr(qc, entangler)(qubit(w), qubit((w + reach) % n))


@dataclass(kw_only=True)
class FieldStudent(Student):
    """Options every model of the benchmark shares."""

    stackable: ClassVar[bool] = True
    scaling: float = option(1.0, help="inputs are multiplied by this before they become angles")
    entangle: bool = option(
        True, help="false: no two-qubit gate (the benchmark's separable ablation)"
    )
    readout: FieldReadout = option("auto", help=READOUT_HELP)
    own_classes: ClassVar[int | None] = 2
    """The classes the model's own readout tells apart (None: any number)."""

    def max_classes(self) -> int | None:
        return self.own_classes if self.readout == "paper" else None


# -- data re-uploading ------------------------------------------------------------------------


class Reuploading(CircuitModel):
    def __init__(self, options: ReuploadingStudent, context: StudentContext):
        features = math.prod(context.input_shape)
        n, layers = max(1, math.ceil(features / 3)), options.layers
        self.features, self.qubits_read = features, n
        uploads = ParameterVector("x", 3 * n * (layers + 1))
        thetas = ParameterVector("θ", 3 * n * layers if options.entangle else 0)
        qc = QuantumCircuit(n)
        for layer in range(layers + 1):
            for q in range(n):
                _rot(qc, uploads, layer * n + q, q)
                if layer < layers and options.entangle:
                    _rot(qc, thetas, layer * n + q, q)
            if layer < layers and options.entangle:
                for q in range(layer % 2, n - 1, 2):  # pairs (0,1), (2,3)... then (1,2), (3,4)...
                    qc.cz(q, q + 1)
        super().__init__(context, qc, uploads, thetas, options, torch.rand(len(thetas)))
        # The data's weights ω (per layer and feature) and, where they are added to the
        # upload (the last layer; every layer when separable), the θ of those Rots.
        self.omegas = nn.Parameter(torch.rand(layers + 1, 3 * n))
        added = layers + 1 if not options.entangle else 1
        self.added = nn.Parameter(torch.rand(added, 3 * n))
        self.read = {"single": 1, "half": max(1, n // 2), "full": n}[options.observable]

    def angles(self, x: torch.Tensor) -> torch.Tensor:
        padded = nn.functional.pad(self.scaling * x, (0, 3 * self.qubits_read - self.features))
        uploads = padded.unsqueeze(1) * self.omegas  # [B, L + 1, 3n]
        # θ where it is added: the last layers' rows (0 for the layers before them)
        offsets = nn.functional.pad(self.added, (0, 0, len(self.omegas) - len(self.added), 0))
        return (uploads + offsets).flatten(1)

    def own(self, z: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        return _two((1 + z[:, : self.read].mean(1)) / 2)


@dataclass(kw_only=True)
class ReuploadingStudent(FieldStudent):
    """Data re-uploading classifier (Pérez-Salinas et al. 2020, "Data re-uploading for a
    universal quantum classifier"; the benchmark's DataReuploadingClassifier).

    ⌈d/3⌉ qubits, three features per qubit. `layers` times: on each qubit Rot(x ⊙ ω) (the
    features of its block times trainable weights), then Rot(θ); then CZ on pairs (0,1),
    (2,3), ... in even layers and (1,2), (3,4), ... in odd ones. Then a last upload
    Rot(x ⊙ ω + θ). Readout: m = the mean ⟨Z⟩ of the first 1 (`observable = "single"`),
    n/2 or n qubits; P(class 1) = (1 + m)/2. Separable: each layer one Rot(x ⊙ ω + θ) per
    qubit, no CZ. Weights start uniform in [0, 1), as the benchmark's.
    """

    name: ClassVar[str] = "reuploading"
    title: ClassVar[str | None] = "Data re-uploading ({layers} layers)"

    layers: int = option(4, help="layers of uploads and trainable rotations", minimum=1)
    observable: Literal["single", "half", "full"] = option(
        "single", help="qubits whose mean ⟨Z⟩ is read: the first, the first half, or all"
    )

    def build(self, context: StudentContext) -> nn.Module:
        return Reuploading(self, context)


# -- dressed quantum circuit ------------------------------------------------------------------


class Dressed(CircuitModel):
    def __init__(self, options: DressedStudent, context: StudentContext):
        d = math.prod(context.input_shape)
        n, layers = options.qubits or feature_qubits(context, "dressed"), options.layers
        h, w = ParameterVector("h", n), ParameterVector("w", n * layers)
        qc = QuantumCircuit(n)
        for q in range(n):
            qc.h(q)
            qc.ry(h[q], q)
        for layer in range(layers):
            for q in range(n):
                qc.ry(w[layer * n + q], q)
            if options.entangle:
                for q in range(n - 1):
                    qc.cx(q, q + 1)
                if n > 2:
                    qc.cx(n - 1, 0)
        super().__init__(context, qc, h, w, options)
        self.input_layer = nn.Parameter(torch.randn(n, d) / d)
        self.output_layer = nn.Parameter(torch.randn(context.num_classes, n) / d)

    def angles(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.scaling * x @ self.input_layer.T) * math.pi / 2

    def own(self, z: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        return torch.softmax(z @ self.output_layer.T, dim=1)


@dataclass(kw_only=True)
class DressedStudent(FieldStudent):
    """Dressed quantum circuit (Mari et al. 2020, "Transfer learning in hybrid classical-
    quantum neural networks"; the benchmark's DressedQuantumCircuitClassifier).

    n qubits (`qubits`, default d). A classical layer without bias, h = tanh(W_in x)·π/2
    (W_in ~ N(0, 1)/d, n × d); on each qubit H, RY(h_i); `layers` times RY(w) on each qubit
    then a ring of CNOTs (0→1, ..., n-1→0); a classical layer without bias maps the n values
    ⟨Z⟩ to the classes' logits (W_out ~ N(0, 1)/d), softmaxed. Circuit weights start
    uniform in [0, 2π). Separable: no CNOT.
    """

    name: ClassVar[str] = "dressed"
    title: ClassVar[str | None] = "Dressed quantum circuit ({layers} layers)"

    own_classes: ClassVar[int | None] = None  # its output layer has a row per class

    layers: int = option(3, help="layers of RY rotations and CNOT rings", minimum=1)
    qubits: int | None = option(
        None, help="qubits (default: one per feature)", minimum=1, maximum=MAX_FEATURE_QUBITS
    )

    def build(self, context: StudentContext) -> nn.Module:
        return Dressed(self, context)


# -- IQP variational --------------------------------------------------------------------------


class Iqp(CircuitModel):
    def __init__(self, options: IqpStudent, context: StudentContext):
        n = feature_qubits(context, "iqp")
        pairs = [(i, j) for i in range(n) for j in range(i + 1, n)] if options.entangle else []
        self.pairs = torch.tensor(pairs, dtype=torch.int64).reshape(-1, 2)
        x = ParameterVector("x", n + len(pairs))
        w = ParameterVector("w", 3 * n * options.layers)
        qc = QuantumCircuit(n)
        for _ in range(options.repeats):
            for q in range(n):
                qc.h(q)
                qc.rz(x[q], q)
            for k, (i, j) in enumerate(pairs):
                qc.rzz(x[n + k], i, j)
        _strongly_entangling(qc, w, options.layers, "cz", options.entangle)
        super().__init__(context, qc, x, w, options)
        self.register_buffer("parity", self.spins[:, 0] * self.spins[:, 1], persistent=False)

    def angles(self, x: torch.Tensor) -> torch.Tensor:
        x = self.scaling * x
        return torch.cat((x, x[:, self.pairs[:, 0]] * x[:, self.pairs[:, 1]]), dim=1)

    def own(self, z: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        return _two((1 + probs @ self.parity.to(probs.dtype)) / 2)  # ⟨Z_0 Z_1⟩


@dataclass(kw_only=True)
class IqpStudent(FieldStudent):
    """IQP-embedding variational classifier (Havlíček et al. 2019, "Supervised learning with
    quantum-enhanced feature spaces"; the benchmark's IQPVariationalClassifier).

    d qubits (at least 2). `repeats` times: H and RZ(x_i) on each qubit, then RZZ(x_i x_j) on
    every pair i < j (the products computed classically, as the benchmark's IQPEmbedding
    does). Then `layers` strongly entangling layers: Rot(w) on each qubit, then CZ(i, i + r
    mod n) for every i, r = layer mod (n-1) + 1. Readout: P(class 1) = (1 + ⟨Z_0 Z_1⟩)/2.
    Weights start uniform in [0, 2π). Separable: no RZZ, no CZ.
    """

    name: ClassVar[str] = "iqp"
    title: ClassVar[str | None] = "IQP variational ({layers} layers)"

    repeats: int = option(1, help="repetitions of the IQP embedding", minimum=1)
    layers: int = option(10, help="strongly entangling layers after the embedding", minimum=1)

    def build(self, context: StudentContext) -> nn.Module:
        if math.prod(context.input_shape) < 2:
            raise ValueError("iqp reads ⟨Z_0 Z_1⟩: it needs at least 2 features")
        return Iqp(self, context)


# -- separable variational --------------------------------------------------------------------


class Separable(CircuitModel):
    def __init__(self, options: SeparableStudent, context: StudentContext):
        n, layers = feature_qubits(context, "separable"), options.encoding_layers
        x, w = ParameterVector("x", n), ParameterVector("w", 3 * n * (layers + 1))
        qc = QuantumCircuit(n)
        for q in range(n):
            for layer in range(layers + 1):
                _rot(qc, w, q * (layers + 1) + layer, q)
                if layer < layers:
                    qc.ry(x[q], q)
        super().__init__(context, qc, x, w, options)

    def own(self, z: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        return _two(torch.sigmoid(6 * z.mean(1)))  # the benchmark's logit: 6 × mean ⟨Z⟩


@dataclass(kw_only=True)
class SeparableStudent(FieldStudent):
    """Separable variational classifier (the benchmark's product-state baseline,
    SeparableVariationalClassifier): one qubit per feature, no entangling gate at all.

    On qubit i, `encoding_layers` times Rot(w) then RY(x_i), then a last Rot(w); f = the
    mean ⟨Z⟩ over the qubits; P(class 1) = σ(6f), the benchmark's training logit. Weights
    start uniform in [0, 2π). (The other students' `entangle = false` is the same idea
    applied to their circuits.)
    """

    name: ClassVar[str] = "separable"
    title: ClassVar[str | None] = "Separable variational"

    encoding_layers: int = option(1, help="uploads of each feature", minimum=1)

    def build(self, context: StudentContext) -> nn.Module:
        return Separable(self, context)
