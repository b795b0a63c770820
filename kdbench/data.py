"""Class-balanced train/validation/test subsets of any registered data set.

A cell of a benchmark trains on a few images per class; which images is decided here, from
the data set's options and a seed, so that every plugin gets the same sampling rules.
"""

from __future__ import annotations

import dataclasses
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch

from kdbench.api import Dataset
from kdbench.errors import DataError
from kdbench.fetch import DENIED, LOOP, os_problem
from kdbench.options import resolved

# Raw (images, labels) by (resolved root, data set class, its loading options, split). Many
# cells of a run reuse one data set, and decoding 60000 images each time would dominate short
# cells. Not through functools.cache, since the loader is the (unhashable) instance.
_raw_cache: dict[tuple[str, type, str, str], tuple[torch.Tensor, torch.Tensor]] = {}
# The options every data set inherits are the harness's sampling, applied after `load`: two
# instances differing only in them share what `load` returned. A plugin's own options may
# change what it loads (which files, how many images), so they are part of the key.
_SAMPLING_OPTIONS = frozenset(f.name for f in dataclasses.fields(Dataset))


@dataclass
class Splits:
    """Images (float32 in [0, 1], [N, C, H, W]) and labels (int64, 0..C-1) of one cell.

    Label k is the k-th selected class; `class_names[k]` is its name. `teacher_x/y` is the
    teacher's training pool: training images of the selected classes minus validation.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    teacher_y: torch.Tensor
    class_names: list[str]
    # The teacher pool as indices into these raw training images (see teacher_x).
    _teacher_index: torch.Tensor = field(repr=False)
    _train_images: torch.Tensor = field(repr=False)

    @property
    def teacher_x(self) -> torch.Tensor:
        # Gathered and converted when asked for, and not kept: the pool holds tens of
        # thousands of images (190 MB as floats for 8 classes), only a teacher that trains
        # needs them, and splits are kept for the cells that follow.
        raw = self._train_images[self._teacher_index]
        return _to_float(raw, tuple(self.train_x.shape[1:]))


def load_raw(dataset: Dataset, root: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """`dataset.load(root, split)`, cached in-process per (root, data set class, the options
    of its own, split). Raises DataError for a class that is not a usable data set, and for
    a data directory or file that is a symbolic link loop or cannot be read."""
    _check_definition(dataset)
    root = Path(root).expanduser()
    try:
        where = str(root.resolve())
    except (RuntimeError, OSError) as exc:  # Python < 3.13 raises RuntimeError for a loop
        raise DataError(f"data directory {root}: {_why_unusable(exc)}") from None
    own = {k: v for k, v in resolved(dataset).items() if k not in _SAMPLING_OPTIONS}
    key = (where, type(dataset), json.dumps(own, sort_keys=True, default=repr), split)
    if key not in _raw_cache:
        try:
            _raw_cache[key] = dataset.load(root, split)
        except OSError as exc:  # the data set's files, not kdbench: the user can fix them
            path = exc.filename or root
            raise DataError(
                f"{_label(dataset)}: cannot read {path}: {_why_unusable(exc)}"
            ) from None
    return _raw_cache[key]


def _why_unusable(exc: BaseException) -> str:
    advice = {LOOP: "point it at a real directory or file", DENIED: "make it readable"}
    problem = os_problem(exc)
    if problem:
        return f"{problem}; {advice[problem]}"
    return str(getattr(exc, "strerror", None) or exc)


def _label(dataset: Dataset) -> str:
    return getattr(type(dataset), "name", type(dataset).__name__)


def _check_definition(dataset: Dataset) -> None:
    problem = type(dataset).definition_problem()
    if problem:
        raise DataError(f"data set {_label(dataset)}: {problem}")


def clear_cache() -> None:
    """Forget loaded data sets and drawn splits (for tests, or to free memory)."""
    _raw_cache.clear()
    _splits_cache.clear()


def _check_classes(dataset: Dataset) -> list[int]:
    _check_definition(dataset)
    classes = dataset.selected_classes
    n = len(dataset.class_names)
    if not classes:
        raise DataError(f"{dataset.name}: classes is empty; select at least one label")
    for c in classes:
        if not 0 <= c < n:
            raise DataError(
                f"{dataset.name}: class {c} is not a label of this data set (labels are 0..{n - 1})"
            )
    repeated = sorted({c for c in classes if classes.count(c) > 1})
    if repeated:
        raise DataError(f"{dataset.name}: classes lists {repeated} more than once")
    return classes


def _to_float(inputs: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Inputs as float32 [N, *shape]: uint8 scaled to [0, 1], floats as the plugin gave them."""
    scaled = inputs.to(torch.float32)
    return (scaled / 255.0 if inputs.dtype == torch.uint8 else scaled).reshape(-1, *shape)


def check_sizes(
    dataset: Dataset,
    root: Path,
    teacher_per_class: int | None = None,
    *,
    name: str | None = None,
    teacher: str | None = None,
    disjoint: bool = False,
) -> list[int]:
    """Raise DataError unless every selected class has the images a cell asks of it.

    From the training split, `train_per_class` + `val_per_class`; from the test split,
    `test_per_class` (unless "all"); and, for a teacher, `teacher_per_class` besides the
    validation images (and, `disjoint`, the training images). Counts labels only (through
    the `load_raw` cache). The message names the data set as `name` (default: its plugin
    name) and the teacher `teacher`. Returns the selected classes.
    """
    classes = _check_classes(dataset)
    if teacher_per_class is not None and teacher_per_class < 1:
        raise ValueError(f"teacher_per_class must be >= 1, got {teacher_per_class}")
    where = name or dataset.name
    train = _counts(load_raw(dataset, root, "train")[1], len(dataset.class_names))
    test = _counts(load_raw(dataset, root, "test")[1], len(dataset.class_names))
    n_val, n_train = dataset.val_per_class, dataset.train_per_class
    by = f" by teacher '{teacher}'" if teacher else " by the teacher"
    for c in classes:
        wanted = [(train[c], n_val + n_train, "training", " (train_per_class + val_per_class)")]
        if teacher_per_class is not None:
            held = n_val + n_train if disjoint else n_val
            out = (
                f"train_per_class + val_per_class = {held}"
                if disjoint
                else f"val_per_class = {n_val}"
            )
            why = f"{by} (its train_per_class; {out} are held out)"
            what = "non-student training" if disjoint else "non-validation training"
            wanted.append((train[c] - held, teacher_per_class, what, why))
        if dataset.test_per_class != "all":
            wanted.append((test[c], dataset.test_per_class, "test", " (test_per_class)"))
        for have, want, what, why in wanted:
            if have < want:
                class_name = dataset.class_names[c]
                label = f"{c}" if class_name == str(c) else f"{c} ({class_name})"
                raise DataError(
                    f"{where}: class {label} has {max(have, 0)} {what} images,"
                    f" fewer than the {want} requested{why}"
                )
    return classes


def _counts(labels: torch.Tensor, n: int) -> list[int]:
    """Images per label 0..n-1 (labels outside that range are not counted)."""
    inside = labels[(labels >= 0) & (labels < n)]
    return torch.bincount(inside.to(torch.int64), minlength=n).tolist()


# Splits drawn in this process, most recent last: a matrix draws the same (data set, seed)
# for each of its teachers and students, ~30 ms each time. Bounded: each holds ~10 MB.
_splits_cache: OrderedDict[tuple, Splits] = OrderedDict()
_SPLITS_KEPT = 16


def make_splits(
    dataset: Dataset,
    root: Path,
    seed: int,
    teacher_per_class: int | None = None,
    disjoint: bool = False,
) -> Splits:
    """The class-balanced subsets of one cell (drawn once per process, see `draw_splits`);
    treat them as read-only."""
    own = json.dumps(resolved(dataset), sort_keys=True, default=repr)
    key = (type(dataset), own, str(Path(root).expanduser()), seed, teacher_per_class, disjoint)
    if key in _splits_cache:
        _splits_cache.move_to_end(key)
        return _splits_cache[key]
    splits = draw_splits(dataset, root, seed, teacher_per_class, disjoint)
    _splits_cache[key] = splits
    if len(_splits_cache) > _SPLITS_KEPT:
        _splits_cache.popitem(last=False)
    return splits


def draw_splits(
    dataset: Dataset,
    root: Path,
    seed: int,
    teacher_per_class: int | None = None,
    disjoint: bool = False,
) -> Splits:
    """Draw the class-balanced subsets of one cell.

    Per selected class, from the training split: `val_per_class` validation images and,
    disjoint from them, `train_per_class` training images; from the test split
    `test_per_class` images ("all": every one), drawn at random or, with `order = "first"`,
    the first ones in the files' order (see `Dataset.order`). The teacher pool is every
    training image of the class except the validation ones (and, `disjoint`, the training
    ones), or `teacher_per_class` of them.
    Sampling uses `dataset.sample_seed` when set, else `seed`. Raises DataError for a bad
    class list or a class with too few images (see `check_sizes`).
    """
    classes = check_sizes(dataset, root, teacher_per_class, disjoint=disjoint)
    generator = torch.Generator().manual_seed(
        dataset.sample_seed if dataset.sample_seed is not None else seed
    )
    train_images, train_labels = load_raw(dataset, root, "train")
    test_images, test_labels = load_raw(dataset, root, "test")
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in ("train", "val", "test", "teacher")}
    labels: dict[str, list[torch.Tensor]] = {k: [] for k in parts}

    for new_label, c in enumerate(classes):
        # A full permutation per class: the generator advances the same way whatever the
        # requested sizes, so changing one size never reshuffles another subset, and larger
        # requests extend smaller ones.
        pool = (train_labels == c).nonzero().squeeze(1)
        test = (test_labels == c).nonzero().squeeze(1)
        n_val, n_train = dataset.val_per_class, dataset.train_per_class
        if dataset.order == "first":  # the files' order: validation after training
            pool = torch.cat(
                (pool[n_train : n_train + n_val], pool[:n_train], pool[n_train + n_val :])
            )
        else:
            pool = pool[torch.randperm(len(pool), generator=generator)]
            test = test[torch.randperm(len(test), generator=generator)]
        teacher = pool[n_val + n_train :] if disjoint else pool[n_val:]
        if teacher_per_class is not None:
            teacher = teacher[:teacher_per_class]
        if dataset.test_per_class != "all":
            test = test[: dataset.test_per_class]

        chosen = {
            "val": (train_images, pool[:n_val]),
            "train": (train_images, pool[n_val : n_val + n_train]),
            "teacher": (train_images, teacher),
            "test": (test_images, test),
        }
        for key, (images, index) in chosen.items():
            parts[key].append(index if key == "teacher" else images[index])
            labels[key].append(torch.full((len(index),), new_label, dtype=torch.int64))

    shape = dataset.shape()
    x = {k: _to_float(torch.cat(v), shape) for k, v in parts.items() if k != "teacher"}
    y = {k: torch.cat(v) for k, v in labels.items()}
    return Splits(
        train_x=x["train"],
        train_y=y["train"],
        val_x=x["val"],
        val_y=y["val"],
        test_x=x["test"],
        test_y=y["test"],
        teacher_y=y["teacher"],
        class_names=[dataset.class_names[c] for c in classes],
        _teacher_index=torch.cat(parts["teacher"]),
        _train_images=train_images,
    )
