"""Services that scale-out is tested with, real and local: a PostgreSQL server, an MLflow
tracking server on any backend (artifacts served by it), and a Ray cluster whose worker nodes
are hosts of their own. Used by the tests and by perf/soak.py.

A host of its own, as far as kdbench can tell: `unshare` gives a process its own hostname (a
UTS namespace) and its own process ids (a PID namespace: another host cannot see whether it
lives), sharing only the files, as hosts share a store and a data directory. Killing the
namespace's first process SIGKILLs all it holds, as a host that dies.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers import free_port

RAY = shutil.which("ray", path=str(Path(sys.executable).parent))
# A cluster of its own token, in the environment: ~/.ray stays untouched.
TOKEN = secrets.token_hex(32)
TOKEN_AUTH = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": TOKEN, "RAY_USAGE_STATS_ENABLED": "0"}


def can_make_hosts() -> bool:
    """Whether this machine lets a process become a host of its own (root's unshare)."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--uts", "--pid", "--fork", "--mount-proc", "true"], capture_output=True
    )
    return probe.returncode == 0


def as_host(host: str, command: list[str]) -> list[str]:
    """`command` run as the only process of a host named `host`; killing what this starts
    kills all of it."""
    return ["unshare", "--uts", "--pid", "--fork", "--mount-proc", "--kill-child",
            "sh", "-c", f'hostname {host} && exec "$@"', "sh", *command]  # fmt: skip


# Debian's server binaries, newest version first.
POSTGRES_BIN = max(Path("/usr/lib/postgresql").glob("*/bin"), default=Path("/nonexistent"),
                   key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)  # fmt: skip


@contextmanager
def postgres() -> Iterator[Callable[[], str]]:
    """A PostgreSQL server (Debian's: `make test` installs it) on a free port of 127.0.0.1;
    yields a function that makes a new database and returns its URI. As root, the server
    runs as the `postgres` user (it refuses to run as root)."""
    root = Path(tempfile.mkdtemp(prefix="kdbench-pg-"))
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(root, "postgres")
    data, port = root / "data", free_port()
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "check": True}

    def postgres_tool(name: str, *args: object) -> None:
        subprocess.run([*as_user, POSTGRES_BIN / name, *map(str, args)], **quiet)

    postgres_tool("initdb", "-D", data, "-A", "trust", "-U", "kdbench")
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1"
    postgres_tool("pg_ctl", "-D", data, "-o", options, "-w", "-l", root / "log", "start")
    made = iter(range(1_000_000))

    def database() -> str:
        name = f"mlflow_{next(made)}"
        postgres_tool("createdb", "-h", "127.0.0.1", "-p", port, "-U", "kdbench", name)
        return f"postgresql://kdbench@127.0.0.1:{port}/{name}"

    try:
        yield database
    finally:
        postgres_tool("pg_ctl", "-D", data, "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


class MlflowServer:
    """`mlflow server` on 127.0.0.1 with a backend store and the artifacts it serves itself
    (--serve-artifacts), as a team runs it; stopped and started again on the same port."""

    def __init__(self, backend: str, artifacts: Path, cwd: Path):
        self.backend, self.artifacts, self.cwd = backend, artifacts, cwd
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1",
             "--port", str(self.port), "--backend-store-uri", self.backend, "--serve-artifacts",
             "--artifacts-destination", str(self.artifacts), "--workers", "1"],
            cwd=self.cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.url}/health", timeout=2)
                return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError("mlflow server exited") from None
                time.sleep(0.5)
        raise RuntimeError("mlflow server did not come up within 2 minutes")

    def dump(self, to: Path) -> Path:
        """The backend store's contents in a file: the SQLite file, or pg_dump's output."""
        if self.backend.startswith("sqlite:///"):
            return Path(self.backend.removeprefix("sqlite:///"))
        dumped = subprocess.run(
            [POSTGRES_BIN / "pg_dump", self.backend], capture_output=True, check=True
        )
        to.write_bytes(dumped.stdout)
        return to

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)


# The head declares a node dead after 3 missed checks a second apart (defaults: 5 × 3 s).
FAST_HEALTH = {"RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3"}


@dataclass
class Cluster:
    """A Ray cluster: a head that runs no task, and worker nodes that are hosts of their own."""

    address: str
    temp: str
    nodes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def add(self, host: str, cpus: int = 1) -> None:
        """A worker node of `cpus` CPUs on a host named `host`, once it has joined (nodes
        started at once on one machine race for the same ports)."""
        start = [RAY, "start", "--address", self.address, "--num-cpus", str(cpus), "--block"]
        self.nodes[host] = subprocess.Popen(
            as_host(host, start),
            env={**os.environ, **TOKEN_AUTH, **FAST_HEALTH},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.wait_nodes(len(self.nodes))

    def kill(self, host: str) -> None:
        """The host dies: its namespace's first process is SIGKILLed, and all it holds."""
        node = self.nodes.pop(host)
        node.send_signal(signal.SIGKILL)
        node.wait(timeout=30)

    def wait_nodes(self, count: int) -> None:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            status = subprocess.run(
                [RAY, "status", "--address", self.address],
                env={**os.environ, **TOKEN_AUTH}, capture_output=True, text=True,
            )  # fmt: skip
            if status.stdout.count(" node_") >= count + 1:  # the head and the workers
                return
            time.sleep(1)
        raise RuntimeError(f"the cluster never had {count} worker nodes: {status.stdout}")


@contextmanager
def ray_cluster(hosts: dict[str, int]) -> Iterator[Cluster]:
    """A head and one worker node per host, of that many CPUs; all stopped at the end."""
    port = free_port()
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay short
    env = {**os.environ, **TOKEN_AUTH, **FAST_HEALTH}
    subprocess.run([RAY, "start", "--head", "--port", str(port), "--num-cpus", "0",
                    "--include-dashboard", "false", "--temp-dir", temp],
                   check=True, env=env, timeout=300,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    made = Cluster(f"127.0.0.1:{port}", temp)
    try:
        for host, cpus in hosts.items():
            made.add(host, cpus)
        yield made
    finally:
        for host in list(made.nodes):
            made.kill(host)
        subprocess.run([RAY, "stop", "--force"], env=env, timeout=300,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        shutil.rmtree(temp, ignore_errors=True)
