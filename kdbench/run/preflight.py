"""Checks before a run logs anything: data intact, teachers fit, backends and circuits usable."""

from __future__ import annotations

import copy
import inspect
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from kdbench.api import Backend, CircuitPlan
from kdbench.config import Instance
from kdbench.data import load_raw
from kdbench.distill import batch_count, evaluate
from kdbench.errors import KdbenchError, first_line
from kdbench.matrix import Cell, digest, teacher_config
from kdbench.memory import check_memory
from kdbench.run.training import budget_epochs, student_context
from kdbench.teachers import check_pools, load_checkpoint


def preflight(cells: Sequence[Cell], data_root: Path) -> None:
    """Raise a one-line KdbenchError for what would make cells fail: a data set missing or
    corrupt, a teacher checkpoint that does not load or a teacher that cannot take the
    images, a backend that cannot be used (e.g. credentials of real hardware) or cannot run
    a student's circuit (wider than its device, too large for memory)."""
    # Loads every data set's splits (missing or corrupt data fails here) and counts classes.
    # Instances are told apart by their resolved options, not their names: a sweep gives one
    # name many configurations, each checked.
    for cell in {(_same(c.dataset), _same_teacher(c)): c for c in cells}.values():
        members = cell.spec.instances["teachers"].__getitem__
        check_pools(cell.teacher, cell.dataset, data_root, members)
    checked, checked_features = set(), set()
    for cell in cells:
        pending = [cell.teacher] if cell.teacher else []
        while pending:
            teacher = pending.pop()
            names = teacher.component.member_names()
            pending += [cell.spec.instance("teachers", name) for name in names]
            key = (_same(teacher), _same(cell.dataset))
            if not names and key not in checked:  # composites: their members are checked
                checked.add(key)
                _check_teacher(teacher, cell.dataset)
        if cell.distils_features and _same_teacher(cell) not in checked_features:
            checked_features.add(_same_teacher(cell))
            _check_teacher_features(cell)
    for cell in cells:
        _check_budgets(cell)
    backends = {_same(b): b for c in cells for b, _ in c.tested_on}
    for backend in backends.values():
        backend.component.preflight()
    _check_circuits(cells, data_root)


# Instance id -> (the instance, kept so that its id is not reused, and its digest).
_DIGESTS: dict[int, tuple[Instance, str]] = {}


def _same(instance: Instance | None) -> str | None:
    """What tells two instances apart for a check: their plugin and resolved options.
    Remembered per instance: a matrix's cells share theirs, and at 10,000 cells a resume
    spent seconds digesting the same few options 70,000 times."""
    if instance is None:
        return None
    if id(instance) not in _DIGESTS:
        _DIGESTS[id(instance)] = (instance, digest(instance.resolved()))
    return _DIGESTS[id(instance)][1]


def _same_teacher(cell: Cell) -> str | None:
    """`_same` for a cell's teacher, a composite's members' options included."""
    return None if cell.teacher is None else digest(teacher_config(cell.spec, cell.teacher))


def _check_teacher(teacher: Instance, dataset: Instance) -> None:
    """Build `teacher` for `dataset`, load its checkpoint if it has one, and pass it one zero
    image on the CPU: a network that cannot take the images is refused here, not retried in
    every cell. A teacher that fits itself is only built: unfitted, it has no outputs yet."""
    classes = len(dataset.component.selected_classes)
    path = teacher.component.checkpoint

    def build() -> torch.nn.Module:
        model = teacher.component.build(classes, dataset.component.shape())
        if path:
            load_checkpoint(model, path)
        if teacher.component.fits_itself():
            raise _Unfitted
        return model

    _takes_an_image(f"teacher '{teacher.name}'", build, dataset, _Unfitted)


def _takes_an_image(
    what: str, build: Callable[[], torch.nn.Module], dataset: Instance, *passes: type
) -> None:
    """Build a network and pass it one zero image of `dataset`'s shape on the CPU; a failure
    (other than a KdbenchError, or the exceptions `passes`) is one line naming `what`."""
    shape = dataset.component.shape()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. a layer of size 0: the error is the line
            model = build().eval()  # eval: batch norm takes a batch of one
            with torch.no_grad():
                model(torch.zeros(1, *shape))
    except KdbenchError:
        raise
    except passes:
        return
    except Exception as exc:
        raise KdbenchError(
            f"{what} cannot take dataset '{dataset.name}' inputs of shape "
            f"{dataset.component.shape_text()}: {first_line(exc)}"
        ) from None


def _check_circuits(cells: Sequence[Cell], data_root: Path) -> None:
    """Build each distinct student once on each backend it trains or tests on, on the meta
    device and with `Backend.check_circuit` in place of compiling: a circuit the backend
    cannot run (wider than its device, too large for memory), or weights that cannot fit,
    are refused before anything is logged. Then, once per student and data set, it is built
    on the CPU and passed one zero image up to its first circuit: a student that cannot be
    built for the images, or cannot take them, is refused too."""
    probed, built, batches = set(), set(), {}
    for cell in cells:
        for backend, training in cell.tested_on:
            sizes = (_same(cell.dataset), training, cell.spec.train.batch_size)
            if sizes not in batches:  # the whole test set is counted once per data set
                batches[sizes] = _batches(cell, data_root, training)
            train_batch, eval_batch = batches[sizes]
            student = (_same(cell.student), _same(cell.encoder), _same(cell.dataset))
            key = (*student, _same(backend), train_batch, eval_batch)
            if key in probed:
                continue
            probed.add(key)
            probe = _probing(backend.component, train_batch, eval_batch)
            try:
                with torch.device("meta"), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model = cell.student.component.build(student_context(cell, probe))
            except KdbenchError:
                raise
            except Exception:  # the student's own failure, or the meta device's: see below
                model = None
            if model is not None:  # its weights, their gradients and Adam's two moments
                weights = sum(p.numel() * p.element_size() for p in model.parameters())
                check_memory(
                    4 * weights,
                    f"student '{cell.student.name}' ({weights // 4:,} float32 weights, with"
                    " their gradients and Adam's moments)",
                    "make it smaller",
                )
            if (*student, cell.distils_features) not in built:
                built.add((*student, cell.distils_features))
                _check_student(cell, probe)


def _check_student(cell: Cell, probe: Backend) -> None:
    """Build the student on the CPU and pass it one zero image, up to its first circuit; for
    a distiller of features, it must have a front."""
    student = cell.student.component

    def build() -> torch.nn.Module:
        model = student.build(student_context(cell, probe))
        if cell.distils_features and student.front_module(model) is None:
            raise KdbenchError(
                f"distiller '{cell.distiller_name}' distils features, and student"
                f" '{cell.student.name}' has no classical front (Student.front_module)"
            )
        return model

    _takes_an_image(f"student '{cell.student.name}'", build, cell.dataset, _CircuitReached)


def _check_teacher_features(cell: Cell) -> None:
    """A distiller of features needs a teacher with a classifier layer (penultimate
    features): composite teachers have none, nor has a teacher that is no network."""
    if cell.teacher is None:
        raise KdbenchError(
            f"distiller '{cell.distiller_name}' distils features but declares no teacher"
            " (uses_teacher = False): a method of features needs a teacher's"
        )
    teacher = cell.teacher.component
    classes = len(cell.dataset.component.selected_classes)
    layer = None
    if not teacher.member_names():
        model = teacher.build(classes, cell.dataset.component.shape())
        layer = teacher.classifier_layer(model)
    if layer is None:
        why = (
            "a composite teacher's members' features are not one vector"
            if teacher.member_names()
            else "it has no layer whose input is its penultimate features"
        )
        raise KdbenchError(
            f"distiller '{cell.distiller_name}' distils features, and teacher"
            f" '{cell.teacher.name}' exposes none (Teacher.classifier_layer; {why}): use a"
            " single network teacher"
        )


def _check_budgets(cell: Cell) -> None:
    """Every `[train] budgets` step count falls within the cell's training."""
    train, dataset = cell.spec.train, cell.dataset.component
    per_epoch = batch_count(
        dataset.train_per_class * len(dataset.selected_classes), train.batch_size
    )
    for epoch, budgets in budget_epochs(train.budgets, per_epoch).items():
        if epoch > train.epochs:
            raise KdbenchError(
                f"train.budgets: {budgets[0]} steps is past the {train.epochs} epochs of"
                f" {per_epoch} steps that data set '{cell.dataset.name}' trains at batch size"
                f" {train.batch_size}; raise train.epochs or lower the budget"
            )


def _batches(cell: Cell, data_root: Path, training: bool) -> tuple[int | None, int]:
    """(the most inputs of a training call, or None when only testing; the most of a call
    without gradients): training batches, and validation and test images in `evaluate`'s."""
    dataset = cell.dataset.component
    classes = dataset.selected_classes
    if isinstance(dataset.test_per_class, int):
        test = dataset.test_per_class * len(classes)
    else:  # the whole test set
        labels = load_raw(dataset, data_root, "test")[1]
        test = int(torch.isin(labels, torch.tensor(classes)).sum())
    most = inspect.signature(evaluate).parameters["batch_size"].default
    if not training:
        return None, min(most, test)
    train = min(cell.spec.train.batch_size, dataset.train_per_class * len(classes))
    return train, min(most, max(dataset.val_per_class * len(classes), test))


def _probing(backend: Backend, train_batch: int | None, eval_batch: int) -> Backend:
    """A copy of `backend` whose `compile` calls `check_circuit` instead, returning a circuit
    that cannot run; students compiling on `context.backend` directly (deprecated) are
    probed too."""

    def compile(circuit, inputs, weights, *, seed):
        backend.check_circuit(CircuitPlan(circuit, inputs, weights, train_batch, eval_batch))
        return _Unrun(circuit.num_qubits)

    probe = copy.copy(backend)
    object.__setattr__(probe, "compile", compile)  # frozen components too
    return probe


class _Unfitted(Exception):
    """A teacher that fits itself was built: there is no image to pass it before its fit."""


class _CircuitReached(Exception):
    """A probed circuit was called: the student took the image up to it."""


class _Unrun:
    """What a probed `compile` returns: a `CircuitFunction` that refuses to run."""

    executions = shots = depth = 0

    def __init__(self, width: int):
        self.width = width

    def __call__(self, inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        raise _CircuitReached
