"""The audit log: who did what, one JSON object a line (``audit.jsonl``), rotated by size.

Admins read it to see log-ins, failed log-ins, user changes (``scripts/users.py``), model loads,
downloads and deletes, and edits of the shared libraries. Each line is
``{"time": ISO UTC, "actor": ..., "action": ..., **details}``; JSON escaping keeps a name with a
newline in it from forging a line. The server writes it (its threads share a lock), and so does
``scripts/users.py`` now and then: each entry is one append of a whole line, so the two never mix
inside a line, and a rotation that the other process did first is taken as done.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

_RESERVED = ("time", "actor", "action")


class AuditLog:
    def __init__(self, path: Path, max_bytes: int = 1_000_000, backups: int = 5) -> None:
        """``path``: the log; when a line would make it exceed ``max_bytes`` it becomes ``path.1``
        (``path.1`` becomes ``path.2`` and so on, ``backups`` files kept)."""
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = max(0, backups)
        self._lock = threading.Lock()

    def record(self, actor: str, action: str, **details: Any) -> None:
        """Append one entry (details that are not JSON are written as text)."""
        clash = [k for k in details if k in _RESERVED]
        if clash:
            raise TypeError(f"audit detail names {clash} are reserved")
        entry = {
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "actor": actor,
            "action": action,
            **details,
        }
        line = (json.dumps(entry, ensure_ascii=False, default=str) + "\n").encode("utf-8")
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                size = self.path.stat().st_size
            except FileNotFoundError:
                size = 0
            if size and not self._ends_with_newline():
                line = b"\n" + line  # end a line cut short by a crash, so this entry stays readable
            if size and size + len(line) > self.max_bytes:
                self._rotate()
            # owner-only: the log names users and their addresses
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "ab") as f:
                f.write(line)

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"

    def _backup(self, n: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{n}")

    def _rotate(self) -> None:
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
            return
        self._backup(self.backups).unlink(missing_ok=True)
        for n in range(self.backups - 1, 0, -1):
            if self._backup(n).exists():
                _replace(self._backup(n), self._backup(n + 1))
        _replace(self.path, self._backup(1))

    def read(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` entries, oldest first (newest last); lines that are not JSON are skipped."""
        if limit <= 0:
            return []
        newest_first: list[dict[str, Any]] = []
        with self._lock:
            for path in [self.path, *(self._backup(n) for n in range(1, self.backups + 1))]:
                try:
                    lines = path.read_bytes().splitlines()
                except FileNotFoundError:
                    continue
                for raw in reversed(lines):
                    try:
                        entry = json.loads(raw)
                    except ValueError:  # a line cut short by a crash
                        continue
                    if isinstance(entry, dict):
                        newest_first.append(entry)
                        if len(newest_first) >= limit:
                            return newest_first[::-1]
        return newest_first[::-1]


def _replace(source: Path, target: Path) -> None:
    try:
        os.replace(source, target)
    except FileNotFoundError:  # the other writer (server or scripts/users.py) moved it a moment ago
        pass
