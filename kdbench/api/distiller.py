"""The distiller base class and what its loss sees and returns: a batch, a loss."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from kdbench.api.component import Component

if TYPE_CHECKING:  # torch is slow to import (`kdbench --help`); annotations only
    import torch
    from torch import nn


@dataclass(frozen=True)
class DistillBatch:
    """What a distiller sees of one batch: the student's outputs, the labels, the teacher's.

    kdbench's students return class probabilities; their logits are taken to be log p
    (paper §3.4), so `log_probs` is both. Everything is on one device; only the student's
    side carries gradients.
    """

    log_probs: torch.Tensor
    """[B, C] the log of the student's class probabilities (its logits)."""
    labels: torch.Tensor
    """[B] int64 class indices."""
    teacher_logits: torch.Tensor | None
    """[B, C] the frozen teacher's logits; None for a distiller that `uses_teacher = False`."""
    student_features: torch.Tensor | None = None
    """[B, F_s] the output of the student's front (`Student.front_module`), with gradients;
    only for a distiller that `uses_features`."""
    teacher_features: torch.Tensor | None = None
    """[B, F_t] the teacher's penultimate features, the input of its `classifier_layer`;
    only for a distiller that `uses_features`."""
    learned: nn.Module | None = None
    """What the distiller's `build` returned for this cell (e.g. a projection), trained with
    the student."""

    @property
    def probs(self) -> torch.Tensor:
        """[B, C] the student's class probabilities."""
        return self.log_probs.exp()

    def cross_entropy(self) -> torch.Tensor:
        """The mean cross-entropy with the labels, CE(s, y)."""
        import torch.nn.functional as F

        return F.nll_loss(self.log_probs, self.labels)

    def teacher(self) -> torch.Tensor:
        """The teacher's logits; raises if this batch has none (a teacher-free distiller)."""
        if self.teacher_logits is None:
            raise ValueError("this batch has no teacher logits")
        return self.teacher_logits


@dataclass(frozen=True)
class Loss:
    """A distiller's training loss and its named terms (each logged per epoch as
    `train_<name>` and `val_<name>`; kdbench logs the plain cross-entropy as `ce` itself)."""

    total: torch.Tensor
    parts: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass(kw_only=True)
class Distiller(Component):
    """A distillation method: the loss a student trains on, from its outputs and a teacher's.

    The harness calls `loss` on every training batch (gradients on) and on every validation
    batch (off); a cell without a teacher trains on the plain cross-entropy and never calls
    it. A method that needs no teacher (label smoothing) sets `uses_teacher = False`: it then
    runs once per student, not once per teacher, and is paired with the same baseline.
    """

    kind: ClassVar[str] = "distiller"
    required: ClassVar[tuple[str, ...]] = ("loss",)
    uses_teacher: ClassVar[bool] = True
    uses_features: ClassVar[bool] = False
    """True: the batch carries the student's and the teacher's features (a config whose
    teacher or student exposes none is refused before anything runs)."""

    def build(self, student_features: int, teacher_features: int) -> nn.Module | None:
        """Modules of the method's own that train with the student (a feature distiller's
        projection between the two feature widths), made once per cell; they reach `loss` as
        `batch.learned`. Called only when `uses_features`; default: none."""
        return None

    def loss(self, batch: DistillBatch) -> Loss:
        """The training loss of one batch (a scalar tensor) and its named parts."""
        raise NotImplementedError
