"""A soak of kdbench's scale-out under faults: cells counted, none lost, none twice.

A Ray cluster on this machine (a head that runs nothing, two worker nodes of 2 CPUs that are
hosts of their own: tests/services.py) runs N short cells (a 2-qubit separable circuit on 2
generated features, 8 points a class, one epoch, two learning rates a seed, each cell a task
of its own) against an
`mlflow server` whose store is a PostgreSQL database and which serves the artifacts. While it
runs: node-b is SIGKILLed and started again twice (at 25% and 65% of the cells), and the
server is stopped and started again once (at 45%). Then the store is counted: cells finished,
cells run again (runs KILLED: taken over after a lost node, or stopped), duplicates (a cell
FINISHED twice: must be 0), lost (a cell not FINISHED: must be 0). The same matrix then runs
without faults on one node of 4 CPUs, and the throughputs are compared.

    .venv/bin/python perf/soak.py                 # 2,000 cells, twice; ~30 min on 2 cores
    .venv/bin/python perf/soak.py --cells 200     # a rehearsal

Needs root (unshare) and Debian's postgresql (`make postgres`). Prints a table and writes
perf/results/soak.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the tests' services

from mlflow.tracking import MlflowClient  # noqa: E402

from tests.services import TOKEN_AUTH, MlflowServer, postgres, ray_cluster  # noqa: E402

CONFIG = """
[experiment]
name = "{name}"
seeds = {seeds}
lease_s = 8.0
heartbeat_s = 2.0

[train]
epochs = 1
batch_size = 8
stacked = "off"

[datasets.tiny]
plugin = "linearly-separable"
features = 2
samples = 100
train_per_class = 8
val_per_class = 8
test_per_class = 8

[students.small]
plugin = "separable"

[[matrix]]
datasets = ["tiny"]
teachers = ["none"]
students = ["small"]
backends = ["statevector"]
sweep = {{"train.lr" = [0.01, 0.05]}}
"""


def run_soak(name: str, cells: int, nodes: dict[str, int], folder: Path, database: str,
             faults: bool) -> dict:  # fmt: skip
    """One run of the matrix on a fresh cluster and server; its counts and throughput."""
    config = folder / f"{name}.toml"
    config.write_text(CONFIG.format(name=name, seeds=list(range(cells // 2))))
    server = MlflowServer(database, folder / f"artifacts-{name}", folder)
    server.start()
    events: list[str] = []
    with ray_cluster(nodes) as cluster:
        env = {**os.environ, **TOKEN_AUTH, "KDBENCH_CACHE": str(folder / "cache")}
        command = [sys.executable, "-m", "kdbench", "run", str(config), "--executor", "ray",
                   "--address", cluster.address, "--tracking-uri", server.url]  # fmt: skip
        started = time.monotonic()
        driver = subprocess.Popen(
            command, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        done = [0]
        errors: list[str] = []

        def count() -> None:
            for line in driver.stderr:
                if line.startswith("done "):
                    done[0] += 1
                else:
                    errors.append(line)

        threading.Thread(target=count, daemon=True).start()
        plan = [(0.25, "node"), (0.45, "server"), (0.65, "node")] if faults else []
        while driver.poll() is None:
            if plan and done[0] >= plan[0][0] * cells:
                _, fault = plan.pop(0)
                at = f"{done[0]} cells, {time.monotonic() - started:.0f} s"
                if fault == "node":
                    cluster.kill("node-b")
                    events.append(f"node-b killed at {at}")
                    time.sleep(5)
                    cluster.add("node-b", nodes["node-b"])
                    events.append("node-b back")
                else:
                    server.stop()
                    events.append(f"server stopped at {at}")
                    time.sleep(8)
                    server.start()
                    events.append("server back")
            time.sleep(0.5)
        stdout = driver.stdout.read()
        seconds = time.monotonic() - started
    counts = census(server.url, name, cells)
    server.stop()
    summary = next((x for x in stdout.splitlines() if " cells finished, " in x), "")
    rate = round(60 * counts["finished"] / seconds, 1)
    return {
        "run": name, "cells": cells, "workers": sum(nodes.values()),
        "exit_code": driver.returncode, "seconds": round(seconds, 1), "cells_per_minute": rate,
        "faults": events, "summary": summary, "stderr_tail": "".join(errors[-5:]), **counts,
    }  # fmt: skip


def census(url: str, experiment: str, cells: int) -> dict:
    """Cell runs in the store: finished cells, runs KILLED, duplicates, lost."""
    client = MlflowClient(tracking_uri=url)
    found = client.get_experiment_by_name(experiment).experiment_id
    finished: dict[str, int] = {}
    killed = running = 0
    token = None
    while True:
        page = client.search_runs([found], "tags.`kdbench.role` = 'cell'", max_results=1000,
                                  page_token=token)  # fmt: skip
        for run in page:
            status = run.info.status
            if status == "FINISHED":
                cell = run.data.tags["kdbench.cell_id"]
                finished[cell] = finished.get(cell, 0) + 1
            killed += status == "KILLED"
            running += status == "RUNNING"
        token = page.token
        if not token:
            break
    return {
        "finished": len(finished),
        "rerun": killed,
        "duplicates": sum(n - 1 for n in finished.values()),
        "lost": cells - len(finished),
        "left_running": running,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=2000)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="kdbench-soak-") as name, postgres() as database:
        folder = Path(name)
        rows.append(run_soak("soak-faults", args.cells, {"node-a": 2, "node-b": 2}, folder,
                             database(), faults=True))  # fmt: skip
        rows.append(run_soak("soak-one-node", args.cells, {"node-a": 4}, folder, database(),
                             faults=False))  # fmt: skip
    keys = ("run", "workers", "exit_code", "finished", "rerun", "duplicates", "lost",
            "left_running", "seconds", "cells_per_minute")  # fmt: skip
    print(" | ".join(keys))
    for row in rows:
        print(" | ".join(str(row[k]) for k in keys))
        for event in row["faults"]:
            print(f"  {event}")
        print(f"  {row['summary']}")
    ratio = rows[0]["cells_per_minute"] / rows[1]["cells_per_minute"]
    print(f"throughput under faults / one node without: {ratio:.2f}x")
    out = ROOT / "perf" / "results" / "soak.json"
    out.write_text(json.dumps({"rows": rows, "ratio": round(ratio, 2)}, indent=2) + "\n")


if __name__ == "__main__":
    main()
