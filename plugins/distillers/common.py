"""What the distillers share: option help texts and softened distributions."""

from __future__ import annotations

import torch
import torch.nn.functional as F

TAU = "τ of the softened distributions"
CE = "weight of the cross-entropy term"
KD = "weight of the distillation term"


def _soft(logits: torch.Tensor, tau: float) -> torch.Tensor:
    """log σ(logits/τ) over the classes."""
    return F.log_softmax(logits / tau, dim=1)


def _probs(logits: torch.Tensor, tau: float) -> torch.Tensor:
    """σ(logits/τ) over the classes."""
    return F.softmax(logits / tau, dim=1)


def _kl(log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """KL(a ‖ b) averaged over the batch, from log a and log b [B, C]."""
    return F.kl_div(log_b, log_a, reduction="batchmean", log_target=True)
