"""The noise study's summary tables for RESULTS.md, in Markdown, from its MLflow store.

    python studies/noise_summary.py [TRACKING_URI] [EXPERIMENT] [RUNGS...]

For the test accuracy, then for the test cross-entropy (where the store has it; its "drop"
is its rise, in nats):
1. Each student alone: its value on the noiseless rung and its drop on each rung.
2. Each distilled arm's Δ drop (distilled drop minus alone drop, paired by seed; 95 % CI;
   * where Holm's p < 0.05 over every comparison of the report's noise table), on the rungs
   named (default: the four heaviest depolarizing and the three devices, and with
   `--profile shots` of examples/noise.toml their 5000-shot readings).
3. The count of Holm-significant Δ drops, by sign.
"""

from __future__ import annotations

import sys

from kdbench.report import load_rows
from kdbench.report.cells import interval_text, percent
from kdbench.report.noise import (
    DIGITS,
    LOSS_DIGITS,
    Measure,
    drops_by_seed,
    ladder,
    measure_on,
    noise_rows,
)
from kdbench.report.stats import mean_std
from kdbench.tracking import Tracker

RUNGS = ("dep-0.01", "dep-0.03", "dep-0.1", "manila", "brisbane", "torino")
SHOTS = ("clean-shots", *(f"{rung}-shots" for rung in RUNGS))


def main(uri: str, experiment: str, rungs: tuple[str, ...] | None) -> None:
    rows = [r for r in load_rows(Tracker(uri, experiment, create=False)) if r.selected]
    if rungs is None:
        every = {rung for row in rows for rung in ladder(row)}
        rungs = RUNGS + tuple(rung for rung in SHOTS if rung in every)
    has_loss = any(r.also_loss for row in rows for r in row.results)
    for measure, title in (("accuracy", "accuracy (points)"), ("loss", "cross-entropy (nats)")):
        if measure == "accuracy" or has_loss:
            print(f"\n## test {title}\n")
            summarize_measure(rows, rungs, measure)


def summarize_measure(rows, rungs: tuple[str, ...], measure: Measure) -> None:
    scale, digits = (100, DIGITS) if measure == "accuracy" else (1, LOSS_DIGITS)
    compared = noise_rows(rows, measure)
    alone = {(r.dataset, r.student, r.backend): r for r in rows if r.teacher == "none"}

    print(f"| data set | student [trained on] | alone, noiseless | {' | '.join(rungs)} |")
    print("|---|---|---:|" + "---:|" * len(rungs))
    for (dataset, student, backend), row in sorted(alone.items()):
        reference = ladder(row)[0]
        clean = measure_on(row, reference, measure)
        drops = []
        for rung in rungs:  # a drop of accuracy, a rise of the loss
            paired = list(drops_by_seed(row, reference, rung, measure).values())
            if not paired:
                drops.append("–")
                continue
            mean, std = mean_std(paired)
            drops.append(percent(mean, std, signed=True, digits=digits, scale=scale))
        mean, std = mean_std(list(clean.values()))
        print(f"| {dataset} | {student} [{backend}] | "
              f"{percent(mean, std, digits=digits if scale == 1 else 1, scale=scale)} | "
              + " | ".join(drops) + " |")  # fmt: skip

    print()
    print(f"| data set | student [trained on] | teacher · distiller | {' | '.join(rungs)} |")
    print("|---|---|---|" + "---:|" * len(rungs))
    cells: dict[tuple[str, ...], dict[str, str]] = {}
    for r in compared:
        if r.gain is None or r.rung not in rungs:
            continue
        star = "*" if r.gain.p_adjusted is not None and r.gain.p_adjusted < 0.05 else ""
        key = (r.arm.dataset, f"{r.arm.student} [{r.arm.backend}]",
               f"{r.arm.teacher} · {r.arm.distiller}")  # fmt: skip
        mean = percent(r.gain.mean, signed=True, digits=digits, scale=scale)
        text = f"{mean} {interval_text(r.gain.low, r.gain.high, digits, scale)}{star}"
        cells.setdefault(key, {})[r.rung] = text
    for key in sorted(cells):
        print("| " + " | ".join(key) + " | "
              + " | ".join(cells[key].get(rung, "–") for rung in rungs) + " |")  # fmt: skip

    significant = [r for r in compared if r.gain and r.gain.significant]
    less = sum(r.gain.mean < 0 for r in significant)
    print()
    print(f"{len(compared)} comparisons; Holm-significant: {less} with less drop, "
          f"{len(significant) - less} with more drop.")  # fmt: skip
    for r in significant:
        print(
            f"- {r.arm.dataset} {r.arm.student} [{r.arm.backend}] {r.arm.teacher} · "
            f"{r.arm.distiller} on {r.rung}: "
            f"{percent(r.gain.mean, signed=True, digits=digits, scale=scale)} "
            f"{interval_text(r.gain.low, r.gain.high, digits, scale)}, "
            f"p_Holm {r.gain.p_adjusted:.3f}"
        )


if __name__ == "__main__":
    arguments = sys.argv[1:]
    main(
        arguments[0] if arguments else "sqlite:///mlflow.db",
        arguments[1] if len(arguments) > 1 else "noise",
        tuple(arguments[2:]) or None,
    )
