"""Runs at once and stopped runs: each cell is claimed before it runs, so two invocations on
one store never run it twice, and stopping a run (SIGTERM, its parent killed) stops its
workers and marks what was running KILLED, leaving no process behind."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from mlflow.tracking import MlflowClient

from kdbench.config import load_spec
from kdbench.matrix import expand
from kdbench.tracking import CELL_ID_TAG, HOST_TAG, PID_TAG, ROLE_TAG, Tracker
from tests.helpers import TINY, run_here, statuses


def slow_config(write_config, name: str, seeds: str = "[0, 1]", epochs: int = 3) -> Path:
    text = TINY.format(name=name).replace("seeds = [0]", f"seeds = {seeds}")
    return write_config(text.replace("epochs = 2", f"epochs = {epochs}"))


def kdbench_run(config: Path, cwd: Path, *args: str, group: bool = False) -> subprocess.Popen:
    """`kdbench run` in the background; with `group`, in a process group of its own, as a
    terminal's foreground job is (Ctrl-C reaches the whole group)."""
    env = {**os.environ, "KDBENCH_CACHE": str(cwd / "cache")}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen(
        [sys.executable, "-m", "kdbench", "run", str(config), *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=group,
    )


def cell_runs(uri: str, experiment: str) -> list:
    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    return client.search_runs(
        [found.experiment_id], f"tags.`{ROLE_TAG}` = 'cell'", max_results=1000
    )


def finished_per_cell(uri: str, experiment: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for run in cell_runs(uri, experiment):
        if run.info.status == "FINISHED":
            cell = run.data.tags[CELL_ID_TAG]
            counts[cell] = counts.get(cell, 0) + 1
    return counts


def summary(stdout: str) -> tuple[int, int]:
    """(finished, already done) from a run's last lines."""
    line = next(x for x in stdout.splitlines() if " cells finished, " in x)
    words = line.split()
    return int(words[0]), int(words[3])


def test_two_runs_at_once_run_each_cell_once(write_config, isolated):
    """A real race: two processes, one config, one SQLite store, started together."""
    config = slow_config(write_config, "race")
    runs = [kdbench_run(config, isolated) for _ in range(2)]
    outputs = [run.communicate(timeout=600) for run in runs]
    for run, (_, stderr) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, stderr[-2000:]
    uri = f"sqlite:///{isolated}/mlflow.db"
    assert finished_per_cell(uri, "race") == dict.fromkeys(finished_per_cell(uri, "race"), 1)
    assert len(finished_per_cell(uri, "race")) == 4
    assert statuses(uri, "race") == [("cell", "FINISHED")] * 4 + [("invocation", "FINISHED")] * 2
    done = [summary(stdout) for stdout, _ in outputs]
    assert sum(finished for finished, _ in done) == 4, "each cell ran in exactly one of them"
    assert all(finished + skipped == 4 for finished, skipped in done), (
        "each invocation reports every cell: run by it, or waited for and read back"
    )
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("race").experiment_id
    sources = [
        r.data.tags["kdbench.teacher_source"]
        for r in client.search_runs([experiment], "tags.`kdbench.teacher` = 'lenet'")
    ]
    assert sources == ["trained", "trained"], "each seed's teacher trained once"
    assert not list((isolated / "cache" / "teachers").glob("*.tmp"))


def test_two_reruns_at_once_run_each_cell_once_more(write_config, invoke, isolated):
    config = slow_config(write_config, "rerace", seeds="[0]")
    assert invoke("run", str(config)).exit_code == 0
    runs = [kdbench_run(config, isolated, "--rerun") for _ in range(2)]
    for run in runs:
        _, stderr = run.communicate(timeout=600)
        assert run.returncode == 0, stderr[-2000:]
    uri = f"sqlite:///{isolated}/mlflow.db"
    # A rerun started after the other finished a cell runs it again (that is --rerun); what
    # must never happen is both running one cell at the same time.
    spans: dict[str, list[tuple[int, int]]] = {}
    for run in cell_runs(uri, "rerace"):
        assert run.info.status == "FINISHED"
        spans.setdefault(run.data.tags[CELL_ID_TAG], []).append(
            (run.info.start_time, run.info.end_time)
        )
    assert len(spans) == 2
    for cell_spans in spans.values():
        assert 2 <= len(cell_spans) <= 3
        ordered = sorted(cell_spans)
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(ordered)), "never run at once"


def claim_of(tracker: Tracker, cell_id: str, pid: int, host: str | None = None) -> str:
    """A RUNNING cell run as another kdbench process (pid, host) would have left it."""
    tags = {ROLE_TAG: "cell", CELL_ID_TAG: cell_id}
    run_id = tracker.start_run("other", tags)
    tracker.client.set_tag(run_id, PID_TAG, str(pid))
    if host is not None:
        tracker.client.set_tag(run_id, HOST_TAG, host)
    return run_id


def test_a_live_claim_is_held_and_a_dead_one_released(isolated):
    tracker = Tracker(f"sqlite:///{isolated}/mlflow.db", "claims")
    parent = tracker.start_run("parent", {ROLE_TAG: "invocation"})
    live = claim_of(tracker, "live", os.getpid())
    held = tracker.claim("live", "mine", {ROLE_TAG: "cell", CELL_ID_TAG: "live"}, parent)
    assert (held.state, held.run_id) == ("held", live)

    sleeper = subprocess.Popen(["sleep", "0"])
    sleeper.wait()
    dead = claim_of(tracker, "dead", sleeper.pid)
    mine = tracker.claim("dead", "mine", {ROLE_TAG: "cell", CELL_ID_TAG: "dead"}, parent)
    assert mine.state == "ours" and mine.run_id != dead
    assert tracker.client.get_run(dead).info.status == "KILLED"
    again = tracker.claim("dead", "mine", {ROLE_TAG: "cell", CELL_ID_TAG: "dead"}, parent)
    assert (again.state, again.run_id) == ("held", mine.run_id), "a claim is not taken twice"


def test_of_two_claims_across_hosts_the_older_keeps_the_cell(isolated):
    """The rule for stores the machine-wide lock does not cover (a server shared by hosts)."""
    tracker = Tracker(f"sqlite:///{isolated}/mlflow.db", "hosts")
    first = claim_of(tracker, "c", 1, host="elsewhere")
    time.sleep(0.01)
    second = tracker.client.get_run(claim_of(tracker, "c", os.getpid()))
    rival = tracker.holder("c", before=second)
    assert rival is not None and (rival.run_id, rival.state) == (first, "held")
    assert not rival.local and rival.owner == "elsewhere:1"
    assert tracker.holder("c", before=tracker.client.get_run(first)) is None


def test_a_run_waits_for_a_cell_another_run_holds_then_takes_it_over(
    write_config, registry, isolated
):
    """The holder's process lives a few seconds, then dies without finishing the cell: the
    waiting invocation runs the cell itself, once."""
    spec = load_spec(write_config(TINY.format(name="waits")), registry)
    cells = expand(spec)
    uri = f"sqlite:///{isolated}/mlflow.db"
    tracker = Tracker(uri, "waits")
    holder = subprocess.Popen(["sleep", "4"])
    threading.Thread(target=holder.wait).start()  # reaped when it ends: a zombie looks alive
    stolen = claim_of(tracker, cells[1].id, holder.pid)
    started = time.monotonic()
    outcomes = run_here(spec, registry, tracker, isolated / "cache")
    holder.wait()
    assert time.monotonic() - started >= 3, "it waited for the live holder"
    assert [o.status for o in outcomes] == ["FINISHED", "FINISHED"]
    assert tracker.client.get_run(stolen).info.status == "KILLED"
    assert sorted(finished_per_cell(uri, "waits").values()) == [1, 1]


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def wait_for_cells_running(process: subprocess.Popen, uri: str, experiment: str, n: int):
    """Wait until `n` cell runs are RUNNING in the store (the workers are busy)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read()[-2000:]
        try:
            running = [r for r in cell_runs(uri, experiment) if r.info.status == "RUNNING"]
        except Exception:  # the store is being created
            running = []
        if len(running) >= n:
            return
        time.sleep(0.5)
    raise AssertionError("the workers never started their cells")


def gone(processes: list[psutil.Process], timeout: float = 60) -> list[psutil.Process]:
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    return alive


def rerun_finishes_each_cell_once(
    config: Path, isolated: Path, experiment: str, cells: int, *args: str, timeout: float = 900
) -> None:
    """Run `config` again (with `args`): it succeeds, and each of its `cells` cells has
    exactly one FINISHED run in the store."""
    resumed = kdbench_run(config, isolated, *args)
    _, stderr = resumed.communicate(timeout=timeout)
    assert resumed.returncode == 0, stderr[-2000:]
    uri = f"sqlite:///{isolated}/mlflow.db"
    assert sorted(finished_per_cell(uri, experiment).values()) == [1] * cells


class Descendants:
    """Every process `pid` has started, collected until it exits (a worker spawned after a
    first look counts too)."""

    def __init__(self, process: subprocess.Popen):
        self.seen: dict[int, psutil.Process] = {}
        self.commands: dict[int, str] = {}  # their command lines, read while they ran
        self.process = process
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        while self.process.poll() is None:
            for child in descendants(self.process.pid):
                self.seen.setdefault(child.pid, child)
                with contextlib.suppress(psutil.Error):
                    self.commands.setdefault(child.pid, " ".join(child.cmdline()))
            time.sleep(0.05)

    def alive_after(self, seconds: float) -> list[psutil.Process]:
        return gone(list(self.seen.values()), timeout=seconds)


def test_a_finished_jobs_2_run_leaves_no_process_behind(write_config, isolated):
    # multiprocessing's resource tracker, left to itself, outlived the run by up to a second.
    config = slow_config(write_config, "done", seeds="[0, 1]", epochs=1)
    process = kdbench_run(config, isolated, "--jobs", "2", "--set", "train.stacked=off")
    watched = Descendants(process)
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-2000:]
    commands = watched.commands.values()
    assert any("resource_tracker" in c for c in commands) and len(watched.seen) >= 3, commands
    assert not watched.alive_after(0), "every process of the run ended with it"
    assert "leaked" not in stderr


def test_sigterm_of_a_jobs_2_run_stops_its_workers_and_marks_their_cells_killed(
    write_config, isolated
):
    # Cells of seconds (not one): both are seen RUNNING before the run can end.
    config = slow_config(write_config, "term", seeds="[0, 1]", epochs=200)
    uri = f"sqlite:///{isolated}/mlflow.db"
    process = kdbench_run(config, isolated, "--jobs", "2")
    watched = Descendants(process)
    wait_for_cells_running(process, uri, "term", 2)
    assert len(descendants(process.pid)) >= 2
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert "Traceback" not in stderr
    assert not watched.alive_after(3), "no process of the run outlives it by 3 s"
    after = cell_runs(uri, "term")
    assert not [r for r in after if r.info.status == "RUNNING"]
    assert len([r for r in after if r.info.status == "KILLED"]) >= 2
    assert ("invocation", "KILLED") in statuses(uri, "term")

    rerun_finishes_each_cell_once(config, isolated, "term", 4, "--set", "train.epochs=200")


@pytest.mark.parametrize("stop", ["SIGTERM to the run", "Ctrl-C to its group"])
def test_a_stop_while_the_workers_start_leaves_no_process_behind(write_config, isolated, stop):
    """The stop lands while the pool spawns its workers (they import torch for seconds):
    the workers being started are stopped too, not left to finish their start alone, and
    none prints a traceback (one cut off while it reads how to start would)."""
    config = slow_config(write_config, "early-stop", seeds="[0, 1]", epochs=40)
    process = kdbench_run(config, isolated, "--jobs", "2", "--set", "train.stacked=off", group=True)
    watched = Descendants(process)
    deadline = time.monotonic() + 120
    while not any("spawn_main" in " ".join(p.cmdline()) for p in descendants(process.pid)):
        assert process.poll() is None and time.monotonic() < deadline, "no worker started"
        time.sleep(0.02)
    signum = signal.SIGTERM if stop.startswith("SIGTERM") else signal.SIGINT
    if signum == signal.SIGTERM:
        process.send_signal(signum)
    else:
        os.killpg(process.pid, signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, stderr[-2000:]
    assert "Traceback" not in stderr
    assert not watched.alive_after(3), "no process of the run outlives it by 3 s"


def finished(uri: str, experiment: str) -> int:
    try:
        return sum(finished_per_cell(uri, experiment).values())
    except Exception:  # the store or the experiment is being created
        return 0


def test_sigint_as_the_last_cell_ends_says_so_or_lets_the_run_finish(write_config, isolated):
    """Ctrl-C just as the last cell's run is FINISHED, while the invocation winds up: either
    the run had finished (exit 0, its summary) or it says it was interrupted (exit 130)."""
    config = slow_config(write_config, "late-int", seeds="[0]", epochs=2)
    uri = f"sqlite:///{isolated}/mlflow.db"
    for attempt, delay in enumerate((0.0, 0.05, 0.15, 0.3)):
        process = kdbench_run(config, isolated, "--rerun")
        deadline = time.monotonic() + 300
        while finished(uri, "late-int") < 2 * (attempt + 1):
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(delay)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
        assert "Traceback" not in stderr and "Aborted" not in stderr, stderr[-2000:]
        if process.returncode == 0:
            assert " cells finished, " in stdout
        else:
            assert process.returncode == 128 + signal.SIGINT, stderr[-2000:]
            assert "interrupted" in stderr, stderr[-2000:]


def test_a_worker_killed_by_the_system_ends_the_run_in_one_line_and_a_rerun_resumes(
    write_config, isolated
):
    """A worker that dies without a word (the OOM killer's SIGKILL): the run says so in one
    line and exits 1, no cell stays RUNNING, no process is left; a rerun finishes each cell
    once."""
    config = slow_config(write_config, "oom", seeds="[0, 1]", epochs=200)
    uri = f"sqlite:///{isolated}/mlflow.db"
    process = kdbench_run(config, isolated, "--jobs", "2", "--set", "train.stacked=off")
    wait_for_cells_running(process, uri, "oom", 2)
    everything = descendants(process.pid)
    worker = next(p for p in everything if "spawn_main" in " ".join(p.cmdline()))
    worker.send_signal(signal.SIGKILL)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1, stderr[-2000:]
    assert "a worker process died while running" in stderr and "Traceback" not in stderr
    assert not gone(everything), "no process of the run survives it"
    assert not [r for r in cell_runs(uri, "oom") if r.info.status == "RUNNING"]

    rerun_finishes_each_cell_once(config, isolated, "oom", 4, "--set", "train.epochs=200")


def test_sigterm_of_a_serial_run_marks_its_cell_killed(write_config, isolated):
    config = slow_config(write_config, "serial-term", seeds="[0]", epochs=400)
    uri = f"sqlite:///{isolated}/mlflow.db"
    process = kdbench_run(config, isolated)
    wait_for_cells_running(process, uri, "serial-term", 1)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert "interrupted: finished cells are in MLflow; run again to resume" in stderr
    assert "Traceback" not in stderr
    assert [r.info.status for r in cell_runs(uri, "serial-term")] == ["KILLED"]
    assert ("invocation", "KILLED") in statuses(uri, "serial-term")


def test_sigterm_during_a_stacked_group_marks_every_seed_killed_and_resume_runs_them(
    write_config, isolated
):
    """Three seeds train as one stacked model: stopped mid-training, all three runs end
    KILLED (none FINISHED, none left RUNNING), and a rerun finishes every cell once."""
    config = slow_config(write_config, "stacked-term", seeds="[0, 1, 2]", epochs=150)
    uri = f"sqlite:///{isolated}/mlflow.db"
    process = kdbench_run(config, isolated)
    wait_for_cells_running(process, uri, "stacked-term", 3)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert "Traceback" not in stderr
    runs = cell_runs(uri, "stacked-term")
    assert [r.info.status for r in runs] == ["KILLED"] * 3
    assert {r.data.tags["kdbench.stacked"] for r in runs} == {"3"}

    # The same cells: the killed three run again.
    rerun_finishes_each_cell_once(config, isolated, "stacked-term", 6, timeout=600)
    killed = {r.data.tags["kdbench.cell_id"] for r in runs}
    assert killed <= set(finished_per_cell(uri, "stacked-term"))


def test_workers_whose_parent_is_killed_stop_and_mark_their_cells_killed(write_config, isolated):
    config = slow_config(write_config, "orphans", seeds="[0, 1]", epochs=40)
    uri = f"sqlite:///{isolated}/mlflow.db"
    process = kdbench_run(config, isolated, "--jobs", "2")
    wait_for_cells_running(process, uri, "orphans", 2)
    workers = descendants(process.pid)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert not gone(workers, timeout=60), "workers notice their parent died and exit"
    after = cell_runs(uri, "orphans")
    assert not [r for r in after if r.info.status == "RUNNING"], "each marked its cell KILLED"
    assert not [r for r in after if r.info.status == "FINISHED"], "and wrote no result after"


def test_a_worker_stopped_mid_claim_marks_the_run_it_was_claiming_killed(isolated):
    """A stop that lands between a cell's run being made and its claim returning: the cell's
    own cleanup never learns that run, so the stopped worker closes every RUNNING run it
    started (and only its own)."""
    tracker = Tracker(f"sqlite:///{isolated}/mlflow.db", "mid-claim")
    parent = tracker.start_run("mid-claim", {ROLE_TAG: "invocation"})
    claimed = tracker.claim("c0ffee", "a cell", {ROLE_TAG: "cell", CELL_ID_TAG: "c0ffee"}, parent)
    elsewhere = tracker.client.create_run(
        tracker.experiment_id, tags={HOST_TAG: "another-host", PID_TAG: str(os.getpid())}
    ).info.run_id
    tracker.finish(parent)
    tracker.close_own()
    status = {r.info.run_id: r.info.status for r in tracker.search("")}
    assert status[claimed.run_id] == "KILLED"
    assert status[elsewhere] == "RUNNING" and status[parent] == "FINISHED"


@pytest.mark.slow
def test_sigterm_of_a_ray_run_stops_its_tasks_and_its_local_ray(write_config, isolated):
    config = slow_config(write_config, "ray-term", seeds="[0, 1]", epochs=40)
    uri = f"sqlite:///{isolated}/mlflow.db"
    process = kdbench_run(config, isolated, "--executor", "ray")
    wait_for_cells_running(process, uri, "ray-term", 1)
    started = descendants(process.pid)  # the local Ray: its daemons and workers
    assert started
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=180)
    assert process.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert not gone(started, timeout=60), "no process of the run, Ray's included, survives"
    after = cell_runs(uri, "ray-term")
    assert not [r for r in after if r.info.status == "RUNNING"]
    assert [r for r in after if r.info.status == "KILLED"]
