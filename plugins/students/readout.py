"""Readouts: a circuit's 2**n outcome probabilities as class probabilities, and their limits."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from kdbench import params_of, stacked_call

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

    def forward_stacked(self, params: dict[str, torch.Tensor], probs: torch.Tensor):
        """`forward` for S models at once: probabilities [S, B, 2**n] (`kdbench.stacked_call`)."""
        if self.map is None:
            return self(probs.flatten(0, 1)).unflatten(0, probs.shape[:2])
        if self.kind == "z-linear":
            probs = probs @ self.signs.to(probs.dtype)
        return torch.softmax(stacked_call(self.map, params_of(params, "map"), probs), dim=-1)


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
