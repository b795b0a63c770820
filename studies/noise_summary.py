"""The noise study's summary tables for RESULTS.md, in Markdown, from its MLflow store.

    python studies/noise_summary.py [TRACKING_URI] [EXPERIMENT] [RUNGS...]

1. Each student alone: its accuracy on the noiseless rung and its drop on each rung.
2. Each distilled arm's Δ drop (distilled drop minus alone drop, paired by seed; 95 % CI;
   * where Holm's p < 0.05 over every comparison of the report's noise table), on the rungs
   named (default: the four heaviest depolarizing and the three devices).
3. The count of Holm-significant Δ drops, by sign.
"""

from __future__ import annotations

import sys

from kdbench.report import load_rows
from kdbench.report.noise import accuracy_on, ladder, noise_rows
from kdbench.report.stats import mean_std
from kdbench.report.tables import interval_text
from kdbench.tracking import Tracker

RUNGS = ("dep-0.01", "dep-0.03", "dep-0.1", "manila", "brisbane", "torino")


def main(uri: str, experiment: str, rungs: tuple[str, ...]) -> None:
    rows = [r for r in load_rows(Tracker(uri, experiment, create=False)) if r.selected]
    compared = noise_rows(rows)
    alone = {(r.dataset, r.student, r.backend): r for r in rows if r.teacher == "none"}

    print(f"| data set | student [trained on] | alone, noiseless (%) | {' | '.join(rungs)} |")
    print("|---|---|---:|" + "---:|" * len(rungs))
    for (dataset, student, backend), row in sorted(alone.items()):
        reference = ladder(row)[0]
        clean = accuracy_on(row, reference)
        drops = []
        for rung in rungs:
            noisy = accuracy_on(row, rung)
            paired = [clean[s] - noisy[s] for s in clean if s in noisy]
            if not paired:
                drops.append("–")
                continue
            mean, std = mean_std(paired)
            drops.append(f"{100 * mean:+.2f} ± {100 * std:.2f}")
        mean, std = mean_std(list(clean.values()))
        print(f"| {dataset} | {student} [{backend}] | {100 * mean:.1f} ± {100 * std:.1f} | "
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
        text = f"{100 * r.gain.mean:+.2f} {interval_text(r.gain.low, r.gain.high, 2)}{star}"
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
            f"{r.arm.distiller} on {r.rung}: {100 * r.gain.mean:+.2f} "
            f"{interval_text(r.gain.low, r.gain.high, 2)}, p_Holm {r.gain.p_adjusted:.3f}"
        )


if __name__ == "__main__":
    arguments = sys.argv[1:]
    main(
        arguments[0] if arguments else "sqlite:///mlflow.db",
        arguments[1] if len(arguments) > 1 else "noise",
        tuple(arguments[2:]) or RUNGS,
    )
