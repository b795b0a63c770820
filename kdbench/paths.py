"""Where kdbench keeps data and caches, overridable by environment."""

from __future__ import annotations

import os
from pathlib import Path


def _home_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kdbench"


def data_dir(configured: str | None = None) -> Path:
    """The data directory: the given one, else $KDBENCH_DATA, else ~/.cache/kdbench/data."""
    return Path(configured or os.environ.get("KDBENCH_DATA") or _home_cache() / "data")


def cache_dir() -> Path:
    """Trained teachers live here: $KDBENCH_CACHE, else ~/.cache/kdbench/cache."""
    return Path(os.environ.get("KDBENCH_CACHE") or _home_cache() / "cache")
