"""The classical fronts: what turns an image into the features a student encodes."""

from __future__ import annotations

from typing import Literal

from torch import nn

Front = Literal["cnn", "linear", "pool"]


def make_front(kind: Front, image_shape: tuple[int, int, int], features: int) -> nn.Module:
    """The classical part that turns an image into `features` numbers for the encoder."""
    channels, height, width = image_shape
    if kind == "cnn":  # the released code's front
        flat = 20 * (((height - 4) // 2 - 4) // 2) * (((width - 4) // 2 - 4) // 2)
        return nn.Sequential(
            nn.Conv2d(channels, 10, 5), nn.MaxPool2d(2), nn.ReLU(),
            nn.Conv2d(10, 20, 5), nn.Dropout2d(), nn.MaxPool2d(2), nn.ReLU(),
            nn.Flatten(),
            nn.Linear(flat, 50), nn.ReLU(), nn.Dropout(),
            nn.Linear(50, features),
        )  # fmt: skip
    if kind == "linear":
        return nn.Sequential(nn.Flatten(), nn.Linear(channels * height * width, features))
    # "pool": fixed averages of pixel bands; nothing classical is trained.
    return nn.Sequential(
        nn.Flatten(), nn.Unflatten(1, (1, -1)), nn.AdaptiveAvgPool1d(features), nn.Flatten()
    )
