"""Testing a plugin against kdbench, with the real harness and a real MLflow store.

A plugin's tests need three things, none of them internal:

    from kdbench.testing import make, plugin_registry, run_config

    registry = plugin_registry(my_plugin)               # kdbench's built-ins and yours
    student = make(registry, "students", "my-student", qubits=3)  # validated like a config
    ran = run_config("bars.toml", registry, store=tmp_path)       # every cell, in-process
    assert ran.finished
    for run in ran.runs():                               # MLflow runs: tags, params, metrics
        assert run.data.metrics["test_accuracy"] > 0.5

`run_config` does what `kdbench run` does (validation, the checks against data and machine,
the matrix, one MLflow child run per cell) in this process, so a plugin registered here is
used without installing it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from kdbench.api import Component
from kdbench.plugins import Registry, load_registry

__all__ = ["ConfigRun", "make", "plugin_registry", "run_config"]


def plugin_registry(*plugins: ModuleType, environ: Mapping[str, str] | None = None) -> Registry:
    """kdbench's built-in plugins and `plugins` (modules with hook implementations), as
    installed ones would be registered; third-party plugins installed in the environment
    are left out unless `environ` says otherwise (`KDBENCH_LOAD_PLUGINS`)."""
    environ = {"KDBENCH_LOAD_PLUGINS": ""} if environ is None else environ
    return load_registry(environ, extra=[(module.__name__, module) for module in plugins])


def make(registry: Registry, kind: str, name: str, **options: Any) -> Component:
    """The component registered as `name` ("students", "my-student"), built from `options`
    as a config table would be: types, bounds and cross-option checks applied, a problem
    raised as `kdbench.ConfigError` naming the option."""
    from kdbench.options import build_component

    return build_component(registry.get(kind, name), options, file=None, key=f"{kind}.{name}")


@dataclass(frozen=True)
class ConfigRun:
    """What `run_config` ran: each cell's outcome and where its runs were logged."""

    outcomes: list[Any]  # kdbench.run.CellOutcome: cell, run_id, status, result, error
    tracking_uri: str
    experiment: str

    @property
    def finished(self) -> bool:
        """Every cell ended FINISHED (in this call or an earlier one on the same store)."""
        return all(o.status in ("FINISHED", "SKIPPED") for o in self.outcomes)

    @property
    def errors(self) -> list[str]:
        """The error of each cell that failed."""
        return [o.error for o in self.outcomes if o.error]

    def runs(self) -> list[Any]:
        """The cells' finished MLflow runs, oldest first: `info.run_id`, `data.tags`,
        `data.params`, `data.metrics` (each metric's latest value)."""
        from kdbench.tracking import Tracker

        return list(Tracker(self.tracking_uri, self.experiment, create=False).cell_runs())


def run_config(
    config: str | Path,
    registry: Registry,
    *,
    store: Path,
    data_root: Path | None = None,
    profile: str | None = None,
    overrides: Sequence[str] = (),
) -> ConfigRun:
    """Run every cell of `config` in this process, as `kdbench run` would, into an MLflow
    store (SQLite) and a teacher cache under `store`. Data come from `data_root` (default:
    the config's, else $KDBENCH_DATA or kdbench's cache). Bad input raises the one-line
    `kdbench.KdbenchError` the command line would print."""
    from kdbench import paths
    from kdbench.config import load_spec
    from kdbench.matrix import expand
    from kdbench.run import Events, preflight, run_matrix
    from kdbench.tracking import Tracker

    spec = load_spec(config, registry, profile=profile, overrides=overrides)
    cells = expand(spec)
    root = data_root or paths.data_dir(spec.experiment.data_dir)
    preflight(cells, root)
    store.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{store.resolve()}/mlflow.db"
    outcomes = run_matrix(
        spec,
        cells,
        registry=registry,
        tracker=Tracker(uri, spec.experiment.name),
        data_root=root,
        cache=store / "cache",
        events=Events(),
    )
    return ConfigRun(list(outcomes), uri, spec.experiment.name)
