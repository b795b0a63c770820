"""Reading a config file: refusing what is not a sane TOML file, profiles and overrides."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Sequence
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same parser, before it joined the standard library
    import tomli as tomllib

from kdbench.config.parse import parse_spec
from kdbench.config.spec import Spec
from kdbench.errors import ConfigError
from kdbench.layering import apply_override, apply_profile
from kdbench.plugins import Registry

MAX_CONFIG_BYTES = 1 << 20  # a config is a page or two of TOML; refuse /dev/zero and the like


def load_spec(
    path: str | Path,
    registry: Registry,
    *,
    profile: str | None = None,
    overrides: Sequence[str] = (),
) -> Spec:
    """Read and validate a config file; raise ConfigError on the first problem.

    `profile` merges the table [profiles.NAME] over the document; each override
    "dotted.key=value" (value in TOML syntax, or a bare string) is applied after it.
    """
    path = Path(path)
    file = str(path)
    try:
        raw = tomllib.loads(_read_config(path, file).decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError("no such file", file=file) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", file=file) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", file=file) from None
    except RecursionError:  # tomllib recurses once per level of nested arrays or tables
        raise ConfigError("invalid TOML: arrays or tables nested too deeply", file=file) from None
    raw = apply_profile(raw, profile, file)
    for override in overrides:
        raw = apply_override(raw, override, file)
    return parse_spec(raw, file, registry)


def _read_config(path: Path, file: str) -> bytes:
    """The bytes of a config file, refusing what is not a regular file of sane size before
    reading it: /dev/zero or a FIFO would never end, a huge file would fill the memory."""
    limit = f"a config file may have at most {MAX_CONFIG_BYTES // 1024 // 1024} MiB"
    info = os.stat(path)  # follows links; OSError (a loop, no permission) is the caller's
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError("is a directory, not a config file", file=file)
    if not stat.S_ISREG(info.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(info.st_mode) else "a device or socket"
        raise ConfigError(f"is {kind}, not a regular file; {limit} of TOML", file=file)
    if info.st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"is {info.st_size} bytes; {limit}", file=file)
    with open(path, "rb") as f:
        data = f.read(MAX_CONFIG_BYTES + 1)  # the file may have grown since the stat
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"is over {MAX_CONFIG_BYTES} bytes; {limit}", file=file)
    return data
