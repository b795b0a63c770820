"""Where the paper's numbers fall in the released notebooks' protocol, and what made its gains.

    python studies/notebooks_summary.py [TRACKING_URI] [EXPERIMENT]

Reads the cells of `studies/notebooks.toml` and prints, in Markdown:
1. For each of the paper's 24 student rows (6 data set × qubit settings; alone, AlexNet,
   LeNet, ensemble): kdbench's accuracy over seeds as the notebooks measured it (best test
   epoch), the paper's number and its percentile among kdbench's runs; for the taught rows,
   the mean Δ (paired by seed), the spread of a single run's Δ (every taught run against every
   alone run: the notebooks ran each arm once, unseeded) and the paper's Δ's percentile in it.
2. The attribution of the paper's average Δ per data-set family: the notebooks' departures
   switched off one at a time (one run instead of many; the FashionMNIST 3-qubit baselines'
   softmax head instead of the taught students' sigmoid-pair head; the best test epoch
   instead of selection on validation), each step's share of the average.
The paper's numbers come from benchmarks.toml's [report] section.
"""

from __future__ import annotations

import statistics
import sys
from collections import defaultdict
from pathlib import Path

from scipy import stats

from kdbench.config import load_spec
from kdbench.plugins import registry
from kdbench.report.stats import mean_std, paired_gain
from kdbench.report.tables import interval_text, percent
from kdbench.tracking import Tracker

ROOT = Path(__file__).resolve().parent.parent
TEACHERS = ("alexnet", "lenet", "ensemble")
# The paper's settings: data set, qubits, and the baseline head each notebook used.
SETTINGS = (
    ("mnist-0-5", 3, "released-q3"),
    ("mnist-0-7", 3, "released-q3"),
    ("mnist-0-7", 4, "released-q4"),
    ("fashion-mnist-0-5", 3, "released-q3-softmax"),
    ("fashion-mnist-0-7", 3, "released-q3-softmax"),
    ("fashion-mnist-0-7", 4, "released-q4"),
)
BEST_TEST, BY_VALIDATION = "test_accuracy", "val_selected_test_accuracy"

Arms = dict[tuple[str, str, str], dict[str, dict[int, float]]]


def load_arms(uri: str, experiment: str) -> Arms:
    """(data set, teacher, student) -> metric -> seed -> value, of every finished cell."""
    arms: Arms = defaultdict(lambda: defaultdict(dict))
    for run in Tracker(uri, experiment, create=False).cell_runs():
        tags, metrics = run.data.tags, run.data.metrics
        key = (tags["kdbench.dataset"], tags["kdbench.teacher"], tags["kdbench.student"])
        for metric in (BEST_TEST, BY_VALIDATION):
            if metric in metrics:
                arms[key][metric][int(tags["kdbench.seed"])] = metrics[metric]
    return arms


def percentile(values: list[float], x: float) -> float:
    """The percentage of `values` below `x`, ties counting half."""
    return float(stats.percentileofscore(values, x, kind="mean"))


def mean_gain(arms: Arms, dataset: str, student: str, baseline: str, teacher: str,
              metric: str) -> float | None:  # fmt: skip
    """Mean Δ over seeds (paired by seed) of `student` taught over `baseline` alone."""
    alone = arms.get((dataset, "none", baseline), {}).get(metric)
    taught = arms.get((dataset, teacher, student), {}).get(metric)
    if not alone or not taught:
        return None
    gain = paired_gain(alone, taught)
    return None if gain is None else gain.mean


def rows_table(arms: Arms, paper) -> None:
    print("| data set | qubits | teacher | kdbench (%) | seeds | paper (%) | percentile |"
          " mean Δ [95 % CI] | single-run Δ (5th-95th) | paper Δ | percentile |")  # fmt: skip
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for dataset, qubits, baseline in SETTINGS:
        student = f"released-q{qubits}"
        alone = arms.get((dataset, "none", baseline), {}).get(BEST_TEST, {})
        numbers = paper.numbers.get(dataset, {}).get(f"q{qubits}", {})
        for teacher in ("none", *TEACHERS):
            runs = alone if teacher == "none" else arms.get(
                (dataset, teacher, student), {}).get(BEST_TEST, {})  # fmt: skip
            if not runs or teacher not in numbers:
                continue
            values = list(runs.values())
            accuracy, delta = numbers[teacher]
            cells = [dataset, str(qubits), teacher, percent(*mean_std(values)), str(len(values)),
                     f"{accuracy:.2f}", f"{percentile(values, accuracy / 100):.0f}"]  # fmt: skip
            if teacher == "none" or not alone:
                cells += ["–"] * 4
            else:
                gain = paired_gain(alone, runs)
                singles = [t - a for t in values for a in alone.values()]
                low, high = (
                    statistics.quantiles(singles, n=20)[0],
                    statistics.quantiles(singles, n=20)[-1],
                )
                cells += [f"{100 * gain.mean:+.1f} {interval_text(gain.low, gain.high)}",
                          f"{100 * low:+.1f} to {100 * high:+.1f}", f"{delta:+.2f}",
                          f"{percentile(singles, delta / 100):.0f}"]  # fmt: skip
            print("| " + " | ".join(cells) + " |")


def attribution(arms: Arms, paper) -> None:
    print("\n| family | paper's mean Δ | notebooks' protocol, 20 seeds | matched heads |"
          " + selection on validation | one run (paper − protocol) | head | selection |"
          " left: distillation |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for family, prefix in (("MNIST", "mnist"), ("FashionMNIST", "fashion")):
        settings = [s for s in SETTINGS if s[0].startswith(prefix)]
        paper_gains, steps = [], defaultdict(list)
        for dataset, qubits, baseline in settings:
            student = f"released-q{qubits}"
            numbers = paper.numbers.get(dataset, {}).get(f"q{qubits}", {})
            for teacher in TEACHERS:
                found = [mean_gain(arms, dataset, student, base, teacher, metric)
                         for base, metric in ((baseline, BEST_TEST), (student, BEST_TEST),
                                              (student, BY_VALIDATION))]  # fmt: skip
                if None in found or teacher not in numbers:
                    continue
                paper_gains.append(numbers[teacher][1] / 100)
                for name, value in zip(("protocol", "matched", "validation"), found, strict=True):
                    steps[name].append(value)
        if not paper_gains:
            continue
        m = {k: statistics.fmean(v) for k, v in steps.items()}
        p = statistics.fmean(paper_gains)
        protocol, matched, validation = m["protocol"], m["matched"], m["validation"]
        shares = (protocol, matched, validation, p - protocol, protocol - matched,
                  matched - validation, validation)  # fmt: skip
        cells = [family, f"{100 * p:+.2f} ({len(paper_gains)} rows)",
                 *(percent(x, signed=True, digits=2) for x in shares)]  # fmt: skip
        print("| " + " | ".join(cells) + " |")


def main(uri: str = "sqlite:///mlflow.db", experiment: str = "notebooks") -> None:
    paper = load_spec(ROOT / "benchmarks.toml", registry()).report
    arms = load_arms(uri, experiment)
    rows_table(arms, paper)
    attribution(arms, paper)


if __name__ == "__main__":
    main(*sys.argv[1:])
