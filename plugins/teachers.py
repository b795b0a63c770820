"""Classical teachers of the paper (§4.3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from kdbench import Teacher, hookimpl


@dataclass(kw_only=True)
class LeNet(Teacher):
    """LeNet-5 for 1x28x28 images, as modified in the paper (tanh, average pooling)."""

    name: ClassVar[str] = "lenet"

    def build(self, num_classes: int, image_shape: tuple[int, int, int]) -> nn.Module:
        channels, height, width = image_shape
        flat = 16 * ((height // 2 - 4) // 2) * ((width // 2 - 4) // 2)
        return nn.Sequential(
            nn.Conv2d(channels, 6, 5, padding=2), nn.Tanh(), nn.AvgPool2d(2),
            nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2),
            nn.Flatten(),
            nn.Linear(flat, 120), nn.Tanh(),
            nn.Linear(120, 84), nn.Tanh(),
            nn.Linear(84, num_classes),
        )  # fmt: skip


@hookimpl
def register_teachers(register) -> None:
    register(LeNet)
