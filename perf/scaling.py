"""Training samples/s against qubits and against batch size: kdbench exact vs PennyLane.

The student is the one of `bench.py` (Linear front, (π/2)·tanh, H + RY encoding, 2 layers of
CNOT chain + RY, first-C readout, Adam) trained by kdbench's `statevector` backend (autograd)
and by PennyLane's `default.qubit` with backprop, from the same weights on the same images.

Two sweeps: qubits 2..12 (step 2) at batch 32, and batch 1..256 at 4 qubits. Each point
trains `max(--min-samples, 4 batches)` images (cycling through the 900), interleaving the
two implementations, and reports the median samples/s of `--repeats` repeats.

Run: `python perf/scaling.py` (writes perf/results/scaling.json and two PNGs).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

# Run as a script, perf/ is on sys.path: the student, data and timing come from bench.py.
from bench import (
    BY_KEY,
    RESULTS,
    available,
    check_agreement,
    initial_weights,
    load_data,
    machine_info,
    reset,
    train,
    warm_up,
)

IMPLEMENTATIONS = ("kdbench-sv", "pl-backprop")


def measure(
    qubits: int,
    batch: int,
    min_samples: int,
    repeats: int,
    data: tuple[torch.Tensor, ...],
    keys: list[str],
) -> dict[str, Any]:
    """Median samples/s of each implementation at one (qubits, batch) point."""
    images, labels, order = data
    samples = max(min_samples, 4 * batch)
    # Cycle through the data set when a point needs more images than it has.
    cycled = order.repeat(math.ceil(samples / len(order)))
    init = initial_weights(qubits)
    models = {}
    for key in keys:
        model, circuit = BY_KEY[key].build(qubits)
        reset(model, circuit, init)
        models[key] = (model, circuit)
    first = cycled[:batch]
    check = check_agreement(models, images[first], labels[first])
    for model, _ in models.values():
        warm_up(model, images[first], labels[first])
    rates: dict[str, list[float]] = {key: [] for key in keys}
    for _ in range(repeats):
        for key in keys:  # interleaved
            model, circuit = models[key]
            reset(model, circuit, init)
            seconds, _ = train(model, images, labels, cycled, samples, batch)
            rates[key].append(samples / seconds)
    point: dict[str, Any] = {
        "qubits": qubits,
        "batch": batch,
        "samples": samples,
        "samples_per_s": rates,
        "median": {key: statistics.median(v) for key, v in rates.items()},
        "max_abs_output_diff": check.get("max_abs_output_diff"),
    }
    if len(keys) == 2:
        point["ratio"] = point["median"][keys[0]] / point["median"][keys[1]]
    ratio = f", ratio {point['ratio']:.2f}" if "ratio" in point else ""
    medians = ", ".join(f"{k} {v:.1f}" for k, v in point["median"].items())
    print(f"{qubits:2d} qubits, batch {batch:3d}: {medians} samples/s{ratio}", flush=True)
    return point


def plot(points: list[dict[str, Any]], x: str, path: Path, title: str, keys: list[str]) -> None:
    """samples/s of each implementation against `x` ("qubits" or "batch"), log axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for key in keys:
        xs = [p[x] for p in points]
        ax.plot(xs, [p["median"][key] for p in points], marker="o", label=BY_KEY[key].label)
    ax.set_yscale("log")
    if x == "batch":
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(v) for v in xs])
    ax.set_xlabel("qubits" if x == "qubits" else "batch size")
    ax.set_ylabel("training samples/s (median)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--qubits", type=int, nargs="+", default=[2, 4, 6, 8, 10, 12])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16, 64, 256])
    parser.add_argument("--batch-qubits", type=int, default=4, help="qubits of the batch sweep")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--min-samples", type=int, default=256)
    parser.add_argument("--out", type=Path, default=RESULTS / "scaling.json")
    parser.add_argument(
        "--replot", action="store_true", help="only redraw the PNGs from an existing --out"
    )
    args = parser.parse_args(argv)
    if args.replot:
        result = json.loads(args.out.read_text())
        draw(result, args.out)
        return result

    torch.set_num_threads(2)
    keys = []
    for key in IMPLEMENTATIONS:
        if available(BY_KEY[key]):
            keys.append(key)
        else:
            print(f"skipped {key}: {BY_KEY[key].package} is not installed")
    data = load_data(300)
    by_qubits = [measure(q, 32, args.min_samples, args.repeats, data, keys) for q in args.qubits]
    by_batch = [
        measure(args.batch_qubits, b, args.min_samples, args.repeats, data, keys)
        for b in args.batches
    ]
    result = {
        "machine": machine_info(),
        "settings": {"repeats": args.repeats, "min_samples": args.min_samples, "layers": 2},
        "by_qubits": by_qubits,
        "by_batch": by_batch,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    draw(result, args.out)
    return result


def draw(result: dict[str, Any], out: Path) -> None:
    """The two PNGs beside `out`: samples/s against qubits and against batch size."""
    keys = list(result["by_qubits"][0]["median"]) if result["by_qubits"] else []
    stem = out.with_suffix("")
    plot(result["by_qubits"], "qubits", Path(f"{stem}_qubits.png"), "Batch 32", keys)
    if result["by_batch"]:
        title = f"{result['by_batch'][0]['qubits']} qubits"
        plot(result["by_batch"], "batch", Path(f"{stem}_batch.png"), title, keys)
    print(f"plotted {stem}_qubits.png and {stem}_batch.png")


if __name__ == "__main__":
    main(sys.argv[1:])
