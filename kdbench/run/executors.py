"""Where cells run: in this process, in worker processes, or as Ray tasks; one interface.

An executor takes the cells to run and yields their outcomes as they finish; closing the
generator early (fail-fast, Ctrl-C) cancels the cells not started yet.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from multiprocessing import resource_tracker
from pathlib import Path

import torch

from kdbench.errors import KdbenchError, TrackingError, first_line
from kdbench.leases import Lease
from kdbench.plugins import Registry
from kdbench.run.cell import run_task
from kdbench.run.events import CellOutcome, Events
from kdbench.run.stacking import Task
from kdbench.signals import atomic, spawning, stop_worker_on, working
from kdbench.stores import RESTART_WAIT_S
from kdbench.tracking import Tracker


@dataclass(frozen=True)
class Job:
    """What a worker needs to run cells of one invocation: its store, parent run and paths."""

    uri: str
    experiment: str
    parent: str
    data_root: Path
    cache: Path
    since_ms: int = 0  # runs that finished a cell before this (ms) do not count (--rerun)
    lease: Lease = field(default_factory=Lease)


Executor = Callable[[Sequence[Task], Job], Iterator[CellOutcome]]
"""tasks (cells, alone or stacked), job -> the cells' outcomes, in the order they finish."""


def serial(registry: Registry, tracker: Tracker, events: Events) -> Executor:
    """Cells one after the other in this process, reporting each epoch to `events`."""

    def execute(tasks: Sequence[Task], job: Job) -> Iterator[CellOutcome]:
        for task in tasks:
            yield from run_task(
                task,
                registry=registry,
                tracker=tracker,
                parent_id=job.parent,
                data_root=job.data_root,
                cache=job.cache,
                events=events,
                since_ms=job.since_ms,
            )

    return execute


def processes(jobs: int) -> Executor:
    """Cells in `jobs` worker processes; the cores are shared out among them.

    Workers are spawned, not forked: a forked copy of a process that has used torch's
    thread pool can deadlock. Teachers are trained once all the same: the cache is locked.
    Closing the outcomes early stops the workers: each marks its cell KILLED and exits; a
    worker whose parent dies does the same.
    """

    def execute(tasks: Sequence[Task], job: Job) -> Iterator[CellOutcome]:
        threads = max(1, (os.cpu_count() or 1) // jobs)
        context = multiprocessing.get_context("spawn")
        pool, futures = None, {}
        try:  # a stop that lands while the workers are spawned stops them too
            with spawning():  # the pool starts its workers as tasks are submitted
                pool = ProcessPoolExecutor(
                    jobs, mp_context=context, initializer=_watch_parent, initargs=(os.getpid(),)
                )
                for task in tasks:
                    futures[pool.submit(work, task, job, threads)] = task
            for future in as_completed(futures):
                try:
                    outcomes = future.result()
                except BrokenProcessPool:
                    raise WorkerDied(futures[future]) from None
                yield from outcomes
        finally:
            if pool is not None and futures and all(f.done() for f in futures):
                pool.shutdown()
                pool = None  # its queues' semaphores are released with it
                _end_resource_tracker()
            elif pool is not None:
                _stop(pool)

    return execute


class WorkerDied(KdbenchError):
    """A worker process ended without a word (killed by the system, most often for memory):
    the cells it held are marked KILLED as the invocation stops, and a rerun runs them."""

    exit_code = 1  # not bad input: the run could not finish

    def __init__(self, task: Task):
        cells = ", ".join(cell.label for cell in task[:3]) + (" ..." if len(task) > 3 else "")
        super().__init__(
            f"a worker process died while running {cells} (killed by the system: out of"
            " memory? see dmesg); its cells are marked KILLED: run again to resume, with"
            ' fewer --jobs, [train] stacked = "off" or smaller batches if memory ran out'
        )


def _stop(pool: ProcessPoolExecutor, grace_s: float = 30.0) -> None:
    """Cancel what has not started and stop the workers (SIGTERM, then SIGKILL after
    `grace_s`). Python 3.14 has `terminate_workers`; before it, the processes are private."""
    # A second Ctrl-C or SIGTERM waits until the workers are gone: cut short, this would
    # leave them running after the run's process exits.
    with atomic():
        workers = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        # With the pool's, any worker it was spawning when the stop came.
        workers += [p for p in multiprocessing.active_children() if p not in workers]
        for process in workers:
            process.terminate()
        deadline = time.monotonic() + grace_s
        for process in workers:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()


def _end_resource_tracker() -> None:
    """Stop multiprocessing's resource tracker, and wait for it, once the pool and what it
    registered are gone: left to itself it outlives the run's process by up to a second.
    Its `_stop` is private (Python 3.8-3.13); without it, the tracker ends on its own."""
    stop = getattr(resource_tracker._resource_tracker, "_stop", None)
    if stop is not None:
        stop()


def _watch_parent(parent: int) -> None:
    """In a worker: SIGTERM or SIGINT interrupts the cell (which is marked KILLED) or ends
    an idle worker, and a parent that dies without stopping the worker (SIGKILL) sends it
    SIGTERM: at once on Linux, where the kernel does it, else within a second."""
    stop_worker_on(signal.SIGTERM, signal.SIGINT)
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # it died before that
            os.kill(os.getpid(), signal.SIGTERM)
        return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="kdbench-parent-watch", daemon=True).start()


# A cell whose Ray worker is lost this many times ends the run: something kills it (memory?).
RAY_LOSSES = 3


def ray_tasks(address: str | None) -> Executor:
    """Each cell a Ray task declaring one CPU, and a GPU when its teacher asks for CUDA.

    Workers need the same data directory, teacher cache and tracking store: on one machine
    they are shared; on a cluster, use shared storage and a tracking server. A task whose
    worker or node is lost comes back HELD: the invocation waits for its cells' runs to be
    released (at once on this host, at the lease's end on another) and runs them again.
    """
    losses: dict[str, int] = {}

    def execute(tasks: Sequence[Task], job: Job) -> Iterator[CellOutcome]:
        ray = connect_ray(address)
        remote = ray.remote(work)
        pending, of = [], {}
        for task in tasks:
            cuda = any(c.teacher is not None and c.teacher.component.device == "cuda" for c in task)
            options = remote.options(num_cpus=1, num_gpus=1 if cuda else 0, max_retries=0)
            pending.append(options.remote(task, job, 1))
            of[pending[-1]] = task
        try:
            while pending:
                (done,), pending = ray.wait(pending, num_returns=1)
                try:
                    outcomes = ray.get(done)
                except ray.exceptions.RayTaskError as exc:  # raised by kdbench in the task
                    cause = getattr(exc, "cause", None)
                    if isinstance(cause, KdbenchError):
                        raise cause from None  # its one line, not the remote traceback
                    raise
                except ray.exceptions.RayError as exc:  # its worker or node died
                    why = first_line(exc).split(". ")[0]  # Ray's advice follows
                    yield from _lost(of[done], why, losses)
                else:
                    yield from outcomes
        finally:
            # Forced: a running task's worker is killed, and once it is gone (waited for
            # here) the invocation marks its cell KILLED.
            for ref in pending:
                ray.cancel(ref, force=True)
            if pending:
                ray.wait(pending, num_returns=len(pending), timeout=30)

    return execute


def _lost(task: Task, why: str, losses: dict[str, int]) -> Iterator[CellOutcome]:
    """The cells of a task whose Ray worker was lost, HELD until their runs are released."""
    for cell in task:
        losses[cell.id] = losses.get(cell.id, 0) + 1
        if losses[cell.id] >= RAY_LOSSES:
            raise KdbenchError(
                f"Ray lost the worker running {cell.label} {RAY_LOSSES} times ({why}); its"
                " run is marked KILLED: run again to resume"
            )
        yield CellOutcome(cell, "", "HELD", error=f"its Ray worker was lost ({why})")


_WORKER_TRACKERS: dict[tuple[str, str, Lease], Tracker] = {}


def _patient_tracker(job: Job) -> Tracker:
    """The job's tracker, waiting out a server that is restarting: the invocation reached it
    already, so a worker that cannot is early, not wrong."""
    deadline = time.monotonic() + RESTART_WAIT_S
    while True:
        try:
            return Tracker(job.uri, job.experiment, lease=job.lease)
        except TrackingError:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


def work(task: Task, job: Job, threads: int) -> list[CellOutcome]:
    """One task's cells in a worker process or Ray task (one tracker per worker)."""
    from kdbench.plugins import registry

    key = (job.uri, job.experiment, job.lease)
    with working():
        try:
            torch.set_num_threads(threads)
            if key not in _WORKER_TRACKERS:
                _WORKER_TRACKERS[key] = _patient_tracker(job)
            return list(
                run_task(
                    task,
                    registry=registry(),
                    tracker=_WORKER_TRACKERS[key],
                    parent_id=job.parent,
                    data_root=job.data_root,
                    cache=job.cache,
                    events=Events(),
                    since_ms=job.since_ms,
                )
            )
        except KeyboardInterrupt:
            # Stopped (the cell is marked KILLED, and so is a run the stop caught mid-claim):
            # exit rather than take the next queued cell, which the pool would otherwise hand
            # this worker.
            if key in _WORKER_TRACKERS:
                with suppress(TrackingError):
                    _WORKER_TRACKERS[key].close_own()
            os._exit(128 + signal.SIGTERM)


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
            ray.init(
                address=address,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
            )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        # Ray reports a refused token only in the exception's context, under a generic line.
        told = f"{exc} {exc.__context__ or ''} {exc.__cause__ or ''}"
        if "InvalidAuthToken" in told or "AuthenticationError" in told:
            raise KdbenchError(
                f"the Ray cluster at {address} refused this client: it wants token "
                "authentication; set RAY_AUTH_MODE=token, with the cluster's token in "
                "~/.ray/auth_token or RAY_AUTH_TOKEN"
            ) from None
        raise KdbenchError(
            f"cannot reach the Ray cluster at {address}: {first_line(exc)}"
        ) from None
    return ray
