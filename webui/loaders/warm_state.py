"""Warm states: llama.cpp sequence states kept on disk, so a chat reopens without re-reading its prompt.

When a chat goes idle, the keys and values of its prompt prefix (one sequence of the context) are
written to a file; when the chat goes on, even after a restart, and the context no longer holds that
prefix, the file is loaded instead of evaluating thousands of prompt tokens again (seconds to minutes
on a CPU; loading is a file read).

A file is trusted only after checking it, because llama.cpp trusts the bytes it is given:

- ``HEADER`` (magic, format version, model key, token count, sha256 of the tokens, state size,
  sha256 of the state), then the tokens (int32, little-endian), then the state as
  ``llama_state_seq_get_data`` wrote it;
- its name is ``<model key>-<sha256 of the tokens, 32 hex>.kvstate``, so the index of one model is
  rebuilt from names and headers at start (no index file to lose or corrupt);
- a file that fails a check (truncated, garbage, another model's, refused by llama.cpp) is logged,
  deleted and skipped; it never reaches the context unchecked and never raises.

The folder is bounded by size with least-recently-used eviction; "last used" is the file's mtime
(set on save and on every restore), so it survives restarts and is shared by the stores of several
models in one folder.
"""

from __future__ import annotations

import array
import ctypes
import hashlib
import json
import logging
import os
import re
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, BinaryIO

log = logging.getLogger(__name__)

__all__ = ["FORMAT_VERSION", "HEADER", "SUFFIX", "WarmEntry", "WarmStore", "model_key"]

MAGIC = b"WUIWARM\x00"
#: Bump when the layout of a file changes: older files are then refused (and deleted) on sight.
FORMAT_VERSION = 1
SUFFIX = ".kvstate"
#: magic, version, model key (16 ASCII hex), n tokens, sha256(tokens), state bytes, sha256(state)
HEADER = struct.Struct("<8sI16sI32sQ32s")
_KEY = re.compile(r"[0-9a-f]{16}")
_TOKEN_BYTES = 4  # llama_token is int32_t
#: Temp files older than this are left over from a crash mid-write and are removed at start.
_STALE_TEMP_NS = 3600 * 10**9


def model_key(path: Path, options: Mapping[str, Any]) -> str:
    """A short hex key of the model file and of the load options that shape its KV state.

    The file is identified by its resolved path, size and mtime (hashing gigabytes at every load
    would cost more than it saves); ``options`` should hold everything that changes what a
    sequence state contains or where it fits: n_ctx per sequence, n_seq_max (llama.cpp stores the
    number of cache streams in each state), KV cache types, flash attention, RoPE scaling... The
    llama-cpp-python version is added, so an upgrade never loads a state an older build wrote.
    States of different keys are never mixed.
    """
    resolved = Path(path).resolve()
    stat = resolved.stat()
    facts = {
        "format": FORMAT_VERSION,
        "model": str(resolved),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "options": dict(options),
        "llama_cpp": _llama_cpp_version(),
    }
    text = json.dumps(facts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _llama_cpp_version() -> str:
    try:
        return metadata.version("llama_cpp_python")
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class WarmEntry:
    """One saved state, as :meth:`WarmStore.entries` lists it."""

    n_tokens: int
    n_bytes: int
    #: When it was last saved or restored (seconds since the epoch).
    last_used: float
    path: Path


@dataclass(frozen=True)
class _Saved:
    """What the index knows of a file without reading its state: enough to match a prompt."""

    n_tokens: int
    digest: bytes  # sha256 of the packed tokens
    path: Path


class _Corrupt(Exception):
    """A file that must not be trusted; the message says why."""


@dataclass(frozen=True)
class _Header:
    model_key: str
    n_tokens: int
    tokens_sha: bytes
    state_size: int
    state_sha: bytes

    def pack(self) -> bytes:
        key = self.model_key.encode("ascii")
        return HEADER.pack(MAGIC, FORMAT_VERSION, key, self.n_tokens, self.tokens_sha, self.state_size, self.state_sha)

    @classmethod
    def unpack(cls, raw: bytes) -> _Header:
        if len(raw) < HEADER.size:
            raise _Corrupt(f"it is {len(raw)} bytes, shorter than a header")
        magic, version, key, n_tokens, tokens_sha, state_size, state_sha = HEADER.unpack(raw)
        if magic != MAGIC:
            raise _Corrupt("it is not a warm state file (wrong magic)")
        if version != FORMAT_VERSION:
            raise _Corrupt(f"it has format version {version}, this build reads {FORMAT_VERSION}")
        if n_tokens < 1 or state_size < 1:
            raise _Corrupt("its header says it is empty")
        return cls(key.decode("ascii", errors="replace"), n_tokens, tokens_sha, state_size, state_sha)

    def file_size(self) -> int:
        return HEADER.size + self.n_tokens * _TOKEN_BYTES + self.state_size


def _pack(tokens: Sequence[int]) -> bytes:
    """The tokens as int32 little-endian bytes: what is hashed, compared and stored."""
    packed = array.array("i", tokens)  # C int: 32 bits wherever llama.cpp runs
    if sys.byteorder == "big":
        packed.byteswap()
    return packed.tobytes()


def _read_head(f: BinaryIO, file_size: int) -> tuple[_Header, bytes]:
    """The header and the packed tokens of an open file, checked against the file size and each other."""
    header = _Header.unpack(f.read(HEADER.size))
    if file_size != header.file_size():
        raise _Corrupt(f"it is {file_size} bytes, its header says {header.file_size()} (truncated?)")
    packed = f.read(header.n_tokens * _TOKEN_BYTES)
    if hashlib.sha256(packed).digest() != header.tokens_sha:
        raise _Corrupt("its tokens do not match their checksum")
    return header, packed


class WarmStore:
    """The saved sequence states of one model (one ``model_key``) in a folder shared with others.

    Calls come from the generation thread; a lock keeps the index consistent if the UI lists or
    clears entries meanwhile. ``max_bytes`` bounds the whole folder, every model's files included.
    """

    def __init__(self, folder: Path, max_bytes: int, model_key: str, min_tokens: int = 256) -> None:
        if not _KEY.fullmatch(model_key):
            raise ValueError(f"model_key must be 16 lowercase hex digits (from model_key()), not {model_key!r}")
        self.folder = Path(folder)
        self.max_bytes = max(0, int(max_bytes))
        self.model_key = model_key
        self.min_tokens = max(1, int(min_tokens))
        self._lock = threading.RLock()
        self._saved: dict[bytes, _Saved] = {}
        self._last_ns = 0
        self.folder.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temps()
        self._load_index()

    # --- public -----------------------------------------------------------------------------------------
    def match_length(self, tokens: Sequence[int]) -> int:
        """How many tokens :meth:`restore` would load for ``tokens`` (0: none), without loading anything.

        Only the index is consulted, so a file found corrupt on loading can still make ``restore``
        return less.
        """
        with self._lock:
            found = self._matches(_pack(tokens))
        return found[0].n_tokens if found else 0

    def restore(self, ctx: Any, seq_id: int, tokens: Sequence[int]) -> int:
        """Load the longest saved prefix of ``tokens`` shorter than ``tokens`` into sequence ``seq_id``.

        At least one token is left for the caller to evaluate, because a state holds keys and values
        but no logits. ``ctx`` is the raw ``llama_context`` pointer; whatever the sequence held is
        dropped once a candidate is found. Returns how many tokens the sequence now holds (positions
        0..n-1), 0 when nothing matched or every match failed its checks (the sequence is then left
        empty). A restore marks the entry as used.
        """
        packed = _pack(tokens)
        with self._lock:
            for saved in self._matches(packed):
                if self._load(ctx, seq_id, saved, packed):
                    self._touch(saved.path)
                    return saved.n_tokens
        return 0

    def save(self, ctx: Any, seq_id: int, tokens: Sequence[int]) -> bool:
        """Write the state of sequence ``seq_id``, which holds exactly ``tokens`` (positions 0..n-1).

        Skipped (False) when ``tokens`` is shorter than ``min_tokens``, when the same prefix is
        already saved (it is marked used instead), when the file alone would exceed ``max_bytes``,
        or when llama.cpp or the disk fails (logged: a warm state is an optimisation and must not
        stop a chat). Afterwards least-recently-used files are deleted until the folder fits in
        ``max_bytes``. Raises ``ValueError`` when the sequence does not hold ``len(tokens)``
        positions: a state saved under the wrong tokens would give wrong answers later.
        """
        n_tokens = len(tokens)
        if n_tokens < self.min_tokens:
            return False
        import llama_cpp

        held = llama_cpp.llama_memory_seq_pos_max(llama_cpp.llama_get_memory(ctx), seq_id) + 1
        if held != n_tokens:
            raise ValueError(f"Sequence {seq_id} holds {held} positions, but {n_tokens} tokens were given.")
        packed = _pack(tokens)
        digest = hashlib.sha256(packed).digest()
        with self._lock:
            known = self._saved.get(digest)
            if known is not None and known.path.exists():
                self._touch(known.path)
                return False
            state = self._state_of(ctx, seq_id, len(packed))
            if state is None:
                return False
            header = _Header(self.model_key, n_tokens, digest, len(state), hashlib.sha256(state).digest())
            path = self._path(digest)
            try:
                self._write(path, header.pack(), packed, state)
            except OSError as exc:
                log.warning("Could not save the warm state %s: %s", path.name, exc)
                return False
            self._touch(path)
            self._saved[digest] = _Saved(n_tokens, digest, path)
            self._evict()
        return True

    def entries(self) -> list[WarmEntry]:
        """This model's saved states, most recently used first."""
        out = []
        with self._lock:
            for saved in list(self._saved.values()):
                try:
                    stat = saved.path.stat()
                except FileNotFoundError:  # evicted by another model's store in the same folder
                    self._forget(saved.path)
                    continue
                out.append(WarmEntry(saved.n_tokens, stat.st_size, stat.st_mtime_ns / 1e9, saved.path))
        return sorted(out, key=lambda entry: entry.last_used, reverse=True)

    def clear(self) -> None:
        """Delete every saved state of this model (other models' files in the folder stay)."""
        with self._lock:
            for path in self.folder.glob(f"{self.model_key}-*{SUFFIX}"):
                path.unlink(missing_ok=True)
            self._saved.clear()

    # --- index ------------------------------------------------------------------------------------------
    def _path(self, digest: bytes) -> Path:
        return self.folder / f"{self.model_key}-{digest.hex()[:32]}{SUFFIX}"

    def _load_index(self) -> None:
        """Rebuild the index from the headers of this model's files; bad files are dropped."""
        for path in sorted(self.folder.glob(f"{self.model_key}-*{SUFFIX}")):
            try:
                with open(path, "rb") as f:
                    header, _ = _read_head(f, os.fstat(f.fileno()).st_size)
                if header.model_key != self.model_key:
                    raise _Corrupt(f"its header is for model key {header.model_key}")
                if path != self._path(header.tokens_sha):
                    raise _Corrupt("its name does not match its tokens")
            except FileNotFoundError:
                continue
            except (OSError, _Corrupt) as exc:
                self._discard(path, exc)
                continue
            self._saved[header.tokens_sha] = _Saved(header.n_tokens, header.tokens_sha, path)

    def _matches(self, packed: bytes) -> list[_Saved]:
        """The saved prefixes of ``packed`` shorter than it, longest first.

        Hashing is incremental over the candidate lengths in ascending order, so a long prompt
        is hashed once however many entries there are.
        """
        n_tokens = len(packed) // _TOKEN_BYTES
        candidates = sorted((s for s in self._saved.values() if s.n_tokens < n_tokens), key=lambda s: s.n_tokens)
        view = memoryview(packed)
        hasher = hashlib.sha256()
        done = 0
        found = []
        for saved in candidates:
            hasher.update(view[done * _TOKEN_BYTES : saved.n_tokens * _TOKEN_BYTES])
            done = saved.n_tokens
            if hasher.copy().digest() == saved.digest:
                found.append(saved)
        return found[::-1]

    def _forget(self, path: Path) -> None:
        self._saved = {digest: s for digest, s in self._saved.items() if s.path != path}

    def _discard(self, path: Path, reason: object) -> None:
        """Log why a file is not trusted, delete it and drop it from the index."""
        log.warning("Ignoring the warm state %s: %s. Deleting it.", path.name, reason)
        self._forget(path)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("Could not delete the warm state %s: %s", path.name, exc)

    def _touch(self, path: Path) -> None:
        """Mark a file as just used (its mtime is the LRU clock; strictly increasing within a store)."""
        now = max(time.time_ns(), self._last_ns + 1)
        self._last_ns = now
        try:
            os.utime(path, ns=(now, now))
        except FileNotFoundError:
            self._forget(path)

    def _evict(self) -> None:
        """Delete least-recently-used state files, any model's, until the folder fits in ``max_bytes``."""
        files = []
        with os.scandir(self.folder) as listing:
            for item in listing:
                if item.name.endswith(SUFFIX) and not item.name.startswith(".") and item.is_file():
                    stat = item.stat()
                    files.append((stat.st_mtime_ns, stat.st_size, Path(item.path)))
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files):
            if total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            self._forget(path)
            total -= size
            log.info("Evicted the warm state %s (%d bytes) to stay within %d bytes", path.name, size, self.max_bytes)

    def _remove_stale_temps(self) -> None:
        """Remove the temp files of writes a crash interrupted (recent ones may be another store's)."""
        limit = time.time_ns() - _STALE_TEMP_NS
        for path in self.folder.glob(f".*{SUFFIX}.*.tmp"):
            try:
                if path.stat().st_mtime_ns < limit:
                    path.unlink()
            except OSError:
                continue

    # --- llama.cpp and files ----------------------------------------------------------------------------
    def _state_of(self, ctx: Any, seq_id: int, tokens_bytes: int) -> Any:
        """The state of one sequence as a ctypes byte array, or None (logged) when it is not kept."""
        import llama_cpp

        size = llama_cpp.llama_state_seq_get_size(ctx, seq_id)
        if size == 0:
            log.warning("llama.cpp could not measure the state of sequence %d; not saving it", seq_id)
            return None
        if HEADER.size + tokens_bytes + size > self.max_bytes:
            log.info(
                "The state of sequence %d (%d bytes) is larger than the warm store (%d)", seq_id, size, self.max_bytes
            )
            return None
        state = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(ctx, state, size, seq_id)
        if written != size:
            log.warning("llama.cpp wrote %d of the %d state bytes of sequence %d; not saving it", written, size, seq_id)
            return None
        return state

    def _write(self, path: Path, *parts: Any) -> None:
        """Write ``parts`` to ``path`` atomically (temp file, fsync, os.replace).

        Like ``webui.storage.atomic_write_bytes``, but streaming the parts: a state can be a
        gigabyte, and joining it to its header first would need that much memory again.
        """
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=self.folder)
        try:
            with os.fdopen(fd, "wb") as f:
                for part in parts:
                    f.write(part)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _read_state(self, saved: _Saved, packed: bytes) -> bytearray:
        """The state bytes of ``saved`` once every check has passed (else ``_Corrupt``/``OSError``)."""
        with open(saved.path, "rb") as f:
            header, tokens = _read_head(f, os.fstat(f.fileno()).st_size)
            if header.model_key != self.model_key:
                raise _Corrupt(f"its header is for model key {header.model_key}")
            if header.tokens_sha != saved.digest or tokens != packed[: len(tokens)]:
                raise _Corrupt("its tokens are not the ones its name says")
            state = bytearray(header.state_size)
            if f.readinto(state) != header.state_size:
                raise _Corrupt("its state is truncated")
        if hashlib.sha256(state).digest() != header.state_sha:
            raise _Corrupt("its state does not match its checksum")
        return state

    def _load(self, ctx: Any, seq_id: int, saved: _Saved, packed: bytes) -> bool:
        """Load one checked file into the (cleared) sequence; on any failure the sequence is left empty."""
        import llama_cpp

        memory = llama_cpp.llama_get_memory(ctx)
        llama_cpp.llama_memory_seq_rm(memory, seq_id, -1, -1)
        try:
            state = self._read_state(saved, packed)
        except FileNotFoundError:  # evicted by another model's store in the same folder
            self._forget(saved.path)
            return False
        except (OSError, _Corrupt) as exc:
            self._discard(saved.path, exc)
            return False
        size = len(state)
        read = llama_cpp.llama_state_seq_set_data(ctx, (ctypes.c_uint8 * size).from_buffer(state), size, seq_id)
        held = llama_cpp.llama_memory_seq_pos_max(memory, seq_id) + 1
        if read != size or held != saved.n_tokens:
            llama_cpp.llama_memory_seq_rm(memory, seq_id, -1, -1)
            self._discard(saved.path, f"llama.cpp did not load it ({read} of {size} bytes read, {held} positions)")
            return False
        return True
