"""Shot counts drawn from exact outcome probabilities."""

from __future__ import annotations

import torch


def draw_frequencies(probs: torch.Tensor, shots: int, generator: torch.Generator) -> torch.Tensor:
    """Frequencies [K, M] of `shots` multinomial draws from each row of `probs` [K, M].

    Drawn as a chain of binomials, outcome by outcome: M draws per row instead of `shots`
    categorical ones (5000 shots of 3 qubits: 8 instead of 5000). `generator` lives on the
    device of `probs`; the result has the dtype of `probs`.
    """
    exact = probs.to(torch.float64)
    counts = torch.zeros_like(exact)
    remaining = torch.full((len(exact),), float(shots), dtype=torch.float64, device=exact.device)
    mass = torch.ones_like(remaining)
    for k in range(exact.shape[1] - 1):
        share = torch.where(mass > 0, exact[:, k] / mass, 0.0).clamp(0.0, 1.0)
        counts[:, k] = torch.binomial(remaining, share, generator=generator)
        remaining -= counts[:, k]
        mass = (mass - exact[:, k]).clamp_min(0.0)
    counts[:, -1] = remaining
    return (counts / shots).to(probs.dtype)
