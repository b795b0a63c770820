"""Teachers: load from a checkpoint, or train once and cache on disk (keyed by what shaped them);
a teacher that fits itself (`Teacher.fit`) caches its outputs instead."""

from __future__ import annotations

import hashlib
import json
import pickle
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch import nn

from kdbench.api import Teacher
from kdbench.config import Instance
from kdbench.data import Splits, check_sizes, make_splits
from kdbench.distill import EpochMetrics, Split, evaluate, fit, save_atomically
from kdbench.errors import KdbenchError
from kdbench.locks import exclusive
from kdbench.losses import logits_to_log
from kdbench.matrix import PROTOCOL_VERSION, digest


@dataclass
class PreparedTeacher:
    """A frozen teacher and how good it is (its accuracies are reported beside the students)."""

    model: nn.Module
    val_accuracy: float
    test_accuracy: float
    source: str  # "trained", "cache" or "checkpoint"
    cache_key: str

    @property
    def network(self) -> nn.Module:
        """The teacher's own network, without the memo of its outputs: what its layers'
        hooks see (penultimate features for feature distillers)."""
        return self.model.model if isinstance(self.model, Memoized) else self.model


def device_for(choice: str) -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def cache_key(teacher: Instance, dataset: Instance, seed: int) -> str:
    """Everything that shapes a trained teacher; the student-side sample sizes do not."""
    # A disjoint teacher leaves the students' training images out: their number counts.
    sizes = (
        ("test_per_class",) if teacher.component.disjoint else ("train_per_class", "test_per_class")
    )
    data = {k: v for k, v in dataset.resolved().items() if k not in sizes}
    # Where it runs, how its outputs are used and the seed option (folded into `seed`) do not
    # change the trained weights.
    unused = ("device", "shuffled", "within_class", "class_prior", "seed")
    options = {k: v for k, v in teacher.resolved().items() if k not in unused}
    return digest({"protocol": PROTOCOL_VERSION, "teacher": options, "dataset": data, "seed": seed})


def checkpoint_path(cache: Path, key: str) -> Path:
    """Where the teacher trained under cache key `key` is kept."""
    return cache / "teachers" / f"{key}.pt"


def networks_to_train(
    teacher: Instance, dataset: Instance, seed: int, members: Callable[[str], Instance]
) -> list[tuple[Instance, str]]:
    """The networks that preparing `teacher` for a cell of `seed` may train, with their
    cache keys: `teacher` itself, or its members (resolved by `members`, under the
    composite's seed where it fixes one); none for a teacher loaded from a checkpoint.
    `prepare_teacher` derives the same keys.
    """
    options = teacher.component
    seed = seed if options.seed is None else options.seed
    names = options.member_names()
    if names:
        return [
            network
            for name in names
            for network in networks_to_train(members(name), dataset, seed, members)
        ]
    return [] if options.checkpoint else [(teacher, cache_key(teacher, dataset, seed))]


def check_pools(
    teacher: Instance | None,
    dataset: Instance,
    data_root: Path,
    members: Callable[[str], Instance],
) -> None:
    """Raise DataError, before anything runs, for per-class counts `dataset` cannot give a
    cell with `teacher` (None: none): the student's subsets, and the training pool that
    `prepare_teacher` draws for the teacher and for each of its members (`members`)."""
    pending = [teacher]
    while pending:
        current = pending.pop()
        per_class = current.component.train_per_class if current else None
        label, where = current.name if current else None, f"datasets.{dataset.name}"
        disjoint = current is not None and current.component.disjoint
        check_sizes(
            dataset.component, data_root, per_class, name=where, teacher=label, disjoint=disjoint
        )
        if current is not None:
            pending += [members(name) for name in current.component.member_names()]


def load_checkpoint(model: nn.Module, path: str) -> None:
    """Load a state dict saved with torch.save, refusing anything else (weights_only)."""
    try:
        # torch warns on its way to refusing some files (a plain pickle's protocol, a
        # TorchScript archive): the refusal below is the one line the user sees.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise KdbenchError(f"teacher checkpoint {path}: no such file") from None
    except Exception as exc:
        raise KdbenchError(
            f"teacher checkpoint {path}: not a loadable state dict ({_why(exc)});"
            " kdbench loads only torch.save(model.state_dict(), path), never pickled code"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise KdbenchError(f"teacher checkpoint {path}: not a state dict of tensors")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        # "Error(s) in loading state_dict for Sequential:", then the first mismatch.
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        first = " ".join(lines[:2])[:300]
        raise KdbenchError(
            f"teacher checkpoint {path} does not fit the architecture: {first}"
        ) from None


# torch's weights_only refusal wraps its one telling line in a page of advice.
_BOILERPLATE = (
    "Weights only load failed",
    "Please file an issue",
    "Check the documentation",
    "(1) In PyTorch",
    "(2) Alternatively",
)
# Advice torch appends to the telling sentence itself.
_ADVICE = (" In PyTorch 2.6, we changed", " Please use `torch.serialization")


def _why(exc: Exception) -> str:
    """The telling part of a torch.load failure, on one line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    telling = [line for line in lines if not line.startswith(_BOILERPLATE)]
    for advice in _ADVICE:
        telling = [line.split(advice)[0] for line in telling]
    return " ".join(telling or lines[:1])[:300] or type(exc).__name__


def prepare_teacher(
    teacher: Instance,
    dataset: Instance,
    data_root: Path,
    seed: int,
    cache: Path,
    members: Callable[[str], Instance],
    on_epoch: Callable[[EpochMetrics], None] | None = None,
) -> PreparedTeacher:
    """The frozen teacher of a cell: from its checkpoint, the cache, or trained now and cached.

    A composite teacher prepares each member this way, `members` resolving
    their names, and combines them; only the members are cached.
    """
    options = teacher.component
    seed = seed if options.seed is None else options.seed
    names = options.member_names()
    member_teachers = [
        prepare_teacher(members(n), dataset, data_root, seed, cache, members, on_epoch)
        for n in names
    ]
    key = cache_key(teacher, dataset, seed)
    if member_teachers:
        key = digest([key, *(m.cache_key for m in member_teachers)])
    if key in _PREPARED:
        return _PREPARED[key]
    splits = make_splits(
        dataset.component, data_root, seed, options.train_per_class, disjoint=options.disjoint
    )
    num_classes = len(splits.class_names)
    device = device_for(options.device)
    on_demand: FitOnDemand | None = None
    if member_teachers:
        model = options.combine([m.model.to(device) for m in member_teachers])
        source = "+".join(sorted({m.source for m in member_teachers}))
    else:
        # Seeded here, not only for training: initial weights drawn from whatever state the
        # global generator was left in by earlier cells would make a teacher depend on what
        # ran before it in the process.
        torch.manual_seed(seed)
        model = options.build(num_classes, tuple(splits.train_x.shape[1:]))
        meta = {"teacher": teacher.resolved(), "dataset": dataset.resolved(), "seed": seed}
        target = checkpoint_path(cache, key)
        if options.fits_itself():
            fit = partial(_fit_itself, model, options, splits, seed, target, meta)
            model = on_demand = FitOnDemand(model, fit)
        else:
            source = _load_or_train(model, options, splits, target, seed, device, on_epoch, meta)
        model = Memoized(model, shared=target.with_suffix(".outputs.pt"))
    model.to(device).eval().requires_grad_(False)
    val_accuracy, test_accuracy = (
        evaluate(model, _log_probs, Split(x, y), num_classes, device=device).accuracy
        for x, y in ((splits.val_x, splits.val_y), (splits.test_x, splits.test_y))
    )
    if on_demand is not None:  # fitted for this evaluation, or its outputs were cached
        source = "trained" if on_demand.fitted else "cache"
    prepared = PreparedTeacher(model, val_accuracy, test_accuracy, source, key)
    _PREPARED[key] = prepared
    return prepared


class FitOnDemand(nn.Module):
    """A teacher that fits itself (`Teacher.fit`), fitted by `fit` when first called.

    Behind its `Memoized` outputs, that is when an input's output is not cached: a teacher
    whose outputs are all cached is not fitted again (its model itself is not cached).
    """

    def __init__(self, model: nn.Module, fit: Callable[[], None]):
        super().__init__()
        self.model = model
        self.fitted = False
        self._fit: Callable[[], None] | None = fit  # dropped once fitted: it holds the data

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self._fit is not None:
            self._fit()
            self.fitted, self._fit = True, None
        return self.model(inputs)


def _fit_itself(
    model: nn.Module, options: Teacher, splits: Splits, seed: int, target: Path, meta: dict
) -> None:
    """`Teacher.fit` on the teacher pool; `target`'s metadata says what the outputs kept
    beside it came from, as for a trained network."""
    options.fit(model, splits.teacher_x, splits.teacher_y, seed=seed)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.with_suffix(".json").write_text(json.dumps(meta, indent=2))


class Memoized(nn.Module):
    """A frozen network that computes each distinct image once, in all processes together.

    Cells of one matrix show a teacher the same images again and again (every seed's
    training sample, the composite teachers built on it, its own test set); keyed by the
    image's bytes, the outputs are reused, and a 94.7 M-parameter teacher runs once per
    image, not once per cell. With `shared`, a file, the outputs are also shared with the
    other processes of a parallel run: read when an image is missing here, extended after
    computing.
    """

    def __init__(self, model: nn.Module, shared: Path | None = None):
        super().__init__()
        self.model = model
        self.shared = shared
        self._outputs: dict[bytes, torch.Tensor] = {}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # Rows of one C-ordered array: hashing them as buffers skips a tensor per image.
        rows = images.detach().cpu().contiguous().numpy().reshape(len(images), -1)
        keys = [hashlib.blake2b(row, digest_size=_KEY_BYTES).digest() for row in rows]
        if self.shared is not None and any(k not in self._outputs for k in keys):
            self._outputs.update(_read_outputs(self.shared))
        first: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            if key not in self._outputs:
                first.setdefault(key, i)
        missing = list(first.values())
        if missing:
            with torch.no_grad():
                computed = self.model(images[missing]).cpu()
            new = {keys[i]: output for i, output in zip(missing, computed, strict=True)}
            self._outputs.update(new)
            if self.shared is not None:
                _add_outputs(self.shared, new)
        return torch.stack([self._outputs[k] for k in keys]).to(images.device)


_KEY_BYTES = 16


def _read_outputs(path: Path) -> dict[bytes, torch.Tensor]:
    """The outputs kept in `path` by image key (none if it is missing or unreadable)."""
    try:
        kept = torch.load(path, weights_only=True)
        keys, outputs = kept["keys"], kept["outputs"]
    except (OSError, RuntimeError, KeyError, TypeError, EOFError, pickle.UnpicklingError):
        return {}  # a cache: computing again is always right
    return dict(zip((bytes(k) for k in keys.tolist()), outputs, strict=True))


def _add_outputs(path: Path, new: dict[bytes, torch.Tensor]) -> None:
    """Merge `new` into the outputs kept in `path`, atomically, one process at a time."""
    with exclusive(path.with_suffix(".lock")):
        merged = _read_outputs(path) | new
        keys = torch.tensor([list(k) for k in merged], dtype=torch.uint8)
        save_atomically({"keys": keys, "outputs": torch.stack(list(merged.values()))}, path)


# Teachers prepared in this process, by cache key: preparing is loading plus evaluating.
_PREPARED: dict[str, PreparedTeacher] = {}


def forget_prepared() -> None:
    """Drop the teachers held in memory; the next preparation reads the disk cache."""
    _PREPARED.clear()


def _load_or_train(
    model: nn.Module,
    options: Teacher,
    splits: Splits,
    target: Path,
    seed: int,
    device: torch.device,
    on_epoch: Callable[[EpochMetrics], None] | None,
    meta: dict,
) -> str:
    """Fill `model` with weights; return where they came from."""
    if options.checkpoint:
        load_checkpoint(model, options.checkpoint)
        return "checkpoint"
    with exclusive(target.with_suffix(".lock")):  # one process trains, the others wait
        if target.exists():
            load_checkpoint(model, str(target))
            return "cache"
        model.to(device)
        snapshot = target.with_suffix(".snapshot.pt")  # a killed training goes on from it
        fit(
            model,
            _log_probs,
            Split(splits.teacher_x, splits.teacher_y),
            Split(splits.val_x, splits.val_y),
            num_classes=len(splits.class_names),
            epochs=options.epochs,
            batch_size=options.batch_size,
            lr=options.lr,
            seed=seed,
            device=device,
            on_epoch=on_epoch,
            precision=options.precision,
            schedule=options.schedule,
            snapshot=snapshot,
        )
        save_atomically({k: v.cpu() for k, v in model.state_dict().items()}, target)
        target.with_suffix(".json").write_text(json.dumps(meta, indent=2))
        snapshot.unlink(missing_ok=True)
        return "trained"


def _log_probs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return logits_to_log(model(x))


def teacher_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """The frozen teacher's logits on every image, computed once per cell, on the CPU."""
    # A teacher that fits itself may have no weights; its model runs where its inputs are.
    device = next(model.parameters(), torch.empty(0)).device
    model.eval()
    with torch.no_grad():
        return torch.cat(
            [model(x[i : i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)]
        )


def teacher_features(model: nn.Module, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The frozen teacher's penultimate features on every image: the input of `layer` (its
    classifier layer), flattened per image, on the CPU."""
    seen: list[torch.Tensor] = []
    hook = layer.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0].cpu()))
    try:
        teacher_logits(model, x)
    finally:
        hook.remove()
    return torch.cat(seen).flatten(1)
