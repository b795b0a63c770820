"""Which verdicts hold on a second run: the gains of two experiments (the same matrix on two
floating-point paths, two machines) side by side, each row's verdict in both."""

from __future__ import annotations

from collections.abc import Sequence

from kdbench.config.report import ReportConfig
from kdbench.report.cells import gain_text
from kdbench.report.stats import Gain, Row, adjusted
from kdbench.report.tables import FamilyTable, TableRow, arm_label


def verdict(gain: Gain | None) -> str:
    """'helps' or 'hurts' where Holm's p < 0.05; 'within ±m' where the Holm-adjusted TOST
    shows the gain lies within the margin; else 'no evidence' (of either)."""
    if gain is not None and gain.p_adjusted is not None and gain.significant:
        return "helps" if gain.mean > 0 else "hurts"
    if gain is not None and gain.equivalent and gain.margin is not None:
        return f"within ±{100 * gain.margin:g}"
    return "no evidence"


def stability_table(
    first: Sequence[Row], second: Sequence[Row], config: ReportConfig | None = None
) -> FamilyTable:
    """Every arm with a gain in both experiments: its gain, interval and verdict in each,
    and whether the verdict holds. Holm runs over these common arms in each experiment, so
    that a rerun of part of the matrix faces as many comparisons as the first run does."""
    labels = (config or ReportConfig()).labels

    def gains(rows: Sequence[Row]) -> dict[tuple[str, ...], Row]:
        return {r.arm: r for r in rows if r.selected and r.gain}

    by_arm = gains(first), gains(second)
    common = sorted(by_arm[0].keys() & by_arm[1].keys())
    margin = (config or ReportConfig()).margin
    ours, theirs = (
        {r.arm: r for r in adjusted([arms[a] for a in common], margin)} for arms in by_arm
    )
    records = []
    for arm in common:
        a, b = ours[arm], theirs[arm]
        architecture, dataset = arm_label(a, labels)
        cells = (
            *gain_text(a.gain)[:2],
            verdict(a.gain),
            *gain_text(b.gain)[:2],
            verdict(b.gain),
            "✓" if verdict(a.gain) == verdict(b.gain) else "✗",
        )
        records.append(TableRow("Stability", architecture, dataset, cells))
    m_first, m_second = len(ours), len(theirs)
    heading = (
        "Category",
        "Architecture",
        "Dataset",
        "+Δ (1st)",
        "95% CI (1st)",
        f"verdict (1st, Holm m={m_first})",
        "+Δ (2nd)",
        "95% CI (2nd)",
        f"verdict (2nd, Holm m={m_second})",
        "holds",
    )
    return FamilyTable(heading, records)
