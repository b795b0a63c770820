"""Tracking URIs and talking to their stores: which URIs keep results, passwords never
shown, and bounded waits on a server, so that one that stops answering ends the run."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import tempfile
import time
import uuid
from contextlib import closing, contextmanager, nullcontext, suppress
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from kdbench.errors import TrackingError, first_line
from kdbench.locks import exclusive
from kdbench.signals import atomic

DEFAULT_URI = "sqlite:///mlflow.db"


def sqlite_path(uri: str) -> str | None:
    """The file (or ":memory:", or "") a sqlite:/// URI names; None for another URI."""
    return uri.removeprefix("sqlite:///") if uri.startswith("sqlite:///") else None


def is_server(uri: str) -> bool:
    """Whether `uri` names a tracking server (http or https)."""
    return uri.startswith(("http://", "https://"))


def absolute_uri(uri: str) -> str:
    """A relative SQLite store made absolute, so that it names one file wherever it is used."""
    path = sqlite_path(uri)
    if path and not path.startswith("/") and path != ":memory:":
        return "sqlite:///" + str(Path(path).resolve())
    return uri


def redact_uri(uri: str) -> str:
    """The URI as it may be shown: a password in it (http://user:pw@host) becomes ***."""
    password = _password(uri)
    return uri.replace(f":{password}@", ":***@") if password else uri


def _password(uri: str | None) -> str | None:
    try:
        return urlsplit(uri).password if uri else None
    except ValueError:
        return None


def redacted(text: str, uri: str) -> str:
    """`text` without the password of `uri`, if any."""
    password = _password(uri)
    return text.replace(password, "***") if password else text


def redact_passwords(content: bytes, *uris: str | None) -> bytes:
    """`content` (a config file, logged as an artifact) without the passwords of `uris`."""
    for password in filter(None, map(_password, uris)):
        content = content.replace(password.encode(), b"***")
    return content


# A tracking server that does not answer fails the run in seconds, before anything is
# written, not after MLflow's retries (minutes). Later requests wait at most REQUEST_TIMEOUT_S
# each, and MLflow does not retry them: kdbench does (GuardedClient), knowing why one failed.
# The MLFLOW_HTTP_REQUEST_* variables, when set, win.
FIRST_CONTACT_TIMEOUT_S = 5
_FIRST_CONTACT_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": str(FIRST_CONTACT_TIMEOUT_S),
}
REQUEST_TIMEOUT_S = 20
LATER_REQUESTS_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": str(REQUEST_TIMEOUT_S),
}
# A request that got no answer is followed by a look at the server's /health, which tells a
# server that stalled (no answer there either: the run ends at once) from one that was slow
# (tried again, SLOW_RETRIES times) and from one that is down or restarting (waited for, up
# to RESTART_WAIT_S, then the call is made again).
HEALTH_TIMEOUT_S = 5
SLOW_RETRIES = 2
RESTART_WAIT_S = 90
# Calls that, made twice, would make two of a thing: tried again only when the first never
# reached the server (refused). The others set a value, or write a file to its path, again;
# and `create_run` tags its run with a token of its own, so that a retry first looks for the
# run an unanswered attempt may have made (a server restarting drops requests it has done).
_NOT_IDEMPOTENT = frozenset({"create_experiment"})
CREATE_TOKEN_TAG = "kdbench.create_token"


# SQLite lets one writer in at a time and makes the others wait 5 s; when many processes
# write at once (workers stopping together), a call that still finds the store locked is
# tried again after a pause, this many times.
LOCKED_RETRIES = 6


class GuardedClient:
    """An MlflowClient whose failures are TrackingErrors (one line, no password), which
    retries a SQLite store that is momentarily locked, rides out a server's restart, and,
    once its server stalled, fails every later call at once instead of waiting again."""

    def __init__(self, client: Any, uri: str):
        self._client, self._uri, self._down = client, uri, ""

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._client, name)
        if not callable(found):
            return found

        def call(*args: Any, **kwargs: Any) -> Any:
            if self._down:
                raise TrackingError(self._down)
            if is_server(self._uri):
                return self._server_call(name, found, args, kwargs)
            for attempt in range(LOCKED_RETRIES + 1):
                try:
                    with atomic() if self._uri.startswith("sqlite:") else nullcontext():
                        return found(*args, **kwargs)
                except Exception as exc:
                    if "database is locked" not in str(exc):
                        self._fail(exc)
                    if attempt == LOCKED_RETRIES:  # SQLAlchemy's first line says nothing
                        raise TrackingError(
                            f"tracking store {redact_uri(self._uri)} stayed locked by another"
                            f" process ({LOCKED_RETRIES + 1} tries; one stopped or stuck"
                            " inside a write?): run again once it has ended"
                        ) from None
                    time.sleep(0.2 * (attempt + 1))

        return call

    def _server_call(self, name: str, found: Any, args: tuple, kwargs: dict) -> Any:
        shown, slow, down_since = redact_uri(self._uri), 0, None
        token, unsure = None, False  # unsure: an attempt may have made the run
        if name == "create_run":
            token = uuid.uuid4().hex
            kwargs = {**kwargs, "tags": {**(kwargs.get("tags") or {}), CREATE_TOKEN_TAG: token}}
        while True:
            try:
                if unsure:
                    made = self._made_run(args, kwargs, token)
                    if made is not None:
                        return made
                return found(*args, **kwargs)
            except Exception as exc:
                text = redacted(str(exc), self._uri)
                if "API request" not in text:  # the server's own answer (no such run...)
                    self._fail(exc)
                refused = "Connection refused" in text
                unsure = unsure or (token is not None and not refused)
                state = server_state(self._uri)
                if state == "stalled":
                    self._down = (
                        f"tracking server {shown} stopped answering (stalled): no answer to a"
                        f" request within {_request_timeout()} s, nor to a health check within"
                        f" {HEALTH_TIMEOUT_S} s"
                    )
                    raise TrackingError(self._down) from None
                if state == "down":
                    down_since = down_since or time.monotonic()
                    if time.monotonic() - down_since > RESTART_WAIT_S:
                        self._down = (
                            f"tracking server {shown} is down: no connection for"
                            f" {RESTART_WAIT_S} s ({first_line(text)})"
                        )
                        raise TrackingError(self._down) from None
                    time.sleep(2)
                    if refused or name not in _NOT_IDEMPOTENT:
                        continue
                slow += 1
                if slow > SLOW_RETRIES or (name in _NOT_IDEMPOTENT and not refused):
                    raise TrackingError(
                        f"tracking server {shown} answers its health check but failed this"
                        f" request {slow} time(s): {first_line(text)}"
                    ) from None

    def _made_run(self, args: tuple, kwargs: dict, token: str | None) -> Any:
        """The run an earlier `create_run(*args, **kwargs)` made, found by its token; None."""
        experiment = args[0] if args else kwargs["experiment_id"]
        found = self._client.search_runs([experiment], f"tags.`{CREATE_TOKEN_TAG}` = '{token}'")
        return found[0] if found else None

    def _fail(self, exc: Exception) -> NoReturn:
        raise TrackingError(redacted(first_line(exc), self._uri)) from None


def _request_timeout() -> str:
    return os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT", str(REQUEST_TIMEOUT_S))


def server_state(uri: str) -> str:
    """What a tracking server's /health says within HEALTH_TIMEOUT_S: "answers" (any HTTP
    answer below 500), "down" (refused, or a 5xx: restarting) or "stalled" (no answer)."""
    import urllib.error
    import urllib.request

    parts = urlsplit(uri)
    netloc = parts.netloc.rpartition("@")[2]  # no user or password; [v6] brackets kept
    health = f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}/health"
    try:
        urllib.request.urlopen(health, timeout=HEALTH_TIMEOUT_S)
        return "answers"
    except urllib.error.HTTPError as exc:
        return "answers" if exc.code < 500 else "down"
    except (TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return "stalled" if isinstance(reason, TimeoutError) else "down"
    except Exception:  # a garbled answer (http.client's): not a server that answers
        return "down"


def check_uri(uri: str) -> None:
    """Refuse a URI that keeps the results nowhere."""
    path = sqlite_path(uri)
    if uri.startswith("sqlite:") and (path is None or path in ("", ":memory:")):
        raise TrackingError(
            f"tracking URI {uri!r} names no database file, so the results would be kept "
            "nowhere; give a path, e.g. sqlite:///mlflow.db"
        )


def server_reachable(uri: str) -> bool:
    from kdbench.fetch import reachable

    return reachable(uri, timeout=FIRST_CONTACT_TIMEOUT_S)


@contextmanager
def first_contact(uri: str):
    """MLflow's HTTP requests without retries and with a short timeout, for the first contact."""
    if not is_server(uri):
        yield
        return
    saved = {key: os.environ.get(key) for key in _FIRST_CONTACT_ENV}
    os.environ.update(_FIRST_CONTACT_ENV)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def missing_sqlite(uri: str) -> bool:
    path = sqlite_path(uri)
    return path is not None and path != ":memory:" and not Path(path).exists()


# kdbench finds a cell's runs by its id tag. MLflow's tags table is keyed by (key, run), so
# without this index each lookup reads every run's tag of that key: a claim cost 5 ms in a
# store of 1,000 cells and 113 ms in one of 60,000 (perf/README.md). Extra indexes are
# harmless to MLflow; a migration that rebuilds the table drops it, and the next open makes
# it again. A server's database is the team's to index (README, "A shared tracking server").
TAG_INDEX = "CREATE INDEX IF NOT EXISTS kdbench_tags_key_value ON tags (key, value)"


def index_tags(uri: str) -> None:
    """Give a SQLite store's tags table the index kdbench's lookups need (once; a store it
    cannot write, read-only say, is used without it)."""
    path = sqlite_path(uri)
    if path is not None:
        with suppress(sqlite3.Error), closing(sqlite3.connect(path, timeout=30)) as db:
            db.execute(TAG_INDEX)
            db.commit()


@contextmanager
def store_lock(uri: str):
    """One machine-wide lock per store: a file beside a SQLite store, else one in the temp
    directory named after the URI. Held for a store's first use (MLflow creates a SQLite
    store's tables then, and two processes doing it at once leave the schema migration half
    done) and while a cell is claimed."""
    with exclusive(store_lock_path(uri)):
        yield


def store_lock_path(uri: str) -> Path:
    """The file `store_lock` locks for the store at `uri`."""
    store = sqlite_path(uri)
    if store is not None:
        return Path(f"{store}.lock")
    key = hashlib.sha256(uri.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"kdbench-store-{key}.lock"


def resolve_tracking_uri(option: str | None, configured: str | None = None) -> str:
    """The --tracking-uri option, else the config's, else $MLFLOW_TRACKING_URI, else sqlite."""
    return absolute_uri(
        option or configured or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
    )
