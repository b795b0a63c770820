"""Old module paths kept working: their names now come from `kdbench`, with a warning."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any


def moved_to_sdk(module: str) -> Callable[[str], Any]:
    """A module `__getattr__` for the deprecated `module`: any public name of the SDK."""

    def __getattr__(name: str) -> Any:
        import kdbench

        if name not in kdbench.__all__:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        warnings.warn(
            f"{module} is deprecated: import {name} from kdbench", DeprecationWarning, stacklevel=2
        )
        return getattr(kdbench, name)

    return __getattr__
