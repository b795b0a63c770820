"""The classical control: a quantum student's front and readout around a classical layer."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn

from kdbench import Student, StudentContext, option, params_of, stacked_call

from .fronts import Front, make_front, stacking_pays
from .pqc import MAX_QUBITS
from .readout import READOUT_HELP, ReadOut, Readout, outcome_spins, readout_limit


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

    def forward_stacked(self, params: dict[str, torch.Tensor], features: torch.Tensor):
        """`forward` for S models at once: features [S, B, n], parameters [S, ...]."""
        fields = features * params["gain"][:, None] + params["bias"][:, None]
        couplings = params["coupling"] @ self.products.T  # [S, 2^n]
        return torch.softmax(fields @ self.spins.T + couplings[:, None], dim=-1)


class ClassicalStudent(nn.Module):
    """A quantum student with its circuit replaced by a classical layer of the same outline."""

    def __init__(self, options: Classical, context: StudentContext):
        super().__init__()
        outcomes = 2**options.qubits
        self.scale = options.scale
        self.front = make_front(options.front, context.input_shape, options.qubits)
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

    def forward_stacked(self, params: dict[str, torch.Tensor], images: torch.Tensor):
        """`forward` for S models at once (`kdbench.stacked_call`)."""
        front = stacked_call(self.front, params_of(params, "front"), images)
        outcomes = stacked_call(
            self.layer, params_of(params, "layer"), self.scale * torch.tanh(front)
        )
        if isinstance(self.layer, nn.Linear):
            outcomes = torch.softmax(outcomes, dim=-1)
        return stacked_call(self.readout, params_of(params, "readout"), outcomes)


@dataclass(kw_only=True)
class Classical(Student):
    """Classical control: the same front and readout, a linear layer + softmax for the circuit."""

    stackable: ClassVar[bool] = True
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

    def stacking_pays(self, batch_size: int) -> bool:
        return stacking_pays(self.front, batch_size)

    def max_classes(self) -> int | None:
        return readout_limit(self.readout, self.qubits)

    def build(self, context: StudentContext) -> nn.Module:
        return ClassicalStudent(self, context)
