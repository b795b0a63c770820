"""The budget study's tables and figure for RESULTS.md, from its MLflow store.

    python studies/budget_summary.py [TRACKING_URI] [EXPERIMENT] [OUTPUT_FOLDER]

Every cell of studies/budget.toml logged, at each step budget, the test accuracy of the
weights validation kept within it (`budget_test_accuracy`) and that validation accuracy.
An arm is tuned seed by seed and budget by budget: of its grid points (learning rate, batch
size), the one with the best validation accuracy within the budget (ties: the first in the
config's order) gives its test accuracy. So every arm, the student alone included, gets the
same search on validation, and the test set is read once per (arm, seed, budget).

1. Each arm's tuned test accuracy (mean ± std over seeds) at each budget, beside the verdict's
   setting (learning rate 0.001, batch 32, ~300 steps) on the same seeds.
2. Each taught arm (and label smoothing) against the student alone, tuned the same way,
   paired by seed: Δ, its 95 % CI, Holm's p over the whole table, TOST at ±1 point (Holm)
   and the minimum detectable effect.
3. Which grid points validation chose.
A figure (budget.png): Δ against the step budget, one panel per student.
"""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path

from kdbench.report.cells import equivalence_text, gain_text, percent
from kdbench.report.stats import MARGIN, Gain, holm, mean_std, paired_gain
from kdbench.results import Result
from kdbench.tracking import Tracker

ALONE = ("none", "none")
VERDICT_POINT = {"train.lr": 0.001}  # the verdict's learning rate at batch 32


def arm_name(arm: tuple[str, str]) -> str:
    teacher, distiller = arm
    return (
        "alone" if arm == ALONE else distiller if teacher == "none" else f"{teacher} · {distiller}"
    )


def read(tracker: Tracker):
    """(student, arm, seed, point) -> budget -> (validation, test accuracy, steps)."""
    cells: dict[tuple, dict[int, tuple[float, float, float]]] = {}
    points: list[str] = []  # in the order first seen
    for run in tracker.cell_runs():
        r = Result.from_run(run)
        history = {
            key: {m.step: m.value for m in tracker.client.get_metric_history(r.run_id, key)}
            for key in ("budget_val_accuracy", "budget_test_accuracy", "budget_steps")
        }
        if r.point not in points:
            points.append(r.point)
        cells[(r.student, (r.teacher, r.distiller), r.seed, r.point)] = {
            b: (history["budget_val_accuracy"][b], history["budget_test_accuracy"][b],
                history["budget_steps"][b])
            for b in history["budget_test_accuracy"]
        }  # fmt: skip
    return cells, points


def tune(cells, points):
    """(student, arm, budget) -> seed -> (test accuracy, chosen point), validation's choice."""
    grid: dict[tuple, dict[int, dict[str, tuple]]] = defaultdict(lambda: defaultdict(dict))
    for (student, arm, seed, point), budgets in cells.items():
        for budget, values in budgets.items():
            grid[(student, arm, budget)][seed][point] = values
    tuned: dict[tuple, dict[int, tuple[float, str]]] = {}
    for key, seeds in grid.items():
        tuned[key] = {}
        for seed, by_point in seeds.items():
            # The best validation accuracy; ties to the earlier point of the config.
            best = max(by_point, key=lambda p: (by_point[p][0], -points.index(p)))
            tuned[key][seed] = (by_point[best][1], best)
    return tuned


def main(uri: str, experiment: str, output: Path) -> None:
    tracker = Tracker(uri, experiment, create=False)
    cells, points = read(tracker)
    tuned = tune(cells, points)
    students = sorted({k[0] for k in tuned})
    arms = sorted({k[1] for k in tuned}, key=lambda a: (a != ALONE, a))
    budgets = sorted({k[2] for k in tuned})
    verdict = json.dumps(VERDICT_POINT, sort_keys=True)

    def accuracies(student, arm, budget) -> dict[int, float]:
        return {s: acc for s, (acc, _) in tuned.get((student, arm, budget), {}).items()}

    def verdict_setting(student, arm) -> dict[int, float]:
        return {seed: cells[(st, a, seed, p)][budgets[0]][1]
                for (st, a, seed, p) in cells if (st, a, p) == (student, arm, verdict)}  # fmt: skip

    print(f"{len(cells)} cells; grid points: {', '.join(points)}; budgets {budgets} steps\n")
    print("| student | arm | verdict's setting (~300 steps, lr 0.001) | "
          + " | ".join(f"tuned, {b} steps" for b in budgets) + " |")  # fmt: skip
    print("|---|---|---:|" + "---:|" * len(budgets))
    for student in students:
        for arm in arms:
            fixed = list(verdict_setting(student, arm).values())
            row = [percent(*mean_std(fixed)) if fixed else "–"]
            for budget in budgets:
                values = list(accuracies(student, arm, budget).values())
                row.append(percent(*mean_std(values)) if values else "–")
            print(f"| {student} | {arm_name(arm)} | " + " | ".join(row) + " |")

    comparisons: list[tuple[str, tuple[str, str], int | str, Gain]] = []
    for student in students:
        for arm in arms:
            if arm == ALONE:
                continue
            base, taught = verdict_setting(student, ALONE), verdict_setting(student, arm)
            gain = paired_gain(base, taught)
            if gain is not None:
                comparisons.append((student, arm, "verdict", gain))
            for budget in budgets:
                gain = paired_gain(accuracies(student, ALONE, budget),
                                   accuracies(student, arm, budget))  # fmt: skip
                if gain is not None:
                    comparisons.append((student, arm, budget, gain))
    p_holm = holm([g.p_value for *_, g in comparisons])
    tost = holm([g.tost(MARGIN) for *_, g in comparisons])
    comparisons = [
        (student, arm, budget, replace(g, p_adjusted=p, tost_adjusted=t, margin=MARGIN))
        for (student, arm, budget, g), p, t in zip(comparisons, p_holm, tost, strict=True)
    ]
    print(
        f"\n| student | arm − alone | budget (steps) | Δ (points) | 95 % CI | p |"
        f" p Holm (m={len(comparisons)}) | TOST p Holm (±1) | MDE (80 %) |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for student, arm, budget, gain in comparisons:
        delta, interval, p, holm_p, _ = gain_text(gain)
        label = "verdict's setting" if budget == "verdict" else f"{budget}, tuned"
        print(f"| {student} | {arm_name(arm)} | {label} | {delta} | {interval} | {p} | {holm_p}"
              f" | {' | '.join(equivalence_text(gain))} |")  # fmt: skip

    print("\n| student | arm | budget | grid points validation chose (seeds) |")
    print("|---|---|---|---|")
    for (student, arm, budget), seeds in sorted(tuned.items(), key=lambda kv: (kv[0][0],
                                                arms.index(kv[0][1]), kv[0][2])):  # fmt: skip
        chosen = Counter(point for _, point in seeds.values())
        text = ", ".join(f"{point_text(p)}: {n}" for p, n in chosen.most_common())
        print(f"| {student} | {arm_name(arm)} | {budget} | {text} |")

    output.mkdir(parents=True, exist_ok=True)
    figure(comparisons, students, budgets, output / "budget.png")


def point_text(point: str) -> str:
    values = json.loads(point)
    batch = values.get("train.batch_size", 32)
    return f"lr {values.get('train.lr', 0.001)}, batch {batch}"


def figure(comparisons, students, budgets, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(students), figsize=(4.6 * len(students), 3.8), squeeze=False)
    for axis, student in zip(axes.flat, students, strict=True):
        series = defaultdict(list)
        for st, arm, budget, gain in comparisons:
            if st == student and budget != "verdict":
                series[arm].append((budget, gain))
        for i, (arm, points) in enumerate(sorted(series.items())):
            x = [b * (1 + 0.04 * (i - 1)) for b, _ in points]  # side by side
            y = [100 * g.mean for _, g in points]
            low = [100 * (g.mean - g.low) for _, g in points]
            high = [100 * (g.high - g.mean) for _, g in points]
            axis.errorbar(x, y, yerr=[low, high], marker="o", capsize=2, label=arm_name(arm))
        axis.axhline(0, color="grey", linewidth=0.8)
        axis.set_xscale("log")
        axis.set_xticks(budgets, [str(b) for b in budgets])
        axis.set_xlabel("training budget (Adam steps), tuned on validation")
        axis.set_title(student)
    axes.flat[0].set_ylabel("Δ test accuracy against alone (points, 95 % CI)")
    axes.flat[-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    arguments = sys.argv[1:]
    main(
        arguments[0] if arguments else "sqlite:///mlflow.db",
        arguments[1] if len(arguments) > 1 else "budget",
        Path(arguments[2] if len(arguments) > 2 else "results/budget"),
    )
