"""User names: one user per canonical name, and a safe folder of their own for each."""

from __future__ import annotations

import pytest

from webui.accounts.names import canonical_key, check_user_name, user_folder
from webui.errors import InvalidNameError
from webui.storage import safe_name

DANGEROUS = [
    "../x",
    "..",
    ".",
    "a/b",
    "a\\b",
    "/etc/passwd",
    "CON",
    "con.txt",
    "lpt1",
    ".hidden",
    "Ａ／ｂ",  # full-width A/b
    "．．／ｘ",  # full-width ../x
    "x\x00y",
    "tab\there",
    "a:b",
    "name.",
    "a" * 300,
]


def test_spellings_of_one_name_share_a_key():
    assert canonical_key("Alice") == canonical_key("ALICE") == canonical_key("Ａｌｉｃｅ") == canonical_key(" alice ")
    assert canonical_key("Straße") == canonical_key("STRASSE")
    assert canonical_key("alice") != canonical_key("alice2")


@pytest.mark.parametrize("name", ["alice", "Bob", "Ассистент", "助手", "bob smith", "o'neil"])
def test_ordinary_names_are_their_own_folder(name):
    assert user_folder(name) == canonical_key(name)


@pytest.mark.parametrize("name", DANGEROUS)
def test_dangerous_names_map_to_one_folder_inside_users(tmp_path, name):
    users = tmp_path / "users"
    users.mkdir()
    folder = user_folder(name)
    assert safe_name(folder) == folder
    assert "/" not in folder and "\\" not in folder and folder not in (".", "..")
    path = users / folder
    path.mkdir()
    assert path.resolve().parent == users.resolve()
    assert list(users.iterdir()) == [path]


@pytest.mark.parametrize("name", ["", "   ", "\u3000"])
def test_empty_names_are_refused(name):
    with pytest.raises(InvalidNameError, match="empty"):
        user_folder(name)
    with pytest.raises(InvalidNameError, match="empty"):
        check_user_name(name)


def test_different_users_never_share_a_folder(tmp_path):
    names = [*DANGEROUS, "alice", "a_b", "a b", "a-b", "CON2", "con_", "Alice\n", "x", "X\x00Y"]
    # a name that is itself safe but spelled like the hashed folder of another name
    names += [user_folder("a/b"), user_folder("../x"), user_folder("CON")]
    keys = {canonical_key(n) for n in names}
    folders = {canonical_key(n): user_folder(n) for n in names}
    assert len(set(folders.values())) == len(keys)
    # and on disk (case-insensitive file systems: the folders differ in more than case)
    assert len({f.casefold() for f in folders.values()}) == len(keys)
    for folder in folders.values():
        (tmp_path / folder).mkdir()
    assert len(list(tmp_path.iterdir())) == len(keys)


def test_spellings_of_one_name_share_a_folder():
    assert user_folder("Alice") == user_folder("ALICE") == user_folder("Ａｌｉｃｅ") == "alice"
    assert user_folder("Ａ／ｂ") == user_folder("a/b")


def test_check_user_name_strips_and_refuses_control_characters_and_long_names():
    assert check_user_name("  alice ") == "alice"
    assert check_user_name("../x") == "../x"  # fine as a name: its folder is made safe
    with pytest.raises(InvalidNameError, match="control character"):
        check_user_name("ali\nce")
    with pytest.raises(InvalidNameError, match="longer than"):
        check_user_name("a" * 300)
