"""The audit log: JSON lines, rotation by size, and several threads writing at once."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone

from webui.accounts.audit import AuditLog


def test_record_appends_json_lines_and_read_returns_newest_last(tmp_path):
    log = AuditLog(tmp_path / "logs" / "audit.jsonl")
    log.record("alice", "login", address="10.0.0.1")
    log.record("bob", "user.add", name='evil\n{"actor": "forged"}', when=datetime(2024, 1, 1))
    lines = (tmp_path / "logs" / "audit.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2  # the newline in a detail cannot start a line of its own
    first = json.loads(lines[0])
    assert first["actor"] == "alice" and first["action"] == "login" and first["address"] == "10.0.0.1"
    assert datetime.fromisoformat(first["time"]).tzinfo == timezone.utc
    entries = log.read()
    assert [e["actor"] for e in entries] == ["alice", "bob"]
    assert entries[1]["when"] == "2024-01-01 00:00:00"
    assert [e["actor"] for e in log.read(limit=1)] == ["bob"]
    assert ((tmp_path / "logs" / "audit.jsonl").stat().st_mode & 0o777) == 0o600


def test_rotation_keeps_backups_and_read_spans_them(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, max_bytes=400, backups=2)
    for i in range(40):
        log.record("alice", "chat", n=i)
    assert path.stat().st_size <= 400
    assert (tmp_path / "audit.jsonl.1").is_file() and (tmp_path / "audit.jsonl.2").is_file()
    assert not (tmp_path / "audit.jsonl.3").exists()
    numbers = [e["n"] for e in log.read(limit=1000)]
    assert numbers == sorted(numbers) and numbers[-1] == 39 and len(numbers) < 40  # the oldest are gone
    assert [e["n"] for e in log.read(limit=5)] == [35, 36, 37, 38, 39]


def test_threads_write_whole_lines(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, max_bytes=10_000_000)

    def write(actor: str) -> None:
        for i in range(200):
            log.record(actor, "chat", n=i, text="x" * 100)

    threads = [threading.Thread(target=write, args=(f"user{t}",)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    entries = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(entries) == 800
    for t in range(4):
        assert [e["n"] for e in entries if e["actor"] == f"user{t}"] == list(range(200))


def test_threads_and_rotation_lose_nothing(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, max_bytes=5_000, backups=100)
    threads = [
        threading.Thread(target=lambda t=t: [log.record(f"u{t}", "x", n=i) for i in range(100)]) for t in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(log.read(limit=10_000)) == 300


def test_a_torn_line_is_skipped(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    log.record("alice", "login")
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"time": "2024')  # a crash in the middle of a write
    log.record("bob", "login")
    assert [e["actor"] for e in log.read()] == ["alice", "bob"]
