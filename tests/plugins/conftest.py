"""Fixtures of the plugin tests: small synthetic MNIST files."""

from __future__ import annotations

import pytest

from kdbench_plugins.datasets import Mnist
from tests.helpers import write_fake


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """Small synthetic MNIST files (helpers.write_fake) under tmp_path/data: (root, arrays)."""
    root = tmp_path / "data"
    return root, write_fake(root, Mnist, monkeypatch)
