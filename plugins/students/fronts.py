"""The classical fronts: what turns an input into the features a student encodes."""

from __future__ import annotations

import math
from typing import Literal

from torch import nn

import kdbench

Front = Literal["cnn", "linear", "pool"]


def make_front(kind: Front, input_shape: tuple[int, ...], features: int) -> nn.Module:
    """The classical part that turns an input into `features` numbers for the encoder: cnn
    takes images (C, H, W) only; linear and pool take inputs of any shape."""
    if kind == "cnn":  # the released code's front
        channels, height, width = kdbench.as_image(input_shape, "front 'cnn'")
        flat = 20 * (((height - 4) // 2 - 4) // 2) * (((width - 4) // 2 - 4) // 2)
        return nn.Sequential(
            nn.Conv2d(channels, 10, 5), nn.MaxPool2d(2), nn.ReLU(),
            nn.Conv2d(10, 20, 5), nn.Dropout2d(), nn.MaxPool2d(2), nn.ReLU(),
            nn.Flatten(),
            nn.Linear(flat, 50), nn.ReLU(), nn.Dropout(),
            nn.Linear(50, features),
        )  # fmt: skip
    if kind == "linear":
        return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), features))
    # "pool": fixed averages of pixel bands; nothing classical is trained.
    return nn.Sequential(
        nn.Flatten(), nn.Unflatten(1, (1, -1)), nn.AdaptiveAvgPool1d(features), nn.Flatten()
    )


# Stacking the seeds of an arm (`[train] stacked = "auto"`) batches their convolutions as
# grouped ones, which on the CPU beat a loop of separate ones only at small batches: 10 seeds
# of released-q3 trained 3.8x faster stacked at batch 1 (20 seeds), 2.0x at 4, 1.6x at 8,
# 1.2x at 16 and 0.89x at 32 (perf/stacked.py, 2 cores, one thread).
CNN_STACKING_MAX_BATCH = 16


def stacking_pays(front: Front, batch_size: int) -> bool:
    """Whether the seeds of a student with `front` train faster stacked at `batch_size`."""
    return front != "cnn" or batch_size <= CNN_STACKING_MAX_BATCH
