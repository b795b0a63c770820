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


# Jeffreys' (Krichevsky-Trofimov) pseudo-count: half a shot per outcome.
DEFAULT_SMOOTHING = 0.5


def smoothed(frequencies: torch.Tensor, shots: int, pseudocount: float) -> torch.Tensor:
    """Additive smoothing of shot frequencies [K, M]: (counts + α) / (shots + α·M).

    A class no shot landed on then has a small probability, not 0: its log (the loss) stays
    finite and keeps a gradient, where log(clamp(0)) would have none and the worst-classified
    images would not train. Affine in the frequencies, so gradients pass through, scaled by
    shots / (shots + α·M). α = 0 returns `frequencies` unchanged.
    """
    if not pseudocount:
        return frequencies
    outcomes = frequencies.shape[-1]
    return (frequencies * shots + pseudocount) / (shots + pseudocount * outcomes)


def smoothing_option(recorded_if: str | None = None) -> float:
    """The `smoothing` option of a backend that samples shots (a dataclass field);
    `recorded_if` names the option without which it draws no shots (see `option`)."""
    from kdbench.options import option

    return option(
        DEFAULT_SMOOTHING,
        minimum=0,
        help="pseudo-count added to every outcome's shot count (0: raw frequencies), so that"
        " no probability is 0 and the loss keeps its gradient",
        recorded_if=recorded_if,
    )
