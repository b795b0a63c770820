"""This machine's memory, for refusing up front what cannot fit in it."""

from __future__ import annotations

import os
from contextlib import suppress
from pathlib import Path

from kdbench.errors import KdbenchError


def memory_limit() -> int | None:
    """The memory a run may use here, in bytes: the machine's physical memory (os.sysconf),
    or the process's cgroup limit where smaller (a container, a batch job); None where
    neither is known. Total, not free memory: a config is refused when it cannot run on this
    machine at all, whatever else runs now."""
    limits = []
    with suppress(AttributeError, ValueError, OSError):  # not POSIX
        limits.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    for cgroup in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(cgroup).read_text().strip()
        except OSError:
            continue
        if text.isdigit():  # v2 says "max" for no limit
            limits.append(int(text))
    return min(limits, default=None)


def check_memory(needed: int, what: str, remedy: str) -> None:
    """Raise KdbenchError if `needed` bytes (for `what`) exceed `memory_limit()`."""
    limit = memory_limit()
    if limit is not None and needed > limit:
        raise KdbenchError(
            f"{what} needs about {size_text(needed)}, more than the {size_text(limit)} of "
            f"memory of this machine; {remedy}"
        )


def size_text(count: int) -> str:
    """Bytes for people: '8.0 GiB'."""
    size, unit = float(count), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if size < 1024 or unit == "EiB":
            break
        size /= 1024
    return f"{size:.1f} {unit}" if unit != "B" else f"{count} B"
