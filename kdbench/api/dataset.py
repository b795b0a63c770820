"""The data set base class: labelled inputs of any shape (images, feature vectors) that the
harness draws class-balanced subsets from."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

from kdbench.api.component import MAX_SEED, Component
from kdbench.errors import DataError, OptionError
from kdbench.options import option

if TYPE_CHECKING:  # torch is slow to import (`kdbench --help`); annotations only
    import torch


@dataclass(kw_only=True)
class Dataset(Component):
    """A labelled data set, from which the harness draws class-balanced subsets.

    Its inputs have the shape `input_shape`: (C, H, W) for images, (F,) for feature vectors,
    any tuple of positive sizes (a data set whose shape follows its options, a generator's
    dimension say, overrides `shape`). `load` returns them as uint8, which the harness scales to
    [0, 1] (÷ 255), or as floats, which it uses as they are: a plugin of real-valued data
    normalises them itself and says how in its docstring. (A plugin written before
    `input_shape` may declare `image_shape`; the class lowest in the hierarchy that sets
    either wins.)
    """

    kind: ClassVar[str] = "dataset"
    required: ClassVar[tuple[str, ...]] = ("load",)
    class_names: ClassVar[tuple[str, ...]]
    input_shape: ClassVar[tuple[int, ...]] = (1, 28, 28)

    classes: list[int] | None = option(
        None, help="labels to keep, in this order (default: all)", minimum=0
    )
    train_per_class: int = option(150, help="training inputs per class", minimum=1)
    val_per_class: int = option(
        50, help="validation inputs per class, held out of training", minimum=1
    )
    test_per_class: int | Literal["all"] = option(
        150, help='test inputs per class ("all": the whole test set)', minimum=1
    )
    order: Literal["random", "first"] = option(
        "random",
        help="which inputs of each class: random (drawn with the seed), or first (in the"
        " files' order: training the first train_per_class, validation the next"
        " val_per_class, test the first test_per_class; the released notebooks' split)",
        recorded_at_default=False,
    )
    sample_seed: int | None = option(
        None,
        help="seed of the per-class sampling (default: the cell's seed)",
        minimum=0,
        maximum=MAX_SEED,
    )

    def fetch(self, root: Path, report: Callable[[str], None] | None = None) -> None:
        """Put the data set's files under `root`, verified; raise DataError if impossible.

        `report` receives one-line progress messages for the user. A data set without a
        fetch step (its files come from elsewhere) keeps this default, which says so.
        """
        raise DataError(
            f"{getattr(self, 'name', type(self).__name__)}: this data set has no fetch step;"
            f" put its files under {root} yourself, where its plugin's documentation says"
        )

    def load(self, root: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (inputs [N, *input_shape], int64 labels [N]) of `split` ('train' or
        'test'): uint8 (scaled ÷ 255) or float (used as they are); images may come as
        [N, H, W] for a single channel (they are reshaped to `input_shape`)."""
        raise NotImplementedError

    @classmethod
    def definition_problem(cls) -> str | None:
        """What makes this class unusable as a data set (a missing or malformed `class_names`
        or `input_shape`, no `load`), or None; checked when it is registered and when it is
        used."""
        problem = super().definition_problem()
        if problem:
            return problem
        names = getattr(cls, "class_names", None)
        if (
            not isinstance(names, (tuple, list))
            or len(names) < 2
            or not all(isinstance(n, str) for n in names)
        ):
            return (
                f"class_names must be a tuple of at least 2 strings (one per label), got {names!r}"
            )
        shape = cls.declared_shape()
        if (
            not isinstance(shape, tuple)
            or not shape
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in shape)
        ):
            return (
                "input_shape must be a tuple of positive integers ((C, H, W) for images, (F,)"
                f" for feature vectors), got {shape!r}"
            )
        return None

    @classmethod
    def declared_shape(cls) -> tuple[int, ...]:
        """The class's `input_shape`, or `image_shape` where a class lower in the hierarchy
        declares that instead."""
        for klass in cls.__mro__:
            for name in ("input_shape", "image_shape"):
                if name in vars(klass):
                    return vars(klass)[name]
        return ()

    def shape(self) -> tuple[int, ...]:
        """The shape of one input of this instance: its class's (`declared_shape`)."""
        return self.declared_shape()

    def shape_text(self) -> str:
        """One input's shape as people write it: '1×28×28', '10'."""
        return "×".join(map(str, self.shape()))

    @property
    def selected_classes(self) -> list[int]:
        return (
            list(self.classes) if self.classes is not None else list(range(len(self.class_names)))
        )

    def check(self) -> None:
        classes, available = self.selected_classes, len(self.class_names)
        if len(set(classes)) != len(classes):
            raise OptionError("classes", f"repeats a label: {classes}")
        if len(classes) < 2:
            raise OptionError("classes", "needs at least 2 labels")
        outside = [c for c in classes if c >= available]
        if outside:
            raise OptionError("classes", f"{outside} not among the labels 0..{available - 1}")


def as_image(shape: tuple[int, ...], who: str) -> tuple[int, int, int]:
    """`shape` as (channels, height, width), or a ValueError saying that `who` (a network or
    a front that convolves) takes images and what the data set's inputs are instead."""
    if len(shape) != 3:
        raise ValueError(
            f"{who} takes images (C, H, W); the data set's inputs have shape {tuple(shape)}:"
            " use a component that takes vectors (e.g. a student's front = 'linear')"
        )
    channels, height, width = shape
    return channels, height, width
