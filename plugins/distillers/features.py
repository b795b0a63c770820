"""FitNet: distillation of the teacher's features through a learned map."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from kdbench import DistillBatch, Distiller, Loss, option

from .common import CE


@dataclass(kw_only=True)
class FitNet(Distiller):
    """FitNet's hint: ce_weight·CE(s, y) + hint_weight·MSE(W·f_s, f_t), features not outputs.

    f_s is the output of the student's classical front (the features its circuit encodes),
    f_t the teacher's penultimate features (the input of its last linear layer), W a linear
    regressor from the student's width to the teacher's, trained with the student from the
    cell's seed. FitNets train the hint first and then distil; here, as in mdistiller's
    FitNet, both terms train together from the start. Part `hint` is the MSE before its
    weight.

    Reference: Romero, Ballas, Kahou, Chassang, Gatta, Bengio, "FitNets: Hints for Thin Deep
    Nets", ICLR 2015, arXiv:1412.6550.
    """

    name: ClassVar[str] = "fitnet"
    uses_features: ClassVar[bool] = True

    hint_weight: float = option(1.0, help="weight of the hint (feature regression) term", minimum=0)
    ce_weight: float = option(1.0, help=CE, minimum=0)

    def build(self, student_features: int, teacher_features: int) -> torch.nn.Module:
        return torch.nn.Linear(student_features, teacher_features)

    def loss(self, batch: DistillBatch) -> Loss:
        ce, regressor = batch.cross_entropy(), batch.learned
        assert regressor is not None and batch.student_features is not None  # uses_features
        hint = F.mse_loss(regressor(batch.student_features), batch.teacher_features)
        return Loss(self.ce_weight * ce + self.hint_weight * hint, {"ce": ce, "hint": hint})
