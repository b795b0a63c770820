"""What `kdbench report` does, apart from printing: the rows of an experiment (and of a
second one, for `--against`), the report built, written and logged to the latest run."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from kdbench.errors import KdbenchError
from kdbench.names import file_name
from kdbench.report import ReportConfig, build_report, load_rows, to_csv, to_markdown, write
from kdbench.report.tables import FamilyTable


def report_experiment(
    config: str | None,
    *,
    profile: str | None = None,
    experiment: str | None = None,
    tracking_uri: str | None = None,
    margin: float | None = None,
    against: str | None = None,
    points: bool = False,
    output: str | None = None,
) -> tuple[list[tuple[str, FamilyTable]], Path]:
    """Build the report of `experiment` (default: CONFIG's) from its store, write its files
    to `output` (default: kdbench-results/EXPERIMENT) and log them to the experiment's
    latest invocation run; return the (title, table) pairs to print, and the folder.
    `margin` is in points; `against` names a second experiment whose verdicts are compared
    (the stability table)."""
    from kdbench.stores import resolve_tracking_uri
    from kdbench.tracking import Tracker

    configured, config_report, cells = None, None, []
    if config:
        from kdbench.config import load_spec
        from kdbench.matrix import expand
        from kdbench.plugins import registry

        spec = load_spec(config, registry(), profile=profile)
        experiment = experiment or spec.experiment.name
        configured, config_report, cells = spec.experiment.tracking_uri, spec.report, expand(spec)
    if not experiment:
        raise KdbenchError("report needs a CONFIG or --experiment NAME")
    if margin is not None:
        config_report = replace(config_report or ReportConfig(), margin=margin / 100)
    tracker = Tracker(resolve_tracking_uri(tracking_uri, configured), experiment, create=False)
    rows = load_rows(tracker, cells)
    if not rows:
        raise KdbenchError(f"experiment '{experiment}' has no finished cells")

    def history(run_id: str, key: str) -> list[float]:
        return [m.value for m in tracker.client.get_metric_history(run_id, key)]

    built = build_report(rows, history, experiment, config_report)
    shown = [(f"{experiment}: {family}", table) for family, table in built.tables.items()]
    if built.pooled is not None:
        shown.append(
            (f"{experiment}: each teacher's gain pooled over students and data sets", built.pooled)
        )
    if built.noise is not None:
        shown.append(
            (
                f"{experiment}: accuracy drop on the test ladder, distilled against alone",
                built.noise,
            )
        )
    if points:
        shown += [
            (f"{experiment}: {family}, every sweep point", table)
            for family, table in built.points.items()
        ]
    if against:
        from kdbench.report.stability import stability_table

        second = load_rows(Tracker(tracker.uri, against, create=False), cells)
        if not second:
            raise KdbenchError(f"experiment '{against}' has no finished cells")
        stable = stability_table(rows, second, config_report)
        stem = f"stability-{file_name(against)}"
        built.files[f"{stem}.md"] = to_markdown(stable, f"{experiment} against {against}").encode()
        built.files[f"{stem}.csv"] = to_csv(stable).encode()
        shown.append((f"{experiment} against {against}: which verdicts hold", stable))
    # The experiment's name becomes one folder name: whatever it holds (../, /), the
    # report stays under kdbench-results/.
    folder = Path(output or Path("kdbench-results") / file_name(experiment, limit=255))
    write(built, folder)
    invocation = tracker.latest_invocation()
    if invocation is not None:
        tracker.log_files(invocation, built.files.items(), folder="report")
    return shown, folder
