"""The MLflow UI's command line, checked before it starts: a store that exists, a free port."""

from __future__ import annotations

import socket
import sys

from kdbench.errors import KdbenchError
from kdbench.stores import check_uri, missing_sqlite


def ui_command(uri: str, host: str, port: int) -> list[str]:
    """The argument list that serves the MLflow UI for `uri` on host:port, or a one-line
    KdbenchError for what would make it fail: a store that is not there (the UI would
    create an empty one), a port already taken (the server would say so in a traceback)."""
    check_uri(uri)
    if missing_sqlite(uri):
        raise KdbenchError(f"no tracking store at {uri}: run `kdbench run` first, or name one")
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise KdbenchError(f"cannot serve the UI on {host}:{port}: {exc.strerror}") from None
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
            "--host", host, "--port", str(port)]  # fmt: skip
