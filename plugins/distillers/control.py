"""Label smoothing: a teacher-free control."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from kdbench import DistillBatch, Distiller, Loss, option


@dataclass(kw_only=True)
class LabelSmoothing(Distiller):
    """Label smoothing, a teacher-free control: CE against (1 − ε)·onehot(y) + ε/C.

    = (1 − ε)·CE(s, y) + ε·mean over the batch of −(1/C)·Σ_c log p_c: distillation from a
    uniform "teacher". Part `uniform` is the second term before ε.

    References: Szegedy, Vanhoucke, Ioffe, Shlens, Wojna, "Rethinking the Inception
    Architecture for Computer Vision", CVPR 2016, arXiv:1512.00567; Yuan, Tay, Li, Wang,
    Feng, "Revisiting Knowledge Distillation via Label Smoothing Regularization", CVPR 2020,
    arXiv:1909.11723 (teacher-free KD).
    """

    name: ClassVar[str] = "label-smoothing"
    uses_teacher: ClassVar[bool] = False

    smoothing: float = option(0.1, help="ε, the weight of the uniform target", minimum=0, maximum=1)

    def loss(self, batch: DistillBatch) -> Loss:
        ce, eps = batch.cross_entropy(), self.smoothing
        uniform = -batch.log_probs.mean()  # mean over the batch and the classes
        return Loss((1 - eps) * ce + eps * uniform, {"ce": ce, "uniform": uniform})
