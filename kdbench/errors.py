"""Errors a user can fix. The CLI prints each as one line and exits with code 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class KdbenchError(Exception):
    """A problem with the user's input or environment, not a bug in kdbench."""

    exit_code = 2


class ConfigError(KdbenchError):
    """A config value is malformed or not allowed; names the file and the key path."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None):
        self.message, self.file, self.key = message, file, key
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ": ".join(part for part in (self.file, self.key) if part)
        return f"{where}: {self.message}" if where else self.message


class DataError(KdbenchError):
    """A data set is missing, incomplete or corrupt."""


class PluginError(KdbenchError):
    """A plugin is unknown or misbehaves."""


class TrackingError(KdbenchError):
    """The MLflow tracking store cannot be used."""


class OptionError(ValueError):
    """Raised by a plugin's `check` for one of its options; the harness adds the file and table."""

    def __init__(self, key: str, message: str):
        self.key, self.message = key, message
        super().__init__(f"{key}: {message}")


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name if it has none)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def did_you_mean(name: str, allowed: Iterable[str]) -> str:
    """' (did you mean 'x'?)' when a close match exists, else ''."""
    match = difflib.get_close_matches(name, list(allowed), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


def one_of(allowed: Iterable[str]) -> str:
    """The allowed names, sorted, for a message."""
    return ", ".join(sorted(allowed)) or "(none)"
