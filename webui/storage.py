"""Safe names and atomic file writes.

Every user-supplied name that becomes part of a path goes through
:func:`safe_name`, and every file we write goes through :func:`atomic_write_bytes`
(temp file in the same folder, fsync, ``os.replace``), so a crash or a kill
leaves either the old file or the new one, never half of one.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
import unicodedata
from pathlib import Path
from typing import Any

import yaml

from webui.errors import InvalidNameError, SettingsError

MAX_NAME_LENGTH = 120
_WINDOWS_RESERVED = {
    "CON", "PRN", "AUX", "NUL",
    *(f"COM{i}" for i in range(1, 10)),
    *(f"LPT{i}" for i in range(1, 10)),
}
_FORBIDDEN_CHARS = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f]')
TEMP_SUFFIX = ".tmp"


def safe_name(name: str, *, what: str = "name") -> str:
    """Return ``name`` normalised, or raise :class:`InvalidNameError`.

    The result is a single path component that is safe on Linux, macOS and
    Windows: no separators, no ``..``, no control characters, not hidden, not a
    Windows device name, not too long. Unicode look-alikes (full-width slash,
    and so on) are folded by NFKC before the checks, so they are caught too.
    """
    if not isinstance(name, str):
        raise InvalidNameError(f"The {what} must be text.")
    folded = unicodedata.normalize("NFKC", name).strip()
    if not folded:
        raise InvalidNameError(f"The {what} is empty.")
    if len(folded) > MAX_NAME_LENGTH:
        raise InvalidNameError(f"The {what} is longer than {MAX_NAME_LENGTH} characters.")
    if _FORBIDDEN_CHARS.search(folded):
        raise InvalidNameError(
            f"The {what} {name!r} contains a character that is not allowed in file names "
            '(one of < > : " / \\ | ? * or a control character).'
        )
    if folded.startswith(".") or folded.endswith((".", " ")):
        raise InvalidNameError(f"The {what} {name!r} may not start with '.' or end with '.' or a space.")
    stem = folded.split(".", 1)[0].upper().rstrip()
    if stem in _WINDOWS_RESERVED:
        raise InvalidNameError(f"The {what} {name!r} is a reserved device name on Windows; pick another.")
    return folded


def resolve_inside(base: Path, *parts: str) -> Path:
    """Join ``parts`` (each checked by :func:`safe_name`) under ``base``.

    The final path is also checked to be inside ``base`` after resolving
    symlinks, as a second line of defence.
    """
    base = Path(base)
    path = base.joinpath(*(safe_name(p) for p in parts))
    real_base = base.resolve()
    real = path.resolve()
    if real != real_base and real_base not in real.parents:
        raise InvalidNameError(f"{path} is outside {base}.")
    return path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old or the new file, never a mix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping; an empty file is ``{}``; anything else is a :class:`SettingsError`."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path.name} is not valid YAML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise SettingsError(f"{path.name} is not UTF-8 text.") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"{path.name} must hold a mapping of keys to values, not {type(data).__name__}.")
    return data


def write_yaml(path: Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, ensure_ascii=False, indent=2))
