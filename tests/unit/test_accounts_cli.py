"""scripts/users.py: its commands edit real files that load_accounts and load_api_keys then read."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from webui.accounts.cli import main
from webui.accounts.keys import load_api_keys
from webui.accounts.users import load_accounts

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def run(tmp_path, monkeypatch, capsys):
    """``run(*argv, stdin=...)`` -> (exit code, stdout, stderr), with the files in tmp_path."""

    def run(*argv: str, stdin: str = "") -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = main(["--user-data-dir", str(tmp_path), *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_add_passwd_role_remove_list(tmp_path, run):
    users = tmp_path / "users.yaml"
    assert run("add", "alice", "--admin", "--password-stdin", stdin="alice pw\n")[0] == 0
    code, _, err = run("add", "bob", "--password-stdin", stdin="bob-pw\n")
    assert code == 0 and f"Added bob (user) to {users}" in err
    code, _, err = run("add", "BOB", "--password-stdin", stdin="x\n")
    assert code == 1 and "already has user 'bob'" in err and "passwd bob" in err

    accounts = load_accounts(users, [], [])
    assert [(u.name, u.role) for u in accounts.users] == [("alice", "admin"), ("bob", "user")]
    assert accounts.check_password("alice", "alice pw") and accounts.check_password("bob", "bob-pw")
    assert "alice pw" not in users.read_text()

    assert run("passwd", "Bob", "--password-stdin", stdin="new-pw\r\n")[0] == 0
    accounts = load_accounts(users, [], [])
    assert accounts.check_password("bob", "new-pw") and not accounts.check_password("bob", "bob-pw")

    code, out, _ = run("list")
    assert code == 0 and "alice  admin  (main admin" in out and "bob  user  (users/bob/)" in out

    code, _, err = run("role", "bob", "admin")
    assert code == 0 and "bob is now an admin" in err
    code, _, err = run("remove", "alice")
    assert code == 0 and "Removed alice" in err and "bob is now the main admin" in err
    accounts = load_accounts(users, [], [])
    assert [u.name for u in accounts.users] == ["bob"] and accounts.main_admin.name == "bob"


def test_unknown_user_and_empty_password_are_refused(tmp_path, run):
    code, _, err = run("passwd", "nobody", "--password-stdin", stdin="x\n")
    assert code == 1 and "There is no user 'nobody'" in err
    code, _, err = run("add", "carol", "--password-stdin", stdin="\n")
    assert code == 1 and "password is empty" in err
    code, _, err = run("add", "   ", "--password-stdin", stdin="x\n")
    assert code == 1 and "user name is empty" in err
    assert not (tmp_path / "users.yaml").exists()


def test_prompted_passwords_must_match(tmp_path, run, monkeypatch):
    answers = iter(["one", "two"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    code, _, err = run("add", "alice")
    assert code == 1 and "passwords differ" in err
    answers = iter(["same", "same"])
    assert run("add", "alice")[0] == 0
    assert load_accounts(tmp_path / "users.yaml", [], []).check_password("alice", "same")


def test_add_key_prints_a_key_that_maps_to_the_user(tmp_path, run):
    run("add", "alice", "--password-stdin", stdin="pw\n")
    code, out, err = run("add-key", "ALICE")
    key = out.strip()
    assert code == 0 and key.startswith("sk-webui-") and "not shown again" in err
    keys_file = tmp_path / "api-keys.yaml"
    assert key not in keys_file.read_text()
    accounts = load_accounts(tmp_path / "users.yaml", [], [])
    assert load_api_keys(keys_file, accounts, None).user_for(key) is accounts.find("alice")

    other = tmp_path / "other-keys.yaml"
    code, out, err = run("add-key", "robot", "--keys-file", str(other))
    assert code == 0 and "API only" in err
    robot = load_api_keys(other, accounts, None).user_for(out.strip())
    assert robot.name == "robot" and robot.role == "user"

    # removing a user also revokes their keys, so the key stops working
    code, _, err = run("remove", "alice")
    assert code == 0 and "Removed 1 API key(s) of alice" in err
    assert load_api_keys(keys_file, None, None).user_for(key) is None


def test_hash_all_hashes_passwords_and_keys_in_place(tmp_path, run):
    users, keys_file = tmp_path / "users.yaml", tmp_path / "api-keys.yaml"
    users.write_text("users:\n  alice: {password: hunter2, role: admin}\n  bob: {password: pw}\n", encoding="utf-8")
    keys_file.write_text("keys:\n  alice: [plain-key]\n", encoding="utf-8")
    assert len(load_accounts(users, [], []).warnings) == 1
    code, _, err = run("hash-all")
    assert code == 0 and "alice, bob" in err
    accounts = load_accounts(users, [], [])
    assert (
        accounts.warnings == [] and accounts.check_password("alice", "hunter2") and accounts.main_admin.name == "alice"
    )
    assert "hunter2" not in users.read_text() and "plain-key" not in keys_file.read_text()
    assert load_api_keys(keys_file, accounts, None).user_for("plain-key") is accounts.find("alice")
    code, _, err = run("hash-all")
    assert code == 0 and "hashed already" in err


def test_a_broken_users_file_is_reported_not_overwritten(tmp_path, run):
    users = tmp_path / "users.yaml"
    users.write_text("users: [oops\n", encoding="utf-8")
    code, _, err = run("add", "alice", "--password-stdin", stdin="pw\n")
    assert code == 1 and f"{users} is not valid YAML" in err
    assert users.read_text() == "users: [oops\n"


def test_script_runs_with_the_venv_python(tmp_path):
    users = tmp_path / "users.yaml"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["WEBUI_USER_DATA_DIR"] = str(tmp_path)  # its audit log there, not in the project folder
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "users.py"), "--file", str(users), "add", "bob", "--password-stdin"],
        input="bob's password\n",
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the project folder: the script finds webui by itself
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert f"Added bob (user) to {users}" in result.stderr
    accounts = load_accounts(users, [], [])
    assert accounts.check_password("bob", "bob's password").is_admin  # the only user is the admin
