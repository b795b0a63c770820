"""A cell's work: its data, its teacher's outputs, the student trained, tested and logged."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch

from kdbench.api import Backend, CircuitFunction, StudentContext
from kdbench.config import Instance
from kdbench.constants import BEST_TEST
from kdbench.data import make_splits
from kdbench.distill import (
    EpochMetrics,
    FitResult,
    Split,
    batch_count,
    collapsed,
    evaluate,
    fit,
)
from kdbench.losses import Hint, probabilities_to_log
from kdbench.matrix import Cell
from kdbench.results import (
    ALSO_TESTED_TAG,
    STACKED_TAG,
    TEACHER_SOURCE_TAG,
    Result,
    also_metric,
    circuit_metrics,
)
from kdbench.run.artifacts import cell_artifacts
from kdbench.run.controls import class_means, mean_kl, permutation
from kdbench.run.events import Events
from kdbench.stacked import NotStackable, fit_stacked
from kdbench.teachers import prepare_teacher, teacher_features, teacher_logits
from kdbench.tracking import Tracker, flatten


class CellTraining:
    """One cell's work around its training: its data and teacher's outputs, its student
    built, then (`finish`) the trained student tested and logged into run `run_id`. Between
    the two, `fit` trains it alone or `fit_stacked` with its other seeds."""

    def __init__(
        self,
        cell: Cell,
        tracker: Tracker,
        run_id: str,
        data_root: Path,
        cache: Path,
        events: Events,
        opened: ExitStack,
    ):
        self.cell, self.tracker, self.run_id = cell, tracker, run_id
        self.events, self.opened = events, opened
        spec, seed = cell.spec, cell.seed
        events.phase(cell, "loading data")
        self.splits = splits = make_splits(cell.dataset.component, data_root, seed)
        self.num_classes = len(splits.class_names)
        self.train = Split(splits.train_x, splits.train_y)
        self.val = Split(splits.val_x, splits.val_y)
        self.test = Split(splits.test_x, splits.test_y)
        self.metrics: dict[str, float] = {}
        self.tags: dict[str, str] = {}  # logged with the metrics, in the same store call
        if cell.teacher is not None:
            self._teach(data_root, cache)
        # The student's arithmetic is the same however many cores its worker got: teachers
        # (above) use them all, the student `[train] threads`.
        opened.callback(torch.set_num_threads, torch.get_num_threads())
        torch.set_num_threads(spec.train.threads)
        self.model, self.circuits = self.build_student(cell.backend)
        self.rng_state = torch.get_rng_state()  # what training's dropout draws from
        self.distiller = cell.distiller.component if cell.distiller else None
        self.hint = _hint(cell, self.model, self.train) if cell.distils_features else None
        if self.hint is not None:
            opened.callback(self.hint.close)
        self.on_test = spec.train.selection == BEST_TEST  # the notebooks' protocol: flagged
        self.per_epoch = batch_count(len(self.train.y), spec.train.batch_size)
        self.budgets = budget_epochs(spec.train.budgets, self.per_epoch)
        self.budget_steps: list[tuple[int, dict[str, float]]] = []

    def _teach(self, data_root: Path, cache: Path) -> None:
        """The teacher's logits (and features, for a distiller of features) on the training
        and validation images, as the cell's controls change them."""
        cell, spec, seed = self.cell, self.cell.spec, self.cell.seed
        assert cell.teacher is not None
        self.events.phase(cell, f"teacher {cell.teacher.name}", cell.teacher.component.epochs)
        teacher = prepare_teacher(
            cell.teacher,
            cell.dataset,
            data_root,
            seed,
            cache,
            members=lambda name: spec.instance("teachers", name),
            on_epoch=lambda m: self.events.epoch(cell, m),
        )
        shuffle = torch.Generator().manual_seed(seed)
        # Penultimate features, for a distiller of features (preflight has checked the
        # teacher has a classifier layer).
        network = teacher.network
        layer = cell.teacher.component.classifier_layer(network) if cell.distils_features else None
        options = cell.teacher.component
        for part in (self.train, self.val):  # the test loss is the plain cross-entropy
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
            if part is self.train and (options.shuffled or options.class_prior):
                # How far the control's targets are from the teacher's own: a control that
                # barely moves them cannot tell knowledge from labels.
                self.metrics["teacher_control_kl"] = mean_kl(real, part.teacher_logits)
        self.metrics |= {
            "teacher_val_accuracy": teacher.val_accuracy,
            "teacher_test_accuracy": teacher.test_accuracy,
        }
        self.tags[TEACHER_SOURCE_TAG] = teacher.source

    def build_student(self, backend: Instance) -> tuple[torch.nn.Module, list[CircuitFunction]]:
        """The cell's student on `backend`, initialised from the cell's seed; what its
        circuits open is closed with the cell."""
        torch.manual_seed(self.cell.seed)
        context = student_context(self.cell, backend.component)
        student = self.cell.student.component.build(context)
        for circuit in context.circuits:
            close = getattr(circuit, "close", None)
            if close is not None:  # e.g. a hardware Batch or Session
                self.opened.callback(close)
        return student, context.circuits

    def fit_options(self) -> dict[str, Any]:
        """What `fit` and `fit_stacked` take alike for this cell."""
        train = self.cell.spec.train
        return {
            "num_classes": self.num_classes,
            "epochs": train.epochs,
            "batch_size": train.batch_size,
            "lr": train.lr,
            "distiller": self.distiller,
            "checkpoints": self.budgets,
        }

    def on_epoch(self, metrics: EpochMetrics) -> None:
        self.events.epoch(self.cell, metrics)

    @functools.cached_property
    def _budget_tester(self) -> torch.nn.Module:
        # Built once, under a forked RNG: training's draws stay as they were.
        with torch.random.fork_rng(devices=[]):
            return self.build_student(self.cell.backend)[0]

    def test_budget(self, epoch: int, kept: FitResult) -> None:
        """The weights validation kept by `epoch`, on the test set: its budgets' results."""
        tester = self._budget_tester
        tester.load_state_dict(kept.best_state)
        result = evaluate(tester, _log_probs, self.test, self.num_classes)
        read = {
            "budget_test_accuracy": result.accuracy,
            "budget_test_loss": result.loss,
            "budget_val_accuracy": kept.history[kept.val_epoch - 1].val_accuracy,
            "budget_epoch": kept.val_epoch,
            "budget_steps": epoch * self.per_epoch,
        }
        self.budget_steps += [(budget, read) for budget in self.budgets[epoch]]

    def fit(self) -> FitResult:
        """Train the student alone."""
        self.events.phase(
            self.cell, f"student {self.cell.student.name}", self.cell.spec.train.epochs
        )
        return fit(
            self.model,
            _log_probs,
            self.train,
            self.val,
            seed=self.cell.seed,
            on_epoch=self.on_epoch,
            hint=self.hint,
            test=self.test if self.on_test else None,
            on_checkpoint=self.test_budget,
            **self.fit_options(),
        )

    def finish(self, fitted: FitResult, started: float) -> Result:
        """Test the trained student (and on the cell's other backends), log it all.
        `started`: the `time.perf_counter()` the cell's `wall_seconds` count from (for a
        stacked cell, moved back by its share of the group's time)."""
        cell, metrics = self.cell, self.metrics
        model, circuits, test = self.model, self.circuits, self.test
        num_classes = self.num_classes
        tested = evaluate(model, _log_probs, test, num_classes)
        if self.on_test:  # what selection on validation would have reported, from the same run
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
            model, circuits = self.build_student(cell.eval_backend)
            model.load_state_dict(fitted.best_state)
            tested = evaluate(model, _log_probs, test, num_classes)
            metrics |= circuit_metrics(circuits, "eval_")
        metrics |= {"test_accuracy": tested.accuracy, "test_loss": tested.loss}
        also, also_loss = {}, {}
        for backend in cell.also_test_on:
            # The same weights again on each of these (a noise ladder); their circuits count apart.
            self.events.phase(cell, f"testing on {backend.name}")
            tester, _ = self.build_student(backend)
            tester.load_state_dict(fitted.best_state)
            result = evaluate(tester, _log_probs, test, num_classes)
            also[backend.name], also_loss[backend.name] = result.accuracy, result.loss
            metrics |= {
                also_metric("accuracy", backend.name): result.accuracy,
                also_metric("loss", backend.name): result.loss,
            }
        if also:
            self.tags[ALSO_TESTED_TAG] = json.dumps(list(also))
        artifacts = cell_artifacts(cell, tested, self.splits.class_names, model)
        metrics["wall_seconds"] = time.perf_counter() - started  # all but the last writes
        # The epochs' metrics are logged with the cell's and its tags, in one store call: a
        # call costs ~10-40 ms, as much as training a small student's epoch.
        epochs = [(m.epoch, m.logged()) for m in fitted.history]
        steps = [*epochs, *self.budget_steps, (0, metrics)]
        self.tracker.log_steps(self.run_id, steps, self.tags)
        self.tracker.log_files(self.run_id, artifacts)
        return Result(
            *cell.group,
            cell.seed,
            tested.accuracy,
            metrics.get("teacher_test_accuracy"),
            metrics["best_val_accuracy"],
            dict(cell.sweep),
            flatten(cell.config()),
            self.run_id,
            cell.id,
            collapsed=bool(metrics["collapsed"]),
            also=also,
            also_loss=also_loss,
        )


def train_stacked(trainings: Sequence[CellTraining]) -> list[FitResult | FloatingPointError]:
    """Train the students of cells that differ only in seed, learning rate and teacher as one
    stacked model."""
    first = trainings[0]
    first.events.phase(
        first.cell,
        f"student {first.cell.student.name}, {len(trainings)} cells stacked",
        first.cell.spec.train.epochs,
    )
    on_test = first.on_test

    def on_epoch(i: int, metrics: EpochMetrics) -> None:
        if i == 0:  # the display follows the group as one
            first.on_epoch(metrics)

    try:
        return fit_stacked(
            [t.model for t in trainings],
            _log_probs,
            [t.train for t in trainings],
            [t.val for t in trainings],
            seeds=[t.cell.seed for t in trainings],
            rng_states=[t.rng_state for t in trainings],
            on_epoch=on_epoch,
            tests=[t.test for t in trainings] if on_test else None,
            on_checkpoint=lambda i, epoch, kept: trainings[i].test_budget(epoch, kept),
            **first.fit_options() | {"lr": [t.cell.spec.train.lr for t in trainings]},
        )
    except NotStackable as exc:
        # One at a time after all, each from the RNG state it was built with.
        fitted: list[FitResult | FloatingPointError] = []
        for training in trainings:
            stacked = {STACKED_TAG: f"1 (not stackable: {exc})"}
            training.tracker.set_tags(training.run_id, stacked)
            torch.set_rng_state(training.rng_state)
            try:
                fitted.append(training.fit())
            except FloatingPointError as diverged:
                fitted.append(diverged)
        return fitted


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
