"""Stacked training against one seed at a time: the same arm, the same harness functions.

An arm of S seeds of one student on real MNIST 0-2 (each seed its own split, batch order
and initialisation, as kdbench draws them) is trained for one epoch with validation, once
by `kdbench.distill.fit` seed after seed and once by `kdbench.stacked.fit_stacked` as one
model. Repeats alternate (one at a time, stacked, one at a time, ...); the median seconds of
each and their ratio are reported. Both use one thread, as a cell does (`[train] threads`).

    .venv/bin/python perf/stacked.py             # every row; ~6 min on 2 cores
    .venv/bin/python perf/stacked.py --only notebooks vqc-b32

`perf/bench.py --stacked` runs the same rows after its own.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from kdbench import paths
from kdbench.api import StudentContext
from kdbench.data import make_splits
from kdbench.distill import Split, fit
from kdbench.run.training import _log_probs
from kdbench.stacked import fit_stacked
from kdbench.testing import make, plugin_registry

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Row:
    key: str
    student: str
    batch: int
    seeds: int
    per_class: int  # training images per class (the epoch's length)
    backend: str = "statevector"


ROWS = [
    # The released notebooks' protocol: the CNN-front student at batch 1.
    Row("notebooks", "released-q3", 1, 20, 40),
    Row("vqc-b32", "vqc-q3", 32, 10, 900),
    Row("twin-b32", "twin-q3", 32, 10, 900),
    Row("vqc-b32-dm", "vqc-q3", 32, 10, 900, "density-matrix"),
    # Where "auto" draws its line for convolutional fronts (CNN_STACKING_MAX_BATCH).
    Row("cnn-b4", "released-q3", 4, 10, 80),
    Row("cnn-b8", "released-q3", 8, 10, 160),
    Row("cnn-b16", "released-q3", 16, 10, 300),
    Row("cnn-b32", "released-q3", 32, 10, 300),
]


def arm(row: Row) -> tuple[list[torch.nn.Module], list[torch.Tensor], list[Split], list[Split]]:
    """The arm's S students, their RNG states after building, and their data."""
    registry = plugin_registry()
    dataset = make(
        registry,
        "datasets",
        "mnist",
        classes=[0, 1, 2],
        train_per_class=row.per_class,
        val_per_class=20,
    )
    student = make(registry, "students", row.student)
    encoder = make(registry, "encoders", student.encoder) if student.encoder else None
    models, states, trains, vals = [], [], [], []
    for seed in range(row.seeds):
        drawn = make_splits(dataset, paths.data_dir(None), seed)
        trains.append(Split(drawn.train_x, drawn.train_y))
        vals.append(Split(drawn.val_x, drawn.val_y))
        torch.manual_seed(seed)
        backend = make(registry, "backends", row.backend)
        models.append(student.build(StudentContext(3, (1, 28, 28), backend, encoder, seed)))
        states.append(torch.get_rng_state())
    return models, states, trains, vals


def one_at_a_time(row: Row) -> float:
    models, _, trains, vals = arm(row)
    started = time.perf_counter()
    for seed, (model, train, val) in enumerate(zip(models, trains, vals, strict=True)):
        fit(
            model,
            _log_probs,
            train,
            val,
            num_classes=3,
            epochs=1,
            batch_size=row.batch,
            lr=1e-3,
            seed=seed,
        )
    return time.perf_counter() - started


def stacked(row: Row, native: bool = True) -> float:
    models, states, trains, vals = arm(row)
    started = time.perf_counter()
    fit_stacked(
        models,
        _log_probs,
        trains,
        vals,
        num_classes=3,
        epochs=1,
        batch_size=row.batch,
        lr=1e-3,
        seeds=list(range(row.seeds)),
        rng_states=states,
        native=native,
    )
    return time.perf_counter() - started


def measure(rows: list[Row], repeats: int, vmapped: bool = False) -> list[dict]:
    torch.set_num_threads(1)
    found = []
    for row in rows:
        times: dict[str, list[float]] = {"alone": [], "stacked": []}
        if vmapped:
            times["vmapped"] = []
        for _ in range(repeats):
            times["alone"].append(one_at_a_time(row))
            times["stacked"].append(stacked(row))
            if vmapped:
                times["vmapped"].append(stacked(row, native=False))
        medians = {k: statistics.median(v) for k, v in times.items()}
        alone, together = medians["alone"], medians["stacked"]
        samples = {k: [round(t, 2) for t in v] for k, v in times.items()}
        found.append(
            {
                **row.__dict__,
                "alone_s": round(alone, 2),
                "stacked_s": round(together, 2),
                "ratio": round(alone / together, 2),
                "samples": samples,
            }
        )
        if vmapped:
            found[-1]["vmapped_s"] = round(medians["vmapped"], 2)
            found[-1]["native_over_vmapped"] = round(medians["vmapped"] / together, 2)
        print(json.dumps(found[-1]), flush=True)
    return found


def print_table(found: list[dict]) -> None:
    print("| row | student | backend | batch | seeds | one at a time (s) | stacked (s) | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in found:
        print(
            f"| {r['key']} | {r['student']} | {r['backend']} | {r['batch']} | {r['seeds']} "
            f"| {r['alone_s']} | {r['stacked_s']} | **{r['ratio']}×** |"
        )
    for r in found:
        if "vmapped_s" in r:
            print(f"{r['key']}: under vmap {r['vmapped_s']} s, native {r['native_over_vmapped']}×")


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=[r.key for r in ROWS])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS / "stacked.json")
    parser.add_argument(
        "--vmapped",
        action="store_true",
        help="also stacked under vmap where the student has a stacked forward of its own",
    )
    args = parser.parse_args(argv)
    rows = [r for r in ROWS if not args.only or r.key in args.only]
    found = measure(rows, args.repeats, args.vmapped)
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(found, indent=1))
    print_table(found)
    return found


if __name__ == "__main__":
    main()
