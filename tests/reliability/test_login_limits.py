"""Log-in with accounts against the real server.py: wrong passwords are limited per user and per
address (429 with Retry-After), every log-in and failure is in the audit log, a plain-text password
is named at start with the command that hashes it, and ``scripts/users.py add`` makes a user the
restarted server lets in.

The server sees each loopback address 127.0.0.x as another client, so one server serves every test:
each test uses addresses (and names) of its own, and the limiter's memory of one test cannot leak
into another.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from harness import make_dirs, start_server, stop_server
from testdata import PROJECT_DIR
from userkit import ALICE, BOB, audit_entries, log_in, request, write_users

pytestmark = pytest.mark.integration

CAROL = ("carol", "carol-Secret-3")
#: LoginLimiter's defaults, as the server uses them: 5 failures inside 5 minutes lock.
MAX_FAILURES, WINDOW_S = 5, 300


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """server.py with Alice (admin), Bob and Carol in <user-data>/users.yaml, passwords hashed."""
    root = tmp_path_factory.mktemp("logins")
    model_dir, user_dir = make_dirs(root)
    write_users(
        user_dir / "users.yaml",
        {ALICE[0]: (ALICE[1], "admin"), BOB[0]: (BOB[1], "user"), CAROL[0]: (CAROL[1], "user")},
    )
    srv = start_server(root, model_dir, user_dir)
    yield srv
    stop_server(srv)


def assert_locked(answer, what: str) -> None:
    assert answer.status == 429, f"{what}: {answer.status} {answer.body[:200]!r}"
    retry = answer.headers.get("retry-after")
    assert retry is not None and retry.isdigit() and 0 < int(retry) <= WINDOW_S, f"{what}: Retry-After {retry!r}"
    assert not answer.cookies, f"{what}: a locked-out log-in set cookies"


def assert_logged_in(url: str, answer, what: str) -> None:
    assert answer.status == 200 and answer.cookies, f"{what}: {answer.status} {answer.body[:200]!r}"
    assert request(url, "/config", cookie=answer.cookie).status == 200, f"{what}: the session does not open the app"


def test_five_wrong_passwords_lock_the_user_everywhere_and_the_address_for_everyone(lab):
    url, here = lab.url, "127.0.0.2"
    for i in range(MAX_FAILURES):
        answer = log_in(url, BOB[0], f"guess-{i}", source=here)
        assert answer.status in (400, 401) and not answer.cookies, f"wrong password {i + 1}: {answer.status}"
    # the 6th attempt waits, even with the right password (a guesser learns nothing from it)
    assert_locked(log_in(url, BOB[0], BOB[1], source=here), "Bob's right password after 5 wrong ones")
    assert_locked(log_in(url, BOB[0], "guess-5", source=here), "a 6th wrong password")
    # per user: Bob's name is locked from any address, in any spelling
    assert_locked(log_in(url, BOB[0], BOB[1], source="127.0.0.3"), "Bob from another address")
    assert_locked(log_in(url, "BOB", BOB[1], source="127.0.0.3"), "'BOB' from another address")
    # per address: the address that guessed waits for every name (the limiter blocks on either)
    assert_locked(log_in(url, ALICE[0], ALICE[1], source=here), "Alice from the guessing address")
    # everyone else is not held up
    assert_logged_in(url, log_in(url, ALICE[0], ALICE[1], source="127.0.0.4"), "Alice from her own address")
    assert_logged_in(url, log_in(url, CAROL[0], CAROL[1], source="127.0.0.4"), "Carol from Alice's address")


def test_guessing_many_names_locks_the_address_and_a_good_log_in_does_not_reset_it(lab):
    url, here = lab.url, "127.0.0.5"
    for i in range(MAX_FAILURES - 1):
        answer = log_in(url, f"mallory{i}", "anything", source=here)
        assert answer.status in (400, 401) and not answer.cookies
    # a right password from the same machine clears that user's count, not the address's
    assert_logged_in(url, log_in(url, CAROL[0], CAROL[1], source=here), "Carol between the guesses")
    assert log_in(url, "mallory9", "anything", source=here).status in (400, 401)
    assert_locked(log_in(url, CAROL[0], CAROL[1], source=here), "Carol after the 5th guess from her address")
    assert_logged_in(url, log_in(url, CAROL[0], CAROL[1], source="127.0.0.6"), "Carol from another address")


def test_audit_log_records_log_ins_and_failures_with_who_when_and_where(lab):
    url, here = lab.url, "127.0.0.7"
    start = datetime.now(timezone.utc) - timedelta(seconds=2)
    assert_logged_in(url, log_in(url, ALICE[0], ALICE[1], source=here), "Alice")
    assert log_in(url, CAROL[0], "not-her-password", source=here).status in (400, 401)
    assert log_in(url, "nobody-here", "whatever", source=here).status in (400, 401)
    end = datetime.now(timezone.utc) + timedelta(seconds=2)

    mine = [e for e in audit_entries(lab.user_dir) if e.get("address") == here]
    seen = [(e["actor"], e["action"]) for e in mine]
    assert seen == [("alice", "log-in"), ("carol", "log-in failed"), ("nobody-here", "log-in failed")], seen
    for entry in mine:
        when = datetime.fromisoformat(entry["time"].replace("Z", "+00:00"))
        assert when.tzinfo is not None and start <= when <= end, entry
    text = (lab.user_dir / "logs" / "audit.jsonl").read_text(encoding="utf-8")
    for secret in (ALICE[1], "not-her-password", "whatever"):
        assert secret not in text, "a password was written to the audit log"
    # the lock-outs of the first test are there too, with the address they came from
    refused = [e for e in audit_entries(lab.user_dir) if e["action"] == "log-in refused (locked out)"]
    assert any(e["actor"].lower() == "bob" and e.get("address") == "127.0.0.3" for e in refused), refused


def test_plain_text_password_is_named_at_start_with_the_command_that_hashes_it(tmp_path):
    model_dir, user_dir = make_dirs(tmp_path)
    from webui.accounts.passwords import hash_password

    users = user_dir / "users.yaml"  # Alice's password hashed, Bob's as he typed it
    users.write_text(
        f"users:\n  {ALICE[0]}:\n    password: '{hash_password(ALICE[1])}'\n    role: admin\n"
        f"  {BOB[0]}:\n    password: {BOB[1]}\n",
        encoding="utf-8",
    )
    srv = start_server(tmp_path, model_dir, user_dir)
    try:
        # a plain-text password still works (with the warning), and Alice's hashed one
        assert_logged_in(srv.url, log_in(srv.url, BOB[0], BOB[1]), "Bob with a plain-text password")
        assert_logged_in(srv.url, log_in(srv.url, ALICE[0], ALICE[1]), "Alice")
    finally:
        stop_server(srv)
    warnings = [line for line in srv.log.read_text().splitlines() if "plain-text password" in line]
    assert len(warnings) == 1, srv.log.read_text()[-3000:]
    warning = warnings[0]
    assert "WARNING" in warning and "for bob" in warning and "alice" not in warning
    assert "scripts/users.py" in warning and str(users) in warning
    assert "passwd bob" in warning or "hash-all" in warning
    assert BOB[1] not in srv.log.read_text(), "the password itself is in the server's log"


def users_command(*args: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(PROJECT_DIR / "scripts" / "users.py"), *args],
        input=None if password is None else password + "\n",
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_users_command_adds_a_user_the_restarted_server_lets_in(tmp_path):
    from webui.accounts.passwords import is_hashed
    from webui.accounts.users import read_users_file

    model_dir, user_dir = make_dirs(tmp_path)
    users = write_users(user_dir / "users.yaml", {ALICE[0]: (ALICE[1], "admin")})
    srv = start_server(tmp_path, model_dir, user_dir)
    try:
        assert log_in(srv.url, CAROL[0], CAROL[1]).status in (400, 401)
    finally:
        stop_server(srv)

    out = users_command(
        "--user-data-dir", str(user_dir), "--file", str(users), "add", CAROL[0], "--password-stdin", password=CAROL[1]
    )
    assert out.returncode == 0, out.stderr
    entries, _ = read_users_file(users)
    assert is_hashed(entries[CAROL[0]]["password"]) and entries[CAROL[0]].get("role", "user") == "user"
    assert CAROL[1] not in users.read_text(encoding="utf-8") + out.stdout + out.stderr
    added = [e for e in audit_entries(user_dir) if e["action"] == "add a user"]
    assert [(e["actor"], e["user"]) for e in added] == [("scripts/users.py", CAROL[0])]
    assert CAROL[1] not in (user_dir / "logs" / "audit.jsonl").read_text(encoding="utf-8")

    srv = start_server(tmp_path, model_dir, user_dir)
    try:
        assert_logged_in(srv.url, log_in(srv.url, CAROL[0], CAROL[1]), "Carol after `users.py add` and a restart")
        assert log_in(srv.url, CAROL[0], "wrong").status in (400, 401)
        assert_logged_in(srv.url, log_in(srv.url, ALICE[0], ALICE[1]), "Alice, still")
    finally:
        stop_server(srv)
    assert "plain-text password" not in srv.log.read_text()
