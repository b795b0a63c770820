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


class ShotSampler:
    """Replaces exact probabilities by the frequencies of `shots` multinomial draws, for an
    exact simulator that offers shots: a generator per torch device seeded with `seed` (so
    runs repeat), smoothed with `smoothing` (`smoothed`), gradients straight through: the
    value is the sampled frequencies, the backward pass that of the exact probabilities."""

    def __init__(self, shots: int, seed: int, smoothing: float):
        self.shots, self.seed, self.smoothing = shots, seed, smoothing
        self._generators: dict[torch.device, torch.Generator] = {}

    def draw(self, probs: torch.Tensor) -> torch.Tensor:
        """Raw frequencies [K, M] of `shots` draws from each row of `probs` (detached)."""
        generator = self._generators.get(probs.device)
        if generator is None:
            generator = torch.Generator(device=probs.device).manual_seed(self.seed)
            self._generators[probs.device] = generator
        return draw_frequencies(probs.detach(), self.shots, generator)

    def __call__(self, probs: torch.Tensor) -> torch.Tensor:
        """Smoothed frequencies with the exact probabilities' gradient."""
        # probs - probs.detach() is 0 in value, the exact gradient in the backward pass.
        sampled = self.draw(probs) + (probs - probs.detach())
        return smoothed(sampled, self.shots, self.smoothing)


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
