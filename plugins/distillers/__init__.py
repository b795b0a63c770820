"""Distillers: the loss a student trains on, from its outputs, the labels and a teacher's logits.

Notation: s = log p, the student's logits (its log class probabilities, paper §3.4); t, the
teacher's logits; y, the labels; σ, the softmax over classes; τ, a temperature; KL(a ‖ b) =
Σ_c a_c·log(a_c / b_c), averaged over the batch. Each logged part is its term before the
weights and (except where `t2_scaling` applies it) before τ².
"""

from __future__ import annotations

from collections.abc import Callable

from kdbench import hookimpl

from .control import LabelSmoothing
from .features import FitNet
from .logits import Dist, Dkd, Hinton, Mse
from .relations import Rkd
from .softened import Paper, ProbTemperature, ReverseKl

__all__ = [
    "Dist",
    "Dkd",
    "FitNet",
    "Hinton",
    "LabelSmoothing",
    "Mse",
    "Paper",
    "ProbTemperature",
    "ReverseKl",
    "Rkd",
    "register_distillers",
]


@hookimpl
def register_distillers(register: Callable[[type], None]) -> None:
    """The built-in distillation methods."""
    for cls in (
        Paper,
        Hinton,
        ReverseKl,
        ProbTemperature,
        Mse,
        Dkd,
        Dist,
        Rkd,
        LabelSmoothing,
        FitNet,
    ):
        register(cls)
