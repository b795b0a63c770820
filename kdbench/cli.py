"""The `kdbench` command line."""

from __future__ import annotations

import atexit
import json
import os
import re
import signal
import sys

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import kdbench
from kdbench.errors import KdbenchError
from kdbench.signals import end_at_once_on_stop, ignore_stops

# Tables are wide: when piped (CI, logs), do not squeeze them into 80 columns.
console = Console() if sys.stdout.isatty() else Console(width=200)
errors = Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=200)


class Group(click.Group):
    """Turns a KdbenchError, or a bad path or number on the command line, into one line on
    stderr and exit code 2; adds plugins' commands only when a name is not a built-in one or
    the commands are listed, so that `kdbench --version` and `kdbench run` skip that step.
    Only third-party plugins are imported for it: the built-in ones register no command."""

    # Set by `main`, the process's own command line (not a test's CliRunner): once a command
    # is done, a stop while the process winds down ends it at once.
    ends_process = False

    _plugin_commands_added = False

    def _add_plugin_commands(self) -> None:
        if not self._plugin_commands_added:
            from kdbench.plugins import load_registry

            self._plugin_commands_added = True
            load_registry(builtins=False).manager.hook.register_commands(cli=self)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None:
            self._add_plugin_commands()
            command = super().get_command(ctx, cmd_name)
        return command

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._add_plugin_commands()
        return super().list_commands(ctx)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except KdbenchError as exc:
            _error_line(str(exc))
            ctx.exit(exc.exit_code)
        except click.BadParameter as exc:  # e.g. CONFIG is a directory, --data-dir a file
            _error_line(exc.format_message())
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:  # outside what a command handles itself: said all the same
            errors.print("interrupted")
            ctx.exit(128 + signal.SIGINT)
        finally:
            if self.ends_process:
                end_at_once_on_stop(errors.print)


def _error_line(message: str) -> None:
    # One line whatever a key or value holds ("a\nb" is a valid TOML key), and no rich
    # markup: messages quote config keys such as [profiles.NAME].
    message = re.sub(r"[\x00-\x1f\x7f]", lambda m: repr(m.group())[1:-1], message)
    errors.print(
        f"[red]Error:[/red] {escape(message)}", markup=True, highlight=False, soft_wrap=True
    )


@click.group(cls=Group)
@click.version_option(kdbench.__version__, prog_name="kdbench")
def cli() -> None:
    """Benchmark classical-to-quantum knowledge distillation."""


tracking_option = click.option(
    "--tracking-uri",
    help="MLflow tracking URI (default: config, $MLFLOW_TRACKING_URI, sqlite:///mlflow.db)",
)
data_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    help="data directory (default: $KDBENCH_DATA or ~/.cache/kdbench/data)",
)


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--dry-run", is_flag=True, help="print the expanded matrix and stop")
@click.option("--profile", help="merge [profiles.PROFILE] of CONFIG over the rest of it")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="override one config value, e.g. --set train.epochs=2 (repeatable)",
)
@click.option("--rerun", is_flag=True, help="run cells again even if MLflow has them finished")
@click.option("--fail-fast", is_flag=True, help="stop at the first failed cell")
@click.option(
    "--jobs",
    "-j",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="cells run in this many processes at once",
)
@click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local processes, or Ray tasks",
)
@click.option("--address", help="Ray cluster address (default: start a local Ray)")
@tracking_option
@data_option
def run(
    config: str,
    dry_run: bool,
    profile: str | None,
    overrides: tuple[str, ...],
    rerun: bool,
    fail_fast: bool,
    jobs: int,
    executor: str,
    address: str | None,
    tracking_uri: str | None,
    data_dir: str | None,
) -> None:
    """Train and evaluate every cell of the matrix in CONFIG, logging each to MLflow."""
    from kdbench import paths
    from kdbench.config import load_spec
    from kdbench.matrix import expand
    from kdbench.plugins import registry
    from kdbench.run import preflight

    spec = load_spec(config, registry(), profile=profile, overrides=overrides)
    cells = expand(spec)
    # What depends on the data or the machine is refused here too, so a dry run that passes
    # means the run can start.
    root = paths.data_dir(data_dir or spec.experiment.data_dir)
    preflight(cells, root)
    if dry_run:
        from kdbench.matrix import point_text

        table = Table(title=f"{len(cells)} cells of {config}")
        swept = any(cell.sweep for cell in cells)
        columns = (
            "cell id",
            "dataset",
            "teacher",
            "student",
            "backend",
            "distiller",
            *(("sweep point",) if swept else ()),
            "seed",
        )
        for column in columns:
            table.add_column(column)
        for cell in cells:
            point = (point_text(cell.sweep),) if swept else ()
            table.add_row(cell.id, *cell.group, *point, str(cell.seed))
        console.print(table)
        return
    from kdbench.run.command import run_and_report

    options = {
        "rerun": rerun,
        "fail_fast": fail_fast,
        "jobs": jobs,
        "executor": executor,
        "address": address,
    }
    code = run_and_report(spec, cells, root, tracking_uri, console, errors, **options)
    if code:
        sys.exit(code)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def plugins(as_json: bool) -> None:
    """List plugins, their hooks and what they register, with options."""
    from kdbench.options import OptionInfo
    from kdbench.plugins import registry

    listing = registry().listing()
    if as_json:
        click.echo(json.dumps(listing, indent=2, default=str))
        return
    for plugin in listing:
        source = "built-in" if plugin["builtin"] else plugin["distribution"]
        console.print(
            f"[bold]{plugin['name']}[/bold] {plugin['version']} ({source}) "
            f"hooks: {', '.join(plugin['hooks']) or '-'}"
        )
        for problem in plugin["problems"]:
            console.print(f"  [red]problem:[/red] {problem}", highlight=False)
        for kind, items in plugin["registered"].items():
            for item in items:
                console.print(f"  {kind[:-1]} [cyan]{item['name']}[/cyan]: {item['summary']}")
                for o in item["options"]:
                    limits = OptionInfo(**o).limits()
                    console.print(
                        f"      {o['name']} ({o['type']}, default {o['default']!r}"
                        f"{'; ' + limits if limits else ''}): {o['help']}",
                        highlight=False,
                    )


@cli.group()
def data() -> None:
    """Get and check the data sets."""


@data.command()
@click.argument("datasets", nargs=-1)
@data_option
def fetch(datasets: tuple[str, ...], data_dir: str | None) -> None:
    """Fetch and verify DATASETS (default: every registered data set)."""
    from kdbench import paths
    from kdbench.api import Dataset
    from kdbench.plugins import registry

    reg = registry()
    root = paths.data_dir(data_dir)
    for name in datasets or reg.names("datasets"):
        dataset = reg.get("datasets", name)()
        what = f"{len(dataset.class_names)} classes, inputs of shape {dataset.shape_text()}"
        if not datasets and type(dataset).fetch is Dataset.fetch:  # named, it says why not
            console.print(
                f"{name} ({what}): no fetch step; its files are placed by hand", highlight=False
            )
            continue
        dataset.fetch(root, report=lambda line: console.print(line, highlight=False))
        console.print(f"{name}: {what}", highlight=False)


@cli.command()
@tracking_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
def ui(tracking_uri: str | None, host: str, port: int) -> None:
    """Start the MLflow UI on the tracking store."""
    from kdbench.stores import redact_uri, resolve_tracking_uri
    from kdbench.ui import ui_command

    uri = resolve_tracking_uri(tracking_uri)
    command = ui_command(uri, host, port)
    console.print(f"MLflow UI on http://{host}:{port} for {redact_uri(uri)}", highlight=False)
    sys.stdout.flush()
    # Become the UI process (argument list, no shell), so that stopping kdbench stops it.
    os.execv(sys.executable, command)


@cli.command()
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--profile", help="the profile the runs were made with (for the experiment name)")
@click.option("--experiment", help="experiment name (default: the config's)")
@click.option(
    "--format",
    "form",
    type=click.Choice(["rich", "markdown", "latex", "csv"]),
    default="rich",
    show_default=True,
    help="how to print the tables",
)
@click.option(
    "--output",
    type=click.Path(file_okay=False),
    help="folder for tables and figures (default: kdbench-results/EXPERIMENT)",
)
@tracking_option
@click.option("--points", is_flag=True, help="also print every sweep point (validation, test)")
@click.option(
    "--margin",
    type=click.FloatRange(0, 100, min_open=True),
    help="equivalence margin in points: TOST tests whether each gain lies within ±margin"
    " (default: [report] equivalence_margin, else 1)",
)
@click.option(
    "--against",
    metavar="EXPERIMENT",
    help="also print which verdicts hold in this other experiment of the same store (the"
    " same matrix rerun, e.g. on another floating-point path)",
)
def report(
    config: str | None,
    profile: str | None,
    experiment: str | None,
    form: str,
    output: str | None,
    tracking_uri: str | None,
    points: bool,
    margin: float | None,
    against: str | None,
) -> None:
    """The paper's Tables 1 and 2 and Figs. 6 and 7 from an experiment's runs.

    Each arm (data set, teacher, student, distiller) shows the sweep point with the best
    mean validation accuracy, and its test accuracy only; p-values are Holm-adjusted over
    each table's comparisons. Tables print to the console (--points: every sweep point
    too); every format and the figures are written to the output folder and logged to the
    experiment's latest invocation run. CONFIG's [report] section, if any, adds a
    reference's numbers (benchmarks.toml: the paper's) and row labels.
    """
    from kdbench import report as reporting
    from kdbench.report.command import report_experiment

    shown, folder = report_experiment(
        config,
        profile=profile,
        experiment=experiment,
        tracking_uri=tracking_uri,
        margin=margin,
        against=against,
        points=points,
        output=output,
    )
    for title, table in shown:
        if form == "rich":
            console.print(reporting.to_rich(table, title))
        elif form == "markdown":
            click.echo(reporting.to_markdown(table, title))
        elif form == "latex":
            click.echo(reporting.to_latex(table, title))
        else:
            click.echo(reporting.to_csv(table))
    errors.print(f"tables and figures in {folder}/ and logged to the latest run", highlight=False)


def main() -> None:
    """The `kdbench` console script. Once its command is done, a stop ends it at once (see
    `Group`); registered first, the exit hook that ignores stops runs last, after those the
    command registered (MLflow's, Ray's), just before Python's teardown."""
    atexit.register(ignore_stops)
    cli.ends_process = True
    cli()
