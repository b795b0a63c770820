"""An example kdbench plugin: a teacher and a backend, each a dataclass whose fields are options."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

import kdbench


@dataclass(kw_only=True)
class Mlp(kdbench.Teacher):
    """A multilayer perceptron teacher: flatten, hidden ReLU layers, logits."""

    name: ClassVar[str] = "mlp"

    hidden: list[int] = kdbench.option([256, 128], help="width of each hidden layer", minimum=1)

    def build(self, num_classes: int, image_shape: tuple[int, int, int]) -> nn.Module:
        layers: list[nn.Module] = [nn.Flatten()]
        width = image_shape[0] * image_shape[1] * image_shape[2]
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


@kdbench.hookimpl
def register_teachers(register) -> None:
    register(Mlp)


@kdbench.hookimpl
def register_backends(register) -> None:
    register(DepolarizedStatevector)
