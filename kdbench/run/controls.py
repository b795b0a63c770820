"""The teacher controls' targets: a teacher's outputs shuffled across images (or within a
class), or replaced by each class's mean; and how far a control moved them."""

from __future__ import annotations

import torch


def class_means(values: torch.Tensor, labels: torch.Tensor, log: bool = True) -> torch.Tensor:
    """Each row replaced by the mean over the rows of its label: of the softmax
    distributions, returned as log-probabilities (`log`), or of the raw values."""
    spread = torch.softmax(values, dim=1) if log else values
    out = torch.empty_like(spread)
    for label in labels.unique():
        members = labels == label
        out[members] = spread[members].mean(0)
    return torch.log(out) if log else out


def mean_kl(logits: torch.Tensor, other: torch.Tensor) -> float:
    """The mean over rows of KL(softmax(logits) ‖ softmax(other)), in nats."""
    log_p, log_q = torch.log_softmax(logits, dim=1), torch.log_softmax(other, dim=1)
    return float((log_p.exp() * (log_p - log_q)).sum(1).mean())


def permutation(
    labels: torch.Tensor, within_class: bool, generator: torch.Generator
) -> torch.Tensor:
    """A random order of the images: across all of them, or only among those of one class
    (each image then gets the outputs of another image of its class)."""
    if not within_class:
        return torch.randperm(len(labels), generator=generator)
    order = torch.arange(len(labels))
    for label in labels.unique():
        members = (labels == label).nonzero().flatten()
        order[members] = members[torch.randperm(len(members), generator=generator)]
    return order
