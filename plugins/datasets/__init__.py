"""Built-in data sets: the paper's images (MNIST, Fashion-MNIST), scikit-learn's own small
sets, and the generators of the field's QML benchmark (Bowles, Ahmed & Schuld 2024)."""

# Laid out by source: `images` (IDX files), `tabular` (shipped with scikit-learn),
# `generated` (drawn from a seed, offline); this module registers them.
from __future__ import annotations

from kdbench import hookimpl

from .generated import (
    BarsAndStripes,
    GeneratedDataset,
    HiddenManifold,
    HyperplanesParity,
    LinearlySeparable,
    TwoCurves,
)
from .images import FashionMnist, IdxDataset, Mnist
from .tabular import BreastCancer, Digits, Iris, SklearnDataset, Wine

__all__ = [
    "BarsAndStripes",
    "BreastCancer",
    "Digits",
    "FashionMnist",
    "GeneratedDataset",
    "HiddenManifold",
    "HyperplanesParity",
    "IdxDataset",
    "Iris",
    "LinearlySeparable",
    "Mnist",
    "SklearnDataset",
    "TwoCurves",
    "Wine",
]


@hookimpl
def register_datasets(register) -> None:
    """Register the built-in data sets."""
    for dataset in (
        Mnist,
        FashionMnist,
        Digits,
        BreastCancer,
        Wine,
        Iris,
        BarsAndStripes,
        HiddenManifold,
        HyperplanesParity,
        LinearlySeparable,
        TwoCurves,
    ):
        register(dataset)
