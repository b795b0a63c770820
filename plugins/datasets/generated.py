"""The synthetic binary tasks of the field's QML benchmark, drawn offline from a seed.

Written from the definitions in Bowles, Ahmed & Schuld 2024, "Better than classical? The
subtle art of benchmarking quantum machine learning models" (arXiv 2403.07059; the generators
of XanaduAI/qml-benchmarks). The paper's parameters are the options, with its defaults; its
data sets hold 300 points split 240/60 (bars and stripes: 1,000/200), which is what these draw.

What differs, and why:
- Draws come from NumPy's `default_rng(data_seed)`, not the paper's legacy global stream: the
  same distributions, not the paper's CSV files bit for bit.
- Each class is split in the same proportion into the training and the test pool, and every
  generator is balanced exactly (the paper's linearly separable and bars and stripes are
  balanced only in expectation, and its 240/60 split is not stratified): the harness draws
  class-balanced subsets, and a class-balanced test set measures the same accuracy.
- Label 0 is the paper's -1 and label 1 its +1.
Preprocessing as the paper's: hyperplanes-parity and two-curves are standardised over all
points (zero mean, unit variance per feature); the others are used as generated (the hidden
manifold and linearly separable points lie in (-1, 1)^d, bars and stripes around ±1).

`data_seed` fixes the task and its points; the cell's seed draws the training and validation
subsets from the pool, initialises the student and orders its batches. Sweep `data_seed` for
new instances of a task.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from kdbench import Dataset, FetchReport, OptionError, option

from .pools import check_split, standardised


@dataclass(kw_only=True)
class GeneratedDataset(Dataset):
    """Base of the generators: `draw` makes `samples` points of a balanced binary task."""

    class_names: ClassVar[tuple[str, ...]] = ("-1", "+1")
    test_share: ClassVar[float] = 0.2  # of each class, to the test pool (the paper's 60 of 300)
    standardised: ClassVar[bool] = False

    data_seed: int = option(0, help="seed of the task and its points", minimum=0)
    # The paper's 240 training points as 90 to train and 30 to validate per class; its 60
    # test points, 30 per class.
    train_per_class: int = option(90, help="training inputs per class", minimum=1)
    val_per_class: int = option(
        30, help="validation inputs per class, held out of training", minimum=1
    )
    test_per_class: int = option(30, help="test inputs per class", minimum=1)

    samples: int = option(300, help="points drawn, both classes (an even number)", minimum=2)

    def check(self) -> None:
        super().check()
        if self.samples % 2:
            raise OptionError("samples", f"must be even (half of each class), got {self.samples}")

    def fetch(self, root: Path, report: FetchReport | None = None) -> None:
        """Nothing to fetch: the points are drawn from `data_seed`."""
        if report:
            report(f"{self.name}: generated from its data_seed, nothing to fetch")

    def draw(self, rng: np.random.Generator, per_class: int) -> tuple[np.ndarray, np.ndarray]:
        """`per_class` points of each class: (inputs [2 * per_class, ...], labels 0/1)."""
        raise NotImplementedError

    def load(self, root: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(float32 inputs, int64 labels) of the 'train' or 'test' pool."""
        check_split(split)
        per_class = self.samples // 2
        drawn, y = self.draw(np.random.default_rng(self.data_seed), per_class)
        x = torch.as_tensor(drawn, dtype=torch.float64)
        if self.standardised:  # over all points, as the paper's generators do
            x = standardised(x, reference=x)
        # Points are drawn independently: the first of each class train, the rest test.
        tested = round(self.test_share * per_class)
        keep = [
            members[per_class - tested :] if split == "test" else members[: per_class - tested]
            for members in (np.flatnonzero(y == 0), np.flatnonzero(y == 1))
        ]
        chosen = torch.as_tensor(np.concatenate(keep))
        inputs = x[chosen].float().reshape(-1, *self.shape())
        return inputs, torch.as_tensor(y[chosen], dtype=torch.int64)


def _balanced(
    draw_batch, label_of, per_class: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """`per_class` candidates of each label, in draw order, from batches of `draw_batch(rng)`
    labelled by `label_of` (rejection sampling, for tasks not balanced by construction)."""
    kept: list[list[np.ndarray]] = [[], []]
    for _ in range(1000):
        batch = draw_batch(rng)
        labels = label_of(batch)
        for label in (0, 1):
            kept[label].extend(batch[labels == label][: per_class - len(kept[label])])
        if all(len(k) == per_class for k in kept):
            x = np.stack(kept[0] + kept[1])
            return x, np.repeat([0, 1], per_class)
    raise RuntimeError("rejection sampling found too few points of a class")  # p ~ 0


@dataclass(kw_only=True)
class _VectorTask(GeneratedDataset):
    features: int = option(10, help="dimension of the inputs (the paper sweeps 2 to 20)", minimum=1)

    def shape(self) -> tuple[int, ...]:
        return (self.features,)


@dataclass(kw_only=True)
class HiddenManifold(_VectorTask):
    """Hidden manifold model (Goldt et al. 2020), as the benchmark paper draws it: latent
    points c ~ N(0, I_m) on an m-dimensional manifold, embedded as x = tanh(c F / √m - b)
    (F ~ N(0,1)^{m×d}, b ~ U[-1, 1)^d); the label is the sign of a random one-hidden-layer
    network on the latent point, v·tanh(W c)/√m, less its median (so the classes balance)."""

    name: ClassVar[str] = "hidden-manifold"
    title: ClassVar[str | None] = "Hidden manifold, {input_shape} features"
    input_shape: ClassVar[tuple[int, ...]] = (10,)

    manifold_dimension: int = option(6, help="dimension m of the hidden manifold", minimum=1)

    def draw(self, rng: np.random.Generator, per_class: int) -> tuple[np.ndarray, np.ndarray]:
        m, d, n = self.manifold_dimension, self.features, 2 * per_class
        f = rng.standard_normal((m, d))
        c = rng.standard_normal((n, m))
        b = rng.uniform(-1, 1, d)
        x = np.tanh(c @ f / np.sqrt(m) - b)
        w, v = rng.standard_normal((m, m)), rng.standard_normal(m)
        score = np.tanh(c @ w.T) @ v / np.sqrt(m)
        y = (score >= np.median(score)).astype(np.int64)  # the median splits n points evenly
        return x, y


@dataclass(kw_only=True)
class HyperplanesParity(_VectorTask):
    """Hyperplanes and parity: points z ~ N(0, I_q) in q dimensions, labelled 1 when an odd
    number of k random hyperplanes (normals and offsets ~ U[0, 1)) have z on their positive
    side, embedded linearly in d dimensions (x = z E, E ~ U[0, 1)^{q×d}), standardised."""

    name: ClassVar[str] = "hyperplanes-parity"
    title: ClassVar[str | None] = "Hyperplanes and parity, {input_shape} features"
    input_shape: ClassVar[tuple[int, ...]] = (10,)
    standardised: ClassVar[bool] = True

    hyperplanes: int = option(
        5, help="number k of hyperplanes whose parity labels (the paper sweeps 2 to 20)", minimum=1
    )
    hyperplane_dimension: int = option(
        3, help="dimension q of the space the hyperplanes live in", minimum=1
    )

    def draw(self, rng: np.random.Generator, per_class: int) -> tuple[np.ndarray, np.ndarray]:
        q, k = self.hyperplane_dimension, self.hyperplanes
        normals, offsets = rng.uniform(0, 1, (k, q)), rng.uniform(0, 1, k)

        def parity(z: np.ndarray) -> np.ndarray:
            return ((z @ normals.T + offsets > 0).sum(1) % 2).astype(np.int64)

        z, y = _balanced(lambda r: r.standard_normal((4 * per_class, q)), parity, per_class, rng)
        return z @ rng.uniform(0, 1, (q, self.features)), y


@dataclass(kw_only=True)
class LinearlySeparable(_VectorTask):
    """Linearly separable: points uniform in [-1, 1)^d, labelled by the side of the hyperplane
    Σx = 0 (label 1 where Σx < 0, the paper's +1), keeping those with |Σx| > margin."""

    name: ClassVar[str] = "linearly-separable"
    title: ClassVar[str | None] = "Linearly separable, {input_shape} features"
    input_shape: ClassVar[tuple[int, ...]] = (10,)

    margin: float | None = option(
        None, help="least |Σx| kept (default: the paper's 0.02 × features)", minimum=0
    )

    def draw(self, rng: np.random.Generator, per_class: int) -> tuple[np.ndarray, np.ndarray]:
        d = self.features
        margin = 0.02 * d if self.margin is None else self.margin

        def side(x: np.ndarray) -> np.ndarray:
            total = x.sum(1)
            return np.where(np.abs(total) > margin, (total < 0).astype(np.int64), -1)

        return _balanced(lambda r: r.uniform(-1, 1, (4 * per_class, d)), side, per_class, rng)


@dataclass(kw_only=True)
class TwoCurves(_VectorTask):
    """Two curves (after Buchanan, Gilboa & Wright 2021): one random curve in d dimensions,
    x_i(t) = Σ_{k≤D} a_ik cos(kπt) + b_ik sin(kπt) (+ a constant; coefficients ~ U[0, 1)
    normalised together), t ~ U[0, 1), Gaussian noise per coordinate; class 1 is the curve
    shifted by `offset` in every coordinate. Standardised."""

    name: ClassVar[str] = "two-curves"
    title: ClassVar[str | None] = "Two curves, {input_shape} features"
    input_shape: ClassVar[tuple[int, ...]] = (10,)
    standardised: ClassVar[bool] = True

    degree: int = option(5, help="degree D of the curves' Fourier series", minimum=1)
    offset: float = option(0.1, help="shift of the second curve in every coordinate", minimum=0)
    noise: float = option(0.01, help="standard deviation of the noise per coordinate", minimum=0)

    def draw(self, rng: np.random.Generator, per_class: int) -> tuple[np.ndarray, np.ndarray]:
        d, degree = self.features, self.degree
        coefficients = rng.uniform(0, 1, (d, degree + 1, 2))
        coefficients /= np.linalg.norm(coefficients)
        k = np.arange(1, degree + 1)

        def curve(n: int) -> np.ndarray:
            t = rng.uniform(0, 1, (n, 1, 1))
            waves = coefficients[None, :, 1:, 0] * np.cos(k * np.pi * t) + coefficients[
                None, :, 1:, 1
            ] * np.sin(k * np.pi * t)
            constant = coefficients[:, 0, :].sum(1)
            return constant + waves.sum(2) + rng.normal(0, self.noise, (n, d))

        x = np.concatenate([curve(per_class), curve(per_class) + self.offset])
        return x, np.repeat([0, 1], per_class)


@dataclass(kw_only=True)
class BarsAndStripes(GeneratedDataset):
    """Bars and stripes: size×size images of -1 with whole columns (a bar, label 0) or whole
    rows (a stripe, label 1) set to +1, each line on with probability 1/2, plus Gaussian noise
    on every pixel. The paper's sets: sizes 4, 8, 16 and 32, noise 0.5, 1,000 training and
    200 test images. (An image with no line on, or all, can be of either class.)"""

    name: ClassVar[str] = "bars-and-stripes"
    title: ClassVar[str | None] = "Bars and stripes, {input_shape}"
    class_names: ClassVar[tuple[str, ...]] = ("bar", "stripe")
    input_shape: ClassVar[tuple[int, ...]] = (1, 4, 4)
    test_share: ClassVar[float] = 1 / 6

    size: int = option(4, help="side of the square images, in pixels", minimum=2)
    noise: float = option(0.5, help="standard deviation of the pixels' noise", minimum=0)
    samples: int = option(1200, help="images drawn, both classes (an even number)", minimum=2)
    train_per_class: int = option(400, help="training inputs per class", minimum=1)
    val_per_class: int = option(
        100, help="validation inputs per class, held out of training", minimum=1
    )
    test_per_class: int = option(100, help="test inputs per class", minimum=1)

    def shape(self) -> tuple[int, ...]:
        return (1, self.size, self.size)

    def draw(self, rng: np.random.Generator, per_class: int) -> tuple[np.ndarray, np.ndarray]:
        s = self.size
        lines = rng.uniform(0, 1, (2, per_class, s)) > 0.5  # columns of bars, rows of stripes
        bars = np.broadcast_to(lines[0][:, None, :], (per_class, s, s))
        stripes = np.broadcast_to(lines[1][:, :, None], (per_class, s, s))
        images = np.where(np.concatenate([bars, stripes]), 1.0, -1.0)
        images = images + rng.normal(0, self.noise, images.shape)
        return images[:, None], np.repeat([0, 1], per_class)
