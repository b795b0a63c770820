"""The statistics of a report: mean ± std over seeds, selection of sweep points on validation,
each arm's paired gain over the baseline, Holm's adjustment of its p-values (and
Benjamini-Hochberg's q-values), equivalence tests (TOST) and minimum detectable effects
beside them, and gains pooled over student and data-set pairs."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from kdbench.constants import BEST_TEST, MARGIN, NO_DISTILLER, NO_TEACHER
from kdbench.results import Result

SELECTION_KEY = "train.selection"
POWER = 0.8  # the power a minimum detectable effect is stated at


@dataclass(frozen=True)
class Gain:
    """A paired difference over seeds: treated minus baseline, seed by seed."""

    mean: float
    std: float
    n: int
    low: float  # 95 % confidence interval of the mean (t distribution)
    high: float
    p_value: float  # two-sided paired t-test; nan with fewer than 2 pairs or no spread
    p_adjusted: float | None = None  # Holm-adjusted over a table's comparisons (`adjusted`)
    q_value: float | None = None  # Benjamini-Hochberg over the same comparisons
    # Equivalence within ±margin: TOST's p, Holm-adjusted over the same comparisons (`adjusted`)
    tost_adjusted: float | None = None
    margin: float | None = None

    def tost(self, margin: float) -> float:
        """Two one-sided paired t-tests against -margin and +margin: a small p says the
        gain lies within ±margin (evidence of no effect larger than it). nan without a test
        (fewer than 2 pairs, or no spread)."""
        from scipy import stats

        if self.n < 2 or self.std == 0:
            return math.nan
        error = self.std / math.sqrt(self.n)
        below = stats.t.sf((self.mean + margin) / error, self.n - 1)  # H0: gain <= -margin
        above = stats.t.cdf((self.mean - margin) / error, self.n - 1)  # H0: gain >= +margin
        return float(max(below, above))

    @property
    def mde(self) -> float:
        """The minimum detectable effect: the smallest true gain a two-sided paired t-test at
        5 % would find with 80 % power at these seeds and this spread (nan without spread)."""
        from scipy import stats

        if self.n < 2 or self.std == 0:
            return math.nan
        t = stats.t.ppf(1 - 0.05 / 2, self.n - 1) + stats.t.ppf(POWER, self.n - 1)
        return float(t * self.std / math.sqrt(self.n))

    @property
    def equivalent(self) -> bool:
        """Within ±margin by TOST, after the adjustment (`adjusted` sets both)."""
        return self.tost_adjusted is not None and self.tost_adjusted < 0.05

    @property
    def no_spread(self) -> bool:
        """Every pair differs by the same nonzero amount: the t-test is undefined (not p = 0)."""
        return self.n >= 2 and self.std == 0 and self.mean != 0

    @property
    def significant(self) -> bool:
        """Below 5 %, after the adjustment where one was made."""
        p = self.p_value if self.p_adjusted is None else self.p_adjusted
        return p < 0.05


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
    if std == 0:  # no difference at all: p = 1; the same nonzero one on every seed: no t-test
        p_value = 1.0 if mean == 0 else math.nan
    else:
        p_value = float(
            stats.ttest_rel(
                [treated[s] for s in sorted(treated) if s in baseline],
                [baseline[s] for s in sorted(treated) if s in baseline],
            ).pvalue
        )
    return Gain(mean, std, len(diffs), mean - half, mean + half, p_value)


@dataclass(frozen=True)
class Row:
    """One arm (dataset, teacher, student, backend, distiller) at one sweep point, over its
    seeds. Without a sweep an arm has one point, selected."""

    dataset: str
    teacher: str
    student: str
    backend: str
    distiller: str
    seeds: int
    mean: float
    std: float
    teacher_mean: float | None
    teacher_std: float | None
    gain: Gain | None  # over the same student without a teacher, at its selected point
    results: tuple[Result, ...] = ()
    point: Mapping[str, Any] = field(default_factory=dict)  # the sweep values, by dotted key
    val_mean: float | None = None  # mean validation accuracy: what selection compares
    selected: bool = True  # the arm's point with the best validation accuracy
    points: int = 1  # how many points its arm was selected from

    @property
    def collapsed(self) -> int | None:
        """How many of its seeds collapsed (`kdbench.distill.collapsed`); None if its runs
        did not record it (a store written without the metric)."""
        flags = [r.collapsed for r in self.results if r.collapsed is not None]
        return sum(flags) if flags else None

    @property
    def params(self) -> Mapping[str, str]:
        return self.results[0].params if self.results else {}

    @property
    def selected_on_test(self) -> bool:
        """Whether its seeds kept the epoch of best TEST accuracy (`[train] selection =
        "best-test"`, the released notebooks' protocol): an optimistic figure, flagged."""
        return any(r.params.get(SELECTION_KEY) == BEST_TEST for r in self.results)

    @property
    def arm(self) -> tuple[str, str, str, str, str]:
        return (self.dataset, self.teacher, self.student, self.backend, self.distiller)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(results: Iterable[Result]) -> list[Row]:
    """One row per arm and sweep point, in first-seen order, each arm's point with the best
    mean validation accuracy over seeds marked `selected` (ties: the first point in sorted
    order). Every gain pairs with the baseline arm's selected point, seed by seed: the test
    set chooses nothing."""
    groups: dict[tuple[str, ...], dict[int, Result]] = defaultdict(dict)
    for r in results:
        groups[(r.dataset, r.teacher, r.student, r.backend, r.distiller, r.point)][r.seed] = r
    arms: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for key in groups:
        arms[key[:5]].append(key[5])
    chosen = {arm: _select(arm, points, groups) for arm, points in arms.items()}
    rows = []
    for key, by_seed in groups.items():
        dataset, teacher, student, backend, distiller, point = key
        mean, std = mean_std([r.test_accuracy for r in by_seed.values()])
        teachers = [
            r.teacher_test_accuracy for r in by_seed.values() if r.teacher_test_accuracy is not None
        ]
        teacher_mean, teacher_std = mean_std(teachers) if teachers else (None, None)
        base_arm = (dataset, NO_TEACHER, student, backend, NO_DISTILLER)
        baseline = groups.get((*base_arm, chosen[base_arm])) if base_arm in chosen else None
        gain = None
        if key[:5] != base_arm and baseline:
            gain = paired_gain(
                {s: r.test_accuracy for s, r in baseline.items()},
                {s: r.test_accuracy for s, r in by_seed.items()},
            )
        first = next(iter(by_seed.values()))
        rows.append(
            Row(
                dataset,
                teacher,
                student,
                backend,
                distiller,
                len(by_seed),
                mean,
                std,
                teacher_mean,
                teacher_std,
                gain,
                tuple(by_seed.values()),
                dict(first.sweep),
                _val_mean(by_seed),
                chosen[key[:5]] == point,
                len(arms[key[:5]]),
            )
        )
    return rows


def _val_mean(by_seed: Mapping[int, Result]) -> float | None:
    values = [r.val_accuracy for r in by_seed.values() if r.val_accuracy is not None]
    return statistics.fmean(values) if values else None


def _select(
    arm: tuple[str, ...], points: list[str], groups: Mapping[tuple[str, ...], Mapping[int, Result]]
) -> str:
    """The point of `arm` with the best mean validation accuracy."""

    def score(point: str) -> float:
        value = _val_mean(groups[(*arm, point)])
        return -math.inf if value is None else value

    return max(sorted(points), key=score)  # max keeps the first of equals


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of `p_values` for their number of comparisons; a nan
    (a comparison without a test) stays nan and is not counted."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        adjusted[i] = running
    return adjusted


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg q-values of `p_values` (the false discovery rate at which each
    would be declared); a nan stays nan and is not counted."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    q_values = [math.nan] * len(p_values)
    running = 1.0
    for rank in range(len(tested), 0, -1):
        p, i = tested[rank - 1]
        running = min(running, len(tested) * p / rank)
        q_values[i] = running
    return q_values


def adjusted(rows: Sequence[Row], margin: float = MARGIN) -> list[Row]:
    """The rows with their gains' p-values Holm-adjusted, and their Benjamini-Hochberg
    q-values, over the gains among them; and their TOST p-values at ±`margin` (a fraction),
    Holm-adjusted over the same gains."""
    p_values = [r.gain.p_value if r.gain else math.nan for r in rows]
    tost = holm([r.gain.tost(margin) if r.gain else math.nan for r in rows])
    return [
        replace(
            row, gain=replace(row.gain, p_adjusted=p, q_value=q, tost_adjusted=e, margin=margin)
        )
        if row.gain
        else row
        for row, p, q, e in zip(
            rows, holm(p_values), benjamini_hochberg(p_values), tost, strict=True
        )
    ]


@dataclass(frozen=True)
class Pooled:
    """One teacher's (and distiller's) gains over every student and data set it taught."""

    teacher: str
    distiller: str
    pairs: int  # (student, data set, backend) rows pooled
    mean: float  # the mean of their mean gains
    low: float  # 95 % t interval over the pairs (nan with fewer than 2)
    high: float
    wins: int  # pairs whose mean gain is above 0
    losses: int  # and below
    sign_p: float  # two-sided sign test of wins against losses (ties dropped)


def pooled(rows: Sequence[Row]) -> list[Pooled]:
    """Per teacher and distiller, the selected rows' gains pooled over the student, data set
    and backend pairs: the mean gain with its interval across pairs, and a sign test (does
    the teacher help more often than it hurts, whatever the size)."""
    groups: dict[tuple[str, str], list[float]] = defaultdict(list)
    for row in rows:
        if row.selected and row.gain is not None:
            groups[(row.teacher, row.distiller)].append(row.gain.mean)
    return [
        Pooled(teacher, distiller, *pool(gains)) for (teacher, distiller), gains in groups.items()
    ]


def pool(gains: Sequence[float]) -> tuple[int, float, float, float, int, int, float]:
    """(pairs, mean, 95 % t interval low and high across pairs (nan with fewer than 2), wins,
    losses, two-sided sign test p of wins against losses, ties dropped) of mean gains."""
    from scipy import stats

    mean = statistics.fmean(gains)
    low = high = math.nan
    if len(gains) > 1:
        half = stats.t.ppf(0.975, len(gains) - 1) * statistics.stdev(gains) / math.sqrt(len(gains))
        low, high = mean - half, mean + half
    wins, losses = sum(g > 0 for g in gains), sum(g < 0 for g in gains)
    sign_p = stats.binomtest(wins, wins + losses).pvalue if wins + losses else math.nan
    return len(gains), mean, low, high, wins, losses, float(sign_p)


def tests_count(rows: Sequence[Row]) -> int:
    """How many comparisons Holm's adjustment counted among `rows`."""
    return sum(1 for r in rows if r.gain and not math.isnan(r.gain.p_value))
