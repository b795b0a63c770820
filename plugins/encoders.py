"""Encoders: how classical features are loaded into qubits."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from qiskit.circuit import Parameter, ParameterVector, QuantumCircuit

from kdbench import Encoder, KdbenchError, hookimpl, option, preset

MAX_AMPLITUDE_QUBITS = 16


@dataclass(kw_only=True)
class Squashed(Encoder):
    """Base of encoders that squash each feature into an angle first: x' = scale·tanh(x)."""

    scale: float = option(math.pi, help="angle of a saturated feature: x' = scale·tanh(x)")

    def squash(self, features: torch.Tensor) -> torch.Tensor:
        """scale·tanh(features), elementwise."""
        return self.scale * torch.tanh(features)


@dataclass(kw_only=True)
class Angle(Squashed):
    """One feature per qubit: H, then RY(scale·tanh(feature)) (the released code)."""

    name: ClassVar[str] = "angle"

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
        return self.squash(features)


@dataclass(kw_only=True)
class Amplitude(Squashed):
    """2**n features as the real amplitudes of n qubits (Eq. 15), signs included.

    The features are squashed (x' = scale·tanh(x)) and L2-normalized; an all-zero vector
    gives |0…0⟩. The state is prepared from |0…0⟩ by a binary tree of uniformly controlled
    RY rotations (Möttönen et al., 2004): qubit n-1 first, then each lower qubit q rotated by
    an angle chosen by the state of the qubits above it. Each uniformly controlled rotation
    with k controls is 2**k plain RY gates interleaved with 2**k CNOTs in Gray-code order, so
    the fragment has 2**n - 1 RY gates (its parameters, level by level from qubit n-1 down)
    and 2**n - 2 CNOTs, and runs on any backend that runs RY and CX.
    """

    name: ClassVar[str] = "amplitude"

    def num_features(self, qubits: int) -> int:
        return 2**qubits

    def circuit(self, qubits: int) -> tuple[QuantumCircuit, list[Parameter]]:
        if qubits > MAX_AMPLITUDE_QUBITS:  # 2**n - 1 gates: building more would take minutes
            raise KdbenchError(
                f"amplitude: encoding {qubits} qubits takes 2^{qubits} - 1 rotations and as many"
                f" features; at most {MAX_AMPLITUDE_QUBITS} qubits"
            )
        angles = ParameterVector("x", 2**qubits - 1)
        qc = QuantumCircuit(qubits)
        position = 0
        for level in range(qubits):
            target, width = qubits - 1 - level, 2**level
            for i in range(width):
                qc.ry(angles[position + i], target)
                if level:
                    # The one control bit in which Gray codes i and i+1 (cyclically) differ.
                    flip = _gray(i) ^ _gray((i + 1) % width)
                    qc.cx(target + 1 + flip.bit_length() - 1, target)
            position += width
        return qc, list(angles)

    def amplitudes(self, features: torch.Tensor) -> torch.Tensor:
        """Features [B, 2**n] -> the real amplitudes [B, 2**n] the fragment prepares.

        normalize(scale·tanh(features)); a row of zeros has no direction and gives |0…0⟩.
        """
        squashed = self.squash(features)
        norm = _safe_sqrt(squashed.square().sum(dim=1, keepdim=True))
        ground = torch.zeros_like(squashed)
        ground[:, 0] = 1
        return torch.where(norm > 0, squashed / torch.where(norm > 0, norm, 1.0), ground)

    def parameter_values(self, features: torch.Tensor) -> torch.Tensor:
        """Features [B, 2**n] -> the 2**n - 1 RY angles of the fragment, differentiably."""
        size = features.shape[-1]
        qubits = size.bit_length() - 1
        if size < 2 or size != 2**qubits:
            raise ValueError(f"amplitude encoding needs 2**n features (n >= 1), got {size}")
        amplitudes = self.amplitudes(features)
        batch = amplitudes.shape[0]
        angles = []
        for level in range(qubits):
            target = qubits - 1 - level
            # Index k = (state of the qubits above the target, target bit, qubits below).
            split = amplitudes.reshape(batch, 2**level, 2, 2**target)
            if target:
                # Rotate toward the norms of the two halves of each subtree.
                low, high = _safe_sqrt(split.square().sum(dim=3)).unbind(dim=2)
            else:
                # Leaves: the signed amplitudes themselves, so RY can reach negative ones.
                low, high = split[..., 0].unbind(dim=2)
            uniform = 2 * _safe_atan2(high, low)  # [B, 2**level], one per control state
            angles.append(uniform @ _gray_inverse(level, uniform.dtype, uniform.device))
        return torch.cat(angles, dim=1)


def _gray(i: int) -> int:
    return i ^ (i >> 1)


def _gray_inverse(level: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """_gray_matrix(level) in `dtype` on `device`."""
    return _gray_matrix(level).to(dtype=dtype, device=device)


@functools.cache
def _gray_matrix(level: int) -> torch.Tensor:
    """Maps uniformly controlled angles [.., 2**level] to the RY angles of the decomposition.

    Pushing the CNOTs through the RY gates flips the sign of RY i for control state c when
    c·gray(i) is odd, so α = M β with M[c, i] = (-1)^popcount(c & gray(i)); M is a permuted
    Hadamard matrix, whose inverse is M^T / 2**level. Returns that inverse, transposed for
    right-multiplication: β = α @ (M / 2**level).
    """
    width = 2**level
    signs = [
        [-1.0 if bin(c & _gray(i)).count("1") % 2 else 1.0 for i in range(width)]
        for c in range(width)
    ]
    return torch.tensor(signs, dtype=torch.float64) / width


def _safe_sqrt(x: torch.Tensor) -> torch.Tensor:
    """sqrt with a zero (not infinite) gradient at 0, where empty subtrees have no direction."""
    positive = x > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, x, torch.ones_like(x))), 0.0)


def _safe_atan2(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """atan2 with atan2(0, 0) = 0 and a zero (not NaN) gradient there."""
    zero = (x == 0) & (y == 0)
    return torch.atan2(torch.where(zero, 0.0, y), torch.where(zero, 1.0, x))


# With scale π, RY(π·tanh x) after H passes |1⟩ at tanh x = ½ and turns back to |+⟩ as the
# feature saturates: P(1) = (1 + sin θ)/2 is not monotone in x, and a saturated feature gives
# ½ with no gradient. At π/2 every outcome probability is monotone in its feature and a
# saturated one is a definite |0⟩ or |1⟩.
MonotoneAngle = preset(
    Angle,
    "monotone-angle",
    "One feature per qubit: H, then RY((π/2)·tanh(feature)), monotone in the feature.",
    scale=math.pi / 2,
)


@hookimpl
def register_encoders(register) -> None:
    register(Angle)
    register(MonotoneAngle)
    register(Amplitude)
