"""The fake IBM devices of `qiskit_ibm_runtime.fake_provider`, found by a forgiving name."""

from __future__ import annotations

import difflib
import re

from kdbench.errors import OptionError


def _key(name: str) -> str:
    """'FakeManilaV2', 'fake_manila' and 'fake-manila' all become 'fakemanila'."""
    key = re.sub(r"[\s_\-]", "", name.lower())
    return key[:-2] if key.endswith("v2") else key


def is_fake_name(name: str) -> bool:
    """Whether `name` means a fake device (starts with 'fake', any case and separators)."""
    return _key(name).startswith("fake")


def fake_backends() -> dict[str, type]:
    """The fake devices of `qiskit_ibm_runtime.fake_provider`, by class name."""
    from qiskit_ibm_runtime import fake_provider
    from qiskit_ibm_runtime.fake_provider.fake_backend import FakeBackendV2

    found = {}
    for name in dir(fake_provider):
        cls = getattr(fake_provider, name)
        if name.startswith("Fake") and isinstance(cls, type) and issubclass(cls, FakeBackendV2):
            found[name] = cls
    return found


def fake_backend(name: str, key: str) -> type:
    """The fake device class named `name` (class name or short name, any case).

    Raise OptionError on option `key`, with close matches and how to list them all.
    """
    classes = fake_backends()
    by_key = {_key(class_name): class_name for class_name in classes}
    if _key(name) in by_key:
        return classes[by_key[_key(name)]]
    close = difflib.get_close_matches(_key(name), list(by_key), n=1, cutoff=0.6)
    hint = f" (did you mean '{by_key[close[0]]}'?)" if close else ""
    examples = ", ".join(n for n in ("FakeManilaV2", "FakeLimaV2", "FakeBrisbane") if n in classes)
    raise OptionError(
        key,
        f"unknown fake backend '{name}'{hint}; allowed: {examples} or another of the "
        f"{len(classes)} Fake* classes of qiskit_ibm_runtime.fake_provider (class name, or "
        "short name such as 'fake_manila'; list them with "
        '`python -c "import qiskit_ibm_runtime.fake_provider as f; print(dir(f))"`)',
    )
