"""The statistics of a report: mean ± std over seeds, and each teacher's paired gain."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from kdbench.config import NO_TEACHER
from kdbench.results import Result


@dataclass(frozen=True)
class Gain:
    """A paired difference over seeds: treated minus baseline, seed by seed."""

    mean: float
    std: float
    n: int
    low: float  # 95 % confidence interval of the mean (t distribution)
    high: float
    p_value: float  # two-sided paired t-test; nan with fewer than 2 pairs

    @property
    def significant(self) -> bool:
        return self.p_value < 0.05


def paired_gain(baseline: Mapping[int, float], treated: Mapping[int, float]) -> Gain | None:
    """The gain of `treated` over `baseline` on the seeds both have; None without any."""
    from scipy import stats

    diffs = [treated[s] - baseline[s] for s in sorted(treated) if s in baseline]
    if not diffs:
        return None
    mean = statistics.fmean(diffs)
    if len(diffs) < 2:
        return Gain(mean, 0.0, 1, math.nan, math.nan, math.nan)
    std = statistics.stdev(diffs)
    half = stats.t.ppf(0.975, len(diffs) - 1) * std / math.sqrt(len(diffs))
    if std == 0:
        p_value = 1.0 if mean == 0 else 0.0
    else:
        p_value = float(stats.ttest_rel(
            [treated[s] for s in sorted(treated) if s in baseline],
            [baseline[s] for s in sorted(treated) if s in baseline],
        ).pvalue)  # fmt: skip
    return Gain(mean, std, len(diffs), mean - half, mean + half, p_value)


@dataclass(frozen=True)
class Row:
    """One (dataset, teacher, student, backend) group over its seeds."""

    dataset: str
    teacher: str
    student: str
    backend: str
    seeds: int
    mean: float
    std: float
    teacher_mean: float | None
    teacher_std: float | None
    gain: Gain | None  # over the same student without a teacher
    results: tuple[Result, ...] = ()

    @property
    def params(self) -> Mapping[str, str]:
        return self.results[0].params if self.results else {}


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(results: Iterable[Result]) -> list[Row]:
    """One row per (dataset, teacher, student, backend), in first-seen order."""
    groups: dict[tuple[str, str, str, str], dict[int, Result]] = defaultdict(dict)
    for r in results:
        groups[(r.dataset, r.teacher, r.student, r.backend)][r.seed] = r
    rows = []
    for (dataset, teacher, student, backend), by_seed in groups.items():
        mean, std = mean_std([r.test_accuracy for r in by_seed.values()])
        teachers = [r.teacher_test_accuracy for r in by_seed.values()
                    if r.teacher_test_accuracy is not None]  # fmt: skip
        teacher_mean, teacher_std = mean_std(teachers) if teachers else (None, None)
        baseline = groups.get((dataset, NO_TEACHER, student, backend))
        gain = None
        if teacher != NO_TEACHER and baseline:
            gain = paired_gain(
                {s: r.test_accuracy for s, r in baseline.items()},
                {s: r.test_accuracy for s, r in by_seed.items()},
            )
        rows.append(Row(dataset, teacher, student, backend, len(by_seed), mean, std,
                        teacher_mean, teacher_std, gain, tuple(by_seed.values())))  # fmt: skip
    return rows
