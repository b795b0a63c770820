"""The named students: the paper's in both readings, trainable circuits, their classical twins."""

from __future__ import annotations

import math

from kdbench import preset

from .classical import Classical
from .pqc import Pqc

# The paper's students in its two readings (the README's "The paper's matrix"): the
# released notebooks' hybrid (CNN front, H + RY angle encoding, no circuit weights, the
# sigmoid-pair head of 21 of their 24 student notebooks, all 4-qubit ones among them) and the
# text's circuit (amplitude encoding, then one trainable layer of H and RY per qubit, Fig. 5).
ReleasedQ3 = preset(
    Pqc,
    "released-q3",
    "The released code's 3-qubit student: CNN front, H + RY(π·tanh x), no circuit weights,"
    " softmax over [σ(p), 1 − σ(p)].",
    title="Quantum, {qubits} qubit",
    layers=0,
    entanglement="none",
    readout="sigmoid-pair",
    encoder="angle",
    weight_spread=math.pi,
)
ReleasedQ4 = preset(
    ReleasedQ3,
    "released-q4",
    "The released code's 4-qubit student: CNN front, H + RY(π·tanh x), no circuit weights,"
    " softmax over [σ(p), 1 − σ(p)].",
    qubits=4,
)
# Trainable circuits and their classical twins: a circuit that learns, beside a classical
# model of the same size. A linear front only projects the image to n features; the circuit
# (3 layers of ring CNOTs + RY, 3n weights) and the parity readout (every qubit decides, no
# parameters) do the rest. The twin keeps the front and readout and puts a ring Ising model
# (3n parameters, a distribution over the same 2^n outcomes) in the circuit's place. The
# circuit starts near its CNOTs alone (weights within ±0.1) and encodes monotonically: with
# weights anywhere on the circle and RY(π·tanh x) it reached 48 ± 12 % alone on MNIST 0-5,
# and 82 ± 0.5 % so (RESULTS.md, "Why the first trainable circuit learned poorly").
VqcQ3 = preset(
    Pqc,
    "vqc-q3",
    "A trainable 3-qubit circuit: linear front, H + RY((π/2)·tanh x) encoding, 3"
    " ring-entangled RY layers started near 0, parity readout.",
    title="Trainable circuit, {qubits} qubit",
    encoder="monotone-angle",
    layers=3,
    entanglement="ring",
    front="linear",
    readout="parity",
    weight_spread=0.1,
)
VqcQ4 = preset(
    VqcQ3,
    "vqc-q4",
    "A trainable 4-qubit circuit: linear front, H + RY((π/2)·tanh x) encoding, 3"
    " ring-entangled RY layers started near 0, parity readout.",
    qubits=4,
)
PaperQ3 = preset(
    Pqc,
    "paper-q3",
    "The paper text's 3-qubit student: amplitude encoding, a trainable H + RY layer (Fig. 5).",
    title="Quantum, {qubits} qubit (paper text)",
    encoder="amplitude",
    entanglement="none",
    block="h-ry",
    readout="first-c",
    weight_spread=math.pi,
)
# The text reads the first C outcomes. For 8 classes on 4 qubits that keeps the outcomes with
# qubit 3 at 0: its measured value never decides the class (the amplitude-encoded state is
# entangled, so its features still count through the renormalization).
PaperQ4 = preset(
    PaperQ3,
    "paper-q4",
    "The paper text's 4-qubit student: amplitude encoding, a trainable H + RY layer (Fig. 5).",
    qubits=4,
    allow_unused_qubits=True,
)


TwinQ3 = preset(
    Classical,
    "twin-q3",
    "vqc-q3's classical twin: its linear front and parity readout, a ring Ising model (9"
    " parameters) for its circuit (9 weights).",
    title="Classical twin, {qubits}-qubit outline",
    front="linear",
    head="ising-ring",
    readout="parity",
    scale=math.pi / 2,
)
TwinQ4 = preset(
    TwinQ3,
    "twin-q4",
    "vqc-q4's classical twin: its linear front and parity readout, a ring Ising model (12"
    " parameters) for its circuit (12 weights).",
    qubits=4,
)
