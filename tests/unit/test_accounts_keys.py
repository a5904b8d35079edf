"""API keys: the keys file (sha256 digests), the --api-key admin key, and who each key is."""

from __future__ import annotations

import hashlib

import pytest

from webui.accounts.keys import API_KEY_USER, add_key, hash_plain_keys, key_digest, load_api_keys, new_key, remove_keys
from webui.accounts.users import load_accounts
from webui.errors import SettingsError


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_new_keys_are_random_and_prefixed():
    first, second = new_key(), new_key()
    assert first.startswith("sk-webui-") and len(first) > 40 and first != second
    assert key_digest("abc") == "sha256:" + hashlib.sha256(b"abc").hexdigest()


def test_no_keys_means_not_required(tmp_path):
    keys = load_api_keys(None, None, None)
    assert not keys.required and keys.user_for("anything") is None
    assert not load_api_keys(tmp_path / "missing.yaml", None, None).required


def test_admin_key_without_accounts_is_an_admin_called_api_key():
    keys = load_api_keys(None, None, "s3cret")
    assert keys.required
    user = keys.user_for("s3cret")
    assert user.name == API_KEY_USER and user.is_admin
    assert keys.user_for("s3cre") is None and keys.user_for("") is None and keys.user_for(None) is None


def test_keys_file_maps_keys_to_users_and_roles(tmp_path):
    accounts = load_accounts(None, [("alice", "a"), ("bob", "b")], ["alice"])
    path = write(
        tmp_path / "api-keys.yaml",
        f"keys:\n  Bob: ['{key_digest('bob-key-1')}', '{key_digest('bob-key-2')}']\n"
        f"  carol: '{key_digest('carol-key')}'\n",
    )
    keys = load_api_keys(path, accounts, "admin-key")
    assert keys.warnings == []
    assert keys.user_for("admin-key") is accounts.main_admin
    assert keys.user_for("bob-key-1") is accounts.find("bob") and keys.user_for("bob-key-2").name == "bob"
    carol = keys.user_for("carol-key")  # not in the accounts: a user of the API only
    assert carol.name == "carol" and carol.role == "user" and carol.folder == "carol"
    assert keys.user_for(key_digest("bob-key-1")) is None  # the digest itself is no key


def test_plain_keys_work_with_a_warning_and_hash_all_fixes_them(tmp_path):
    path = write(tmp_path / "api-keys.yaml", f"keys:\n  alice: [plain-key, '{key_digest('k2')}']\n")
    keys = load_api_keys(path, None, None)
    assert keys.user_for("plain-key").name == "alice" and keys.user_for("k2").name == "alice"
    (warning,) = keys.warnings
    assert "plain-text keys for alice" in warning and f"--keys-file {path} hash-all" in warning
    assert hash_plain_keys(path) == ["alice"]
    assert "plain-key" not in path.read_text()
    keys = load_api_keys(path, None, None)
    assert keys.warnings == [] and keys.user_for("plain-key").name == "alice"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("keys: [a]\n", "must map user names"),
        ("keys:\n  alice: [1]\n", "list of quoted keys"),
        ("keys:\n  alice: ['sha256:zz']\n", "not a sha256 digest"),
        ("keys:\n  alice: [k]\n  ALICE: [j]\n", "'alice' and 'ALICE' .* same user"),
        ("keys:\n  alice: [k]\n  bob: [k]\n", "belongs to both alice and bob"),
        ("keys: {alice: [k]\n", "not valid YAML"),
    ],
)
def test_malformed_keys_file_errors_name_the_file(tmp_path, text, match):
    path = write(tmp_path / "api-keys.yaml", text)
    with pytest.raises(SettingsError, match=match) as err:
        load_api_keys(path, None, None)
    assert str(path) in err.value.message


def test_add_and_remove_keys_in_the_file(tmp_path):
    path = tmp_path / "api-keys.yaml"
    first, second = add_key(path, "alice"), add_key(path, "ALICE")
    other = add_key(path, "bob")
    assert first not in path.read_text() and key_digest(first) in path.read_text()
    assert (path.stat().st_mode & 0o777) == 0o600
    keys = load_api_keys(path, None, None)
    assert keys.user_for(first).name == keys.user_for(second).name == "alice"
    assert remove_keys(path, "Alice") == 2 and remove_keys(path, "alice") == 0
    keys = load_api_keys(path, None, None)
    assert keys.user_for(first) is None and keys.user_for(other).name == "bob"
