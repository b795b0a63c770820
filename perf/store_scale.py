"""How kdbench's costs grow with the MLflow store: resume, one cell's claim, the report.

For each size N, a SQLite store holds N FINISHED cell runs of one config (a tiny MNIST
student, N seeds): the first 1,000 (or N) made through MLflow's API exactly as a cell logs
them (its tags, params and metrics), the rest copied from them in SQL with new run ids and
each cell's own id and seed (MLflow's API takes ~15 ms a run: 100,000 would take half an
hour), and their invocation's ledger, as kdbench writes it (kdbench/ledger.py). Then, on
that store and on an `mlflow server` serving it:

- resume: `kdbench run` on the config, every cell already done (wall time, a subprocess);
  on the server, also with no ledger (an older kdbench's store: every cell run is read);
- claim: `Tracker.claim` of a cell not in the store (median of 20; the runs are deleted);
- report: `kdbench report` on the config (wall time);
- on the server, the finished cells read in-process by `Tracker.cell_runs` as it does (16
  shards, SERVER_SEARCH_THREADS at a time) and one shard at a time, alternately, medians.

The server runs `--workers` processes (4, `mlflow server`'s default).

    .venv/bin/python perf/store_scale.py                      # 1,000 10,000 100,000; ~15 min
    .venv/bin/python perf/store_scale.py --sizes 1000 10000 --no-server

Prints a table and writes its sizes' rows into perf/results/store_scale.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import kdbench.tracking
from kdbench.config import load_spec
from kdbench.ledger import LEDGER_TAG, write_ledger
from kdbench.matrix import expand
from kdbench.plugins import registry
from kdbench.results import Result, cell_tags
from kdbench.run.cell import versions
from kdbench.tracking import CELL_ID_TAG, INVOCATIONS, ROLE_TAG, Tracker, flatten

ROOT = Path(__file__).resolve().parents[1]
KDBENCH = str(Path(sys.executable).with_name("kdbench"))
API_RUNS = 1000
CONFIG = """
[experiment]
name = "scale"
seeds = {seeds}

[train]
epochs = 1

[datasets.mnist-0-2]
plugin = "mnist"
classes = [0, 1, 2]
train_per_class = 12
val_per_class = 8
test_per_class = 10

[students.q2]
plugin = "pqc"
qubits = 2
front = "linear"

[[matrix]]
datasets = ["mnist-0-2"]
teachers = ["none"]
students = ["q2"]
backends = ["statevector"]
"""


def build_store(folder: Path, size: int) -> tuple[Path, str]:
    """A config of `size` cells and a SQLite store in which all of them are FINISHED."""
    config = folder / "scale.toml"
    config.write_text(CONFIG.format(seeds=list(range(size))))
    cells = expand(load_spec(config, registry()))
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    tracker = Tracker(uri, "scale")
    parent = tracker.start_run("scale.toml", {ROLE_TAG: "invocation"})
    metrics = {"test_accuracy": 0.5, "test_loss": 1.0, "best_val_accuracy": 0.5, "best_epoch": 1}
    run_ids = {}
    for cell in cells[:API_RUNS]:  # as run_cell logs them
        tags = {ROLE_TAG: "cell", CELL_ID_TAG: cell.id, **cell_tags(cell)}
        run_ids[cell.id] = tracker.start_run(cell.label, tags, parent=parent)
        tracker.log_params(run_ids[cell.id], params(cell))
        tracker.log_steps(run_ids[cell.id], [(1, {"val_accuracy": 0.5}), (0, metrics)])
        tracker.finish(run_ids[cell.id])
    if size > API_RUNS:
        run_ids |= _copy_in_sql(folder / "mlflow.db", cells, tracker)
    # The invocation's ledger, as kdbench writes it as it ends: each cell's result.
    results = [
        Result(*c.group, c.seed, 0.5, None, 0.5, dict(c.sweep), params(c), run_ids[c.id], c.id)
        for c in cells
    ]
    write_ledger(tracker, parent, results)
    tracker.finish(parent)
    return config, uri


def params(cell) -> dict[str, str]:
    """The params a cell logs."""
    return {**flatten(cell.config()), **versions(cell, registry())}


def _copy_in_sql(db: Path, cells, tracker: Tracker) -> dict[str, str]:
    """The cells after the first API_RUNS, as copies of the first API-made run; their run
    ids, by cell id."""
    template = tracker.client.search_runs(
        [tracker.experiment_id], f"tags.`{CELL_ID_TAG}` = '{cells[0].id}'"
    )[0]
    source = template.info.run_id
    with sqlite3.connect(db) as sql:
        run_row = sql.execute("SELECT * FROM runs WHERE run_uuid = ?", (source,)).fetchone()
        columns = [c[1] for c in sql.execute("PRAGMA table_info(runs)")]
        tables = {}
        for table in ("tags", "params", "metrics", "latest_metrics"):
            names = [c[1] for c in sql.execute(f"PRAGMA table_info({table})")]
            rows = sql.execute(f"SELECT * FROM {table} WHERE run_uuid = ?", (source,)).fetchall()
            tables[table] = (names, rows)
        first = str(cells[0].seed)
        run_ids = {}
        for cell in cells[API_RUNS:]:
            run_uuid = run_ids[cell.id] = uuid.uuid4().hex
            row = dict(zip(columns, run_row, strict=True))
            row["run_uuid"] = run_uuid
            row["name"] = cell.label
            row["artifact_uri"] = row["artifact_uri"].replace(source, run_uuid)
            sql.execute(
                f"INSERT INTO runs ({','.join(row)}) VALUES ({','.join('?' * len(row))})",
                list(row.values()),
            )
            own = {
                CELL_ID_TAG: cell.id,
                "kdbench.seed": str(cell.seed),
                "seed": str(cell.seed),
                "mlflow.runName": cell.label,
            }
            for table, (names, rows) in tables.items():
                key_at, value_at = names.index("key"), names.index("value")
                copied = []
                for source_row in rows:
                    item = list(source_row)
                    item[names.index("run_uuid")] = run_uuid
                    if table in ("tags", "params") and item[key_at] in own:
                        item[value_at] = own[item[key_at]]
                    elif table == "params" and item[value_at] == first and item[key_at] == "seed":
                        item[value_at] = str(cell.seed)
                    copied.append(item)
                sql.executemany(
                    f"INSERT INTO {table} VALUES ({','.join('?' * len(names))})", copied
                )
    return run_ids


def forget_ledgers(uri: str) -> None:
    """Untag every invocation's ledger: the store as an older kdbench left it."""
    tracker = Tracker(uri, "scale")
    for run in tracker.search(INVOCATIONS):
        tracker.client.delete_tag(run.info.run_id, LEDGER_TAG)


def timed(command: list[str], cwd: Path, expect: str = "") -> float:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0 or expect not in done.stdout:
        raise SystemExit(f"{' '.join(command)} failed: {done.stdout[-1000:]}{done.stderr[-2000:]}")
    return time.perf_counter() - started


def claim_ms(uri: str, cells, repeats: int = 20) -> float:
    """One claim of a cell the store does not hold: the median, in ms."""
    tracker = Tracker(uri, "scale")
    parent = tracker.start_run("claims", {ROLE_TAG: "invocation"})
    spent = []
    for i in range(repeats):
        cell = cells[i]
        fresh = f"claim-probe-{uuid.uuid4().hex}"
        tags = {ROLE_TAG: "cell", CELL_ID_TAG: fresh, **cell_tags(cell)}
        started = time.perf_counter()
        claim = tracker.claim(fresh, cell.label, tags, parent)
        spent.append(time.perf_counter() - started)
        tracker.client.delete_run(claim.run_id)
    tracker.client.delete_run(parent)
    return 1000 * statistics.median(spent)


def server_reads(uri: str, repeats: int = 3) -> tuple[float, float]:
    """Seconds to read the finished cells through the server: one shard at a time, and as
    kdbench does (medians, alternately)."""
    tracker = Tracker(uri, "scale")
    threads = kdbench.tracking.SERVER_SEARCH_THREADS
    spent: dict[int, list[float]] = {1: [], threads: []}
    for _ in range(repeats):
        for count in spent:
            kdbench.tracking.SERVER_SEARCH_THREADS = count
            started = time.perf_counter()
            tracker.cell_runs()
            spent[count].append(time.perf_counter() - started)
    kdbench.tracking.SERVER_SEARCH_THREADS = threads
    return statistics.median(spent[1]), statistics.median(spent[threads])


def server(uri: str, folder: Path, workers: int):
    """`mlflow server` on the store, on a free port; (process, its http URI)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri", uri,
         "--default-artifact-root", str(folder / "artifacts"), "--host", "127.0.0.1",
         "--port", str(port), "--workers", str(workers)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(120):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.5)
    else:
        process.kill()
        raise SystemExit("mlflow server did not start")
    _wait_idle(process)
    return process, f"http://127.0.0.1:{port}"


def _wait_idle(process: subprocess.Popen, quiet_s: float = 2.0, limit_s: float = 120.0) -> None:
    """Wait until the server and its workers have used no CPU for `quiet_s` (their start,
    imports included, is over): the port answers before every worker is ready."""
    import psutil

    def cpu() -> float:
        root = psutil.Process(process.pid)
        total = 0.0
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
        return total

    deadline = time.monotonic() + limit_s
    before = cpu()
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = cpu()
        if now - before < 0.05 * quiet_s:
            return
        before = now


def measure(size: int, with_server: bool, workers: int) -> dict:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        started = time.perf_counter()
        config, uri = build_store(folder, size)
        built = time.perf_counter() - started
        cells = expand(load_spec(config, registry()))
        process = None
        row = {"size": size, "build_s": round(built, 1)}
        try:
            for kind in ("sqlite", "server") if with_server else ("sqlite",):
                # The server starts after SQLite's timings: its workers' start (imports, on
                # the same 2 cores) slowed SQLite's resume from ~19 s to ~32 s before.
                store = uri
                if kind == "server":
                    process, store = server(uri, folder, workers)
                common = ["--tracking-uri", store]
                done = f"0 cells finished, {size} already done, 0 failed"
                row[f"{kind}_resume_s"] = round(
                    timed([KDBENCH, "run", str(config), *common], folder, done), 2
                )
                if kind == "server":
                    forget_ledgers(store)
                    row["server_resume_no_ledger_s"] = round(
                        timed([KDBENCH, "run", str(config), *common], folder, done), 2
                    )
                row[f"{kind}_claim_ms"] = round(claim_ms(store, cells), 1)
                row[f"{kind}_report_s"] = round(
                    timed(
                        [
                            KDBENCH,
                            "report",
                            str(config),
                            *common,
                            "--output",
                            str(folder / "report"),
                        ],
                        folder,
                    ),
                    2,
                )
                if kind == "server":
                    serial, sharded = server_reads(store)
                    row["server_read_one_shard_at_a_time_s"] = round(serial, 2)
                    row["server_read_s"] = round(sharded, 2)
                print(json.dumps(row), flush=True)
        finally:
            if process is not None:
                process.terminate()
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:  # busy answering a search: stop it
                    process.kill()
                    process.wait()
        return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--no-server", action="store_true", help="the SQLite store only")
    parser.add_argument("--workers", type=int, default=4, help="the server's worker processes")
    args = parser.parse_args()
    # Stopped, still stop the server it started (`measure`'s finally) rather than orphan it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.environ.setdefault("KDBENCH_LOAD_PLUGINS", "")
    rows = [measure(size, not args.no_server, args.workers) for size in args.sizes]
    out = ROOT / "perf" / "results" / "store_scale.json"
    out.parent.mkdir(exist_ok=True)
    # A run of some sizes replaces those sizes' rows and keeps the others'.
    kept = json.loads(out.read_text()) if out.exists() else []
    done = {row["size"] for row in rows}
    out.write_text(json.dumps([r for r in kept if r["size"] not in done] + rows, indent=1))
    keys = [k for k in rows[0] if k != "size"]
    print("| cells | " + " | ".join(keys) + " |")
    print("|" + " --- |" * (len(keys) + 1))
    for row in rows:
        print(f"| {row['size']:,} | " + " | ".join(str(row.get(k, "–")) for k in keys) + " |")


if __name__ == "__main__":
    main()
