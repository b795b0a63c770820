"""Matrix expansion and stable cell ids."""

from __future__ import annotations

from kdbench.config import load_spec
from kdbench.matrix import expand
from tests.helpers import TINY

VALID = TINY.format(name="m")


def test_cross_product_with_seeds_and_none(write_config, registry):
    text = VALID.replace("seeds = [0]", "seeds = [0, 1, 2]")
    cells = expand(load_spec(write_config(text), registry))
    assert len(cells) == 2 * 3
    assert {c.teacher_name for c in cells} == {"none", "lenet"}
    assert [c.seed for c in cells[:3]] == [0, 1, 2]
    assert all(c.teacher is None for c in cells if c.teacher_name == "none")


def test_ids_are_stable_and_follow_the_resolved_config(write_config, registry):
    first = [c.id for c in expand(load_spec(write_config(VALID), registry))]
    again = [c.id for c in expand(load_spec(write_config(VALID, "b.toml"), registry))]
    assert first == again and len(set(first)) == len(first)
    # Renaming an instance keeps the ids; changing an option changes them.
    renamed = VALID.replace("q2", "two-qubits")
    assert [c.id for c in expand(load_spec(write_config(renamed, "c.toml"), registry))] == first
    changed = VALID.replace("qubits = 2", "qubits = 2\nlayers = 2")
    assert not set(first) & {
        c.id for c in expand(load_spec(write_config(changed, "d.toml"), registry))
    }


def test_duplicate_cells_run_once(write_config, registry):
    text = VALID + '\n[[matrix]]\ndatasets = ["mnist-0-2"]\nstudents = ["q2"]\n'
    cells = expand(load_spec(write_config(text), registry))
    assert len(cells) == 2  # the second entry repeats the "none" cell


def test_dry_run_prints_the_table(write_config, invoke, isolated):
    result = invoke("run", str(write_config(VALID)), "--dry-run")
    assert result.exit_code == 0
    assert "2 cells" in result.stdout and "lenet" in result.stdout
    assert not (isolated / "mlflow.db").exists()
