"""What `kdbench run` does once a config is validated: the matrix run under a progress
display, then the results table and a one-line summary."""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from kdbench.config import Spec
    from kdbench.matrix import Cell
    from kdbench.run.events import CellOutcome


def run_and_report(
    spec: Spec,
    cells: Sequence[Cell],
    root: Path,
    uri_option: str | None,
    console: Console,
    errors: Console,
    *,
    rerun: bool = False,
    fail_fast: bool = False,
    jobs: int = 1,
    executor: str = "local",
    address: str | None = None,
) -> int:
    """Run `cells` under a progress display on `errors`, then print the results table and a
    summary line on `console`; the exit code: 0, or 1 if a cell failed or was left undone.
    Stopped (Ctrl-C, SIGTERM), it says how to resume and exits 128 + the signal."""
    # What the summary imports, imported before the cells run: a stop that lands inside a
    # C extension's import (scipy.stats's, as the run ends) fails it with ImportError and a
    # traceback instead of stopping the run.
    import scipy.stats  # noqa: F401

    import kdbench.report  # noqa: F401
    from kdbench import paths
    from kdbench.leases import Lease
    from kdbench.plugins import registry
    from kdbench.run import connect_ray, run_matrix
    from kdbench.run.display import progress_display
    from kdbench.signals import terminate_as_interrupt
    from kdbench.stores import resolve_tracking_uri
    from kdbench.tracking import Tracker

    if executor == "ray":  # before the store is touched: nothing is logged if Ray is not there
        connect_ray(address)
    uri = resolve_tracking_uri(uri_option, spec.experiment.tracking_uri)
    lease = Lease(spec.experiment.heartbeat_s, spec.experiment.lease_s)
    tracker = Tracker(uri, spec.experiment.name, lease=lease)
    caught: list[int] = []
    try:  # a stop anywhere until the run's results are out, the summary's printing included
        with terminate_as_interrupt() as caught:
            with progress_display(errors, len(cells)) as display:
                outcomes = run_matrix(
                    spec,
                    cells,
                    registry=registry(),
                    tracker=tracker,
                    data_root=root,
                    cache=paths.cache_dir(),
                    events=display,
                    rerun=rerun,
                    fail_fast=fail_fast,
                    jobs=jobs,
                    executor=executor,
                    address=address,
                )
            status = _summarize(outcomes, len(cells), spec.experiment.name, uri, console)
    except KeyboardInterrupt:
        caught = caught or [signal.SIGINT]
    if caught:  # also a stop whose KeyboardInterrupt Python swallowed (raised in a GC callback)
        errors.print("interrupted: finished cells are in MLflow; run again to resume")
        sys.exit(128 + caught[0])
    return status


def _summarize(
    outcomes: Sequence[CellOutcome], planned: int, experiment: str, uri: str, console: Console
) -> int:
    """Print the results table and the summary line; the exit code."""
    from kdbench.report import results_table, summarize
    from kdbench.stores import redact_uri

    count = {s: sum(o.status == s for o in outcomes) for s in ("FINISHED", "SKIPPED", "FAILED")}
    owners = sorted({o.taken_from for o in outcomes if o.taken_from})
    taken = sum(o.taken_from is not None for o in outcomes)
    notes = f" ({taken} taken over from {', '.join(owners)}: lease lapsed)" if taken else ""
    # Held by an older kdbench elsewhere (no lease to watch): not run here, and not done.
    held = sum(o.status == "HELD" for o in outcomes)
    notes += f", {held} held on another host without a lease (an older kdbench)" if held else ""
    console.print(results_table(summarize(o.result for o in outcomes if o.result)))
    console.print(
        f"{count['FINISHED']} cells finished, {count['SKIPPED']} already done, "
        f"{count['FAILED']} failed"
        f"{notes}"
        f"{'' if len(outcomes) == planned else ' (stopped at the first failure)'}; "
        f"experiment '{experiment}' in {redact_uri(uri)}",
        highlight=False,
    )
    console.print(f"browse: kdbench ui --tracking-uri {redact_uri(uri)}", highlight=False)
    return 1 if count["FAILED"] or held else 0
