"""Plain helpers that several test modules share; their fixtures are in conftest.py.

A test module imports what it needs from here (or takes a fixture), never from another test
module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

import kdbench
from tests.conftest import TINY

# The repository's root: tests/ is one level down, wherever a test module sits below it.
ROOT = Path(__file__).resolve().parent.parent

# The real MNIST's images per class (the training and the test files).
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]

# -- bad input through the CLI -------------------------------------------------------------------

# The valid config that the bad-input cases change, one thing at a time.
VALID = TINY.format(name="bad-input")


def replace(old: str, new: str, text: str = VALID) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def after(anchor: str, lines: str) -> str:
    """VALID with `lines` added after the line `anchor`."""
    return replace(anchor, f"{anchor}\n{lines}")


def with_matrix(matrix: str, extra: str = "") -> str:
    """VALID with its [[matrix]] replaced by `matrix` (and `extra` tables before it)."""
    return VALID.split("[[matrix]]")[0] + extra + "\n" + matrix


def assert_clean_failure(result, message: str, cwd: Path) -> None:
    """Exit 2, exactly one line on stderr, "Error: ...message...", nothing written."""
    everything = result.stdout + result.stderr
    assert result.exit_code == 2, everything[-2000:]
    assert "Traceback" not in everything
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), lines[0]
    assert message in lines[0], lines[0]
    assert not (cwd / "mlflow.db").exists(), "nothing may be logged"
    assert not (cwd / "mlruns").exists(), "nothing may be logged"
    cache = cwd / "cache"
    assert not cache.exists() or not any(cache.rglob("*")), "nothing may be cached"


def dry_run(invoke, write_config, text: str, *args: str):
    return invoke("run", str(write_config(text)), "--dry-run", *args)


# -- a third-party data set ----------------------------------------------------------------------


@dataclass(kw_only=True)
class Flat(kdbench.Dataset):
    """Images whose pixels all hold `level`: 20 training and 10 test images, two classes."""

    name: ClassVar[str] = "flat"
    class_names: ClassVar[tuple[str, ...]] = ("even", "odd")
    image_shape: ClassVar[tuple[int, int, int]] = (1, 4, 4)
    loads: ClassVar[list[tuple[int, str]]] = []

    level: int = kdbench.option(1, help="every pixel's value", minimum=0, maximum=255)

    def load(self, root: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        Flat.loads.append((self.level, split))
        n = 20 if split == "train" else 10
        return torch.full((n, 4, 4), self.level, dtype=torch.uint8), torch.arange(n) % 2
