"""Where the paper's numbers fall in the released notebooks' protocol, and what made its gains.

    python studies/notebooks_summary.py [TRACKING_URI] [EXPERIMENT]

Reads the cells of `studies/notebooks.toml` and prints, in Markdown:
1. For each of the paper's 24 student rows (6 data set × qubit settings; alone, AlexNet,
   LeNet, ensemble): kdbench's accuracy over seeds as the notebooks measured it (best test
   epoch), the paper's number and its percentile among kdbench's runs; for the taught rows,
   the mean Δ (paired by seed), the spread of a single run's Δ (every taught run against every
   alone run: the notebooks ran each arm once, unseeded) and the paper's Δ's percentile in it.
2. What a teacher changes: how often a run learns at all, and where runs that learn land.
3. The attribution of the paper's average Δ per data-set family: the notebooks' departures
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
from kdbench.distill import LEARNED_MARGIN
from kdbench.plugins import registry
from kdbench.report.cells import interval_text, percent
from kdbench.report.stats import mean_std, paired_gain
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
# The one taught row whose notebook used its baseline's head too (`distill teacher=lenet
# student=fashionmnist 0-7 3qubits-Copy1`: softmax head, KD term times 0): its Δ compared one
# head with itself, so here it is paired with the same head alone.
SAME_HEAD_ROWS = {("fashion-mnist-0-7", 3, "lenet")}
BEST_TEST, BY_VALIDATION = "test_accuracy", "val_selected_test_accuracy"


def notebook_baseline(dataset: str, qubits: int, baseline: str, teacher: str) -> str:
    """The arm alone that the notebooks compared this taught row with."""
    same = (dataset, qubits, teacher) in SAME_HEAD_ROWS
    return f"released-q{qubits}" if same else baseline


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


def classes(dataset: str) -> int:
    return int(dataset.rsplit("-", 1)[1]) + 1


def learned(values: list[float], dataset: str) -> int:
    """How many runs rose LEARNED_MARGIN above chance (the others stayed near it)."""
    return sum(v >= 1 / classes(dataset) + LEARNED_MARGIN for v in values)


def rows_table(arms: Arms, paper) -> None:
    print("| data set | qubits | teacher | kdbench (%) | median | learned | paper (%) |"
          " percentile | mean Δ [95 % CI] | single-run Δ (5th to 95th) | paper Δ |"
          " percentile |")  # fmt: skip
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for dataset, qubits, baseline in SETTINGS:
        student = f"released-q{qubits}"
        numbers = paper.numbers.get(dataset, {}).get(f"q{qubits}", {})
        # The notebooks' baseline; where its head differs, the taught students' head alone too.
        shown = list(dict.fromkeys([("none", baseline), ("none", student)]))
        shown += [(teacher, student) for teacher in TEACHERS]
        for teacher, shown_student in shown:
            runs = arms.get((dataset, teacher, shown_student), {}).get(BEST_TEST, {})
            if not runs or teacher not in numbers:
                continue
            values = list(runs.values())
            accuracy, delta = numbers[teacher]
            label = teacher
            if teacher == "none" and baseline != student:
                label = f"none ({shown_student})"
            cells = [dataset, str(qubits), label, percent(*mean_std(values)),
                     percent(statistics.median(values)),
                     f"{learned(values, dataset)} / {len(values)}", f"{accuracy:.2f}",
                     f"{percentile(values, accuracy / 100):.0f}"]  # fmt: skip
            compared = arms.get(
                (dataset, "none", notebook_baseline(dataset, qubits, baseline, teacher)), {}
            ).get(BEST_TEST, {})
            if teacher == "none" or len(compared) < 2 or len(runs) < 2:
                cells += ["–"] * 4
            else:
                gain = paired_gain(compared, runs)
                singles = [t - a for t in values for a in compared.values()]
                ventiles = statistics.quantiles(singles, n=20)
                cells += [f"{percent(gain.mean, signed=True)} {interval_text(gain.low, gain.high)}",
                          f"{percent(ventiles[0], signed=True)} to"
                          f" {percent(ventiles[-1], signed=True)}",
                          f"{delta:+.2f}", f"{percentile(singles, delta / 100):.0f}"]  # fmt: skip
            print("| " + " | ".join(cells) + " |")


def learning_table(arms: Arms) -> None:
    """What a teacher changes under this protocol: how often a run learns at all (Fisher's
    exact test against the student alone), and where the runs that learn land (Welch's
    interval of the difference of their means)."""
    print("\n| data set | qubits | teacher | learned | alone learned | Fisher p |"
          " learned runs (%) | alone's learned runs (%) | Δ among learned [95 % CI] |")  # fmt: skip
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for dataset, qubits, baseline in SETTINGS:
        student = f"released-q{qubits}"
        heads = dict.fromkeys((baseline, student))  # the notebooks' baseline, then the same head
        for head in heads:
            alone = list(arms.get((dataset, "none", head), {}).get(BEST_TEST, {}).values())
            for teacher in TEACHERS:
                runs = list(arms.get((dataset, teacher, student), {}).get(BEST_TEST, {}).values())
                if len(runs) < 2 or len(alone) < 2:
                    continue
                bar = 1 / classes(dataset) + LEARNED_MARGIN
                up, base = [v for v in runs if v >= bar], [v for v in alone if v >= bar]
                table = [[len(up), len(runs) - len(up)], [len(base), len(alone) - len(base)]]
                fisher = stats.fisher_exact(table).pvalue
                among = "–"
                if len(up) > 1 and len(base) > 1:
                    welch = stats.ttest_ind(up, base, equal_var=False).confidence_interval()
                    mean = statistics.fmean(up) - statistics.fmean(base)
                    among = f"{percent(mean, signed=True)} {interval_text(welch.low, welch.high)}"
                label = teacher if head == student else f"{teacher} (vs the {head} baseline)"
                cells = [dataset, str(qubits), label, f"{len(up)} / {len(runs)}",
                         f"{len(base)} / {len(alone)}", f"{fisher:.3f}",
                         percent(*mean_std(up)) if up else "–",
                         percent(*mean_std(base)) if base else "–", among]  # fmt: skip
                print("| " + " | ".join(cells) + " |")


# The attribution's steps: each a Δ of the taught student over a baseline, by metric.
STEPS = {
    "protocol": ("notebook head", BEST_TEST),  # the notebooks' baselines, best test epoch
    "matched": ("same head", BEST_TEST),  # the taught student's own head alone
    "validation": ("same head", BY_VALIDATION),  # ... and the epoch validation selects
}


def over_seeds(values: dict[int, float]) -> str:
    """The mean of per-seed values with its 95 % t interval over seeds, in points."""
    gain = paired_gain(dict.fromkeys(values, 0.0), values)
    if gain is None or gain.n < 2:
        return "–"
    return f"{percent(gain.mean, signed=True, digits=2)} {interval_text(gain.low, gain.high)}"


def attribution(arms: Arms, paper) -> None:
    """Per family: the paper's mean Δ, and the notebooks' departures switched off one at a
    time, each as a mean over the family's rows computed seed by seed (so that rows sharing a
    baseline are not counted as independent), with its 95 % t interval over seeds."""
    print("\n| family | rows | paper's mean Δ | notebooks' protocol (20 seeds) | matched heads |"
          " + selection on validation | one run, and what else differs (paper − protocol) |"
          " head | selection on test |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for family, prefix in (("MNIST", "mnist"), ("FashionMNIST", "fashion")):
        paper_gains, per_seed = [], defaultdict(lambda: defaultdict(list))
        for dataset, qubits, notebook_head in (s for s in SETTINGS if s[0].startswith(prefix)):
            student = f"released-q{qubits}"
            numbers = paper.numbers.get(dataset, {}).get(f"q{qubits}", {})
            for teacher in TEACHERS:
                taught = arms.get((dataset, teacher, student), {})
                steps = {}
                for name, (head, metric) in STEPS.items():
                    base = student
                    if head == "notebook head":
                        base = notebook_baseline(dataset, qubits, notebook_head, teacher)
                    alone = arms.get((dataset, "none", base), {}).get(metric, {})
                    mine = taught.get(metric, {})
                    steps[name] = {i: mine[i] - alone[i] for i in mine if i in alone}
                seeds = set.intersection(*(set(v) for v in steps.values()))
                if teacher not in numbers or not seeds:
                    continue
                paper_gains.append(numbers[teacher][1] / 100)
                for name, by_seed in steps.items():
                    for i in seeds:
                        per_seed[name][i].append(by_seed[i])
        if not paper_gains:
            continue
        # Seed i's family mean of each step (rows that lack seed i leave it out).
        complete = len(paper_gains)
        means = {name: {i: statistics.fmean(v) for i, v in by_seed.items() if len(v) == complete}
                 for name, by_seed in per_seed.items()}  # fmt: skip
        p = statistics.fmean(paper_gains)
        seeds = means["protocol"]
        head = {i: means["protocol"][i] - means["matched"][i] for i in seeds}
        selection = {i: means["matched"][i] - means["validation"][i] for i in seeds}
        one_run = p - statistics.fmean(seeds.values())
        cells = [family, str(complete), percent(p, signed=True, digits=2),
                 *(over_seeds(means[k]) for k in ("protocol", "matched", "validation")),
                 percent(one_run, signed=True, digits=2), over_seeds(head),
                 over_seeds(selection)]  # fmt: skip
        print("| " + " | ".join(cells) + " |")


def main(uri: str = "sqlite:///mlflow.db", experiment: str = "notebooks") -> None:
    paper = load_spec(ROOT / "benchmarks.toml", registry()).report
    arms = load_arms(uri, experiment)
    rows_table(arms, paper)
    learning_table(arms)
    attribution(arms, paper)


if __name__ == "__main__":
    main(*sys.argv[1:])
