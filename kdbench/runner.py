"""Running cells: data, teacher, student, training, and what goes to MLflow."""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

import kdbench
from kdbench import figures
from kdbench.api import StudentContext
from kdbench.config import Instance, Spec
from kdbench.data import load_raw, make_splits
from kdbench.distill import EpochMetrics, Split, evaluate, fit, probabilities_to_log
from kdbench.errors import KdbenchError
from kdbench.matrix import Cell
from kdbench.plugins import Registry
from kdbench.report import Result
from kdbench.teachers import (
    checkpoint_path,
    keys_to_train,
    load_checkpoint,
    prepare_teacher,
    teacher_logits,
)
from kdbench.tracking import CELL_ID_TAG, ROLE_TAG, Tracker, flatten, redact_passwords


@dataclass
class CellOutcome:
    cell: Cell
    run_id: str
    status: str  # FINISHED, FAILED, or SKIPPED (finished by an earlier invocation)
    result: Result | None = None
    error: str | None = None
    seconds: float = 0.0


class Events:
    """What a runner tells its display; the CLI draws a rich progress from these."""

    def phase(self, cell: Cell, text: str, total: int | None = None) -> None: ...
    def epoch(self, cell: Cell, metrics: EpochMetrics) -> None: ...
    def done(self, outcome: CellOutcome) -> None: ...


def run_matrix(
    spec: Spec,
    cells: Sequence[Cell],
    *,
    registry: Registry,
    tracker: Tracker,
    data_root: Path,
    cache: Path,
    events: Events,
    rerun: bool = False,
    fail_fast: bool = False,
    jobs: int = 1,
    executor: str = "local",
    address: str | None = None,
) -> list[CellOutcome]:
    """Run the cells under one parent run, skipping cells an earlier invocation finished.

    A cell is finished when a FINISHED child run carries its id, and the id is the hash of
    the resolved config, so a changed option reruns it. Runs left RUNNING by a process that
    died are marked KILLED first. With `jobs` > 1, cells run in that many processes; with
    `executor="ray"`, each cell is a Ray task on the cluster at `address` (or a local one).
    """
    tracker.close_stale()
    finished = {} if rerun else tracker.finished_cells()
    parent = tracker.start_run(
        Path(spec.file).name, {ROLE_TAG: "invocation", "kdbench.config_file": spec.file}
    )
    config = redact_passwords(
        Path(spec.file).read_bytes(), tracker.uri, spec.experiment.tracking_uri
    )
    tracker.log_files(parent, [(Path(spec.file).name, config)])
    outcomes: list[CellOutcome] = []
    todo = []
    for cell in cells:
        if cell.id in finished:
            run = finished[cell.id]
            outcomes.append(CellOutcome(cell, run.info.run_id, "SKIPPED", Result.from_run(run)))
            events.done(outcomes[-1])
        else:
            todo.append(cell)
    if executor == "ray" or jobs > 1:
        todo = _teachers_first(todo, spec, cache)
    if executor == "ray":
        completed = _on_ray(todo, address, tracker, parent, data_root, cache)
    elif jobs > 1 and len(todo) > 1:
        completed = _in_processes(todo, jobs, tracker, parent, data_root, cache)
    else:
        completed = (
            run_cell(cell, registry=registry, tracker=tracker, parent_id=parent,
                     data_root=data_root, cache=cache, events=events)
            for cell in todo
        )  # fmt: skip
    try:
        # One loop whatever the executor; leaving it closes the generator, whose cleanup
        # cancels the cells not yet started.
        with closing(completed):
            for outcome in completed:
                outcomes.append(outcome)
                events.done(outcome)
                if outcome.status == "FAILED" and fail_fast:
                    break
    except BaseException:
        tracker.finish(parent, "KILLED")
        raise
    failed = any(o.status == "FAILED" for o in outcomes)
    tracker.finish(parent, "FAILED" if failed else "FINISHED")
    order = {cell.id: i for i, cell in enumerate(cells)}
    return sorted(outcomes, key=lambda o: order[o.cell.id])


def _teachers_first(cells: Sequence[Cell], spec: Spec, cache: Path) -> list[Cell]:
    """`cells` with, first, one cell for each teacher network not trained yet.

    For parallel executors: the workers then train different teachers side by side, instead
    of one training while the others wait on its cache lock.
    """
    leading, rest, seen = [], [], set()
    for cell in cells:
        keys = []
        if cell.teacher is not None:
            keys = keys_to_train(cell.teacher, cell.dataset, cell.seed,
                                 lambda name: spec.instance("teachers", name))  # fmt: skip
        untrained = [k for k in keys if k not in seen and not checkpoint_path(cache, k).exists()]
        seen.update(keys)
        (leading if untrained else rest).append(cell)
    return leading + rest


def _in_processes(
    cells: Sequence[Cell], jobs: int, tracker: Tracker, parent: str, data_root: Path,
    cache: Path,
) -> Iterator[CellOutcome]:  # fmt: skip
    """Cells in `jobs` worker processes, yielded as they finish; cores are shared out.

    Workers are spawned, not forked: a forked copy of a process that has used torch's
    thread pool can deadlock. Teachers are trained once all the same: the cache is locked.
    """
    threads = max(1, (os.cpu_count() or 1) // jobs)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=context) as pool:
        futures = [pool.submit(_work, cell, tracker.uri, tracker.experiment_name, parent,
                               data_root, cache, threads) for cell in cells]  # fmt: skip
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            for future in futures:
                future.cancel()


@contextmanager
def _native_stderr_held() -> Iterator[None]:
    """Hold back what native code writes to file descriptor 2 in the block.

    Passed on if the block succeeds, dropped if it raises: Ray's C++ client logs each refused
    connection attempt there, and the one line kdbench prints on failure says it better.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        sink.seek(0)
        sys.stderr.write(sink.read().decode(errors="replace"))


def connect_ray(address: str | None):
    """The `ray` module, connected to the cluster at `address` (or to a new local one).

    An address that does not answer fails in seconds, not after Ray's minute of retries.
    """
    from kdbench.fetch import reachable

    try:
        import ray
    except ImportError:
        raise KdbenchError("--executor ray needs Ray: pip install 'kdbench[ray]'") from None
    if ray.is_initialized():
        return ray
    if address not in (None, "auto") and not reachable(
        address if "://" in address else f"tcp://{address}", timeout=5
    ):
        raise KdbenchError(f"cannot reach the Ray cluster at {address}: no answer")
    try:
        with _native_stderr_held():
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)  # fmt: skip
    except (ConnectionError, RuntimeError, ValueError) as exc:
        # Ray reports a refused token only in the exception's context, under a generic line.
        told = f"{exc} {exc.__context__ or ''} {exc.__cause__ or ''}"
        if "InvalidAuthToken" in told or "AuthenticationError" in told:
            raise KdbenchError(
                f"the Ray cluster at {address} refused this client: it wants token "
                "authentication; set RAY_AUTH_MODE=token, with the cluster's token in "
                "~/.ray/auth_token or RAY_AUTH_TOKEN"
            ) from None
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise KdbenchError(f"cannot reach the Ray cluster at {address}: {first}") from None
    return ray


def _on_ray(
    cells: Sequence[Cell], address: str | None, tracker: Tracker, parent: str, data_root: Path,
    cache: Path,
) -> Iterator[CellOutcome]:  # fmt: skip
    """Each cell a Ray task declaring one CPU, and a GPU when its teacher asks for CUDA;
    yielded as they finish.

    Workers need the same data directory, teacher cache and tracking store: on one machine
    they are shared; on a cluster, use shared storage and a tracking server.
    """
    ray = connect_ray(address)
    remote = ray.remote(_work)
    pending = []
    for cell in cells:
        gpus = 1 if cell.teacher is not None and cell.teacher.component.device == "cuda" else 0
        options = remote.options(num_cpus=1, num_gpus=gpus, max_retries=0)
        pending.append(options.remote(cell, tracker.uri, tracker.experiment_name, parent,
                                      data_root, cache, 1))  # fmt: skip
    try:
        while pending:
            (done,), pending = ray.wait(pending, num_returns=1)
            yield ray.get(done)
    finally:
        for ref in pending:
            ray.cancel(ref)


_WORKER_TRACKERS: dict[tuple[str, str], Tracker] = {}


def _work(cell: Cell, uri: str, experiment: str, parent: str, data_root: Path, cache: Path,
          threads: int) -> CellOutcome:  # fmt: skip
    """One cell in a worker process (one tracker per worker)."""
    from kdbench.plugins import registry

    torch.set_num_threads(threads)
    key = (uri, experiment)
    if key not in _WORKER_TRACKERS:
        _WORKER_TRACKERS[key] = Tracker(uri, experiment)
    return run_cell(cell, registry=registry(), tracker=_WORKER_TRACKERS[key], parent_id=parent,
                    data_root=data_root, cache=cache, events=Events())  # fmt: skip


def preflight(cells: Sequence[Cell], data_root: Path) -> None:
    """Fail before anything is logged: data present and intact, teacher checkpoints loadable,
    backends usable (credentials of real hardware)."""
    for dataset in {c.dataset.plugin: c.dataset for c in cells}.values():
        for split in ("train", "test"):
            load_raw(dataset.component, data_root, split)
    checked = set()
    for cell in cells:
        pending = [cell.teacher] if cell.teacher else []
        while pending:
            teacher = pending.pop()
            names = teacher.component.member_names()
            pending += [cell.spec.instance("teachers", name) for name in names]
            path = teacher.component.checkpoint
            if path and (teacher.name, cell.dataset.name) not in checked:
                checked.add((teacher.name, cell.dataset.name))
                classes = len(cell.dataset.component.selected_classes)
                model = teacher.component.build(classes, cell.dataset.component.image_shape)
                load_checkpoint(model, path)
    backends = {b.name: b for c in cells for b in (c.backend, c.eval_backend) if b is not None}
    for backend in backends.values():
        backend.component.preflight()


def versions(cell: Cell, registry: Registry) -> dict[str, str]:
    """kdbench's version and that of each plugin the cell uses."""
    found = {
        "kdbench.version": kdbench.__version__,
        "torch.version": torch.__version__,
        "python.version": platform.python_version(),
    }
    for instance in (cell.dataset, cell.teacher, cell.student, cell.encoder, cell.backend):
        if instance is not None:
            owner = registry.owner(instance.kind, instance.plugin)
            found[f"plugin.{owner.name}.version"] = owner.version
    return found


def run_cell(
    cell: Cell,
    *,
    registry: Registry,
    tracker: Tracker,
    parent_id: str,
    data_root: Path,
    cache: Path,
    events: Events,
) -> CellOutcome:
    """Train and evaluate one cell into its own child run; a failure is recorded, not raised."""
    tags = {
        ROLE_TAG: "cell",
        CELL_ID_TAG: cell.id,
        "kdbench.dataset": cell.dataset.name,
        "kdbench.teacher": cell.teacher_name,
        "kdbench.student": cell.student.name,
        "kdbench.backend": cell.backend_label,
        "kdbench.seed": str(cell.seed),
    }
    run_id = tracker.start_run(cell.label, tags, parent=parent_id)
    started = time.perf_counter()
    try:
        tracker.log_params(run_id, {**flatten(cell.config()), **versions(cell, registry)})
        with ExitStack() as opened:  # the cell's circuits close even when it fails
            result = _train(cell, tracker, run_id, data_root, cache, events, opened)
    except (Exception, KeyboardInterrupt) as exc:
        reason = str(exc) if isinstance(exc, KdbenchError) else f"{type(exc).__name__}: {exc}"
        tracker.set_tag(run_id, "kdbench.error", reason[:5000])
        if not isinstance(exc, (KdbenchError, KeyboardInterrupt)):
            tracker.log_files(run_id, [("traceback.txt", traceback.format_exc().encode())])
        tracker.finish(run_id, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        if isinstance(exc, KeyboardInterrupt):
            raise
        return CellOutcome(
            cell, run_id, "FAILED", error=reason, seconds=time.perf_counter() - started
        )
    seconds = time.perf_counter() - started
    tracker.log_metrics(run_id, {"wall_seconds": seconds})
    tracker.finish(run_id)
    return CellOutcome(cell, run_id, "FINISHED", result, seconds=seconds)


def _train(
    cell: Cell,
    tracker: Tracker,
    run_id: str,
    data_root: Path,
    cache: Path,
    events: Events,
    opened: ExitStack,
) -> Result:
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
        for part in (train, val):  # the test loss is the plain cross-entropy
            part.teacher_logits = teacher_logits(teacher.model, part.x)
            if cell.teacher.component.shuffled:  # right outputs, wrong images
                part.teacher_logits = part.teacher_logits[
                    torch.randperm(len(part.x), generator=shuffle)
                ]
        metrics |= {
            "teacher_val_accuracy": teacher.val_accuracy,
            "teacher_test_accuracy": teacher.test_accuracy,
        }
        tracker.set_tag(run_id, "kdbench.teacher_source", teacher.source)

    def build_student(backend: Instance) -> torch.nn.Module:
        torch.manual_seed(seed)
        encoder = cell.encoder.component if cell.encoder else None
        context = StudentContext(
            num_classes, tuple(splits.train_x.shape[1:]), backend.component, encoder, seed
        )
        student = cell.student.component.build(context)
        close = getattr(getattr(student, "run_circuit", None), "close", None)
        if close is not None:  # e.g. a hardware Batch or Session
            opened.callback(close)
        return student

    model = build_student(cell.backend)
    distill = spec.distill if cell.teacher else None

    def on_epoch(m: EpochMetrics) -> None:
        tracker.log_metrics(run_id, {k: v for k, v in vars(m).items() if k != "epoch"}, m.epoch)
        events.epoch(cell, m)

    events.phase(cell, f"student {cell.student.name}", spec.train.epochs)
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
        distill=distill,
        on_epoch=on_epoch,
    )
    tested = evaluate(model, _log_probs, test, num_classes, distill)
    metrics |= {
        "best_epoch": fitted.best_epoch,
        "best_val_accuracy": fitted.history[fitted.best_epoch - 1].val_accuracy,
        "student_parameters": sum(p.numel() for p in model.parameters()),
        **_circuit_metrics(model, ""),
    }
    if cell.eval_backend is not None:
        # The trained weights, tested on another backend (e.g. trained exact, tested noisy).
        metrics["train_backend_test_accuracy"] = tested.accuracy
        model = build_student(cell.eval_backend)
        model.load_state_dict(fitted.best_state)
        tested = evaluate(model, _log_probs, test, num_classes, distill)
        metrics |= _circuit_metrics(model, "eval_")
    metrics |= {"test_accuracy": tested.accuracy, "test_loss": tested.loss}
    tracker.log_metrics(run_id, metrics)

    weights = io.BytesIO()
    torch.save(model.state_dict(), weights)
    tracker.log_files(run_id, [
        ("config.json", json.dumps(cell.config(), indent=2).encode()),
        ("loss_curve.png", figures.loss_curve(fitted.history, cell.label)),
        ("confusion_matrix.png",
         figures.confusion_matrix(tested.confusion, splits.class_names, cell.label)),
        ("confusion_matrix.json", json.dumps(tested.confusion.tolist()).encode()),
        ("student_state_dict.pt", weights.getvalue()),
    ])  # fmt: skip
    return Result(
        *cell.group,
        seed,
        tested.accuracy,
        metrics.get("teacher_test_accuracy"),
        flatten(cell.config()),
        run_id,
    )


def _circuit_metrics(model: torch.nn.Module, prefix: str) -> dict[str, float]:
    """Executions, shots, depth and width of a quantum student's compiled circuit."""
    circuit = getattr(model, "run_circuit", None)
    if circuit is None:
        return {}
    return {
        f"{prefix}circuit_{name}": getattr(circuit, name)
        for name in ("executions", "shots", "depth", "width")
    }


def _log_probs(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return probabilities_to_log(model(x))
