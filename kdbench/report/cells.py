"""How a figure reads in a table's cell: percentages, gains and intervals, p-values, the
marks of selection on test and of collapsed seeds."""

from __future__ import annotations

import math

from kdbench.report.stats import Gain, Row

NONE = "–"  # an empty cell
# Beside an accuracy whose epoch was selected on the test set (the notebooks' protocol).
ON_TEST = "†"


def percent(
    mean: float | None,
    std: float | None = None,
    signed: bool = False,
    digits: int = 1,
    scale: float = 100,
) -> str:
    """'97.4 ± 0.3' (or '+1.2') from fractions, to `digits` places; '–' for None.
    `scale=1` writes the values as they are (a loss in nats)."""
    if mean is None:
        return NONE
    text = f"{scale * mean:+.{digits}f}" if signed else f"{scale * mean:.{digits}f}"
    return f"{text} ± {scale * std:.{digits}f}" if std is not None else text


def gain_text(
    gain: Gain | None, digits: int = 1, scale: float = 100
) -> tuple[str, str, str, str, str]:
    """(Δ, 95 % CI, p, Holm-adjusted p, Benjamini-Hochberg q) cells for a table."""
    if gain is None:
        return NONE, NONE, NONE, NONE, NONE
    mean = percent(gain.mean, signed=True, digits=digits, scale=scale)
    if gain.n < 2:
        return mean, NONE, NONE, NONE, NONE
    interval = interval_text(gain.low, gain.high, digits, scale)
    p = NO_SPREAD if gain.no_spread else p_text(gain.p_value)
    holm = NONE if gain.p_adjusted is None else p_text(gain.p_adjusted)
    q = NONE if gain.q_value is None else p_text(gain.q_value)
    return mean, interval, p, holm, q


def equivalence_text(gain: Gain | None, digits: int = 1) -> tuple[str, str]:
    """(TOST p Holm-adjusted at the gain's margin, minimum detectable effect) cells."""
    if gain is None or gain.n < 2:
        return NONE, NONE
    tost = NONE if gain.tost_adjusted is None else p_text(gain.tost_adjusted)
    mde = NONE if math.isnan(gain.mde) else percent(gain.mde, digits=digits)
    return tost, mde


NO_SPREAD = "no spread"  # every seed's difference the same: no t-test, not p = 0


def interval_text(low: float, high: float, digits: int = 1, scale: float = 100) -> str:
    """'[-1.0, +2.4]' from fractions, to `digits` places (`scale=1`: as they are)."""
    return f"[{scale * low:+.{digits}f}, {scale * high:+.{digits}f}]"


def accuracy_text(row: Row) -> str:
    """'72.1 ± 3.4', with the † of selection on test where its seeds were selected so."""
    text = percent(row.mean, row.std)
    return f"{text} {ON_TEST}" if row.selected_on_test else text


def collapsed_text(row: Row) -> str:
    """'1 / 5': seeds whose validation accuracy fell back to chance; '–' if not recorded."""
    return NONE if row.collapsed is None else f"{row.collapsed} / {row.seeds}"


def p_text(p: float) -> str:
    """A p-value to 3 places; below 0.001 as '<0.001', never as 0; '–' for none (nan)."""
    if math.isnan(p):
        return NONE
    return "<0.001" if p < 0.001 else f"{p:.3f}"
