"""SIGTERM handled like Ctrl-C, so that a run stopped either way stops its workers and marks
what was running KILLED before it exits."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: unwinds like Ctrl-C."""


@contextmanager
def terminate_as_interrupt() -> Iterator[list[int]]:
    """In the block, SIGTERM raises `Terminated` in the main thread (outside it, as before).

    Yields a list that receives each signal caught: what finally reaches the caller may be
    another exception raised while unwinding (Ray's, say), and the exit code still says
    SIGTERM."""
    caught: list[int] = []

    def interrupt(signum: int, frame: object) -> None:
        caught.append(signum)
        raise Terminated

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield caught
    finally:
        signal.signal(signal.SIGTERM, previous)
