"""MLflow: one experiment per config name, a parent run per invocation, a child run per cell."""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from kdbench.errors import KdbenchError, TrackingError

DEFAULT_URI = "sqlite:///mlflow.db"
CELL_ID_TAG = "kdbench.cell_id"
ROLE_TAG = "kdbench.role"
PARENT_TAG = "mlflow.parentRunId"


def flatten(value: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """{'student': {'qubits': 3}} -> {'student.qubits': '3'}; lists as JSON."""
    flat: dict[str, str] = {}
    for key, item in value.items():
        name = f"{prefix}{key}"
        if isinstance(item, Mapping):
            flat.update(flatten(item, f"{name}."))
        else:
            flat[name] = json.dumps(item) if isinstance(item, (list, tuple)) else str(item)
    return flat


class Tracker:
    """A thin layer over MlflowClient that speaks in kdbench's terms."""

    def __init__(self, uri: str, experiment: str, *, create: bool = True):
        from mlflow.tracking import MlflowClient

        # MLflow sets its loggers to INFO on import; its schema chatter is not for our users.
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        self.uri = uri
        try:
            self.client = MlflowClient(tracking_uri=uri)
            found = self.client.get_experiment_by_name(experiment)
            if found is None and not create:
                raise KdbenchError(f"no experiment '{experiment}' in {uri}")
            if found is None:
                self.experiment_id = self.client.create_experiment(experiment)
            else:
                self.experiment_id = found.experiment_id
                if found.lifecycle_stage == "deleted":
                    self.client.restore_experiment(self.experiment_id)
        except KdbenchError:
            raise
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise TrackingError(f"tracking store {uri!r} cannot be used: {first}") from None

    def start_run(self, name: str, tags: Mapping[str, str], parent: str | None = None) -> str:
        tags = dict(tags)
        if parent is not None:
            tags[PARENT_TAG] = parent
        return self.client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id

    def log_params(self, run_id: str, params: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v[:6000]) for k, v in params.items()]
        for start in range(0, len(items), 100):  # MLflow caps a batch at 100 params
            self.client.log_batch(run_id, params=items[start : start + 100])

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = _now_ms()
        self.client.log_batch(
            run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()]
        )

    def log_files(self, run_id: str, files: Iterable[tuple[str, bytes]]) -> None:
        """Write (name, content) pairs as the run's artifacts."""
        with tempfile.TemporaryDirectory() as folder:
            for name, content in files:
                (Path(folder) / name).write_bytes(content)
            self.client.log_artifacts(run_id, folder)

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        self.client.set_tag(run_id, key, value)

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    def cell_runs(self) -> list[Any]:
        """Every finished child run of the experiment."""
        return self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{ROLE_TAG}` = 'cell' and attributes.status = 'FINISHED'",
            max_results=50000,
        )


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)
