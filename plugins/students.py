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
Readout = Literal["first-c", "sigmoid-pair", "softmax", "mod-c", "parity", "linear", "z-linear"]
READOUT_HELP = (
    "how outcome probabilities become class probabilities: first-c (the first C outcomes,"
    " renormalized), sigmoid-pair (the released notebooks: a softmax over σ(p) and 1 − σ(p)"
    " of every outcome, class c read at outcome c), softmax (the notebooks' FashionMNIST"
    " 3-qubit baselines: a cross-entropy over the softmax of all 2^n probabilities, class c"
    " read at outcome c), mod-c (outcome k counts for class"
    " k mod C), parity (the outcome's bits XOR-folded into ⌈log2 C⌉ bits, then mod C: every"
    " qubit decides), linear (a trainable map of the 2^n probabilities) or z-linear (a"
    " trainable map of the n values ⟨Z⟩)"
)
FIXED_READOUTS = ("first-c", "sigmoid-pair", "softmax", "mod-c", "parity")

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
    """Outcome probabilities [B, 2**n] -> class probabilities [B, C] (see READOUT_HELP).

    "sigmoid-pair" is the released notebooks' head, `cat(sigmoid(p), 1 - sigmoid(p))` taken
    as logits by a cross-entropy: the class probabilities are that softmax's first C
    entries. They sum to less than 1 (the rest sits on outcomes that are no class), so the
    loss, and a KD term on the first C entries, are the notebooks' exactly. "softmax" is the
    head of the notebooks' FashionMNIST 3-qubit baselines: `softmax(p)` over all 2^n outcomes
    taken as logits by a cross-entropy (a softmax over probabilities), read the same way.
    """

    def __init__(self, kind: Readout, qubits: int, num_classes: int):
        super().__init__()
        self.kind = kind
        self.num_classes = num_classes
        outcomes = torch.arange(2**qubits)
        self.map = None
        if kind == "linear":
            self.map = nn.Linear(2**qubits, num_classes)
        elif kind == "z-linear":
            self.map = nn.Linear(qubits, num_classes)
            self.register_buffer("signs", outcome_spins(qubits), persistent=False)
        elif kind in ("mod-c", "parity"):
            classes = outcomes if kind == "mod-c" else xor_fold(outcomes, num_classes)
            groups = nn.functional.one_hot(classes % num_classes, num_classes).float()
            self.register_buffer("groups", groups, persistent=False)

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        if self.kind == "linear":
            return torch.softmax(self.map(probs), dim=1)
        if self.kind == "z-linear":  # ⟨Z_q⟩ = P(qubit q = 0) - P(qubit q = 1)
            return torch.softmax(self.map(probs @ self.signs.to(probs.dtype)), dim=1)
        if self.kind in ("mod-c", "parity"):
            return probs @ self.groups.to(probs.dtype)
        if self.kind == "sigmoid-pair":
            high = torch.sigmoid(probs)
            return torch.softmax(torch.cat((high, 1 - high), dim=1), dim=1)[:, : self.num_classes]
        if self.kind == "softmax":
            return torch.softmax(torch.softmax(probs, dim=1), dim=1)[:, : self.num_classes]
        kept = probs[:, : self.num_classes]  # "first-c": the first C outcomes, renormalized
        return kept / kept.sum(dim=1, keepdim=True).clamp_min(1e-12)


def outcome_spins(qubits: int) -> torch.Tensor:
    """[2^n, n]: +1 where qubit q is 0 in outcome k, -1 where it is 1 (bit q of k is qubit q)."""
    bits = (torch.arange(2**qubits)[:, None] >> torch.arange(qubits)) & 1
    return (1 - 2 * bits).float()


def xor_fold(outcomes: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Each outcome's bits XOR-folded into m = ⌈log2 C⌉ bits: chunk j of m bits XORed in.

    Flipping qubit q flips bit q mod m of the code, which moves it by 2^(q mod m) < C: its
    class (code mod C) always changes, so every qubit decides (for 2 classes: the parity).
    """
    width = max(1, (num_classes - 1).bit_length())
    code = torch.zeros_like(outcomes)
    rest = outcomes.clone()
    while bool(rest.any()):
        code ^= rest & (2**width - 1)
        rest >>= width
    return code


def readout_limit(kind: Readout, qubits: int) -> int | None:
    """The most classes a readout of `qubits` qubits tells apart (None: no limit)."""
    # Capped: a config may say qubits = 2**62, and 2**(2**62) would never finish.
    return 2 ** min(qubits, 64) if kind in FIXED_READOUTS else None


def unused_qubits(kind: Readout, qubits: int, num_classes: int) -> list[int]:
    """The qubits whose measured value never decides which class an outcome counts for.

    first-c keeps only the outcomes below C: qubit q is 0 in all of them when 2^q >= C (for
    a product state the output then does not depend on it at all). mod-c gives outcomes k
    and k ± 2^q the same class when C divides 2^q. The other readouts use every qubit
    (parity by construction: see `xor_fold`).
    """
    if kind == "first-c":
        return [q for q in range(qubits) if 2**q >= num_classes]
    if kind == "mod-c":
        return [q for q in range(qubits) if 2**q % num_classes == 0]
    return []


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
        spread = options.weight_spread
        self.weights = nn.Parameter(torch.empty(len(weights)).uniform_(-spread, spread))
        self.readout = ReadOut(options.readout, options.qubits, context.num_classes)

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


# The paper's students in its two readings (the README's "The paper's matrix"): the
# released notebooks' hybrid (CNN front, H + RY angle encoding, no circuit weights, the
# sigmoid-pair head of 21 of their 24 student notebooks, all 4-qubit ones among them) and the
# text's circuit (amplitude encoding, then one trainable layer of H and RY per qubit, Fig. 5).
ReleasedQ3 = preset(
    Pqc, "released-q3",
    "The released code's 3-qubit student: CNN front, H + RY(π·tanh x), no circuit weights,"
    " softmax over [σ(p), 1 − σ(p)].",
    title="Quantum, {qubits} qubit", layers=0, entanglement="none", readout="sigmoid-pair",
    encoder="angle", weight_spread=math.pi,
)  # fmt: skip
ReleasedQ4 = preset(
    ReleasedQ3, "released-q4",
    "The released code's 4-qubit student: CNN front, H + RY(π·tanh x), no circuit weights,"
    " softmax over [σ(p), 1 − σ(p)].",
    qubits=4,
)  # fmt: skip
# Trainable circuits and their classical twins: a circuit that learns, beside a classical
# model of the same size. A linear front only projects the image to n features; the circuit
# (3 layers of ring CNOTs + RY, 3n weights) and the parity readout (every qubit decides, no
# parameters) do the rest. The twin keeps the front and readout and puts a ring Ising model
# (3n parameters, a distribution over the same 2^n outcomes) in the circuit's place. The
# circuit starts near its CNOTs alone (weights within ±0.1) and encodes monotonically: with
# weights anywhere on the circle and RY(π·tanh x) it reached 48 ± 12 % alone on MNIST 0-5,
# and 82 ± 0.5 % so (RESULTS.md, "Why the first trainable circuit learned poorly").
VqcQ3 = preset(
    Pqc, "vqc-q3",
    "A trainable 3-qubit circuit: linear front, H + RY((π/2)·tanh x) encoding, 3"
    " ring-entangled RY layers started near 0, parity readout.",
    title="Trainable circuit, {qubits} qubit",
    encoder="monotone-angle", layers=3, entanglement="ring", front="linear",
    readout="parity", weight_spread=0.1,
)  # fmt: skip
VqcQ4 = preset(
    VqcQ3, "vqc-q4",
    "A trainable 4-qubit circuit: linear front, H + RY((π/2)·tanh x) encoding, 3"
    " ring-entangled RY layers started near 0, parity readout.",
    qubits=4,
)  # fmt: skip
PaperQ3 = preset(
    Pqc, "paper-q3",
    "The paper text's 3-qubit student: amplitude encoding, a trainable H + RY layer (Fig. 5).",
    title="Quantum, {qubits} qubit (paper text)",
    encoder="amplitude", entanglement="none", block="h-ry", readout="first-c",
    weight_spread=math.pi,
)  # fmt: skip
# The text reads the first C outcomes. For 8 classes on 4 qubits that keeps the outcomes with
# qubit 3 at 0: its measured value never decides the class (the amplitude-encoded state is
# entangled, so its features still count through the renormalization).
PaperQ4 = preset(
    PaperQ3, "paper-q4",
    "The paper text's 4-qubit student: amplitude encoding, a trainable H + RY layer (Fig. 5).",
    qubits=4, allow_unused_qubits=True,
)  # fmt: skip


def ring_pairs(qubits: int) -> list[tuple[int, int]]:
    """Neighbours on a ring of `qubits` (a single pair for 2)."""
    return [(q, (q + 1) % qubits) for q in range(qubits if qubits > 2 else 1)]


class IsingRing(nn.Module):
    """Features [B, n] -> a distribution over the 2^n outcomes: a ring Ising model whose
    fields are the features, p(k) ∝ exp(Σ_q (a_q f_q + b_q) s_q(k) + Σ_ring J_qr s_q s_r(k))
    with spins s = ±1 per qubit. 3n parameters for n ≥ 3 (a, b and a coupling per ring edge):
    as many as 3 layers of one RY per qubit, and correlated outcomes like a ring-entangled
    circuit's. At initialization (a = 1, b = J = 0) the qubits are independent."""

    def __init__(self, qubits: int):
        super().__init__()
        spins = outcome_spins(qubits)
        pairs = ring_pairs(qubits)
        products = torch.stack([spins[:, q] * spins[:, r] for q, r in pairs], 1)
        self.register_buffer("spins", spins, persistent=False)
        self.register_buffer("products", products, persistent=False)
        self.gain = nn.Parameter(torch.ones(qubits))
        self.bias = nn.Parameter(torch.zeros(qubits))
        self.coupling = nn.Parameter(torch.zeros(len(pairs)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        fields = features * self.gain + self.bias
        energies = fields @ self.spins.T + self.products @ self.coupling
        return torch.softmax(energies, dim=1)


class ClassicalStudent(nn.Module):
    """A quantum student with its circuit replaced by a classical layer of the same outline."""

    def __init__(self, options: Classical, context: StudentContext):
        super().__init__()
        outcomes = 2**options.qubits
        self.scale = options.scale
        self.front = make_front(options.front, context.image_shape, options.qubits)
        # features -> 2**n "outcome" probabilities, as the circuit would give
        self.layer: nn.Module = (
            IsingRing(options.qubits)
            if options.head == "ising-ring"
            else nn.Linear(options.qubits, outcomes)  # then a softmax
        )
        self.readout = ReadOut(options.readout, options.qubits, context.num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.scale * torch.tanh(self.front(images))
        outcomes = self.layer(features)
        if isinstance(self.layer, nn.Linear):
            outcomes = torch.softmax(outcomes, dim=1)
        return self.readout(outcomes)


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
    head: Literal["linear", "ising-ring"] = option(
        "linear",
        help="in the circuit's place: linear (features -> 2^n logits, n·2^n + 2^n parameters)"
        " or ising-ring (a ring Ising model over n spins, 3n parameters: the twin of 3 layers"
        " of a ring-entangled circuit)",
        recorded_at_default=False,
    )
    readout: Readout = option("linear", help=READOUT_HELP)  # any class count, as pqc's

    def max_classes(self) -> int | None:
        return readout_limit(self.readout, self.qubits)

    def build(self, context: StudentContext) -> nn.Module:
        return ClassicalStudent(self, context)


TwinQ3 = preset(
    Classical, "twin-q3",
    "vqc-q3's classical twin: its linear front and parity readout, a ring Ising model (9"
    " parameters) for its circuit (9 weights).",
    title="Classical twin, {qubits}-qubit outline",
    front="linear", head="ising-ring", readout="parity", scale=math.pi / 2,
)  # fmt: skip
TwinQ4 = preset(
    TwinQ3, "twin-q4",
    "vqc-q4's classical twin: its linear front and parity readout, a ring Ising model (12"
    " parameters) for its circuit (12 weights).",
    qubits=4,
)  # fmt: skip


@hookimpl
def register_students(register) -> None:
    students = (Pqc, ReleasedQ3, ReleasedQ4, VqcQ3, VqcQ4, PaperQ3, PaperQ4, Classical, TwinQ3,
                TwinQ4)  # fmt: skip
    for student in students:
        register(student)
