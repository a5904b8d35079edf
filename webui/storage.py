"""Safe names and atomic file writes.

Every user-supplied name that becomes part of a path goes through
:func:`safe_name`, and every file we write goes through :func:`atomic_write_bytes`
(temp file in the same folder, fsync, ``os.replace``), so a crash or a kill
leaves either the old file or the new one, never half of one. :class:`YamlFolder`
is the one folder-of-``NAME.yaml`` store that presets, characters and
instruction templates build on.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import tempfile
import threading
import unicodedata
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import yaml

from webui.errors import InvalidNameError, PermissionDeniedError, SettingsError, WebUIError

MAX_NAME_LENGTH = 120
_WINDOWS_RESERVED = {
    "CON",
    "PRN",
    "AUX",
    "NUL",
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


_YAML_TOKEN = re.compile(r"'?<([a-z ]+)>'?")


def yaml_problem(exc: yaml.YAMLError) -> str:
    """What is wrong and where, in one line ("expected ',' or ']', but got ':' at line 2, column 11"); the
    parser's own text spans lines and quotes a "<unicode string>" that a Markdown page would take for a tag."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    # The parser names its tokens in angle brackets ("but got '<stream end>'"), which a page drops as a tag.
    problem = _YAML_TOKEN.sub(lambda m: "the end of the file" if m[1] == "stream end" else m[1], problem)
    if mark is None:
        return problem
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping; an empty file is ``{}``; anything else is a :class:`SettingsError`."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path.name} is not valid YAML: {yaml_problem(exc)}") from exc
    except UnicodeDecodeError as exc:
        raise SettingsError(f"{path.name} is not UTF-8 text.") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"{path.name} must hold a mapping of keys to values, not {type(data).__name__}.")
    return data


def write_yaml(path: Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


# ---- saves in the order they came in ------------------------------------------------------------------
# A page saves a text box on each keystroke and again when the box is left; Gradio runs those requests
# side by side in its threads. A keystroke's save still writing when the box is left must neither
# interleave its read-modify-write with the next save nor land after the whole text.

_places = itertools.count(1)
_arrival: ContextVar[int | None] = ContextVar("save_arrival", default=None)
_locks_lock = threading.Lock()
_file_locks: dict[str, threading.RLock] = {}
#: (file, key) -> the place in line of the save that wrote that key last
_written: dict[tuple[str, str], int] = {}


def file_lock(path: Path) -> threading.RLock:
    """The lock every ordered save of ``path`` holds while it reads, changes and writes the file (one per
    file in the process, whichever store or user view writes it)."""
    with _locks_lock:
        return _file_locks.setdefault(os.path.abspath(path), threading.RLock())


@contextmanager
def arrived() -> Iterator[None]:
    """A request that saves has come in: every save made inside this block takes the place in line the
    request took on entering it, not the one it has when it reaches the file (see :func:`in_order`)."""
    token = _arrival.set(next(_places))
    try:
        yield
    finally:
        _arrival.reset(token)


@contextmanager
def in_order(path: Path, keys: Iterable[str]) -> Iterator[set[str]]:
    """Hold ``path``'s write lock, and give the ``keys`` this save may still write: those no save that came
    in after it has written. Saves of one file then run one at a time, and a newer value is never
    overwritten by an older one. The keys given count as written by this save once the block ends
    without an error. The place in line is the request's (:func:`arrived`), else taken here."""
    place = _arrival.get() or next(_places)
    name = os.path.abspath(path)
    with file_lock(path):
        fresh = {key for key in keys if _written.get((name, key), 0) < place}
        yield fresh
        for key in fresh:
            _written[(name, key)] = place


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in blocks (model files are gigabytes)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class YamlFolder:
    """A folder of ``NAME.yaml`` files a person may edit by hand (presets, characters, templates).

    Names go through :func:`safe_name`; writes are atomic; hidden files and our own temp files
    are not listed. Subclasses say what their files are called (``what``) and which error a
    missing one is (:meth:`missing`), and turn the mapping into their own type.
    """

    #: What a name is called in messages, e.g. "preset name".
    what = "name"

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def path(self, name: str) -> Path:
        return self.folder / f"{safe_name(name, what=self.what)}.yaml"

    def is_valid(self, name: str) -> bool:
        """Whether ``name`` can be a file of this folder."""
        try:
            self.path(name)
        except InvalidNameError:
            return False
        return True

    def files(self, pattern: str = "*.yaml") -> list[Path]:
        """The folder's files matching ``pattern`` (hidden files and temp files left out)."""
        if not self.folder.is_dir():
            return []
        return [
            p
            for p in self.folder.glob(pattern)
            if p.is_file() and not p.name.startswith(".") and not p.name.endswith(TEMP_SUFFIX)
        ]

    def names(self) -> list[str]:
        return sorted({p.stem for p in self.files()}, key=str.lower)

    def missing(self, name: str) -> WebUIError:
        """The error for a name that has no file."""
        return SettingsError(f"There is no file called {name!r} in {self.folder.name}.")

    def read(self, name: str) -> dict[str, Any]:
        """The mapping stored under ``name``; :meth:`missing` if there is none."""
        path = self.path(name)
        if not path.is_file():
            raise self.missing(name)
        return read_yaml(path)

    def write(self, name: str, data: dict[str, Any]) -> Path:
        path = self.path(name)
        write_yaml(path, data)
        return path

    def delete(self, name: str) -> None:
        path = self.path(name)
        if not path.is_file():
            raise self.missing(name)
        path.unlink()


class Layered:
    """A user's view of a shared library (presets, characters, instruction templates): the shared
    folder's items, read-only, plus the user's own folder, where everything they save goes.

    ``own`` and ``shared`` are two stores of one kind (a :class:`YamlFolder` subclass). A name in the
    user's own folder wins over the shared one of the same name. Methods named in ``reads`` take the
    item's name first and go to the store that holds it; :meth:`delete` of a shared item is refused
    (only the admin edits the shared library); everything else (save, import) goes to ``own``.
    """

    def __init__(self, own: Any, shared: Any, reads: tuple[str, ...] = ("load", "read")) -> None:
        self.own = own
        self.shared = shared
        self._reads = frozenset(reads)

    def _holder(self, name: str) -> Any:
        if name not in self.shared.names():
            return self.own
        # A store may list a built-in item with no file (the default character): only a file of the
        # user's own makes their copy win.
        stem = self.own.path(name).stem
        return self.own if any(p.stem == stem for p in self.own.files("*")) else self.shared

    def names(self) -> list[str]:
        return sorted(set(self.own.names()) | set(self.shared.names()), key=str.lower)

    def is_shared(self, name: str) -> bool:
        """Whether ``name`` is the shared library's item (the user has no own copy of it)."""
        return self._holder(name) is self.shared

    def delete(self, name: str) -> None:
        if self.is_shared(name):
            raise PermissionDeniedError(
                f"{name!r} is in the shared library: only the server's admin can delete it. "
                "Save it under another name to make your own copy.",
                key="error.shared_item",
                name=name,
            )
        self.own.delete(name)

    def __getattr__(self, attr: str) -> Any:
        if attr in self._reads:
            method_name = attr

            def read(name: str, *args: Any, **kwargs: Any) -> Any:
                return getattr(self._holder(name), method_name)(name, *args, **kwargs)

            return read
        return getattr(self.own, attr)
