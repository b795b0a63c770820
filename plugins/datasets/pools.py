"""What the built-in data sets share about the pools `load` returns."""

from __future__ import annotations

import torch

SPLITS = ("train", "test")


def check_split(split: str) -> None:
    """A ValueError unless `split` is one a data set loads."""
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")


def standardised(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """`x` less `reference`'s mean per feature, over its standard deviation (ddof 0, as
    scikit-learn's StandardScaler; a constant feature is only centred)."""
    mean, std = reference.mean(0), reference.std(0, unbiased=False)
    return (x - mean) / torch.where(std > 0, std, 1.0)
