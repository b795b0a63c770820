"""What a training batch's loss is: the cross-entropy, or a distiller's loss with its named
parts; the student's outputs as logits; and a feature distiller's view of the student."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.api import DistillBatch, Distiller
from kdbench.errors import PluginError

# Part names a distiller may not use: the harness's own figures (its "ce" is the plain
# cross-entropy, which a distiller may report too, and must then equal).
RESERVED_PARTS = frozenset({"loss", "accuracy"})

# Probabilities that are exactly 0 (a shot-sampled outcome never seen) must not give -inf.
MIN_PROBABILITY = 1e-12


def training_loss(
    log_probs: torch.Tensor,
    labels: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    distiller: Distiller | None,
    teacher_features: torch.Tensor | None = None,
    hint: Hint | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss a batch trains on and its named parts, the plain cross-entropy `ce` first.

    Without a distiller (the student alone) the loss is the cross-entropy.
    """
    ce = F.nll_loss(log_probs, labels)
    if distiller is None:
        return ce, {"ce": ce}
    features, learned = (None, None) if hint is None else (hint.features, hint.learned)
    batch = DistillBatch(log_probs, labels, teacher_logits, features, teacher_features, learned)
    loss = distiller.loss(batch)
    reserved = RESERVED_PARTS & set(loss.parts)
    if reserved:
        raise PluginError(
            f"distiller '{distiller.name}' names a part {sorted(reserved)[0]!r}; the harness"
            f" logs {', '.join(sorted(RESERVED_PARTS))} itself"
        )
    return loss.total, {**loss.parts, "ce": ce}


def probabilities_to_log(probs: torch.Tensor) -> torch.Tensor:
    """The logits of a probability output: log p (paper §3.4)."""
    return torch.log(probs.clamp_min(MIN_PROBABILITY))


def logits_to_log(logits: torch.Tensor) -> torch.Tensor:
    return F.log_softmax(logits, dim=1)


class Hint:
    """A feature distiller's view of the student: the output of its front on the latest
    forward pass (kept by a forward hook), and the distiller's learned module."""

    def __init__(self, front: nn.Module, learned: nn.Module | None):
        self.learned = learned
        self.features: torch.Tensor | None = None
        self._hook = front.register_forward_hook(self._keep)

    def _keep(self, module: nn.Module, inputs: object, output: torch.Tensor) -> None:
        self.features = output.flatten(1)

    def parameters(self) -> list[torch.nn.Parameter]:
        return [] if self.learned is None else list(self.learned.parameters())

    def train(self, mode: bool) -> None:
        """Put the learned module in training mode (or evaluation), as the student."""
        if self.learned is not None:
            self.learned.train(mode)

    def close(self) -> None:
        self._hook.remove()
