"""Keeping the file tools (``read_file``, ``list_files``) inside the one folder the user chose.

A path from the model is resolved against the folder with every symlink followed, and refused
unless the real path is the folder or inside it: ``..`` escapes, absolute paths elsewhere and
symlinks whose target lies outside all end in ``PermissionError``. A symlink that stays inside
is fine. Reading is bounded in size, and only text is returned (a binary file is a clear error).
The tools only read, and the model cannot create links, so the check-then-open gap does not matter.
"""

from __future__ import annotations

import codecs
import os
from dataclasses import dataclass
from pathlib import Path

#: What the user is told when no folder is chosen.
NO_FOLDER = (
    "No folder is chosen for the file tools, so they cannot read anything. Choose one with the "
    "setting tools_folder (settings.yaml or the Settings) or start the app with --tools-folder FOLDER."
)
#: Most bytes ``read_text`` reads by default.
MAX_READ_BYTES = 512 * 1024
#: Most entries ``list_folder`` returns by default.
MAX_ENTRIES = 500
# Bytes looked at to tell text from binary.
_SNIFF = 8192


def allowed_root(folder: Path | None) -> Path:
    """The chosen folder, resolved; ``PermissionError`` if none is chosen, ``FileNotFoundError`` if it is gone."""
    if folder is None or not str(folder).strip():
        raise PermissionError(NO_FOLDER)
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"The folder chosen for the file tools does not exist: {root}")
    return root.resolve(strict=True)


def resolve_inside(folder: Path | None, path: str) -> Path:
    """The real path of ``path`` (relative to ``folder``, or absolute) if it lies inside ``folder``.

    ``PermissionError`` for anything that leads outside, ``FileNotFoundError`` if it does not exist.
    """
    root = allowed_root(folder)
    if "\x00" in path:
        raise ValueError("The path contains a NUL character.")
    real = (root / (path.strip() or ".")).resolve(strict=False)  # an absolute path replaces root
    if real != root and not real.is_relative_to(root):
        raise PermissionError(
            f"'{path}' is outside the folder the file tools may read; only paths inside it are allowed."
        )
    if not real.exists():
        raise FileNotFoundError(f"'{path}' does not exist in the folder the file tools may read.")
    return real


def read_text(folder: Path | None, path: str, max_bytes: int = MAX_READ_BYTES) -> tuple[str, int]:
    """The text of file ``path`` inside ``folder`` (at most ``max_bytes`` of it) and how many bytes were left out.

    ``IsADirectoryError`` for a folder, ``ValueError`` for a file that is not UTF-8 text.
    """
    real = resolve_inside(folder, path)
    if real.is_dir():
        raise IsADirectoryError(f"'{path}' is a folder: list it with list_files.")
    if not real.is_file():
        raise PermissionError(f"'{path}' is not a regular file.")
    size = real.stat().st_size
    with real.open("rb") as handle:
        data = handle.read(max_bytes)
    if b"\x00" in data[:_SNIFF]:
        raise ValueError(f"'{path}' is a binary file ({size} bytes), not text: read_file reads text files only.")
    left = max(0, size - len(data))
    try:
        # An incremental decoder does not fail on a character cut at the size limit.
        text = codecs.getincrementaldecoder("utf-8")().decode(data, final=left == 0)
    except UnicodeDecodeError:
        raise ValueError(
            f"'{path}' is not UTF-8 text (a binary file or another encoding): read_file reads text files only."
        ) from None
    return text, left


@dataclass(frozen=True)
class Entry:
    """One thing in a listed folder."""

    name: str
    is_dir: bool
    #: Bytes (0 for folders).
    size: int


def list_folder(folder: Path | None, path: str = ".", max_entries: int = MAX_ENTRIES) -> tuple[list[Entry], int]:
    """The entries of folder ``path`` inside ``folder`` (folders first, by name) and how many were left out."""
    real = resolve_inside(folder, path)
    if not real.is_dir():
        raise NotADirectoryError(f"'{path}' is a file, not a folder: read it with read_file.")
    entries = []
    with os.scandir(real) as scan:
        for item in scan:
            try:
                is_dir = item.is_dir()
                size = 0 if is_dir else item.stat().st_size
            except OSError:  # a dangling link: listed, never followed
                is_dir, size = False, 0
            entries.append(Entry(item.name, is_dir, size))
    entries.sort(key=lambda e: (not e.is_dir, e.name.lower()))
    return entries[:max_entries], max(0, len(entries) - max_entries)
