"""Failures, interruptions and resuming: finished cells are never lost nor run twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import types
from dataclasses import dataclass
from typing import ClassVar

import torch
from mlflow.tracking import MlflowClient

import kdbench
from kdbench.config import load_spec
from kdbench.matrix import expand
from kdbench.paths import data_dir
from kdbench.plugins import load_registry
from kdbench.run import Events, run_matrix, teachers_first
from kdbench.teachers import checkpoint_path, networks_to_train
from kdbench.tracking import Tracker
from kdbench_plugins.ibm_runtime import IbmRuntime
from tests.helpers import TINY, run_here, statuses


def test_second_run_skips_finished_cells_and_reruns_changed_ones(write_config, invoke, isolated):
    config = write_config(TINY.format(name="resume"))
    first = invoke("run", str(config))
    assert first.exit_code == 0, first.output
    again = invoke("run", str(config))
    assert again.exit_code == 0
    assert "0 cells finished, 2 already done, 0 failed" in again.stdout
    # One line for the cells found done, not one each: a resumed sweep may find thousands.
    assert "2 cells already in MLflow" in again.stderr and "done " not in again.stderr
    changed = invoke("run", str(config), "--set", "train.epochs=1")
    assert "2 cells finished, 0 already done" in changed.stdout
    forced = invoke("run", str(config), "--rerun")
    assert "2 cells finished, 0 already done" in forced.stdout
    cells = [s for s in statuses(f"sqlite:///{isolated}/mlflow.db", "resume") if s[0] == "cell"]
    assert cells == [("cell", "FINISHED")] * 6


@dataclass(kw_only=True)
class Exploding(kdbench.Student):
    """A student whose output is NaN: its loss cannot be finite."""

    name: ClassVar[str] = "exploding"

    def build(self, context):
        class Module(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.bias = torch.nn.Parameter(torch.zeros(context.num_classes))

            def forward(self, images):
                return torch.softmax(self.bias, 0).expand(len(images), -1) * float("nan")

        return Module()


def exploding_registry():
    module = types.ModuleType("exploding_plugin")
    module.register_students = kdbench.hookimpl(lambda register: register(Exploding))
    return load_registry(extra=[("exploding", module)])


def test_a_failing_cell_is_marked_failed_and_the_others_go_on(write_config, isolated):
    text = TINY.format(name="fail").replace('students = ["q2"]', 'students = ["exploding", "q2"]')
    registry = exploding_registry()
    spec = load_spec(write_config(text), registry)
    cells = expand(spec)
    assert [c.student.name for c in cells] == ["exploding", "q2", "exploding", "q2"]
    uri = f"sqlite:///{isolated}/mlflow.db"
    tracker = Tracker(uri, "fail")
    outcomes = run_here(spec, registry, tracker, isolated / "cache")
    assert [o.status for o in outcomes] == ["FAILED", "FINISHED", "FAILED", "FINISHED"]
    assert "training loss became nan in epoch 1" in outcomes[0].error
    run = tracker.client.get_run(outcomes[0].run_id)
    assert run.info.status == "FAILED" and "nan" in run.data.tags["kdbench.error"]
    assert "traceback.txt" in {a.path for a in tracker.client.list_artifacts(outcomes[0].run_id)}
    # What the failed cell's training had learnt is kept: where its teacher came from.
    taught = tracker.client.get_run(outcomes[2].run_id).data.tags
    assert (
        taught["kdbench.teacher_source"] in ("trained", "cache")
        and "nan" in taught["kdbench.error"]
    )
    assert ("invocation", "FAILED") in statuses(uri, "fail")

    stopped = run_matrix(
        spec,
        cells,
        registry=registry,
        tracker=tracker,
        data_root=data_dir(),
        cache=isolated / "cache",
        events=Events(),
        fail_fast=True,
        rerun=True,
    )
    assert [o.status for o in stopped] == ["FAILED"], "fail-fast stops at the first failure"


def test_a_killed_run_leaves_nothing_running_and_resumes(write_config, isolated):
    text = TINY.format(name="killed").replace("seeds = [0]", "seeds = [0, 1, 2]")
    config = write_config(text.replace("epochs = 2", "epochs = 12"))
    uri = f"sqlite:///{isolated}/mlflow.db"
    env = {**os.environ, "KDBENCH_CACHE": str(isolated / "cache")}
    process = subprocess.Popen(
        [sys.executable, "-m", "kdbench", "run", str(config)],
        cwd=isolated,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in process.stderr:  # kill it as soon as the first cell is finished
        if line.startswith("done "):
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    before = statuses(uri, "killed")
    finished = before.count(("cell", "FINISHED"))
    assert 1 <= finished < 6 and ("invocation", "RUNNING") in before

    result = subprocess.run(
        [sys.executable, "-m", "kdbench", "run", str(config)],
        cwd=isolated,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert f"{6 - finished} cells finished, {finished} already done, 0 failed" in result.stdout
    after = statuses(uri, "killed")
    assert not [s for s in after if s[1] == "RUNNING"], after
    assert after.count(("cell", "FINISHED")) == 6
    assert ("invocation", "KILLED") in after


def test_parallel_jobs_run_every_cell_once_under_one_parent(write_config, invoke, isolated):
    config = write_config(TINY.format(name="jobs").replace("seeds = [0]", "seeds = [0, 1]"))
    result = invoke("run", str(config), "--jobs", "2")
    assert result.exit_code == 0, result.output
    assert "4 cells finished, 0 already done, 0 failed" in result.stdout
    runs = statuses(f"sqlite:///{isolated}/mlflow.db", "jobs")
    assert runs == [("cell", "FINISHED")] * 4 + [("invocation", "FINISHED")]


def test_same_seed_same_machine_gives_identical_accuracies(write_config, invoke, isolated):
    config = write_config(TINY.format(name="repeat"))
    first = invoke("run", str(config))
    second = invoke("run", str(config), "--rerun")
    assert first.exit_code == second.exit_code == 0
    client = MlflowClient(tracking_uri=f"sqlite:///{isolated}/mlflow.db")
    experiment = client.get_experiment_by_name("repeat").experiment_id
    by_cell: dict[str, set[float]] = {}
    for run in client.search_runs([experiment], "tags.`kdbench.role` = 'cell'"):
        by_cell.setdefault(run.data.tags["kdbench.cell_id"], set()).add(
            run.data.metrics["test_accuracy"]
        )
    assert len(by_cell) == 2 and all(len(values) == 1 for values in by_cell.values())


def test_a_students_results_do_not_depend_on_the_cores_its_worker_got(
    write_config, invoke, isolated
):
    """Serial runs give the worker every core, --jobs N a share: the student trains with
    [train] threads (1) all the same, so a cell's losses are identical to the last digit."""
    text = TINY.format(name="threads").replace('front = "linear"', 'front = "cnn"')
    config = write_config(text)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        first = invoke("run", str(config))
        torch.set_num_threads(1)
        second = invoke("run", str(config), "--rerun")  # the teacher comes from the cache
    finally:
        torch.set_num_threads(before)
    assert first.exit_code == second.exit_code == 0, first.output + second.output
    client = MlflowClient(tracking_uri=f"sqlite:///{isolated}/mlflow.db")
    experiment = client.get_experiment_by_name("threads").experiment_id
    by_cell: dict[str, set[tuple[float, float]]] = {}
    for run in client.search_runs([experiment], "tags.`kdbench.role` = 'cell'"):
        metrics = run.data.metrics
        by_cell.setdefault(run.data.tags["kdbench.cell_id"], set()).add(
            (metrics["test_loss"], metrics["train_loss"])
        )
    assert len(by_cell) == 2 and all(len(values) == 1 for values in by_cell.values()), by_cell


def test_parallel_executors_start_each_untrained_teacher_first(write_config, registry, isolated):
    text = TINY.format(name="order").replace("seeds = [0]", "seeds = [0, 1]")
    text += """
[teachers.lenet-b]
plugin = "lenet"
epochs = 1
train_per_class = 40
seed = 0

[teachers.pair]
plugin = "ensemble"
members = ["lenet", "lenet-b"]

[[matrix]]
datasets = ["mnist-0-2"]
teachers = ["lenet-b", "pair"]
students = ["q2"]
backends = ["statevector"]
"""
    spec = load_spec(write_config(text), registry)
    cells = expand(spec)
    label = [(c.teacher.name if c.teacher else "none", c.seed) for c in cells]
    assert label == [
        ("none", 0),
        ("none", 1),
        ("lenet", 0),
        ("lenet", 1),
        ("lenet-b", 0),
        ("lenet-b", 1),
        ("pair", 0),
        ("pair", 1),
    ]
    cache = isolated / "cache"
    reordered = teachers_first(cells, spec, cache)
    # lenet trains per seed, lenet-b once (seed 0); the ensemble needs nothing new.
    first = [cells[i] for i in (2, 3, 4)]
    assert reordered == first + [c for c in cells if c not in first]
    for cell in first:
        for _, key in networks_to_train(
            cell.teacher, cell.dataset, cell.seed, lambda n: spec.instance("teachers", n)
        ):
            checkpoint_path(cache, key).parent.mkdir(parents=True, exist_ok=True)
            checkpoint_path(cache, key).touch()
    assert teachers_first(cells, spec, cache) == cells  # all trained: matrix order


@dataclass(kw_only=True)
class KeptRuntime(IbmRuntime):
    """The real ibm-runtime backend (local testing mode), keeping every circuit it compiled."""

    name: ClassVar[str] = "kept-runtime"
    compiled: ClassVar[list] = []

    def compile(self, circuit, inputs, weights, *, seed):
        self.compiled.append(super().compile(circuit, inputs, weights, seed=seed))
        return self.compiled[-1]


def test_each_cell_closes_its_hardware_batch_whether_it_finishes_or_fails(write_config, isolated):
    module = types.ModuleType("kept_runtime_plugin")
    module.register_backends = kdbench.hookimpl(lambda register: register(KeptRuntime))
    registry = load_registry(extra=[("kept-runtime", module)])
    text = TINY.format(name="close").replace(
        'backends = ["statevector"]', 'backends = ["batch", "capped"]'
    ) + textwrap.dedent("""
        [backends.batch]
        plugin = "kept-runtime"
        shots = 100

        [backends.capped]
        plugin = "kept-runtime"
        shots = 100
        max_circuits = 40
    """)
    text = text.replace('teachers = ["none", "lenet"]', 'teachers = ["none"]')
    text = text.replace("train_per_class = 12", "train_per_class = 4")
    spec = load_spec(write_config(text), registry)
    KeptRuntime.compiled.clear()
    outcomes = run_matrix(
        spec,
        expand(spec),
        registry=registry,
        tracker=Tracker(f"sqlite:///{isolated}/mlflow.db", "close"),
        data_root=data_dir(),
        cache=isolated / "cache",
        events=Events(),
    )
    assert [o.status for o in outcomes] == ["FINISHED", "FAILED"]
    assert "max_circuits" in outcomes[1].error
    assert len(KeptRuntime.compiled) == 2
    assert all(c.mode is not None and not c.mode._active for c in KeptRuntime.compiled)
