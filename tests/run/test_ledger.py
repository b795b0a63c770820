"""An invocation's ledger: a resume through a tracking server reads what each invocation
finished from it, not every cell run, and a ledger that says too little or too much about a
cell never runs it twice nor calls it done when it is not."""

from __future__ import annotations

import json
from dataclasses import asdict, fields

import pytest
from mlflow.tracking import MlflowClient

from kdbench.config import load_spec
from kdbench.ledger import LEDGER_FILE, LEDGER_TAG, LEDGER_VERSION, finished_results
from kdbench.results import Result
from kdbench.run import Events
from kdbench.tracking import ROLE_TAG, Tracker
from tests.helpers import TINY, run_here

CONFIG = TINY.format(name="ledger").replace("seeds = [0]", "seeds = [0, 1, 2]")
CONFIG = CONFIG.replace('teachers = ["none", "lenet"]', 'teachers = ["none"]')


def run(config, registry, uri: str, tmp_path, rerun: bool = False) -> dict[str, int]:
    """`kdbench run` in this process against `uri`: how many cells ended how."""
    spec = load_spec(config, registry)
    outcomes = run_here(spec, registry, Tracker(uri, "ledger"), tmp_path / "cache", rerun=rerun)
    statuses = [o.status for o in outcomes]
    return {status: statuses.count(status) for status in set(statuses)}


def invocations(client: MlflowClient, experiment: str) -> list:
    """The experiment's invocation runs, oldest first."""
    return client.search_runs(
        [experiment], f"tags.`{ROLE_TAG}` = 'invocation'", order_by=["attributes.start_time ASC"]
    )


def read_ledger(client: MlflowClient, run_id: str, folder) -> dict:
    return json.loads(open(client.download_artifacts(run_id, LEDGER_FILE, str(folder))).read())


def finished_runs(client: MlflowClient, experiment: str) -> list:
    return client.search_runs(
        [experiment], f"tags.`{ROLE_TAG}` = 'cell' and attributes.status = 'FINISHED'"
    )


# The fields of Result (name: type) each ledger version stores: a change to Result fails the
# test below until LEDGER_VERSION is raised and its fields are added here, so that no resume
# reads an older kdbench's ledger as today's Result.
LEDGER_FIELDS = {
    1: [
        "dataset: str",
        "teacher: str",
        "student: str",
        "backend: str",
        "distiller: str",
        "seed: int",
        "test_accuracy: float",
        "teacher_test_accuracy: float | None",
        "val_accuracy: float | None",
        "sweep: Mapping[str, Any]",
        "params: Mapping[str, str]",
        "run_id: str | None",
        "cell_id: str | None",
        "collapsed: bool | None",
        "also: Mapping[str, float]",
        "also_loss: Mapping[str, float]",
    ],
}


def test_the_ledger_version_names_the_fields_of_result():
    assert [f"{f.name}: {f.type}" for f in fields(Result)] == LEDGER_FIELDS[LEDGER_VERSION]


@pytest.mark.slow
def test_a_resume_through_a_server_reads_the_ledgers_and_trusts_only_what_holds(
    server, write_config, registry, tmp_path
):
    config = write_config(CONFIG)
    assert run(config, registry, server, tmp_path) == {"FINISHED": 3}
    client = MlflowClient(tracking_uri=server)
    experiment = client.get_experiment_by_name("ledger").experiment_id
    first = invocations(client, experiment)[0]
    assert first.data.tags[LEDGER_TAG] == "3"
    ledger = read_ledger(client, first.info.run_id, tmp_path)
    runs = finished_runs(client, experiment)
    assert {cell["run_id"] for cell in ledger["cells"]} == {r.info.run_id for r in runs}

    # The ledger's results are the runs' own; their params are the cell's config as the
    # runner had it (the run's params add the versions of kdbench and its plugins).
    tracker = Tracker(server, "ledger")
    found = finished_results(tracker)
    for run_ in runs:
        theirs = asdict(Result.from_run(run_))
        mine = asdict(found[theirs["cell_id"]])
        assert mine["run_id"] == run_.info.run_id
        assert mine["params"].items() <= theirs.pop("params").items()
        assert {**mine, "params": None} == {**theirs, "params": None}

    assert run(config, registry, server, tmp_path) == {"SKIPPED": 3}
    assert invocations(client, experiment)[-1].data.tags[LEDGER_TAG] == "0"

    # A run deleted since its invocation's ledger was written: its cell is not done.
    deleted = runs[0]
    client.delete_run(deleted.info.run_id)
    assert set(finished_results(tracker)) == {Result.from_run(r).cell_id for r in runs[1:]}
    assert run(config, registry, server, tmp_path) == {"FINISHED": 1, "SKIPPED": 2}

    # An invocation without a ledger (killed outright, an older kdbench's): its runs are read.
    for invocation in invocations(client, experiment):
        client.delete_tag(invocation.info.run_id, LEDGER_TAG)
    assert set(finished_results(tracker)) == {r.data.tags["kdbench.cell_id"] for r in runs}

    # A ledger that lists too little: the cells it misses are claimed, found done, not rerun.
    for invocation in invocations(client, experiment):
        tracker.log_files(invocation.info.run_id, [(LEDGER_FILE, b'{"version": 1, "cells": []}')])
        tracker.set_tags(invocation.info.run_id, {LEDGER_TAG: "0"})
    assert finished_results(tracker) == {}
    assert run(config, registry, server, tmp_path) == {"SKIPPED": 3}
    assert len(finished_runs(client, experiment)) == 3

    # A ledger its tag disagrees with (half written?) is not read: its invocation's runs are.
    tracker.set_tags(first.info.run_id, {LEDGER_TAG: "3"})
    assert set(finished_results(tracker)) == {Result.from_run(r).cell_id for r in runs[1:]}

    # --rerun: every cell again, and the newest runs are the ones a resume finds.
    assert run(config, registry, server, tmp_path, rerun=True) == {"FINISHED": 3}
    newest = invocations(client, experiment)[-1]
    children = client.search_runs(
        [experiment], f"tags.`mlflow.parentRunId` = '{newest.info.run_id}'"
    )
    assert {r.run_id for r in finished_results(tracker).values()} == {
        r.info.run_id for r in children
    }


@pytest.mark.slow
def test_a_stopped_invocation_leaves_a_ledger_of_what_it_finished(write_config, registry, tmp_path):
    """Stopped as its second cell ends, an invocation's ledger lists the first cell: what
    it knew finished (a cell it misses costs a resume a claim, never a second run)."""
    config = write_config(CONFIG)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = load_spec(config, registry)

    class StopAtTheSecond(Events):
        ended = 0

        def done(self, outcome) -> None:
            self.ended += 1
            if self.ended == 2:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_here(spec, registry, Tracker(uri, "ledger"), tmp_path / "cache", StopAtTheSecond())
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("ledger").experiment_id
    (invocation,) = invocations(client, experiment)
    assert invocation.info.status == "KILLED"
    assert invocation.data.tags[LEDGER_TAG] == "1"
    ledger = read_ledger(client, invocation.info.run_id, tmp_path)
    # The second cell's run finished, but the stop came before its outcome was counted.
    finished = {run.info.run_id for run in finished_runs(client, experiment)}
    assert len(finished) == 2
    assert {cell["run_id"] for cell in ledger["cells"]} < finished
