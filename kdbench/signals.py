"""Stopping a run cleanly: SIGTERM handled like Ctrl-C, so that a run stopped either way stops
its workers and marks what was running KILLED, and never in the middle of a store write."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from multiprocessing import resource_tracker

_depth = 0  # how many `atomic` blocks the main thread is in
_pending: BaseException | None = None


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: unwinds like Ctrl-C."""


@contextmanager
def atomic() -> Iterator[None]:
    """A block that `interrupt` does not cut in half: the interrupt is raised when it ends.

    For writes to a SQLite store: one interrupted inside a transaction can leave the
    process's own connection holding the database's lock, so that marking the cell KILLED
    afterwards waits on itself. Signals reach the main thread only: in another thread
    (the lease's heartbeat) the block is plain."""
    global _depth, _pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if not _depth and _pending is not None:
            stop, _pending = _pending, None
            raise stop


def interrupt(stop: BaseException) -> None:
    """Raise `stop` now, or at the end of the `atomic` block the main thread is in."""
    global _pending
    if _depth:
        _pending = _pending or stop
        return
    raise stop


_working = False  # whether this worker process is running a task


@contextmanager
def working() -> Iterator[None]:
    """In a worker process: the block is a task, which a stop interrupts (see `stop_worker_on`)."""
    global _working
    _working = True
    try:
        yield
    finally:
        _working = False


def stop_worker_on(*signums: int) -> None:
    """In a worker process, from now on: in a `working` block, the first of these signals
    raises KeyboardInterrupt (respecting `atomic`) and later ones are ignored, since a second
    stop must not cut short the cleanup of the first; between tasks, a stop ends the process
    at once and without a word (raised there, it prints a traceback from the pool's loop).

    Also hears Ctrl-C again, which `spawning` blocked for the process's start."""

    def handle(signum: int, frame: object) -> None:
        if not _working:
            os._exit(128 + signum)
        for each in signums:
            signal.signal(each, signal.SIG_IGN)
        interrupt(KeyboardInterrupt())

    for signum in signums:
        signal.signal(signum, handle)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


@contextmanager
def spawning() -> Iterator[None]:
    """A block that starts worker processes. A stop waits until it ends: cut short while a
    child reads how to start, the child prints a traceback. And the children start with Ctrl-C
    blocked (a blocked signal stays blocked across exec) until `stop_worker_on` hears it:
    Ctrl-C reaches a terminal's whole process group, and a child still importing would print
    a traceback; the parent stops them all instead."""
    blocks = hasattr(signal, "pthread_sigmask")
    if blocks:
        # multiprocessing's resource tracker starts with the first child, and unblocks
        # Ctrl-C in this thread when it has: started first, it leaves our block alone.
        resource_tracker.ensure_running()
    with atomic():
        if blocks:  # only this thread's mask, the one the children inherit
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            yield
        finally:
            if blocks:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


@contextmanager
def terminate_as_interrupt() -> Iterator[list[int]]:
    """In the block, SIGTERM raises `Terminated` and Ctrl-C KeyboardInterrupt in the main
    thread, both respecting `atomic`; outside it, as before.

    Yields a list that receives each signal caught: what finally reaches the caller may be
    another exception raised while unwinding (Ray's, say), and the exit code still says
    which signal stopped it."""
    caught: list[int] = []

    def handle(signum: int, frame: object) -> None:
        caught.append(signum)
        interrupt(Terminated() if signum == signal.SIGTERM else KeyboardInterrupt())

    previous = {s: signal.signal(s, handle) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield caught
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def end_at_once_on_stop(say: Callable[[str], None]) -> None:
    """The command's work is done: from now on Ctrl-C or SIGTERM ends the process at once,
    saying "interrupted" (exit 128 + the signal). Left to Python, a stop while the process
    winds down dies of the signal without a word, or prints a traceback from inside a garbage
    collector's callback."""

    def handle(signum: int, frame: object) -> None:
        say("interrupted")
        _flush()
        os._exit(128 + signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handle)


def ignore_stops() -> None:
    """Ignore Ctrl-C and SIGTERM from now on. For the last moments of the process: Python's
    teardown puts the handlers back to the system's defaults before it frees its modules, and
    a stop then kills the process without a word (exit -2); ignored, the process ends as it
    was ending, with its own exit code."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):  # a closed pipe or stream: nothing more to say
            stream.flush()
