"""A teacher's training recipe: bfloat16 autocast and the one-cycle schedule, recorded only
when set (so the cells and teachers of configs written before them keep their ids)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kdbench.config import load_spec
from kdbench.matrix import expand
from kdbench.paths import data_dir
from kdbench.plugins import registry as process_registry
from kdbench.teachers import cache_key, forget_prepared, prepare_teacher
from tests.helpers import TINY


def prepared(write_config, registry, tmp_path, **recipe):
    # Batches of 16: a one-cycle over the 3 batches of the default 64 would barely move.
    options = "batch_size = 16\n" + "".join(f'{k} = "{v}"\n' for k, v in recipe.items())
    text = TINY.format(name="r").replace("[teachers.lenet]\n", f"[teachers.lenet]\n{options}")
    spec = load_spec(write_config(text), registry)
    teacher, dataset = spec.instance("teachers", "lenet"), spec.instance("datasets", "mnist-0-2")
    epochs = []
    result = prepare_teacher(
        teacher,
        dataset,
        data_dir(),
        0,
        tmp_path / "cache",
        members=lambda n: spec.instance("teachers", n),
        on_epoch=epochs.append,
    )
    return spec, teacher, dataset, result, epochs


def test_defaults_are_not_recorded_and_ids_do_not_move(write_config, registry):
    spec = load_spec(write_config(TINY.format(name="r")), registry)
    teacher, dataset = spec.instance("teachers", "lenet"), spec.instance("datasets", "mnist-0-2")
    assert "precision" not in teacher.resolved() and "schedule" not in teacher.resolved()
    explicit = TINY.format(name="r").replace(
        "[teachers.lenet]\n", '[teachers.lenet]\nprecision = "float32"\nschedule = "constant"\n'
    )
    # Spelled out at their defaults, the options change nothing: same cells, same teacher.
    again = load_spec(write_config(explicit), registry)
    assert {c.id for c in expand(again)} == {c.id for c in expand(spec)}
    assert cache_key(again.instance("teachers", "lenet"), dataset, 0) == cache_key(
        teacher, dataset, 0
    )


@pytest.mark.parametrize("recipe", [{"precision": "bfloat16"}, {"schedule": "one-cycle"}])
def test_a_recipe_option_is_recorded_and_changes_the_training(
    write_config, registry, tmp_path, recipe
):
    plain_spec, _, _, plain, _ = prepared(write_config, registry, tmp_path / "a")
    spec, teacher, _, changed, epochs = prepared(write_config, registry, tmp_path / "b", **recipe)
    ((key, value),) = recipe.items()
    assert teacher.resolved()[key] == value
    assert changed.cache_key != plain.cache_key and changed.source == "trained"
    taught = [c.id for c in expand(spec) if c.teacher is not None]
    assert not set(taught) & {c.id for c in expand(plain_spec)}
    weights = [p for p in changed.network.parameters()]
    assert all(p.dtype == torch.float32 for p in weights), "weights stay float32"
    assert any(
        not torch.equal(a, b) for a, b in zip(weights, plain.network.parameters(), strict=True)
    ), f"{recipe} left the training unchanged"
    assert len(epochs) == 1 and changed.test_accuracy > 0.6  # it still learns the 3 digits


def test_one_cycle_warms_up_and_anneals():
    """The learning rate as the optimizer sees it, batch by batch."""
    from kdbench.distill import Split, fit

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    rates = []
    optimizer_step = torch.optim.Adam.step

    def recording_step(self, *args, **kwargs):
        rates.append(self.param_groups[0]["lr"])
        return optimizer_step(self, *args, **kwargs)

    x, y = torch.randn(64, 4), torch.arange(64) % 3
    torch.optim.Adam.step = recording_step
    try:
        fit(
            model,
            lambda m, v: torch.log_softmax(m(v), 1),
            Split(x, y),
            Split(x, y),
            num_classes=3,
            epochs=2,
            batch_size=8,
            lr=0.01,
            seed=0,
            schedule="one-cycle",
        )
    finally:
        torch.optim.Adam.step = optimizer_step
    assert len(rates) == 16
    peak = rates.index(max(rates))
    assert rates[0] < 0.01 / 10 and max(rates) == pytest.approx(0.01) and 2 <= peak <= 5
    assert rates[-1] < 0.01 / 100 and rates[peak:] == sorted(rates[peak:], reverse=True)


# Three epochs (tests/run/test_distill.py resumes a network with dropout; LeNet has none).
KILLABLE = '[teachers.lenet]\nbatch_size = 16\nepochs = 3\nschedule = "one-cycle"\n'

KILLED_AT_EPOCH_2 = """
import os, signal, sys
from pathlib import Path
from tests.plugins.test_teacher_recipe import prepare

def kill_at_2(metrics):
    if metrics.epoch == 2:
        os.kill(os.getpid(), signal.SIGKILL)

prepare(Path(sys.argv[1]), Path(sys.argv[2]), kill_at_2)
"""


def prepare(config: Path, cache: Path, on_epoch=None):
    spec = load_spec(str(config), process_registry())
    return prepare_teacher(
        spec.instance("teachers", "lenet"),
        spec.instance("datasets", "mnist-0-2"),
        data_dir(),
        0,
        cache,
        members=lambda n: spec.instance("teachers", n),
        on_epoch=on_epoch,
    )


def test_a_teacher_killed_mid_training_goes_on_from_its_last_epoch(write_config, tmp_path):
    """A real SIGKILL after epoch 2 of 3: the next preparation trains epoch 3 alone and ends
    with the weights of a training never stopped (one-cycle schedule, batch order and all)."""
    config = write_config(TINY.format(name="r").replace("[teachers.lenet]\nepochs = 1\n", KILLABLE))
    whole = prepare(config, tmp_path / "whole")
    forget_prepared()
    cache = tmp_path / "killed"
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_AT_EPOCH_2, str(config), str(cache)],
        check=False,
        cwd=Path(__file__).parents[2],
    )
    assert killed.returncode == -signal.SIGKILL
    assert not list((cache / "teachers").glob("*[0-9a-f].pt"))  # no trained teacher yet
    (snapshot,) = (cache / "teachers").glob("*.snapshot.pt")
    epochs = []
    resumed = prepare(config, cache, epochs.append)
    assert resumed.source == "trained" and not snapshot.exists()
    assert [m.epoch for m in epochs] == [1, 2, 3]  # 1-2 replayed from the snapshot
    for a, b in zip(
        resumed.network.state_dict().values(), whole.network.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
