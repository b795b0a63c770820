"""The small real data sets that ship with scikit-learn: nothing to download.

scikit-learn gives each as one table; kdbench needs a training pool and a test pool, so each
class is split once, the same way for every cell (`test_fraction` of it to test, drawn with
`split_seed`); the harness then draws its class-balanced subsets from the pools with the
cell's seed. Feature vectors are standardised with the training pool's mean and standard
deviation (the benchmark paper's preprocessing); digits stay images in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from kdbench import Dataset, FetchReport, option, preset

from .pools import check_split, standardised


@dataclass(kw_only=True)
class SklearnDataset(Dataset):
    """Base of the data sets loaded by a function of `sklearn.datasets` (`loader`)."""

    loader: ClassVar[str]
    standardise: ClassVar[bool] = True  # feature vectors; images are scaled instead
    scale: ClassVar[float] = 1.0  # images: divided by their largest value

    test_fraction: float = option(
        0.3,
        help="share of each class held out as the test pool",
        minimum=0,
        exclusive_minimum=True,
        maximum=1,
        exclusive_maximum=True,
    )
    split_seed: int = option(0, help="seed of the split into training and test pools", minimum=0)

    def fetch(self, root: Path, report: FetchReport | None = None) -> None:
        """Nothing to fetch: the data ship with scikit-learn."""
        if report:
            report(f"{self.name}: ships with scikit-learn, nothing to fetch")

    def load(self, root: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(float32 inputs [N, *input_shape], int64 labels [N]) of the 'train' or 'test' pool."""
        check_split(split)
        import sklearn.datasets

        table = getattr(sklearn.datasets, self.loader)()
        x = torch.as_tensor(table.data, dtype=torch.float64)
        y = torch.as_tensor(table.target, dtype=torch.int64)
        generator = torch.Generator().manual_seed(self.split_seed)
        test = torch.zeros(len(y), dtype=torch.bool)
        for label in range(len(self.class_names)):
            members = (y == label).nonzero().flatten()
            drawn = members[torch.randperm(len(members), generator=generator)]
            test[drawn[: round(self.test_fraction * len(members))]] = True
        x = standardised(x, reference=x[~test]) if self.standardise else x / self.scale
        chosen = test if split == "test" else ~test
        return x[chosen].float().reshape(-1, *self.shape()), y[chosen]


class _Digits(SklearnDataset):
    loader = "load_digits"
    class_names = tuple(str(d) for d in range(10))
    input_shape = (1, 8, 8)
    standardise = False
    scale = 16.0


class _BreastCancer(SklearnDataset):
    loader = "load_breast_cancer"
    class_names = ("malignant", "benign")
    input_shape = (30,)


class _Wine(SklearnDataset):
    loader = "load_wine"
    class_names = ("cultivar 0", "cultivar 1", "cultivar 2")
    input_shape = (13,)


class _Iris(SklearnDataset):
    loader = "load_iris"
    class_names = ("setosa", "versicolor", "virginica")
    input_shape = (4,)


# Defaults that fit each set's smallest class (30% of it to test, the rest to train and
# validation): a config that names only the plugin runs.
Digits = preset(
    _Digits,
    "digits",
    "UCI handwritten digits (scikit-learn's copy): 1,797 grey-scale 8×8 images, 10 classes"
    " (~180 each), scaled to [0, 1].",
    title="Digits",
    train_per_class=80,
    val_per_class=30,
    test_per_class=50,
)
BreastCancer = preset(
    _BreastCancer,
    "breast-cancer",
    "Wisconsin diagnostic breast cancer: 569 tumours, 30 features of their cell nuclei,"
    " malignant (212) or benign (357); standardised.",
    title="Breast cancer",
    train_per_class=100,
    val_per_class=40,
    test_per_class=60,
)
Wine = preset(
    _Wine,
    "wine",
    "UCI wine recognition: 178 wines, 13 chemical features, 3 cultivars (59, 71, 48);"
    " standardised.",
    title="Wine",
    train_per_class=24,
    val_per_class=10,
    test_per_class=14,
)
Iris = preset(
    _Iris,
    "iris",
    "Fisher's iris: 150 flowers, 4 measurements, 3 species (50 each); standardised.",
    title="Iris",
    train_per_class=25,
    val_per_class=10,
    test_per_class=15,
)
