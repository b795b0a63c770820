"""The verdict's interval half-widths, and how much variance one LeNet per seed adds.

    python studies/intervals.py [TRACKING_URI] [EXPERIMENT]

For every distilled row: the 95 % half-width of its paired gain, the largest per student.
Then, per student and data set, the spread (std over seeds) of the gain under LeNet trained
once per seed (`lenet`) against LeNet seed 0 teaching every seed (`lenet-0`): their ratio,
and the variance the per-seed teacher adds (a difference of the two variances, which one
run measures only roughly).
"""

from __future__ import annotations

import statistics
import sys
from collections import defaultdict

from kdbench.report import load_rows
from kdbench.tracking import Tracker


def main(uri: str = "sqlite:///mlflow.db", experiment: str = "verdict") -> None:
    rows = [r for r in load_rows(Tracker(uri, experiment, create=False)) if r.gain]
    widest: dict[str, float] = defaultdict(float)
    for row in rows:
        widest[row.student] = max(widest[row.student], 100 * (row.gain.high - row.gain.low) / 2)
    print("largest 95 % half-width of a gain, points, per student:")
    for student, width in sorted(widest.items()):
        print(f"  {student:14} {width:5.1f}")
    by_arm = {(r.dataset, r.student, r.teacher): r.gain for r in rows}
    print("std of the gain over seeds, points: LeNet per seed | LeNet seed 0 | ratio | added")
    ratios = []
    for (dataset, student, teacher), gain in sorted(by_arm.items()):
        fixed = by_arm.get((dataset, student, "lenet-0"))
        if teacher != "lenet" or fixed is None:
            continue
        per_seed, one = 100 * gain.std, 100 * fixed.std
        added = per_seed**2 - one**2
        ratios.append(per_seed / one if one else float("nan"))
        print(f"  {dataset:18} {student:13} {per_seed:5.1f} | {one:5.1f} | {ratios[-1]:4.2f}"
              f" | {added:+6.1f} pt²")  # fmt: skip
    if ratios:
        print(f"median ratio {statistics.median(ratios):.2f} over {len(ratios)} rows")


if __name__ == "__main__":
    main(*sys.argv[1:])
