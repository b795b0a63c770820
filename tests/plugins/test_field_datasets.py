"""The field's data sets: the QML benchmark's generators (Bowles, Ahmed & Schuld 2024) and the
small real sets that ship with scikit-learn. Each draws what its definition says, the same
points from the same seed, pools its defaults can draw from, and refuses a bad option in one
line; a vector student trains on them end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from kdbench import data
from kdbench.data import make_splits
from kdbench.errors import ConfigError
from kdbench.testing import make, plugin_registry, run_config

REGISTRY = plugin_registry()
GENERATED = [
    "bars-and-stripes",
    "hidden-manifold",
    "hyperplanes-parity",
    "linearly-separable",
    "two-curves",
]
TABULAR = ["digits", "breast-cancer", "wine", "iris"]
ROOT = Path("unused")  # neither kind reads files


@pytest.fixture(autouse=True)
def _fresh_cache():
    data.clear_cache()
    yield
    data.clear_cache()


def pools(name: str, **options) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    dataset = make(REGISTRY, "datasets", name, **options)
    return {split: dataset.load(ROOT, split) for split in ("train", "test")}


@pytest.mark.parametrize("name", GENERATED + TABULAR)
def test_defaults_draw_a_cell_and_inputs_have_the_declared_shape(name):
    dataset = make(REGISTRY, "datasets", name)
    splits = make_splits(dataset, ROOT, seed=3)  # the defaults fit the pools
    classes = len(dataset.class_names)
    assert splits.train_x.shape == (classes * dataset.train_per_class, *dataset.shape())
    assert splits.test_x.shape == (classes * dataset.test_per_class, *dataset.shape())
    assert torch.isfinite(splits.train_x).all() and splits.train_x.dtype == torch.float32
    assert torch.bincount(splits.val_y).tolist() == [dataset.val_per_class] * classes


@pytest.mark.parametrize("name", GENERATED)
def test_generated_pools_are_the_papers_balanced_and_reproducible(name):
    drawn = pools(name)
    per_class = {"train": 120, "test": 30} if name != "bars-and-stripes" else None
    if per_class is None:  # 1,000 training and 200 test images
        per_class = {"train": 500, "test": 100}
    for split, (_, y) in drawn.items():
        assert torch.bincount(y).tolist() == [per_class[split]] * 2
    again = pools(name)
    other = pools(name, data_seed=1)
    for split in drawn:
        assert torch.equal(drawn[split][0], again[split][0])
        assert not torch.equal(drawn[split][0], other[split][0])


def raw(name: str, **options) -> tuple[np.ndarray, np.ndarray]:
    dataset = make(REGISTRY, "datasets", name, **options)
    return dataset.draw(np.random.default_rng(0), 150)


def test_hidden_manifold_lies_on_a_low_dimensional_manifold():
    x, y = raw("hidden-manifold", features=12, manifold_dimension=3)
    assert x.shape == (300, 12) and np.abs(x).max() < 1
    # arctanh(x) = c F/√m - b: an affine image of 3-dimensional points.
    centred = np.arctanh(x) - np.arctanh(x).mean(0)
    assert np.linalg.matrix_rank(centred, tol=1e-6) == 3
    assert np.bincount(y).tolist() == [150, 150]


def test_hyperplanes_parity_points_span_the_hyperplanes_space():
    x, y = raw("hyperplanes-parity", features=10, hyperplane_dimension=3, hyperplanes=4)
    assert np.linalg.matrix_rank(x, tol=1e-6) == 3  # z E, z in 3 dimensions
    assert np.bincount(y).tolist() == [150, 150]
    standardised = pools("hyperplanes-parity")["train"][0]
    assert standardised.shape[1] == 10


def test_linearly_separable_labels_are_the_side_of_the_hyperplane_beyond_the_margin():
    x, y = raw("linearly-separable", features=5)
    total = x.sum(1)
    assert np.all(np.abs(total) > 0.1)  # 0.02 × 5
    assert np.array_equal(y, (total < 0).astype(int))  # the paper's +1 where Σx < 0
    assert np.abs(x).max() <= 1


def test_two_curves_are_one_curve_and_its_shifted_copy():
    x, y = raw("two-curves", features=4, noise=0.0, offset=0.5)
    # Without noise, class 1 is class 0's curve moved by the offset: the same set of
    # points up to the shift (compared by their sorted first coordinates' spread).
    a, b = x[y == 0], x[y == 1] - 0.5
    assert a.min(0) == pytest.approx(b.min(0), abs=0.05)
    assert a.max(0) == pytest.approx(b.max(0), abs=0.05)
    everything = torch.cat([pools("two-curves")[s][0] for s in ("train", "test")])
    assert everything.mean(0).abs().max() < 1e-5  # standardised over all points
    assert everything.std(0, unbiased=False) == pytest.approx(torch.ones(10), abs=1e-5)


def test_bars_and_stripes_are_whole_columns_or_whole_rows():
    images, y = raw("bars-and-stripes", size=5, noise=0.0)
    assert images.shape == (300, 1, 5, 5) and set(np.unique(images)) <= {-1.0, 1.0}
    bars, stripes = images[y == 0, 0], images[y == 1, 0]
    assert np.all(bars == bars[:, :1, :])  # every row the same: lines are columns
    assert np.all(stripes == stripes[:, :, :1])  # every column the same: lines are rows
    assert make(REGISTRY, "datasets", "bars-and-stripes", size=8).shape() == (1, 8, 8)


def test_tabular_sets_are_split_once_and_standardised_on_the_training_pool():
    iris = pools("iris")
    assert [torch.bincount(y).tolist() for _, y in iris.values()] == [[35] * 3, [15] * 3]
    train = pools("breast-cancer")["train"][0]
    assert train.shape[1] == 30 and train.mean(0).abs().max() < 1e-4
    digits = pools("digits")["test"][0]
    assert digits.shape[1:] == (1, 8, 8) and digits.min() >= 0 and digits.max() <= 1
    moved = pools("wine", split_seed=1)["test"][0]
    assert not torch.equal(moved, pools("wine")["test"][0])


@pytest.mark.parametrize(
    ("name", "options", "wrong"),
    [
        ("hidden-manifold", {"samples": 301}, "samples"),
        ("hidden-manifold", {"features": 0}, "features"),
        ("two-curves", {"noise": -1.0}, "noise"),
        ("iris", {"test_fraction": 1.0}, "test_fraction"),
        ("bars-and-stripes", {"size": 1}, "size"),
    ],
)
def test_a_bad_option_is_one_line(name, options, wrong):
    with pytest.raises(ConfigError) as caught:
        make(REGISTRY, "datasets", name, **options)
    assert wrong in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.slow
def test_a_vector_student_learns_a_generated_and_a_tabular_set(tmp_path):
    config = tmp_path / "field.toml"
    config.write_text(
        """
[experiment]
name = "field"
seeds = [0, 1]

[train]
epochs = 15
batch_size = 16
lr = 0.02

[datasets.lin]
plugin = "linearly-separable"
features = 4

[datasets.iris]
plugin = "iris"

[students.q4]
plugin = "pqc"
qubits = 4
front = "linear"

[[matrix]]
datasets = ["lin", "iris"]
students = ["q4"]
backends = ["statevector"]
"""
    )
    ran = run_config(config, REGISTRY, store=tmp_path / "store")
    assert ran.finished, ran.errors
    accuracy = {o.cell.dataset.name: o.result.test_accuracy for o in ran.outcomes}
    assert accuracy["lin"] > 0.8 and accuracy["iris"] > 0.7, accuracy
