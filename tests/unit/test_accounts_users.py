"""Loading accounts from a real users file, --gradio-auth pairs and --admin; checking passwords."""

from __future__ import annotations

import pytest

from webui.accounts.names import user_folder
from webui.accounts.passwords import hash_password
from webui.accounts.users import Accounts, User, load_accounts
from webui.accounts.users_file import add_user, hash_plain_passwords, remove_user, set_password, set_role
from webui.errors import InvalidNameError, SettingsError


@pytest.fixture(scope="module")
def hashes() -> dict[str, str]:
    return {"alice": hash_password("alice-pw"), "bob": hash_password("bob-pw")}


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_no_file_and_no_pairs_means_no_log_in(tmp_path):
    assert load_accounts(None, [], []) is None
    assert load_accounts(tmp_path / "users.yaml", [], []) is None  # a missing file is no file


def test_users_file_roles_folders_and_passwords(tmp_path, hashes):
    path = write(
        tmp_path / "users.yaml",
        f"users:\n  bob: {{password: '{hashes['bob']}'}}\n  Alice: {{password: '{hashes['alice']}', role: admin}}\n",
    )
    accounts = load_accounts(path, [], [])
    assert isinstance(accounts, Accounts)
    assert accounts.users == [User("bob", "user", "bob"), User("Alice", "admin", "alice")]
    assert accounts.warnings == []
    assert accounts.main_admin.name == "Alice" and accounts.main_admin.is_admin
    assert accounts.is_own_folder(accounts.find("alice")) and not accounts.is_own_folder(accounts.find("bob"))
    assert accounts.find("ＡＬＩＣＥ") is accounts.find("Alice")
    assert accounts.find("carol") is None and accounts.find(None) is None
    assert accounts.check_password("ALICE", "alice-pw") == accounts.main_admin
    assert accounts.check_password("bob", "bob-pw").name == "bob"
    assert accounts.check_password("bob", "alice-pw") is None
    assert accounts.check_password("carol", "bob-pw") is None
    assert "alice-pw" not in repr(accounts) and hashes["alice"] not in repr(accounts)


def test_first_user_is_admin_when_nobody_is(tmp_path, hashes):
    path = write(tmp_path / "users.yaml", f"users:\n  bob: {{password: '{hashes['bob']}'}}\n  alice: {{password: x}}\n")
    accounts = load_accounts(path, [], [])
    assert [(u.name, u.role) for u in accounts.users] == [("bob", "admin"), ("alice", "user")]
    assert accounts.main_admin.name == "bob"


def test_pairs_and_admin_flag(tmp_path):
    accounts = load_accounts(None, [("alice", "a"), ("bob", "b")], ["BOB"])
    assert [(u.name, u.role) for u in accounts.users] == [("alice", "user"), ("bob", "admin")]
    assert accounts.main_admin.name == "bob"
    assert accounts.check_password("alice", "a").name == "alice"
    assert accounts.check_password("alice", "b") is None
    assert accounts.warnings == []  # pairs are plain text by nature: nothing to warn about


def test_file_and_pairs_together(tmp_path, hashes):
    path = write(tmp_path / "users.yaml", f"users:\n  alice: {{password: '{hashes['alice']}'}}\n")
    accounts = load_accounts(path, [("carol", "c")], ["carol"])
    assert [(u.name, u.role) for u in accounts.users] == [("alice", "user"), ("carol", "admin")]
    assert accounts.main_admin.name == "carol"


def test_same_user_twice_is_an_error_naming_both(tmp_path):
    path = write(tmp_path / "users.yaml", "users:\n  Alice: {password: a}\n  ＡＬＩＣＥ: {password: b}\n")
    with pytest.raises(SettingsError, match="'Alice' and 'ＡＬＩＣＥ'") as err:
        load_accounts(path, [], [])
    assert str(path) in err.value.message
    path = write(tmp_path / "users.yaml", "users:\n  alice: {password: a}\n")
    with pytest.raises(SettingsError, match="'alice' and 'ALICE' in .*users.yaml and --gradio-auth"):
        load_accounts(path, [("ALICE", "x")], [])


def test_written_twice_in_yaml_is_an_error(tmp_path):
    path = write(tmp_path / "users.yaml", "users:\n  alice: {password: a}\n  alice: {password: b}\n")
    with pytest.raises(SettingsError, match="written twice"):
        load_accounts(path, [], [])


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("users: [alice, bob\n", "not valid YAML"),
        ("- alice\n", "must hold a mapping"),
        ("users: [alice]\n", "must map names"),
        ("users:\n  alice: hunter2\n", "needs a password"),
        ("users:\n  alice: {role: admin}\n", "password of user 'alice' .* is missing"),
        ("users:\n  alice: {password: 1234}\n", "is not text: put it in quotes"),
        ("users:\n  alice: {password: a, role: root}\n", "role 'root'"),
        ("users:\n  123: {password: a}\n", "not text: put it in quotes"),
        ('users:\n  "ali\\tce": {password: a}\n', "control character"),
        ("users: {}\n", "lists no users"),
    ],
)
def test_malformed_file_errors_name_the_file(tmp_path, text, match):
    path = write(tmp_path / "users.yaml", text)
    with pytest.raises(SettingsError, match=match) as err:
        load_accounts(path, [], [])
    assert str(path) in err.value.message


def test_plain_text_passwords_warn_with_the_command_to_run(tmp_path, hashes):
    path = write(
        tmp_path / "users.yaml", f"users:\n  alice: {{password: '{hashes['alice']}'}}\n  bob: {{password: hunter2}}\n"
    )
    accounts = load_accounts(path, [], [])
    assert accounts.check_password("bob", "hunter2").name == "bob"
    (warning,) = accounts.warnings
    assert "plain-text password for bob" in warning
    assert f"python scripts/users.py --file {path} passwd bob" in warning
    write(path, "users:\n  alice: {password: a}\n  bob: {password: b}\n")
    (warning,) = load_accounts(path, [], []).warnings
    assert "for alice, bob" in warning and "hash-all" in warning


def test_damaged_hash_and_unused_settings_warn(tmp_path):
    path = write(tmp_path / "users.yaml", "users:\n  alice: {password: '$argon2id$junk', rol: admin}\nextra: 1\n")
    accounts = load_accounts(path, [], [])
    text = "\n".join(accounts.warnings)
    assert "password hash of alice" in text and "cannot log in" in text
    assert "rol" in text and "'extra'" in text
    assert accounts.check_password("alice", "$argon2id$junk") is None


def test_admin_flag_naming_nobody_is_an_error():
    with pytest.raises(SettingsError, match="--admin carol: there is no such user"):
        load_accounts(None, [("alice", "a")], ["carol"])


def test_empty_pair_password_or_name_is_an_error():
    with pytest.raises(SettingsError, match="password of alice in --gradio-auth is empty"):
        load_accounts(None, [("alice", "")], [])
    with pytest.raises(SettingsError, match="--gradio-auth: The user name is empty"):
        load_accounts(None, [(" ", "x")], [])


def test_users_file_editing(tmp_path):
    path = tmp_path / "data" / "users.yaml"
    assert add_user(path, "Alice", "a1", role="admin") == User("Alice", "admin", "alice")
    add_user(path, "../evil", "e1")
    with pytest.raises(SettingsError, match="already has user 'Alice'"):
        add_user(path, "ALICE", "x")
    with pytest.raises(SettingsError, match="password is empty"):
        add_user(path, "bob", "")
    with pytest.raises(InvalidNameError):
        add_user(path, "", "x")
    assert (path.stat().st_mode & 0o777) == 0o600
    set_password(path, "alice", "a2")
    assert set_role(path, "../EVIL", "admin").role == "admin"
    accounts = load_accounts(path, [], [])
    assert accounts.check_password("alice", "a2") and not accounts.check_password("alice", "a1")
    evil = accounts.find("../evil")
    assert evil.is_admin and evil.folder == user_folder("../evil") and "/" not in evil.folder
    assert set_role(path, "alice", "user").role == "user"
    assert load_accounts(path, [], []).main_admin.name == "../evil"
    assert remove_user(path, "ALICE").name == "Alice"
    with pytest.raises(SettingsError, match="There is no user 'alice'"):
        set_password(path, "alice", "x")
    assert [u.name for u in load_accounts(path, [], []).users] == ["../evil"]


def test_hash_plain_passwords_in_place(tmp_path, hashes):
    path = write(
        tmp_path / "users.yaml",
        f"users:\n  alice: {{password: '{hashes['alice']}', role: admin}}\n  bob: {{password: hunter2}}\n",
    )
    assert hash_plain_passwords(path) == ["bob"]
    accounts = load_accounts(path, [], [])
    assert accounts.warnings == []
    assert accounts.check_password("bob", "hunter2") and accounts.check_password("alice", "alice-pw")
    assert accounts.main_admin.name == "alice"
    assert hash_plain_passwords(path) == []
