"""What a name may be where it becomes an MLflow name, a label or a file or folder name."""

from __future__ import annotations

import re
import unicodedata

# MLflow's experiments.name column is String(256); the name is also the folder
# kdbench-results/NAME of `kdbench report`, and a file name has at most 255 bytes.
MAX_EXPERIMENT_NAME, MAX_FOLDER_NAME_BYTES = 256, 255
# Instance names end up in file names, figure labels and MLflow params.
INSTANCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")
INSTANCE_NAME_RULE = (
    "1 to 64 letters (A-Z, a-z), digits, '-', '_', '.' or '+', starting with a letter or digit"
)


def experiment_name_problem(name: str) -> str | None:
    """Why `name` cannot be an experiment name, or None.

    It names the MLflow experiment and the folder kdbench-results/NAME of `kdbench report`:
    one line of at most MLflow's 256 characters that is a single, visible folder name.
    """
    folder = "it becomes the folder kdbench-results/NAME of 'kdbench report'"
    if not name.strip():
        return "must not be empty or only spaces"
    if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in name):
        return f"contains a control character or line break: {name!r}; use printable characters"
    if len(name) > MAX_EXPERIMENT_NAME:
        return (
            f"has {len(name)} characters; MLflow allows at most {MAX_EXPERIMENT_NAME}"
            " (its experiments.name column)"
        )
    if len(name.encode("utf-8")) > MAX_FOLDER_NAME_BYTES:
        return (
            f"has {len(name.encode('utf-8'))} bytes in UTF-8; {folder}, and a folder name may"
            f" have at most {MAX_FOLDER_NAME_BYTES}"
        )
    if "/" in name or "\\" in name:
        return f"contains '/' or '\\'; {folder}, so it must be a single folder name"
    if name.startswith("."):
        return f"starts with '.'; {folder}, which must not be hidden, '.' or '..'"
    return None


def instance_name_problem(name: str) -> str | None:
    """Why `name` cannot name an instance ([students.NAME]...), or None."""
    if INSTANCE_NAME.fullmatch(name):
        return None
    shown = name if len(name) <= 70 else f"{name[:60]}… ({len(name)} characters)"
    return f"bad instance name {shown!r}; a name has {INSTANCE_NAME_RULE}"


def file_name(text: str, limit: int = 120) -> str:
    """`text` as one safe file or folder name: characters other than letters, digits and
    ``._+-`` become '-', no leading dot, at most `limit` characters. Names read from a store
    (an experiment, a data set's label) thus never leave their folder."""
    name = re.sub(r"[^A-Za-z0-9._+-]", "-", text).lstrip(".")[:limit]
    return name or "-"
