"""A cell's work: its data, its teacher's outputs, the student trained, tested and logged."""

from __future__ import annotations

import functools
import json
from contextlib import ExitStack
from pathlib import Path

import torch

from kdbench.api import Backend, CircuitFunction, StudentContext
from kdbench.config import Instance
from kdbench.constants import BEST_TEST
from kdbench.data import make_splits
from kdbench.distill import FitResult, Split, batch_count, collapsed, evaluate, fit
from kdbench.losses import Hint, probabilities_to_log
from kdbench.matrix import Cell
from kdbench.results import (
    ALSO_TESTED_TAG,
    TEACHER_SOURCE_TAG,
    Result,
    also_metric,
    circuit_metrics,
)
from kdbench.run.artifacts import cell_artifacts
from kdbench.run.events import Events
from kdbench.teachers import prepare_teacher, teacher_features, teacher_logits
from kdbench.tracking import Tracker, flatten


def train_cell(
    cell: Cell,
    tracker: Tracker,
    run_id: str,
    data_root: Path,
    cache: Path,
    events: Events,
    opened: ExitStack,
) -> Result:
    """Train and test `cell`'s student into run `run_id`; what its circuits opened is closed
    by `opened`."""
    spec, seed = cell.spec, cell.seed
    events.phase(cell, "loading data")
    splits = make_splits(cell.dataset.component, data_root, seed)
    num_classes = len(splits.class_names)
    train, val = Split(splits.train_x, splits.train_y), Split(splits.val_x, splits.val_y)
    test = Split(splits.test_x, splits.test_y)
    metrics: dict[str, float] = {}

    if cell.teacher is not None:
        events.phase(cell, f"teacher {cell.teacher.name}", cell.teacher.component.epochs)
        teacher = prepare_teacher(
            cell.teacher,
            cell.dataset,
            data_root,
            seed,
            cache,
            members=lambda name: spec.instance("teachers", name),
            on_epoch=lambda m: events.epoch(cell, m),
        )
        shuffle = torch.Generator().manual_seed(seed)
        # Penultimate features, for a distiller of features (preflight has checked the
        # teacher has a classifier layer).
        network = teacher.network
        layer = cell.teacher.component.classifier_layer(network) if cell.distils_features else None
        options = cell.teacher.component
        for part in (train, val):  # the test loss is the plain cross-entropy
            part.teacher_logits = teacher_logits(teacher.model, part.x)
            if layer is not None:
                part.teacher_features = teacher_features(network, layer, part.x)
            real = part.teacher_logits
            if options.shuffled:  # right outputs, wrong images
                order = permutation(part.y, options.within_class, shuffle)
                part.teacher_logits = part.teacher_logits[order]
                if part.teacher_features is not None:
                    part.teacher_features = part.teacher_features[order]
            if options.class_prior:  # each class's mean distribution, nothing of the image
                part.teacher_logits = class_means(part.teacher_logits, part.y)
                if part.teacher_features is not None:
                    part.teacher_features = class_means(part.teacher_features, part.y, log=False)
            if part is train and (options.shuffled or options.class_prior):
                # How far the control's targets are from the teacher's own: a control that
                # barely moves them cannot tell knowledge from labels.
                metrics["teacher_control_kl"] = mean_kl(real, part.teacher_logits)
        metrics |= {
            "teacher_val_accuracy": teacher.val_accuracy,
            "teacher_test_accuracy": teacher.test_accuracy,
        }
        tracker.set_tag(run_id, TEACHER_SOURCE_TAG, teacher.source)

    def build_student(backend: Instance) -> tuple[torch.nn.Module, list[CircuitFunction]]:
        torch.manual_seed(seed)
        context = student_context(cell, backend.component)
        student = cell.student.component.build(context)
        circuits = context.circuits
        for circuit in circuits:
            close = getattr(circuit, "close", None)
            if close is not None:  # e.g. a hardware Batch or Session
                opened.callback(close)
        return student, circuits

    # The student's arithmetic is the same however many cores its worker got: teachers (above)
    # use them all, the student `[train] threads`.
    opened.callback(torch.set_num_threads, torch.get_num_threads())
    torch.set_num_threads(spec.train.threads)
    model, circuits = build_student(cell.backend)
    distiller = cell.distiller.component if cell.distiller else None
    hint = _hint(cell, model, train) if cell.distils_features else None
    if hint is not None:
        opened.callback(hint.close)

    events.phase(cell, f"student {cell.student.name}", spec.train.epochs)
    on_test = spec.train.selection == BEST_TEST  # the notebooks' protocol: flagged in reports
    per_epoch = batch_count(len(train.y), spec.train.batch_size)
    budgets = budget_epochs(spec.train.budgets, per_epoch)
    budget_steps: list[tuple[int, dict[str, float]]] = []

    @functools.cache
    def budget_tester() -> torch.nn.Module:
        # Built once, under a forked RNG: training's draws stay as they were.
        with torch.random.fork_rng(devices=[]):
            return build_student(cell.backend)[0]

    def test_budget(epoch: int, kept: FitResult) -> None:
        # The weights validation kept by this epoch, on the test set: that budget's result.
        tester = budget_tester()
        tester.load_state_dict(kept.best_state)
        result = evaluate(tester, _log_probs, test, num_classes)
        for budget in budgets[epoch]:
            budget_steps.append((budget, {
                "budget_test_accuracy": result.accuracy,
                "budget_test_loss": result.loss,
                "budget_val_accuracy": kept.history[kept.val_epoch - 1].val_accuracy,
                "budget_epoch": kept.val_epoch,
                "budget_steps": epoch * per_epoch,
            }))  # fmt: skip

    fitted = fit(
        model,
        _log_probs,
        train,
        val,
        num_classes=num_classes,
        epochs=spec.train.epochs,
        batch_size=spec.train.batch_size,
        lr=spec.train.lr,
        seed=seed,
        distiller=distiller,
        on_epoch=lambda m: events.epoch(cell, m),
        hint=hint,
        test=test if on_test else None,
        checkpoints=budgets,
        on_checkpoint=test_budget,
    )
    tested = evaluate(model, _log_probs, test, num_classes)
    if on_test:  # what selection on validation would have reported, from the same run
        kept_by_validation = fitted.history[fitted.val_epoch - 1]
        metrics["val_selected_test_accuracy"] = kept_by_validation.test["accuracy"]
    metrics |= {
        "best_epoch": fitted.best_epoch,
        "best_val_accuracy": fitted.history[fitted.val_epoch - 1].val_accuracy,
        "collapsed": float(collapsed([m.val_accuracy for m in fitted.history], num_classes)),
        "student_parameters": sum(p.numel() for p in model.parameters()),
        **circuit_metrics(circuits),
    }
    if cell.eval_backend is not None:
        # The trained weights, tested on another backend (e.g. trained exact, tested noisy).
        metrics["train_backend_test_accuracy"] = tested.accuracy
        model, circuits = build_student(cell.eval_backend)
        model.load_state_dict(fitted.best_state)
        tested = evaluate(model, _log_probs, test, num_classes)
        metrics |= circuit_metrics(circuits, "eval_")
    metrics |= {"test_accuracy": tested.accuracy, "test_loss": tested.loss}
    also, also_loss = {}, {}
    for backend in cell.also_test_on:
        # The same weights again on each of these (a noise ladder); their circuits count apart.
        events.phase(cell, f"testing on {backend.name}")
        tester, _ = build_student(backend)
        tester.load_state_dict(fitted.best_state)
        result = evaluate(tester, _log_probs, test, num_classes)
        also[backend.name], also_loss[backend.name] = result.accuracy, result.loss
        metrics |= {also_metric("accuracy", backend.name): result.accuracy,
                    also_metric("loss", backend.name): result.loss}  # fmt: skip
    if also:
        tracker.set_tag(run_id, ALSO_TESTED_TAG, json.dumps(list(also)))
    # The epochs' metrics are logged with the cell's, in one store call: a call costs ~10 ms.
    epochs = [(m.epoch, m.logged()) for m in fitted.history]
    tracker.log_steps(run_id, [*epochs, *budget_steps, (0, metrics)])
    tracker.log_files(run_id, cell_artifacts(cell, tested, splits.class_names, model))
    return Result(
        *cell.group,
        seed,
        tested.accuracy,
        metrics.get("teacher_test_accuracy"),
        metrics["best_val_accuracy"],
        dict(cell.sweep),
        flatten(cell.config()),
        run_id,
        collapsed=bool(metrics["collapsed"]),
        also=also,
        also_loss=also_loss,
    )


def budget_epochs(budgets: list[int], steps_per_epoch: int) -> dict[int, list[int]]:
    """Epoch -> the step budgets read at its end: each at the nearest epoch's (at least the
    first). Preflight has checked that training reaches them."""
    epochs: dict[int, list[int]] = {}
    for budget in budgets:
        epochs.setdefault(max(1, round(budget / steps_per_epoch)), []).append(budget)
    return epochs


def _hint(cell: Cell, model: torch.nn.Module, train: Split) -> Hint:
    """The student's front, tapped, and the distiller's learned module, made from the cell's
    seed for the two feature widths (the front run on one image; no circuit runs)."""
    front = cell.student.component.front_module(model)
    assert front is not None and train.teacher_features is not None  # preflight's checks
    mode = front.training
    with torch.no_grad():  # in eval mode: no batch statistics moved, no dropout drawn
        width = front.eval()(train.x[:1]).flatten(1).shape[1]
    front.train(mode)
    torch.manual_seed(cell.seed)
    learned = cell.distiller.component.build(width, train.teacher_features.shape[1])
    return Hint(front, learned)


def student_context(cell: Cell, backend: Backend) -> StudentContext:
    """The context `cell`'s student is built with on `backend` (in a cell, and probed by
    preflight): the data set's selected classes and image shape, the cell's encoder and seed."""
    dataset = cell.dataset.component
    encoder = cell.encoder.component if cell.encoder else None
    classes = len(dataset.selected_classes)
    return StudentContext(classes, tuple(dataset.shape()), backend, encoder, cell.seed)


def _log_probs(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return probabilities_to_log(model(x))


def class_means(values: torch.Tensor, labels: torch.Tensor, log: bool = True) -> torch.Tensor:
    """Each row replaced by the mean over the rows of its label: of the softmax
    distributions, returned as log-probabilities (`log`), or of the raw values."""
    spread = torch.softmax(values, dim=1) if log else values
    out = torch.empty_like(spread)
    for label in labels.unique():
        members = labels == label
        out[members] = spread[members].mean(0)
    return torch.log(out) if log else out


def mean_kl(logits: torch.Tensor, other: torch.Tensor) -> float:
    """The mean over rows of KL(softmax(logits) ‖ softmax(other)), in nats."""
    log_p, log_q = torch.log_softmax(logits, dim=1), torch.log_softmax(other, dim=1)
    return float((log_p.exp() * (log_p - log_q)).sum(1).mean())


def permutation(
    labels: torch.Tensor, within_class: bool, generator: torch.Generator
) -> torch.Tensor:
    """A random order of the images: across all of them, or only among those of one class
    (each image then gets the outputs of another image of its class)."""
    if not within_class:
        return torch.randperm(len(labels), generator=generator)
    order = torch.arange(len(labels))
    for label in labels.unique():
        members = (labels == label).nonzero().flatten()
        order[members] = members[torch.randperm(len(members), generator=generator)]
    return order
