"""An example kdbench plugin: a teacher, a backend and a distiller, each a dataclass whose
fields are options."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

import kdbench


@dataclass(kw_only=True)
class ReluMlp(kdbench.Teacher):
    """A multilayer perceptron teacher: flatten, hidden ReLU layers, logits."""

    name: ClassVar[str] = "relu-mlp"

    hidden: list[int] = kdbench.option([256, 128], help="width of each hidden layer", minimum=1)

    def build(self, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for size in self.hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        return nn.Sequential(*layers, nn.Linear(width, num_classes))


class _Depolarized:
    """The exact probabilities mixed with the uniform distribution: p -> (1-λ) p + λ / 2^n."""

    def __init__(self, exact: kdbench.CircuitFunction, strength: float):
        self.exact, self.strength = exact, strength

    def __getattr__(self, name: str):  # executions, shots, depth, width: the exact ones
        return getattr(self.exact, name)

    def __call__(self, inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        probs = self.exact(inputs, weights)
        return (1 - self.strength) * probs + self.strength / probs.shape[1]


@dataclass(kw_only=True)
class DepolarizedStatevector(kdbench.Backend):
    """Exact simulation followed by a global depolarizing channel of a given strength."""

    name: ClassVar[str] = "depolarized-statevector"

    strength: float = kdbench.option(
        0.1, help="λ: the weight of the uniform distribution", minimum=0, maximum=1
    )

    def compile(self, circuit, inputs, weights, *, seed: int) -> kdbench.CircuitFunction:
        # The built-in backend by its registered name: a plugin imports only `kdbench`.
        exact = kdbench.component("backends", "statevector")()
        return _Depolarized(exact.compile(circuit, inputs, weights, seed=seed), self.strength)


@dataclass(kw_only=True)
class TopKKd(kdbench.Distiller):
    """Top-k KD: CE(s, y) + kd_weight·τ²·KL(σ(t_K/τ) ‖ σ(s_K/τ)), K the teacher's top k classes.

    For each image, K holds the k classes with the largest teacher logits t; σ is the softmax
    over K alone, so both distributions are renormalized there and the classes the teacher
    rules out carry no term. s = log p are the student's logits. With k ≥ the number of
    classes it is Hinton et al.'s KD. Part `kd` is the KL before kd_weight and τ².
    """

    name: ClassVar[str] = "top-k"
    title: ClassVar[str | None] = "Top-{k} KD"

    k: int = kdbench.option(2, help="how many of the teacher's top classes to match", minimum=2)
    temperature: float = kdbench.option(
        2.0, help="τ of the softened distributions", minimum=0, exclusive_minimum=True
    )
    kd_weight: float = kdbench.option(1.0, help="weight of the τ²-scaled KL term", minimum=0)

    def loss(self, batch: kdbench.DistillBatch) -> kdbench.Loss:
        teacher, tau = batch.teacher(), self.temperature
        top = teacher.topk(min(self.k, teacher.shape[1]), dim=1).indices  # [B, k]
        target = F.log_softmax(teacher.gather(1, top) / tau, dim=1)
        student = F.log_softmax(batch.log_probs.gather(1, top) / tau, dim=1)
        kd = F.kl_div(student, target, reduction="batchmean", log_target=True)
        total = batch.cross_entropy() + self.kd_weight * tau**2 * kd
        return kdbench.Loss(total, {"kd": kd})


@kdbench.hookimpl
def register_teachers(register) -> None:
    register(ReluMlp)


@kdbench.hookimpl
def register_backends(register) -> None:
    register(DepolarizedStatevector)


@kdbench.hookimpl
def register_distillers(register) -> None:
    register(TopKKd)
