"""The base of every plugin component, and the seed bound all kinds share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from kdbench.options import check_limits


def _inherited(cls: type, method: str) -> bool:
    """True if `cls` takes `method` unchanged from the base class of its kind."""
    base = next(b for b in reversed(cls.__mro__) if b.__dict__.get("kind") == cls.kind)
    return getattr(cls, method) is getattr(base, method)


@dataclass(kw_only=True)
class Component:
    """Base of every plugin component."""

    kind: ClassVar[str] = "component"
    name: ClassVar[str]
    required: ClassVar[tuple[str, ...]] = ()
    """The methods a plugin's class must implement (its kind's base only declares them)."""
    title: ClassVar[str | None] = None
    """How reports name an instance: a format string over its options and `{instance}`
    (e.g. "Quantum, {qubits} qubit"; a data set's may also use `{input_shape}`, e.g.
    "Digits {input_shape}"); None: the instance name."""

    def __post_init__(self) -> None:
        # Bounds and choices hold however the component was made: from a config (where
        # `options.build` has checked them already, naming the file) or in code.
        check_limits(self)

    def check(self) -> None:
        """Reject option values that are valid one by one but not together (raise OptionError)."""

    @classmethod
    def definition_problem(cls) -> str | None:
        """What makes this class unusable as its kind (a required method it does not
        implement), or None; checked when it is registered, so that an author learns it from
        `kdbench plugins`, not from the first cell that calls the method."""
        missing = [m for m in cls.required if _inherited(cls, m)]
        if missing:
            return f"does not implement {', '.join(missing)} (required of a {cls.kind})"
        return None

    @classmethod
    def summary(cls) -> str:
        """The first line of the class docstring."""
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""


MAX_SEED = 2**32 - 1
"""The largest seed kdbench accepts: what numpy's `np.random.seed` takes (torch takes up to
2**64 - 1), so that a seed works with whatever generator a plugin seeds with it."""
